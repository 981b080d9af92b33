//! A scalar subquery whose WHERE tests outer columns only (SQLAlchemy's column reflection:
//! `(SELECT pg_get_expr(…) FROM pg_attrdef WHERE pg_attribute.atthasdef AND …)` inside a
//! CASE): DataFusion cannot decorrelate that inside an expression, so the outer-only test
//! moves out as `CASE WHEN test THEN (subquery without it) END` — the same value, as the
//! subquery yields no row (NULL) exactly when the test fails.
//!
//! Outer columns in the subquery's output are split out the same way
//! ([`split_outer_output`]: SQLAlchemy's identity-column `json_build_object`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Select, SelectItem, SetExpr, TableFactor,
    visit_expressions_mut,
};

use super::{Context, Flow, Rule, catalog_lookup, parse_expr};
use crate::error::Result;
use crate::pg::names::ident_name;

pub const RULE: Rule = Rule { name: "hoist_subquery", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let Expr::Subquery(q) = expr else { return Ok(Flow::Next) };
    let (test, inner) = match hoist_outer_conjuncts(q) {
        Some((test, inner)) => (Some(test), inner),
        None => (None, q.as_ref().clone()),
    };
    let value = match split_outer_output(&inner) {
        Some(v) => Some(v.to_string()),
        None => test.is_some().then(|| format!("({})", catalog_lookup::as_aggregate(&inner).unwrap_or(inner))),
    };
    let Some(value) = value else { return Ok(Flow::Next) };
    *expr = match test {
        Some(test) => parse_expr(&format!("CASE WHEN {test} THEN {value} END"))?,
        None => parse_expr(&value)?,
    };
    Ok(Flow::Done)
}

/// The names a SELECT's FROM gives its relations (aliases, else the table's own name), or
/// None when FROM holds anything but tables.
fn from_names(sel: &Select) -> Option<Vec<String>> {
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
    let FunctionArguments::List(list) = &f.args else { return None };
    let mut any_outer = false;
    let lookup = |e: String| -> Option<String> {
        let mut s = sel.clone();
        s.projection = vec![SelectItem::UnnamedExpr(parse_expr(&e).ok()?)];
        let mut one = q.clone();
        one.body = Box::new(SetExpr::Select(s));
        Some(format!("({})", catalog_lookup::as_aggregate(&one).unwrap_or(one)))
    };
    let mut args = Vec::new();
    for a in &list.args {
        let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a else {
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

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn outer_tests_move_out_of_the_subquery() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE a.atthasdef AND d.adrelid = a.attrelid) FROM pg_attribute a"),
            "SELECT CASE WHEN (a.atthasdef) THEN (SELECT first_value(pg_get_expr(d.adbin, d.adrelid)) FROM pg_attrdef d WHERE (d.adrelid = a.attrelid)) END FROM pg_attribute a"
        );
    }

    #[test]
    fn outer_columns_in_the_output_move_out() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT (SELECT json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) FROM pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_attribute a"),
            "SELECT CASE WHEN (SELECT max(1) FROM pg_sequence s WHERE s.seqrelid = a.attrelid) = 1 THEN json_build_object('always', a.attidentity = 'a', 'start', (SELECT first_value(s.seqstart) FROM pg_sequence s WHERE s.seqrelid = a.attrelid)) END FROM pg_attribute a"
        );
    }

    #[test]
    fn subqueries_of_their_own_stay() {
        let sql = "SELECT (SELECT max(x) FROM pg_type t WHERE t.oid = 1) FROM pg_attribute a";
        assert_eq!(rewritten_by(&super::RULE, sql), sql);
    }
}
