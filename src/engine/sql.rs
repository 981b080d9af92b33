//! SQL text → DataFusion statement, the PostgreSQL way.
//!
//! Parsing goes through datafusion-pg-catalog's `PostgresCompatibilityParser` (its rewrite
//! rules make catalog queries plannable: `OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`,
//! `= ANY(array)`, unqualified `pg_*` tables …). Then lakecube's own small rules, each for one
//! client need, rewrite what depends on the session ([`SessionInfo`]); and [`pg_column_names`]
//! names the result columns as PostgreSQL would.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem, SetExpr,
    Statement, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::settings::Settings;
use crate::error::{Error, ErrorKind, Result};

/// What a statement may read of its session.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub user: String,
    pub settings: Settings,
}

/// Parses one statement with PostgreSQL's syntax and the catalog-compatibility rewrites.
pub fn parse_one(parser: &datafusion_pg_catalog::sql::PostgresCompatibilityParser, sql: &str) -> Result<Option<Statement>> {
    let substituted = substitute_fragments(sql);
    let mut statements = match parser.parse(&substituted) {
        Ok(s) => s,
        // The compatibility parser drops token positions; the plain parser reports them.
        Err(e) => return Err(syntax_error(sql, Parser::parse_sql(&PostgreSqlDialect {}, sql).err().unwrap_or(e))),
    };
    match statements.len() {
        0 => Ok(None),
        1 => Ok(statements.pop()),
        n => Err(Error::new(ErrorKind::Syntax, format!("expected one statement, found {n}"))
            .with_hint("send statements one at a time, or as one simple-query message")),
    }
}

fn syntax_error(sql: &str, e: datafusion::sql::sqlparser::parser::ParserError) -> Error {
    let msg = e.to_string();
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg).to_string();
    let position = position_of(sql, &msg);
    let mut err = Error::new(ErrorKind::Syntax, format!("syntax error: {msg}"));
    if let Some(p) = position {
        err = err.with_position(p);
    }
    err
}

/// Byte offsets of sqlparser's 1-based (line, column in characters) locations.
pub struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { sql, line_starts }
    }

    pub fn byte(&self, loc: &datafusion::sql::sqlparser::tokenizer::Location) -> usize {
        let Some(&start) = self.line_starts.get((loc.line as usize).saturating_sub(1)) else { return self.sql.len() };
        let line = &self.sql[start..];
        start + line.char_indices().nth((loc.column as usize).saturating_sub(1)).map(|(i, _)| i).unwrap_or(line.len())
    }
}

/// Fragments of client statements that DataFusion cannot plan, or that datafusion-pg-catalog
/// would replace by a wrong constant, each replaced by an equivalent lakecube plans, for the
/// reason given: (client and reason, fragment, replacement). Matched token by token, whatever
/// the spacing.
const FRAGMENTS: &[(&str, &str, &str)] = &[
    (
        // psql's `\d+ table` appends the TOAST table's storage options. A correlated
        // `unnest(…)` in FROM does not plan; lakecube tables have no TOAST table, so the left
        // join leaves `tc.reloptions` NULL and the array is empty.
        "psql \\d+: TOAST table options",
        "array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)",
        "CAST(NULL AS VARCHAR[])",
    ),
    (
        // Grafana's query builder lists the tables of the schemas on the search path. The
        // crate blacklists this subquery as `''` (it had no current_setting()), which left
        // the list empty; lakecube answers current_setting, so the same subquery is kept,
        // spelled with btrim (trim of spaces, as trim) so the blacklist does not match it.
        "Grafana: schemas of the search path",
        r#"SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s"#,
        r#"SELECT CASE WHEN btrim(s[i]) = '"$user"' THEN user ELSE btrim(s[i]) END
           FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
                                array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
                string_to_array(current_setting('search_path'),',') s"#,
    ),
];

fn substitute_fragments(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let significant = |s: &str| -> Option<Vec<(Token, usize, usize)>> {
        let index = LineIndex::new(s);
        let toks = Tokenizer::new(&PostgreSqlDialect {}, s).tokenize_with_location().ok()?;
        Some(
            toks.into_iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
                .map(|t| {
                    let (a, b) = (index.byte(&t.span.start), index.byte(&t.span.end));
                    (t.token, a, b)
                })
                .collect(),
        )
    };
    let Some(tokens) = significant(sql) else { return sql.into() };
    // The fragments' tokens, once per process.
    static PATTERNS: std::sync::OnceLock<Vec<(Vec<(Token, usize, usize)>, &'static str)>> = std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        FRAGMENTS.iter().filter_map(|(_, fragment, replacement)| Some((significant(fragment)?, *replacement))).collect()
    });
    let mut out = String::new();
    let mut copied = 0;
    for (pattern, replacement) in patterns {
        if pattern.is_empty() || tokens.len() < pattern.len() {
            continue;
        }
        for i in 0..=tokens.len() - pattern.len() {
            if tokens[i].1 < copied {
                continue;
            }
            if tokens[i..i + pattern.len()].iter().zip(pattern).all(|(a, b)| a.0 == b.0) {
                out.push_str(&sql[copied..tokens[i].1]);
                out.push_str(replacement);
                copied = tokens[i + pattern.len() - 1].2;
            }
        }
    }
    // `'pg_catalog.array_in'::regproc` (pgjdbc's type cache): datafusion-pg-catalog resolves
    // `'array_in'::regproc` but not the schema-qualified name, which is the same function.
    for w in tokens.windows(3) {
        if let [(Token::SingleQuotedString(name), start, _), (Token::DoubleColon, ..), (Token::Word(ty), _, end)] = w
            && ty.value.eq_ignore_ascii_case("regproc")
            && let Some(bare) = name.strip_prefix("pg_catalog.")
            && *start >= copied
        {
            out.push_str(&sql[copied..*start]);
            out.push_str(&format!("'{}'::regproc", bare.replace('\'', "''")));
            copied = *end;
        }
    }
    // `'name'::regclass`, `'name'::pg_catalog.regclass` and `CAST('name' AS regclass)`: looked
    // up by regclass_oid(), which searches pg_catalog for unqualified names as PostgreSQL's
    // search path does (the crate's rewrite searches the current schema only, so
    // `'pg_class'::regclass` came back NULL).
    let regclass_at = |k: usize| -> Option<usize> {
        match tokens.get(k..k + 3) {
            Some([(Token::Word(a), ..), (Token::Period, ..), (Token::Word(b), _, end)])
                if a.value.eq_ignore_ascii_case("pg_catalog") && b.value.eq_ignore_ascii_case("regclass") =>
            {
                return Some(*end);
            }
            _ => {}
        }
        match tokens.get(k) {
            Some((Token::Word(w), _, end)) if w.value.eq_ignore_ascii_case("regclass") => Some(*end),
            _ => None,
        }
    };
    let mut i = 0;
    while i < tokens.len() {
        let found = match &tokens[i..] {
            [(Token::SingleQuotedString(name), start, _), (Token::DoubleColon, ..), ..] => {
                regclass_at(i + 2).map(|end| (name, *start, end))
            }
            [(Token::Word(cast), start, _), (Token::LParen, ..), (Token::SingleQuotedString(name), ..), (Token::Word(as_), ..), ..]
                if cast.value.eq_ignore_ascii_case("cast") && as_.value.eq_ignore_ascii_case("as") =>
            {
                let after = if matches!(tokens.get(i + 5), Some((Token::Period, ..))) { i + 7 } else { i + 5 };
                match (regclass_at(i + 4), tokens.get(after)) {
                    (Some(_), Some((Token::RParen, _, end))) => Some((name, *start, *end)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((name, start, end)) = found
            && start >= copied
        {
            out.push_str(&sql[copied..start]);
            out.push_str(&format!("regclass_oid('{}')", name.replace('\'', "''")));
            copied = end;
        }
        i += 1;
    }
    if copied == 0 {
        return sql.into();
    }
    out.push_str(&sql[copied..]);
    out.into()
}

/// pg_type's regproc columns.
/// The catalogs' int2vector/oidvector columns, which the static catalog holds as text ("1 2").
const VECTOR_COLUMNS: &[&str] = &["indkey", "indclass", "indcollation", "indoption", "proargtypes", "stxkeys", "partattrs"];

fn is_vector_column(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => VECTOR_COLUMNS.contains(&ident_name(i).as_str()),
        Expr::CompoundIdentifier(ids) => ids.last().is_some_and(|i| VECTOR_COLUMNS.contains(&ident_name(i).as_str())),
        _ => false,
    }
}

const REGPROC_COLUMNS: &[&str] = &["typinput", "typoutput", "typreceive", "typsend", "typmodin", "typmodout", "typanalyze"];

/// The 1-based character position of sqlparser's "Line: l, Column: c" in `sql`.
fn position_of(sql: &str, msg: &str) -> Option<usize> {
    if msg.contains("found: EOF") {
        return Some(sql.trim_end().chars().count() + 1);
    }
    let at = msg.rfind("Line: ")?;
    let rest = &msg[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: usize = rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    let mut pos = 0;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return Some(pos + col.min(l.chars().count() + 1));
        }
        pos += l.chars().count() + 1;
    }
    None
}

/// The first `n` words of a statement, upper-cased, skipping whitespace and comments
/// (quoted identifiers keep their text; anything else ends the list).
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return Vec::new() };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(n)
        .map_while(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

/// Settings a statement asked to change (`set_config(name, value, is_local)`).
pub type SettingChanges = Vec<(String, String)>;

/// Functions [`rewrite_session`] replaces by literals or subqueries.
const REWRITTEN: &[&str] = &[
    "current_user", "session_user", "user", "current_role", "current_setting", "set_config", "array", "col_description",
    "obj_description", "pg_get_viewdef", "_pg_expandarray",
];

/// Names the select-list calls that [`rewrite_session`] replaces, as PostgreSQL would name
/// them (`col_description`, …): DataFusion names an unaliased subquery `(<subquery>)`, and two
/// of them in one select list collide.
struct NameRewrittenCalls;

impl datafusion::sql::sqlparser::ast::VisitorMut for NameRewrittenCalls {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(sel) = query.body.as_mut() {
            let mut used: Vec<String> = sel
                .projection
                .iter()
                .filter_map(|i| match i {
                    SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
                    SelectItem::UnnamedExpr(e) => figure_colname(e),
                    _ => None,
                })
                .collect();
            for item in sel.projection.iter_mut() {
                let SelectItem::UnnamedExpr(e) = item else { continue };
                let is_rewritten = matches!(e, Expr::Identifier(Ident { value, quote_style: None, .. }) if value.eq_ignore_ascii_case("user"))
                    || function_name(e).is_some_and(|n| REWRITTEN.contains(&n.as_str()));
                if !is_rewritten {
                    continue;
                }
                let base = figure_colname(e).unwrap_or_else(|| "?column?".into());
                let mut name = base.clone();
                let mut k = 1;
                while used.iter().filter(|u| **u == name).count() > usize::from(name == base) {
                    k += 1;
                    name = format!("{base}_{k}");
                }
                used.push(name.clone());
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::with_quote('"', name) };
            }
        }
        ControlFlow::Continue(())
    }
}

/// Functions that return sets of rows, which FROM takes as they are.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest", "generate_subscripts", "pg_get_keywords"];

/// `FROM generate_series(…) AS i`: in PostgreSQL the alias of a single-column function names
/// its column too (Grafana's table list reads `s[i]`); DataFusion calls the column `value`.
struct NameFunctionColumns;

impl datafusion::sql::sqlparser::ast::VisitorMut for NameFunctionColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut datafusion::sql::sqlparser::ast::TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{TableAliasColumnDef, TableFactor};
        // `pg_user` unqualified: pg_catalog is always on PostgreSQL's search path
        // (datafusion-pg-catalog qualifies the tables it knows; pg_user is lakecube's).
        if let TableFactor::Table { name, args: None, .. } = t
            && name.0.len() == 1
            && name.0[0].as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("pg_user"))
        {
            name.0.insert(0, datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            return ControlFlow::Continue(());
        }
        // A scalar function in FROM is a one-row table whose column is named by the alias
        // (`string_to_array(current_setting('search_path'), ',') s`).
        if let TableFactor::Table { name, args: Some(args), alias, .. } = t
            && let Some(f) = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase())
            && !TABLE_FUNCTIONS.contains(&f.as_str())
        {
            let alias_name = alias.as_ref().map(|a| a.name.to_string()).unwrap_or_else(|| f.clone());
            let arg_list: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
            let sql = format!("SELECT * FROM (SELECT {name}({}) AS {alias_name}) AS {alias_name}", arg_list.join(", "));
            if let Ok(Some(Statement::Query(q))) = Parser::parse_sql(&PostgreSqlDialect {}, &sql).map(|mut v| v.pop())
                && let SetExpr::Select(sel) = *q.body
                && let Some(from) = sel.from.into_iter().next()
            {
                *t = from.relation;
            }
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table { name, args: Some(_), alias: Some(alias), .. } = t
            && alias.columns.is_empty()
            && name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                matches!(i.value.to_ascii_lowercase().as_str(), "generate_series" | "unnest" | "generate_subscripts")
            })
        {
            alias.columns = vec![TableAliasColumnDef { name: alias.name.clone(), data_type: None }];
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites the calls whose answer depends on the session or on lakecube's catalog.
pub fn rewrite_session(stmt: &mut Statement, session: &SessionInfo) -> Result<SettingChanges> {
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(stmt, &mut NameRewrittenCalls);
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(stmt, &mut NameFunctionColumns);
    let mut changes = Vec::new();
    let mut error = None;
    let _ = visit_expressions_mut(stmt, |expr| {
        match rewrite_expr(expr, session, &mut changes) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                error = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(changes),
    }
}

fn function_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

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

/// The names a SELECT's FROM gives its relations (aliases, else the table's own name), or
/// None when FROM holds anything but tables.
fn from_names(sel: &datafusion::sql::sqlparser::ast::Select) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    let mut names = Vec::new();
    for t in &sel.from {
        for r in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            let TableFactor::Table { name, alias, .. } = r else { return None };
            names.push(match alias {
                Some(a) => ident_name(&a.name),
                None => name.0.last().map(|p| p.to_string().trim_matches('"').to_ascii_lowercase()).unwrap_or_default(),
            });
        }
    }
    Some(names)
}

/// Whether `e` references outer columns (qualified by a relation not in `names`) and whether
/// it references the subquery's own (qualified by one in `names`, unqualified, or inside a
/// nested subquery, which counts as the subquery's own).
fn references(e: &Expr, names: &[String]) -> (bool, bool) {
    let (mut outer, mut inner) = (false, false);
    let mut probe = e.clone();
    let _ = visit_expressions_mut(&mut probe, |x| {
        match x {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                if names.contains(&ident_name(&parts[parts.len() - 2])) { inner = true } else { outer = true }
            }
            Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => inner = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (outer, inner)
}

/// Splits a subquery's WHERE conjuncts that reference outer columns only from the rest:
/// `Some((outer test, subquery without it))`, or None when there is no such conjunct.
fn hoist_outer_conjuncts(q: &Query) -> Option<(Expr, Query)> {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    let SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let selection = sel.selection.as_ref()?;
    let names = from_names(sel)?;
    let mut conjuncts = Vec::new();
    fn split(e: &Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                split(left, out);
                split(right, out);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: BinaryOperator::And, .. }) => split(inner, out),
            other => out.push(other.clone()),
        }
    }
    split(selection, &mut conjuncts);
    let (outer, rest): (Vec<Expr>, Vec<Expr>) = conjuncts.into_iter().partition(|c| references(c, &names) == (true, false));
    if outer.is_empty() {
        return None;
    }
    let join = |v: &[Expr]| v.iter().map(|e| format!("({e})")).collect::<Vec<_>>().join(" AND ");
    let test = parse_expr(&join(&outer)).ok()?;
    let mut sel = sel.clone();
    sel.selection = if rest.is_empty() { None } else { Some(parse_expr(&join(&rest)).ok()?) };
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(sel));
    Some((test, out))
}

/// A catalog lookup whose one output is a function of outer columns and its own
/// (SQLAlchemy's `(SELECT json_build_object('always', pg_attribute.attidentity = 'a',
/// 'start', pg_sequence.seqstart, …) FROM pg_sequence WHERE …)`): DataFusion cannot plan
/// outer columns in a subquery's output, so each argument of the subquery's own becomes a
/// lookup of its own, and the function is applied outside, when the lookup finds its row:
/// `CASE WHEN (SELECT max(1) FROM … WHERE …) = 1 THEN f(outer, (SELECT own …), …) END`.
fn split_outer_output(q: &Query) -> Option<Expr> {
    let SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let names = from_names(sel)?;
    if sel.projection.len() != 1 {
        return None;
    }
    let (SelectItem::UnnamedExpr(Expr::Function(f)) | SelectItem::ExprWithAlias { expr: Expr::Function(f), .. }) = &sel.projection[0] else {
        return None;
    };
    let datafusion::sql::sqlparser::ast::FunctionArguments::List(list) = &f.args else { return None };
    let mut any_outer = false;
    let lookup = |e: String| -> Option<String> {
        let mut s = sel.clone();
        s.projection = vec![SelectItem::UnnamedExpr(parse_expr(&e).ok()?)];
        let mut one = q.clone();
        one.body = Box::new(SetExpr::Select(s));
        Some(format!("({})", catalog_lookup_as_aggregate(&one).unwrap_or(one)))
    };
    let mut args = Vec::new();
    for a in &list.args {
        let datafusion::sql::sqlparser::ast::FunctionArg::Unnamed(datafusion::sql::sqlparser::ast::FunctionArgExpr::Expr(e)) = a else {
            return None;
        };
        match references(e, &names) {
            (true, true) => return None,
            (true, false) => {
                any_outer = true;
                args.push(e.to_string());
            }
            (false, true) => args.push(lookup(e.to_string())?),
            (false, false) => args.push(e.to_string()),
        }
    }
    if !any_outer {
        return None;
    }
    let found = lookup("max(1)".into())?;
    parse_expr(&format!("CASE WHEN {found} = 1 THEN {}({}) END", f.name, args.join(", "))).ok()
}

/// A scalar subquery that looks one row up in the catalogs (`(SELECT typcollation FROM
/// pg_type WHERE oid = a.atttypid)`, SQLAlchemy's column reflection) as `first_value(…)` of it:
/// DataFusion only plans correlated scalar subqueries that aggregate. Catalog lookups are by
/// key, so at most one row matches and the answer is the same.
fn catalog_lookup_as_aggregate(q: &Query) -> Option<Query> {
    use datafusion::sql::sqlparser::ast::{GroupByExpr, TableFactor};
    let SetExpr::Select(sel) = q.body.as_ref() else { return None };
    let catalog_only = !sel.from.is_empty()
        && sel.from.iter().all(|t| {
            std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)).all(|r| match r {
                TableFactor::Table { name, .. } => {
                    let n = name.to_string().to_ascii_lowercase();
                    n.starts_with("pg_catalog.") || n.starts_with("pg_") || n.starts_with("information_schema.")
                }
                _ => false,
            })
        });
    let plain = sel.projection.len() == 1
        && sel.distinct.is_none()
        && matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && sel.having.is_none()
        && q.limit_clause.is_none()
        && q.with.is_none();
    if !(catalog_only && plain) {
        return None;
    }
    let (e, alias) = match &sel.projection[0] {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
        _ => return None,
    };
    let mut has_aggregate = false;
    let mut probe = e.clone();
    let _ = visit_expressions_mut(&mut probe, |x| {
        if function_name(x).is_some_and(|n| matches!(n.as_str(), "max" | "min" | "sum" | "count" | "avg" | "array_agg" | "string_agg" | "first_value" | "bool_and" | "bool_or")) {
            has_aggregate = true;
        }
        ControlFlow::<()>::Continue(())
    });
    if has_aggregate {
        return None;
    }
    let agg = parse_expr(&format!("first_value({e})")).ok()?;
    let mut sel = sel.clone();
    sel.projection = vec![match alias {
        Some(alias) => SelectItem::ExprWithAlias { expr: agg, alias },
        None => SelectItem::UnnamedExpr(agg),
    }];
    let mut out = q.clone();
    out.body = Box::new(SetExpr::Select(sel));
    out.order_by = None;
    Some(out)
}

/// `ARRAY(SELECT e FROM … [ORDER BY …])` as `(SELECT array_agg(e ORDER BY …) FROM …)`, which
/// keeps correlated references where they were (DataFusion decorrelates such aggregate
/// subqueries); other shapes aggregate over the subquery as a derived table.
fn array_subquery(q: &Query) -> Result<Expr> {
    use datafusion::sql::sqlparser::ast::GroupByExpr;
    if let SetExpr::Select(sel) = q.body.as_ref()
        && sel.projection.len() == 1
        && sel.distinct.is_none()
        && matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        && sel.having.is_none()
        && q.limit_clause.is_none()
        && q.fetch.is_none()
        && q.with.is_none()
    {
        let e = match &sel.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
            _ => None,
        };
        if let Some(e) = e {
            let order = q.order_by.as_ref().map(|o| format!(" {o}")).unwrap_or_default();
            let mut sel = sel.clone();
            sel.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!("array_agg({e}{order})"))?)];
            let mut inner = q.clone();
            inner.body = Box::new(SetExpr::Select(sel));
            inner.order_by = None;
            return Ok(Expr::Subquery(Box::new(inner)));
        }
    }
    parse_expr(&format!("(SELECT array_agg(_a._v) FROM ({q}) AS _a(_v))"))
}

/// The classoid PostgreSQL stores in pg_description for comments on each catalog.
fn classoid(catalog: &str) -> Option<i32> {
    Some(match catalog.trim_start_matches("pg_catalog.") {
        "pg_class" => 1259,
        "pg_namespace" => 2615,
        "pg_proc" => 1255,
        "pg_type" => 1247,
        "pg_database" => 1262,
        "pg_constraint" => 2606,
        _ => return None,
    })
}

fn rewrite_expr(expr: &mut Expr, session: &SessionInfo, changes: &mut SettingChanges) -> Result<()> {
    // `user` without parentheses is PostgreSQL's current_user (Grafana's table list uses it).
    if let Expr::Identifier(Ident { value, quote_style: None, .. }) = expr
        && value.eq_ignore_ascii_case("user")
    {
        *expr = text(&session.user);
        return Ok(());
    }
    // `CAST(<text expression> AS regclass)`: a relation named by a computed string, as
    // Metabase's field sync writes `format('%I.%I', schema, table)::regclass::oid`. The
    // pg_catalog crate resolves only literal names; a function call or `||` concatenation is
    // looked up by regclass_oid() (a column operand stays the oid → regclass display cast).
    if let Expr::Cast { expr: inner, data_type, .. } = expr
        && data_type.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.") == "regclass"
        && matches!(
            inner.as_ref(),
            Expr::Function(_) | Expr::BinaryOp { op: datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat, .. }
        )
    {
        *expr = parse_expr(&format!("regclass_oid({inner})"))?;
        return Ok(());
    }
    // `unnest(indkey)` and `generate_subscripts(indkey, 1)` side by side in a select list
    // (SQLAlchemy's key and index reflection): vector columns are read as lists by
    // pg_vector_items(), and generate_subscripts (which DataFusion lacks) becomes the unnest
    // of 1..n, zipped with the other unnest as PostgreSQL zips set-returning functions.
    if let Some(name) = function_name(expr)
        && (name == "unnest" || name == "generate_subscripts")
    {
        let a = args(expr);
        let list = |e: &Expr| if is_vector_column(e) { format!("pg_vector_items({e})") } else { e.to_string() };
        match (name.as_str(), a.as_slice()) {
            ("unnest", [e]) if is_vector_column(e) => {
                *expr = parse_expr(&format!("unnest({})", list(e)))?;
                return Ok(());
            }
            // Lists are one-dimensional: subscripts of dimension 1 are 1..n, of any other none.
            ("generate_subscripts", [e, dim]) => {
                let n = format!("CAST(coalesce(array_length({}), 0) AS BIGINT)", list(e));
                let dim = match int_literal(dim) {
                    Some(d) => d.to_string(),
                    None => dim.to_string(),
                };
                *expr = parse_expr(&format!("unnest(range(CAST(1 AS BIGINT), CASE WHEN {dim} = 1 THEN {n} + 1 ELSE CAST(1 AS BIGINT) END))"))?;
                return Ok(());
            }
            _ => {}
        }
    }
    // LIKE … ESCAPE 'c' (SQLAlchemy escapes with '/'): DataFusion only takes a backslash, so
    // the pattern is rewritten to backslash escapes (existing backslashes made literal first).
    if let Expr::Like { pattern, escape_char, .. } | Expr::ILike { pattern, escape_char, .. } = expr
        && let Some(v) = escape_char.as_ref()
        && let Value::SingleQuotedString(c) = &v.value
        && c != "\\"
        && c.chars().count() == 1
    {
        let c = c.replace('\'', "''");
        **pattern = parse_expr(&format!("replace(replace({pattern}, '\\', '\\\\'), '{c}', '\\')"))?;
        *escape_char = Some(Value::SingleQuotedString("\\".into()).into());
        return Ok(());
    }
    // `a[i]` on the catalogs' vector columns, held as text (see PgSubscript).
    if let Expr::CompoundFieldAccess { root, access_chain } = expr
        && let Some((datafusion::sql::sqlparser::ast::AccessExpr::Subscript(datafusion::sql::sqlparser::ast::Subscript::Index { index }), path)) =
            access_chain.split_last()
        && path.iter().all(|a| matches!(a, datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_))))
    {
        let mut base = root.to_string();
        for a in path {
            base.push_str(&a.to_string());
        }
        *expr = parse_expr(&format!("pg_subscript({base}, {index})"))?;
        return Ok(());
    }
    // `(record).field` on an expression (pgjdbc's `(result.KEYS).x`): DataFusion only takes
    // dots after names, so it becomes get_field().
    if let Expr::CompoundFieldAccess { root, access_chain } = expr
        && !access_chain.is_empty()
        && access_chain.iter().all(|a| matches!(a, datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_))))
    {
        let mut out = root.to_string();
        for a in access_chain.iter() {
            if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(f)) = a {
                out = format!("get_field({out}, '{}')", ident_name(f).replace('\'', "''"));
            }
        }
        *expr = parse_expr(&out)?;
        return Ok(());
    }
    // pg_type's regproc columns hold the functions' names in the static catalog; compared with
    // anything but a name they are looked up as oids (Npgsql joins `proc.oid = typ.typreceive`).
    if let Expr::BinaryOp { left, op, right } = expr
        && matches!(op, datafusion::sql::sqlparser::ast::BinaryOperator::Eq | datafusion::sql::sqlparser::ast::BinaryOperator::NotEq)
    {
        let is_regproc = |e: &Expr| match e {
            Expr::Identifier(i) => REGPROC_COLUMNS.contains(&ident_name(i).as_str()),
            Expr::CompoundIdentifier(ids) => ids.last().is_some_and(|i| REGPROC_COLUMNS.contains(&ident_name(i).as_str())),
            _ => false,
        };
        if is_regproc(left) && string_literal(right).is_none() {
            **left = parse_expr(&format!("regproc_oid({left})"))?;
        } else if is_regproc(right) && string_literal(left).is_none() {
            **right = parse_expr(&format!("regproc_oid({right})"))?;
        }
    }
    // A scalar subquery whose WHERE tests outer columns only (SQLAlchemy's column reflection:
    // `(SELECT pg_get_expr(…) FROM pg_attrdef WHERE pg_attribute.atthasdef AND …)` inside a
    // CASE): DataFusion cannot decorrelate that inside an expression, so the outer-only test
    // moves out as `CASE WHEN test THEN (subquery without it) END` — the same value, as the
    // subquery yields no row (NULL) exactly when the test fails.
    // Outer columns in the subquery's output are split out the same way (split_outer_output).
    if let Expr::Subquery(q) = expr {
        let (test, inner) = match hoist_outer_conjuncts(q) {
            Some((test, inner)) => (Some(test), inner),
            None => (None, q.as_ref().clone()),
        };
        let value = match split_outer_output(&inner) {
            Some(v) => Some(v.to_string()),
            None => test.is_some().then(|| format!("({})", catalog_lookup_as_aggregate(&inner).unwrap_or(inner))),
        };
        if let Some(value) = value {
            *expr = match test {
                Some(test) => parse_expr(&format!("CASE WHEN {test} THEN {value} END"))?,
                None => parse_expr(&value)?,
            };
            return Ok(());
        }
    }
    if let Expr::Subquery(q) = expr
        && let Some(agg) = catalog_lookup_as_aggregate(q)
    {
        *expr = Expr::Subquery(Box::new(agg));
        return Ok(());
    }
    let Some(name) = function_name(expr) else { return Ok(()) };
    let a = args(expr);
    match name.as_str() {
        // The session's user, not the crate's fixed "postgres".
        "current_user" | "session_user" | "user" | "current_role" => *expr = text(&session.user),
        // current_setting(name [, missing_ok]): Grafana reads server_version_num, asyncpg jit,
        // DBeaver search_path.
        "current_setting" => {
            let Some(setting) = a.first().and_then(string_literal) else { return Ok(()) };
            let missing_ok = a.get(1).and_then(bool_literal).unwrap_or(false);
            *expr = match session.settings.get(&setting) {
                Some(v) => text(&v),
                None if missing_ok => Expr::value(Value::Null),
                None => {
                    return Err(Error::new(
                        ErrorKind::UndefinedObject,
                        format!("unrecognized configuration parameter \"{setting}\""),
                    ));
                }
            };
        }
        // set_config(name, value, is_local): asyncpg turns off jit this way.
        "set_config" if a.len() == 3 => {
            if let (Some(n), Some(v)) = (string_literal(&a[0]), string_literal(&a[1])) {
                let mut probe = session.settings.clone();
                probe.set(&n, &v).map_err(super::set_error)?;
                changes.push((n, v.clone()));
                *expr = text(&v);
            }
        }
        // ARRAY(subquery), which DataFusion lacks: psql's \du (role memberships), pgjdbc.
        "array" => {
            if let Expr::Function(f) = expr
                && let FunctionArguments::Subquery(q) = &f.args
            {
                *expr = array_subquery(q)?;
            }
        }
        // col_description(table_oid, column_number): psql's \d+, Metabase, DBeaver.
        "col_description" if a.len() == 2 => {
            *expr = parse_expr(&format!(
                "(SELECT max(d.description) FROM pg_catalog.pg_description d \
                 WHERE d.objoid = {} AND d.objsubid = {} AND d.classoid = 1259)",
                a[0], a[1]
            ))?;
        }
        // information_schema._pg_expandarray(array): the set of (x, n) element/position pairs,
        // as an unnest of lakecube's list of them (pgjdbc's getPrimaryKeys, getIndexInfo).
        "_pg_expandarray" if a.len() == 1 => {
            *expr = parse_expr(&format!("unnest(pg_expandarray_items({}))", a[0]))?;
        }
        // pg_get_viewdef(view_oid [, pretty]): psql's \d+ on a cube.
        "pg_get_viewdef" if !a.is_empty() => {
            *expr = parse_expr(&format!(
                "(SELECT max(v.definition) FROM pg_catalog.pg_views v \
                 JOIN pg_catalog.pg_class c ON c.relname = v.viewname \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = v.schemaname \
                 WHERE c.oid = {})",
                a[0]
            ))?;
        }
        // obj_description(oid [, catalog]): table and schema comments.
        "obj_description" if !a.is_empty() => {
            let class = a.get(1).and_then(string_literal).and_then(|c| classoid(&c));
            let class_filter = class.map(|c| format!(" AND d.classoid = {c}")).unwrap_or_default();
            *expr = parse_expr(&format!(
                "(SELECT max(d.description) FROM pg_catalog.pg_description d \
                 WHERE d.objoid = {} AND d.objsubid = 0{class_filter})",
                a[0]
            ))?;
        }
        _ => {}
    }
    Ok(())
}

/// The output column names PostgreSQL gives a query's select list, where they differ from
/// DataFusion's: an unaliased `sum(revenue)` is `sum`, `count(*)` is `count`, an unnamed
/// expression is `?column?`. `None` keeps DataFusion's name (aliases, plain columns);
/// [`ColumnName::Expand`] stands for a `*` whose columns keep their names.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnName {
    Keep,
    Name(String),
    Expand,
}

pub fn pg_column_names(stmt: &Statement) -> Option<Vec<ColumnName>> {
    match stmt {
        Statement::Query(q) => query_names(q),
        _ => None,
    }
}

fn query_names(q: &Query) -> Option<Vec<ColumnName>> {
    set_expr_names(&q.body)
}

fn set_expr_names(body: &SetExpr) -> Option<Vec<ColumnName>> {
    match body {
        SetExpr::Select(s) => Some(
            s.projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(e) => match figure_colname(e) {
                        Some(n) => ColumnName::Name(n),
                        None => ColumnName::Name("?column?".into()),
                    },
                    SelectItem::ExprWithAlias { .. } | SelectItem::ExprWithAliases { .. } => ColumnName::Keep,
                    SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => ColumnName::Expand,
                })
                .collect(),
        ),
        SetExpr::Query(q) => query_names(q),
        SetExpr::SetOperation { left, .. } => set_expr_names(left),
        _ => None,
    }
}

/// A possibly qualified SQL name split into its parts as PostgreSQL reads them: unquoted
/// parts folded to lower case, quoted parts kept with `""` as `"` (`Public."My Table"` →
/// `public`, `My Table`).
pub fn split_qualified_name(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = name.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_ascii_lowercase() }
}

/// PostgreSQL's FigureColname: the name an unaliased select-list expression gets.
fn figure_colname(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(ids) => ident_name(ids.last()?),
        Expr::Function(f) => {
            let n = f.name.0.last()?.as_ident()?;
            let n = ident_name(n);
            // Functions PostgreSQL rewrites into others before naming.
            match n.as_str() {
                "trim" => "btrim".into(),
                _ => n,
            }
        }
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => return figure_colname(inner),
        Expr::Cast { expr, data_type, .. } => return figure_colname(expr).or_else(|| Some(type_name(data_type))),
        Expr::Value(v) if matches!(v.value, Value::Boolean(_)) => "bool".into(),
        Expr::TypedString(t) => type_name(&t.data_type),
        Expr::Case { .. } => "case".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Interval(_) => "interval".into(),
        Expr::Subquery(q) => match query_names(q)?.into_iter().next()? {
            ColumnName::Name(n) => n,
            _ => return None,
        },
        _ => return None,
    })
}

/// PostgreSQL's internal name of a type, as it names a cast column (`'1'::int` is `int4`).
fn type_name(t: &SqlType) -> String {
    let s = t.to_string().to_ascii_lowercase();
    let base = s.split('(').next().unwrap_or(&s).trim().to_string();
    match base.as_str() {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        other => return other.rsplit('.').next().unwrap_or(other).to_string(),
    }
    .to_string()
}

/// Applies PostgreSQL's names to a result's DataFusion names; `None` if the select list
/// cannot be matched to the columns (then DataFusion's names stay).
pub fn resolve_names(pg: &[ColumnName], df: &[String]) -> Option<Vec<String>> {
    let expands = pg.iter().filter(|n| **n == ColumnName::Expand).count();
    let fixed = pg.len() - expands;
    if expands > 1 || (expands == 0 && fixed != df.len()) || fixed > df.len() {
        return None;
    }
    let wide = df.len() - fixed;
    let mut out = Vec::with_capacity(df.len());
    let mut i = 0;
    for n in pg {
        match n {
            ColumnName::Expand => {
                out.extend(df[i..i + wide].iter().cloned());
                i += wide;
            }
            ColumnName::Keep => {
                out.push(df[i].clone());
                i += 1;
            }
            ColumnName::Name(s) => {
                out.push(s.clone());
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn qualified_names_split_as_postgresql_reads_them() {
        assert_eq!(super::split_qualified_name("public.retail"), ["public", "retail"]);
        assert_eq!(super::split_qualified_name("Public.\"My \"\"T\"\".x\""), ["public", "My \"T\".x"]);
        assert_eq!(super::split_qualified_name("Retail"), ["retail"]);
    }

    use super::*;

    fn names(sql: &str) -> Vec<ColumnName> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        pg_column_names(&stmt).unwrap()
    }

    fn n(s: &str) -> ColumnName {
        ColumnName::Name(s.into())
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(
            names("SELECT region, SUM(t.revenue), count(*), 1, 1 + 2, '1'::int, x::text, true, r AS \"R\", CASE WHEN a THEN 1 END, date_trunc('month', period), EXTRACT(YEAR FROM period), \"Mixed\""),
            vec![
                n("region"),
                n("sum"),
                n("count"),
                n("?column?"),
                n("?column?"),
                n("int4"),
                n("x"),
                n("bool"),
                ColumnName::Keep,
                n("case"),
                n("date_trunc"),
                n("extract"),
                n("Mixed"),
            ]
        );
        assert_eq!(names("SELECT t.*, sum(x) FROM t"), vec![ColumnName::Expand, n("sum")]);
    }

    #[test]
    fn names_resolve_against_columns() {
        let df: Vec<String> = ["a", "b", "sum(t.x)"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_names(&[ColumnName::Expand, n("sum")], &df), Some(vec!["a".into(), "b".into(), "sum".into()]));
        assert_eq!(resolve_names(&[n("sum")], &df), None);
    }

    #[test]
    fn fragments_are_replaced_whatever_the_spacing() {
        let sql = "SELECT a, array(select 'toast.' ||  x\n from pg_catalog.unnest(tc.reloptions) x) FROM t";
        assert_eq!(substitute_fragments(sql), "SELECT a, CAST(NULL AS VARCHAR[]) FROM t");
        assert_eq!(substitute_fragments("SELECT 1"), "SELECT 1");
        assert_eq!(
            substitute_fragments("SELECT typinput='pg_catalog.array_in'::regproc FROM pg_type"),
            "SELECT typinput='array_in'::regproc FROM pg_type"
        );
    }

    #[test]
    fn syntax_positions() {
        assert_eq!(position_of("SELECT\nFROM x", "Expected: x, found: FROM at Line: 2, Column: 1"), Some(8));
    }
}
