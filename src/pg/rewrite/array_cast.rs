//! An array cast or an `ANY` over a parameter reads PostgreSQL's array text. psycopg sends a
//! Python list of strings as the text `{r,v}` typed *unknown* (pgcli's completion refresh:
//! `c.relkind = ANY(%s)`), pgjdbc's `setArray` and node-postgres send `{…}` text too, and
//! `'{1,2}'::int[]` is text until cast. Arrow casts text to a one-element list, and DataFusion
//! cannot plan `ANY` of a text parameter at all. `CAST(x AS t[])` becomes
//! `CAST(pg_array_in(x) AS t[])`, and the array operand of `= ANY($n)` (which
//! datafusion-pg-catalog turns into `array_contains($n, x)`) becomes `pg_array_in($n)`;
//! [`crate::pg::array::PgArrayIn`] reads the text and leaves a list as it is.

use datafusion::sql::sqlparser::ast::{DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value};

use super::{Context, Flow, Rule, function_name, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "array_cast", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    match expr {
        Expr::Cast { expr: inner, data_type: DataType::Array(_), .. } if !is_array(inner) => {
            **inner = array_in(inner)?;
            Ok(Flow::Next)
        }
        Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } if is_placeholder(right) => {
            **right = array_in(right)?;
            Ok(Flow::Next)
        }
        Expr::Function(f) if matches!(function_name(expr).as_deref(), Some("array_contains" | "array_has")) => {
            let Expr::Function(f) = expr else { unreachable!("matched above") };
            if let FunctionArguments::List(list) = &mut f.args
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
                && is_placeholder(first)
            {
                *first = array_in(first)?;
            }
            Ok(Flow::Next)
        }
        _ => Ok(Flow::Next),
    }
}

fn array_in(e: &Expr) -> Result<Expr> {
    parse_expr(&format!("pg_array_in({e})"))
}

fn is_placeholder(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
}

/// Already an array: a constructor, or this rule's own call.
fn is_array(e: &Expr) -> bool {
    match e {
        Expr::Array(_) => true,
        Expr::Nested(inner) => is_array(inner),
        _ => matches!(function_name(e).as_deref(), Some("pg_array_in" | "make_array" | "array")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn array_casts_and_any_parameters_read_array_text() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT $1::text[], CAST(c AS INT[]), ARRAY['a']::text[] FROM t WHERE k = ANY($2) AND array_contains($3, k)"),
            "SELECT pg_array_in($1)::TEXT[], CAST(pg_array_in(c) AS INT[]), ARRAY['a']::TEXT[] FROM t WHERE k = ANY(pg_array_in($2)) AND array_contains(pg_array_in($3), k)"
        );
    }
}
