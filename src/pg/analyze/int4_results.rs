//! Array functions answer PostgreSQL's `integer`: `array_length`, `cardinality` and
//! `array_position` are unsigned 64-bit integers in DataFusion, which lakecube can only
//! describe as `numeric(20)`, so drivers read them as decimals. After type coercion, each
//! call is cast to a 32-bit integer (an array past 2³¹ elements is not one PostgreSQL has
//! either).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::{Expr, ExprSchemable};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_int4_results", rewrite };

/// Functions PostgreSQL types `integer` that DataFusion types otherwise.
const INTEGER_FUNCTIONS: &[&str] = &["array_length", "cardinality", "array_position"];

fn rewrite(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(f) = &e else { return Ok(Transformed::no(e)) };
    if !INTEGER_FUNCTIONS.contains(&f.func.name()) || e.get_type(schema).is_ok_and(|t| t == DataType::Int32) {
        return Ok(Transformed::no(e));
    }
    Ok(Transformed::yes(Expr::Cast(Cast::new(Box::new(e), DataType::Int32))))
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn array_lengths_are_integers() {
        assert_eq!(answer("SELECT arrow_typeof(array_length(make_array(1, 2, 3), 1))").await, "Int32");
        assert_eq!(answer("SELECT array_length(make_array(1, 2, 3), 1)").await, "3");
        assert_eq!(answer("SELECT arrow_typeof(cardinality(make_array(1, 2)))").await, "Int32");
    }
}
