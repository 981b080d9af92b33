//! Table functions in FROM named as PostgreSQL names them:
//! - `FROM generate_series(…) AS i`: the alias of a single-column function names its column
//!   too (Grafana's table list reads `s[i]`); DataFusion calls the column `value`;
//! - a scalar function in FROM is a one-row table whose column is named by the alias
//!   (`string_to_array(current_setting('search_path'), ',') s`, Grafana);
//! - `pg_user` unqualified is `pg_catalog.pg_user`: pg_catalog is always on PostgreSQL's
//!   search path (datafusion-pg-catalog qualifies the tables it knows; pg_user is lakecube's).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectNamePart, SetExpr, Statement, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Functions that return sets of rows, which FROM takes as they are.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range", "unnest", "generate_subscripts", "pg_get_keywords"];

/// Names the columns of table functions in FROM, and qualifies `pg_user`.
pub fn apply(stmt: &mut Statement) {
    let _ = stmt.visit(&mut NameFunctionColumns);
}

struct NameFunctionColumns;

impl VisitorMut for NameFunctionColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args: None, .. } = t
            && name.0.len() == 1
            && name.0[0].as_ident().is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case("pg_user"))
        {
            name.0.insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
            return ControlFlow::Continue(());
        }
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
        // Unaliased, the function's name names its table and its column (`generate_series`).
        if let TableFactor::Table { name, args: Some(_), alias: alias @ None, .. } = t
            && let Some(f) = name.0.last().and_then(|p| p.as_ident())
            && matches!(f.value.to_ascii_lowercase().as_str(), "generate_series" | "unnest" | "generate_subscripts")
        {
            let f = Ident::new(crate::pg::names::ident_name(f));
            *alias = Some(TableAlias { explicit: true, name: f.clone(), columns: vec![TableAliasColumnDef { name: f, data_type: None }], at: None });
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

#[cfg(test)]
mod tests {
    use super::super::test::after;

    #[test]
    fn table_functions_are_named_by_their_alias() {
        assert_eq!(
            after(super::apply, "SELECT s[i] FROM generate_series(1, 3) AS i, string_to_array('a,b', ',') s, pg_user"),
            "SELECT s[i] FROM generate_series(1, 3) AS i (i), (SELECT string_to_array('a,b', ',') AS s) AS s, pg_catalog.pg_user"
        );
    }
}
