//! `numeric / numeric` and `avg(numeric)` keep PostgreSQL's significant digits. Arrow gives a
//! decimal quotient only 4 decimals more than the dividend, so `2::numeric(12,2) / 3` was
//! `0.666666` where PostgreSQL answers `0.66666666666666666667`, and a BI tool's calculated
//! field `SUM(revenue) / SUM(revenue_last_year)` lost digits. PostgreSQL picks the quotient's
//! scale from the operands' values (at least 16 significant digits); a column has one scale
//! in Arrow, so this rule gives quotients [`SCALE`] decimals (or the operands' own, when
//! more), which is PostgreSQL's answer digit for digit for every quotient under 1 (ratios,
//! shares, conversion) and more digits than it prints for larger ones. The division runs in
//! 256-bit decimals so the widened dividend cannot overflow; a quotient too large for
//! `numeric(38, 20)` is 22003, never a truncated number. `avg` of a decimal column averages
//! at that scale too. The rule runs before DataFusion's type coercion, so that expressions
//! over a quotient (a comparison of two ratios) are coerced to its final type.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{AggregateFunction, Cast};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};

/// Decimals of a quotient of decimals: PostgreSQL's scale for a quotient under 1
/// (`NUMERIC_MIN_SIG_DIGITS` 16 plus one base-10000 digit of leading zeros).
pub const SCALE: i8 = 20;

/// Arrow's decimal division adds this many decimals to the dividend's.
const ARROW_DIV_EXTRA: i8 = 4;

const MAX_SCALE: i8 = 38;

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_numeric_division", rewrite: widen };

fn widen(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Divide, right }) => {
            // Before type coercion: an integer operand is a numeric of scale 0, as PostgreSQL
            // reads `numeric / integer`.
            let scale_of = |t: Result<DataType>| match t {
                Ok(DataType::Decimal128(_, s)) => Some((s, true)),
                Ok(t) if t.is_integer() => Some((0, false)),
                _ => None,
            };
            match (scale_of(left.get_type(schema)), scale_of(right.get_type(schema))) {
                (Some((s1, d1)), Some((s2, d2))) if d1 || d2 => {
                    // Arrow's quotient has the dividend's scale + 4 and is truncated: widen the
                    // dividend so the quotient has one decimal more than `scale`, rounded off
                    // by the last cast (as PostgreSQL rounds).
                    let scale = SCALE.max(s1 + ARROW_DIV_EXTRA).max(s2).min(MAX_SCALE - 1);
                    let dividend = cast(*left, DataType::Decimal256(76, (scale + 1 - ARROW_DIV_EXTRA).max(s1)));
                    let divisor = cast(*right, DataType::Decimal256(76, s2));
                    let quotient = Expr::BinaryExpr(BinaryExpr::new(Box::new(dividend), Operator::Divide, Box::new(divisor)));
                    Ok(Transformed::yes(cast(quotient, DataType::Decimal128(38, scale))))
                }
                _ => Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op: Operator::Divide, right }))),
            }
        }
        Expr::AggregateFunction(mut agg) if is_avg(&agg) => {
            let [arg] = agg.params.args.as_mut_slice() else { return Ok(Transformed::no(Expr::AggregateFunction(agg))) };
            match arg.get_type(schema) {
                // avg's result has 4 decimals more than its argument.
                Ok(DataType::Decimal128(_, s)) if s < SCALE - ARROW_DIV_EXTRA => {
                    let widened = cast(arg.clone(), DataType::Decimal128(38, SCALE - ARROW_DIV_EXTRA));
                    *arg = widened;
                    Ok(Transformed::yes(Expr::AggregateFunction(agg)))
                }
                _ => Ok(Transformed::no(Expr::AggregateFunction(agg))),
            }
        }
        other => Ok(Transformed::no(other)),
    }
}

fn is_avg(agg: &AggregateFunction) -> bool {
    agg.func.name().eq_ignore_ascii_case("avg")
}

fn cast(e: Expr, to: DataType) -> Expr {
    Expr::Cast(Cast::new(Box::new(e), to))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn quotients_keep_postgresql_digits() {
        assert_eq!(answer("SELECT 2::numeric(12,2) / 3::numeric(12,2)").await, "0.66666666666666666667");
        assert_eq!(answer("SELECT 1::numeric(12,2) / 8").await, "0.12500000000000000000");
        assert_eq!(
            answer("SELECT sum(x) / sum(y) FROM (VALUES (1.10::numeric(12,2), 3.00::numeric(12,2)), (2.00, 4.00)) t(x, y)").await,
            "0.44285714285714285714"
        );
        assert_eq!(answer("SELECT 1::numeric(12,2) / 0::numeric(12,2)").await, "[22012] division by zero");
    }

    #[tokio::test]
    async fn avg_of_numeric_keeps_its_digits() {
        assert_eq!(answer("SELECT avg(x) FROM (VALUES (1::numeric(12,2)), (0::numeric(12,2)), (0::numeric(12,2))) t(x)").await, "0.33333333333333333333");
    }
}
