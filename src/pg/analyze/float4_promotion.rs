//! `real` (float4) with an integer or a numeric is `double precision`, as in PostgreSQL
//! (`100::float4 / 3` is `33.333333333333336`, a float8): PostgreSQL has no `float4 op int4`
//! operator and takes its `float8` one. DataFusion computed in float4 (`33.333332`), losing
//! half the digits of a BI tool's calculated field over a `real` column. Before type
//! coercion, the `real` side of such an arithmetic operator is cast to `double precision`;
//! `real op real` stays `real`, as in PostgreSQL.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_float4_promotion", rewrite };

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &e else { return Ok(Transformed::no(e)) };
    if !matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo) {
        return Ok(Transformed::no(e));
    }
    let (Ok(lt), Ok(rt)) = (left.get_type(schema), right.get_type(schema)) else { return Ok(Transformed::no(e)) };
    let exact = |t: &DataType| t.is_integer() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..));
    let promote = |side: &Expr, t: &DataType, other: &DataType| {
        if *t == DataType::Float32 && exact(other) {
            Expr::Cast(Cast::new(Box::new(side.clone()), DataType::Float64))
        } else {
            side.clone()
        }
    };
    if !(lt == DataType::Float32 && exact(&rt) || rt == DataType::Float32 && exact(&lt)) {
        return Ok(Transformed::no(e));
    }
    let (l, r) = (promote(left, &lt, &rt), promote(right, &rt, &lt));
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(l), *op, Box::new(r)))))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn real_with_an_integer_is_double_precision() {
        assert_eq!(answer("SELECT CAST(100 AS REAL) / 3").await, "33.333333333333336");
        assert_eq!(answer("SELECT arrow_typeof(CAST(1 AS REAL) * 2.5)").await, "Float64");
        assert_eq!(answer("SELECT arrow_typeof(CAST(1 AS REAL) + CAST(1 AS REAL))").await, "Float32");
    }
}
