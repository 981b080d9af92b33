//! PostgreSQL's output names where a statement depends on them, in two cases DataFusion
//! names differently:
//!
//! - **Repeated names in one select list** are allowed in PostgreSQL (`select NULL, NULL,
//!   NULL`: psqlODBC's SQLTables for the list of catalogs, schemas or table types;
//!   `SELECT x, x::text`), DataFusion refuses them ("Projections require unique expression
//!   names"; it names a cast after its operand, so `x` and `x::text` collide too). The repeats
//!   get unique aliases; the client still sees PostgreSQL's names, which [`crate::pg::names`]
//!   reads off the statement as the client wrote it.
//! - **A derived table's or a CTE's unaliased expressions** are named as PostgreSQL names them
//!   (`count`, `row_number`, `?column?`), so that the query around can refer to them: pgcli's
//!   casing query orders by `Count` (a CTE's `COUNT(1)`) and filters on `Row_Number` (an
//!   unaliased `ROW_NUMBER() OVER (…)`); DataFusion would call them `count(Int64(1))` and
//!   `row_number() ROWS BETWEEN …`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, Select, SelectItem, SetExpr, Statement, TableFactor, VisitMut, VisitorMut, visit_expressions_mut};

use crate::pg::names::{figure_colname, ident_name};

/// Names the select lists of `stmt` as above.
pub fn apply(stmt: &mut Statement) {
    let _ = stmt.visit(&mut OutputNames);
}

struct OutputNames;

impl VisitorMut for OutputNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = query.with.as_mut() {
            for cte in with.cte_tables.iter_mut() {
                name_as_postgres(&mut cte.query.body);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, .. } = factor {
            name_as_postgres(&mut subquery.body);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        alias_repeats(select);
        ControlFlow::Continue(())
    }
}

/// The name an item is known by in its select list: its alias, or PostgreSQL's name for it.
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        SelectItem::UnnamedExpr(e) => Some(figure_colname(e).unwrap_or_else(|| "?column?".into())),
        _ => None,
    }
}

/// Aliases the unaliased expressions (not plain columns) of every select of `body` with
/// PostgreSQL's name for them, when no other item of the list has that name.
fn name_as_postgres(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let names: Vec<Option<String>> = select.projection.iter().map(item_name).collect();
            for (i, item) in select.projection.iter_mut().enumerate() {
                let SelectItem::UnnamedExpr(e) = item else { continue };
                if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                    continue;
                }
                let Some(name) = names[i].clone() else { continue };
                if names.iter().enumerate().any(|(j, n)| j != i && n.as_deref() == Some(name.as_str())) {
                    continue;
                }
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::with_quote('"', name) };
            }
        }
        SetExpr::Query(q) => name_as_postgres(&mut q.body),
        SetExpr::SetOperation { left, right, .. } => {
            name_as_postgres(left);
            name_as_postgres(right);
        }
        _ => {}
    }
}

/// What DataFusion names an unaliased expression, near enough to see two that collide: its
/// text without casts (DataFusion names a cast after its operand), case folded.
fn datafusion_name(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        while let Expr::Cast { expr, .. } | Expr::Nested(expr) = x {
            *x = std::mem::replace(expr.as_mut(), Expr::value(datafusion::sql::sqlparser::ast::Value::Null));
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string().to_lowercase()
}

/// The name DataFusion gives an item, near enough to see two that collide: an alias, a
/// column's name (`t.a` and `a` are one column twice), else [`datafusion_name`].
fn collision_key(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident_name(i)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids.last().map(ident_name),
        SelectItem::UnnamedExpr(e) => Some(datafusion_name(e)),
        _ => None,
    }
}

/// Gives an item that DataFusion would name like an earlier one a unique alias: PostgreSQL's
/// name for it, numbered (`?column?_2`, `a_2` for a second `… AS a`).
fn alias_repeats(select: &mut Select) {
    let mut seen: Vec<String> = Vec::new();
    let mut used: Vec<String> = select.projection.iter().filter_map(item_name).collect();
    for item in select.projection.iter_mut() {
        let Some(key) = collision_key(item) else { continue };
        if !seen.contains(&key) {
            seen.push(key);
            continue;
        }
        let (expr, base) = match item {
            SelectItem::UnnamedExpr(e) => (e.clone(), figure_colname(e).unwrap_or_else(|| "?column?".into())),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), ident_name(alias)),
            _ => continue,
        };
        let name = (2..).map(|k| format!("{base}_{k}")).find(|n| !used.contains(n)).expect("a free name");
        used.push(name.clone());
        *item = SelectItem::ExprWithAlias { expr, alias: Ident::with_quote('"', name) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::after;

    #[test]
    fn repeated_names_get_unique_aliases() {
        assert_eq!(after(super::apply, "select NULL, NULL, NULL"), r#"SELECT NULL, NULL AS "?column?_2", NULL AS "?column?_3""#);
        assert_eq!(
            after(super::apply, "SELECT x, x::text, a.attname, a.attname, b.attname FROM t"),
            r#"SELECT x, x::TEXT AS "x_2", a.attname, a.attname AS "attname_2", b.attname AS "attname_3" FROM t"#
        );
        assert_eq!(after(super::apply, "SELECT 1, 2, count(*)"), "SELECT 1, 2, count(*)");
        // Repeated aliases, and one column named twice.
        assert_eq!(after(super::apply, "SELECT 1 AS a, 2 AS A"), r#"SELECT 1 AS a, 2 AS "a_2""#);
        assert_eq!(after(super::apply, "SELECT a, t.a, 3 AS a FROM t"), r#"SELECT a, t.a AS "a_2", 3 AS "a_3" FROM t"#);
        assert_eq!(after(super::apply, "SELECT s.a, t.b FROM s, t"), "SELECT s.a, t.b FROM s, t");
        // Two tables' columns of one name are told apart too (a derived table's columns
        // must differ); the wire keeps PostgreSQL's names (pg::names).
        assert_eq!(after(super::apply, "SELECT s.a, t.a FROM s, t"), r#"SELECT s.a, t.a AS "a_2" FROM s, t"#);
    }

    #[test]
    fn derived_tables_and_ctes_name_columns_as_postgres() {
        assert_eq!(
            after(super::apply, "WITH w AS (SELECT word, COUNT(1) FROM t GROUP BY word) SELECT row_number() OVER () FROM w ORDER BY count"),
            r#"WITH w AS (SELECT word, COUNT(1) AS "count" FROM t GROUP BY word) SELECT row_number() OVER () FROM w ORDER BY count"#
        );
        assert_eq!(
            after(super::apply, "SELECT * FROM (SELECT 1, x::int, count(a), count(b) FROM t UNION SELECT 2, 3, 4, 5) s"),
            // Two `count`s stay unnamed (PostgreSQL's would be ambiguous), the union's branch
            // too: its names are the first branch's.
            r#"SELECT * FROM (SELECT 1 AS "?column?", x::INT AS "x", count(a), count(b) FROM t UNION SELECT 2, 3, 4, 5) s"#
        );
    }
}
