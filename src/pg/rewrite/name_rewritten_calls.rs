//! A select-list call that an expression rule replaces by a literal or a subquery
//! (`col_description(…)`, `current_user`, …: each rule's [`Rule::calls`]) keeps the column
//! name PostgreSQL gives it: DataFusion would name an unaliased subquery `(<subquery>)`, and
//! two of them in one select list would collide (psql's `\d+`, DBeaver's column lists).
//!
//! [`Rule::calls`]: super::Rule::calls

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut};

use super::{RULES, function_name};
use crate::pg::names::{figure_colname, ident_name};

/// Aliases the select-list calls the expression rules replace.
pub fn apply(stmt: &mut Statement) {
    let _ = stmt.visit(&mut NameRewrittenCalls);
}

fn is_rewritten(e: &Expr) -> bool {
    super::current_user::bare_keyword(e).is_some()
        || function_name(e).is_some_and(|n| RULES.iter().any(|r| r.calls.contains(&n.as_str())))
}

struct NameRewrittenCalls;

impl VisitorMut for NameRewrittenCalls {
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
                if !is_rewritten(e) {
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

#[cfg(test)]
mod tests {
    use super::super::test::after;

    #[test]
    fn replaced_calls_keep_postgresql_names() {
        assert_eq!(
            after(super::apply, "SELECT col_description(a, 1), col_description(b, 2), user, current_setting('x') AS s, upper(y) FROM t"),
            r#"SELECT col_description(a, 1) AS "col_description_2", col_description(b, 2) AS "col_description_3", user AS "user", current_setting('x') AS s, upper(y) FROM t"#
        );
    }
}
