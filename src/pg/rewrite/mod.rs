//! Client-compatibility rewrites: what BI clients and drivers send that DataFusion cannot
//! plan, or whose answer depends on the session, rewritten into an equivalent it plans. Each
//! rule has a name, a file, a doc comment on the client quirk it handles and a unit test of
//! its input SQL → output SQL (as cubesql's `compile/rewrite/rules` and DataFusion's analyzer
//! rules are kept). They come in three kinds, applied in this order:
//!
//! 1. **Text rules** ([`fragments`]), before parsing: fragments matched token by token.
//! 2. **Statement rules**, visiting the parsed statement: [`name_function_columns`] (a table
//!    function's alias names its column; `pg_user` is in pg_catalog),
//!    [`name_rewritten_calls`] (a replaced call keeps PostgreSQL's column name) and
//!    [`output_names`] (repeated names in a select list; derived tables' and CTEs' columns
//!    named as PostgreSQL names them).
//! 3. **Expression rules** ([`RULES`]), tried in order on every expression of the statement:
//!    the first that rewrites an expression ends its turn ([`Flow::Done`]), unless it says the
//!    next rules may look at it too ([`Flow::Next`]).
//!
//! datafusion-pg-catalog's `PostgresCompatibilityParser` applies its own rules between 1 and 2
//! (`OPERATOR(pg_catalog.~)`, `COLLATE`, literal `::regclass`, `= ANY(array)` …).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::settings::SessionInfo;
use crate::error::{Error, ErrorKind, Result};

pub mod array_cast;
pub mod array_subquery;
pub mod catalog_lookup;
pub mod col_description;
pub mod current_setting;
pub mod current_user;
pub mod expandarray;
pub mod fragments;
pub mod hoist_subquery;
pub mod like_escape;
pub mod name_function_columns;
pub mod name_rewritten_calls;
pub mod number_literal;
pub mod obj_description;
pub mod output_names;
pub mod pg_get_viewdef;
pub mod record_field;
pub mod regclass_cast;
pub mod regproc_compare;
pub mod regtype_names;
pub mod set_config;
pub mod set_returning_calls;
pub mod vector_subscript;
pub mod vector_unnest;

/// Settings a statement asked to change (`set_config(name, value, is_local)`).
pub type SettingChanges = Vec<(String, String)>;

/// What an expression rule reads and reports.
pub struct Context<'a> {
    pub session: &'a SessionInfo,
    /// Settings the statement changes, applied by the session after planning.
    pub changes: &'a mut SettingChanges,
}

/// Whether later rules still look at an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The expression is final for this walk.
    Done,
    /// Later rules look at it too (the rule did not match, or rewrote only an operand).
    Next,
}

/// One expression rule.
pub struct Rule {
    /// Its name, as in its file and in docs/architecture.md.
    pub name: &'static str,
    /// Functions whose select-list calls this rule replaces by a literal or a subquery:
    /// [`name_rewritten_calls`] names their columns after the function, as PostgreSQL does.
    pub calls: &'static [&'static str],
    pub apply: fn(&mut Expr, &mut Context<'_>) -> Result<Flow>,
}

/// The expression rules, in the order they are tried.
pub const RULES: &[Rule] = &[
    number_literal::RULE,
    current_user::RULE,
    regclass_cast::RULE,
    vector_unnest::RULE,
    set_returning_calls::RULE,
    regtype_names::RULE,
    like_escape::RULE,
    vector_subscript::RULE,
    record_field::RULE,
    regproc_compare::RULE,
    hoist_subquery::RULE,
    catalog_lookup::RULE,
    current_setting::RULE,
    set_config::RULE,
    array_subquery::RULE,
    array_cast::RULE,
    col_description::RULE,
    expandarray::RULE,
    pg_get_viewdef::RULE,
    obj_description::RULE,
];

/// Applies the statement and expression rules: rewrites the calls whose answer depends on
/// the session or on lakecube's catalog, and what DataFusion cannot plan.
pub fn rewrite_session(stmt: &mut Statement, session: &SessionInfo) -> Result<SettingChanges> {
    name_rewritten_calls::apply(stmt);
    name_function_columns::apply(stmt);
    output_names::apply(stmt);
    let mut changes = Vec::new();
    let mut cx = Context { session, changes: &mut changes };
    walk(stmt, RULES, &mut cx)?;
    Ok(changes)
}

/// Tries `rules` on every expression of `stmt`.
fn walk(stmt: &mut Statement, rules: &[Rule], cx: &mut Context<'_>) -> Result<()> {
    let mut error = None;
    let _ = visit_expressions_mut(stmt, |expr| {
        for rule in rules {
            match (rule.apply)(expr, cx) {
                Ok(Flow::Next) => {}
                Ok(Flow::Done) => break,
                Err(e) => {
                    error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    error.map_or(Ok(()), Err)
}

/// The lower-case name of a called function.
fn function_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// A call's plain positional arguments.
fn args(expr: &Expr) -> Vec<Expr> {
    let Expr::Function(f) = expr else { return vec![] };
    let FunctionArguments::List(list) = &f.args else { return vec![] };
    list.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) | Value::DollarQuotedString(datafusion::sql::sqlparser::ast::DollarQuotedString { value: s, .. }) => Some(s.clone()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => string_literal(expr),
        _ => None,
    }
}

/// An integer literal, also written as a string or through casts (`'1'::INTEGER`).
fn int_literal(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            Value::SingleQuotedString(s) => s.trim().parse().ok(),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => int_literal(expr),
        _ => None,
    }
}

fn bool_literal(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => string_literal(expr).map(|s| matches!(s.to_ascii_lowercase().as_str(), "t" | "true" | "on" | "1")),
    }
}

fn text(s: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(s.to_string()))
}

/// Parses an expression lakecube builds from a client's (rewritten) expression. Display of a
/// parsed expression normally parses again; if one does not, the client gets an error naming
/// the rewrite, never a panic.
fn parse_expr(sql: &str) -> Result<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| {
            Error::new(ErrorKind::FeatureNotSupported, format!("lakecube cannot rewrite this expression for DataFusion: {e}"))
                .with_hint(format!("the rewritten form was: {sql}"))
        })
}

/// A column reference's last name is one of `names` (`indkey`, `p.indkey`).
fn is_column_of(e: &Expr, names: &[&str]) -> bool {
    use super::names::ident_name;
    match e {
        Expr::Identifier(i) => names.contains(&ident_name(i).as_str()),
        Expr::CompoundIdentifier(ids) => ids.last().is_some_and(|i| names.contains(&ident_name(i).as_str())),
        _ => false,
    }
}

/// The catalogs' int2vector/oidvector columns, which the static catalog holds as text ("1 2").
const VECTOR_COLUMNS: &[&str] = &["indkey", "indclass", "indcollation", "indoption", "proargtypes", "stxkeys", "partattrs"];

#[cfg(test)]
pub(crate) mod test {
    use super::*;

    /// `sql` with one rule applied to each of its expressions, as SQL text again (the session
    /// is user `alice` with the default settings).
    fn run(rule: &Rule, sql: &str) -> Result<String> {
        run_in(rule, sql, &SessionInfo { user: "alice".into(), ..Default::default() })
    }

    /// `sql` with one rule applied, in `session`.
    pub fn run_in(rule: &Rule, sql: &str, session: &SessionInfo) -> Result<String> {
        let session = session.clone();
        let mut stmt = parsed(sql);
        let mut changes = Vec::new();
        walk(&mut stmt, std::slice::from_ref(rule), &mut Context { session: &session, changes: &mut changes })?;
        Ok(stmt.to_string())
    }

    pub fn parsed(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap()
    }

    pub fn rewritten_by(rule: &Rule, sql: &str) -> String {
        run(rule, sql).unwrap()
    }

    /// The error `rule` gives for `sql`.
    pub fn error_of(rule: &Rule, sql: &str) -> Error {
        run(rule, sql).unwrap_err()
    }

    /// `sql` after a statement rule.
    pub fn after(apply: fn(&mut Statement), sql: &str) -> String {
        let mut stmt = parsed(sql);
        apply(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn rule_names_are_their_files() {
        let mut names: Vec<&str> = RULES.iter().map(|r| r.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "two rules share a name");
        for name in names {
            assert!(std::path::Path::new(&format!("src/pg/rewrite/{name}.rs")).exists(), "rule {name} has no file of its name");
        }
    }

    #[test]
    fn the_chain_applies_every_rule_in_turn() {
        let session = SessionInfo { user: "alice".into(), ..Default::default() };
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT user, current_setting('search_path'), x LIKE 'a/_%' ESCAPE '/' FROM t").unwrap().pop().unwrap();
        let changes = rewrite_session(&mut stmt, &session).unwrap();
        assert!(changes.is_empty());
        assert_eq!(
            stmt.to_string(),
            r#"SELECT 'alice' AS "user", '"$user", public' AS "current_setting", x LIKE replace(replace('a/_%', '\', '\\'), '/', '\') ESCAPE '\' FROM t"#
        );
    }
}
