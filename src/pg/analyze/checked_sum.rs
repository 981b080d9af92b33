//! `SUM` of integers that overflows a bigint is an error (22003 `bigint out of range`), not a
//! wrapped-around number. DataFusion sums integers in an `i64` with wrapping adds, so
//! `sum(x)` over `9223372036854775807` and `1` answered `-9223372036854775808`: a wrong
//! total without a word. PostgreSQL sums `int8` into a `numeric` (and so answers
//! `9223372036854775808`); lakecube keeps SUM's bigint type, because a cube measure's type is
//! part of its table's schema and must not depend on how the query reached it (the cube
//! rewrite's own sums, a rollup's sums of sums), and fails where the total leaves the type.
//! Sums of `int2`/`int4` widen to `int8` as in PostgreSQL, so only sums past 2^63 fail —
//! PostgreSQL's behaviour for those, and a loud error instead of a wrong answer for `int8`.
//!
//! After type coercion (every integer sum then reads an `Int64`), this rule swaps DataFusion's
//! `sum` for [`CheckedSum`], which keeps its name, signature, state and grouped accumulator
//! (`PrimitiveGroupsAccumulator`, with a checked add) and only adds the overflow check.
//! `SUM(DISTINCT …)` and `SUM(…) OVER (…)` keep DataFusion's sum.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, ExprSchemable, GroupsAccumulator, ReversedUDAF,
    SetMonotonicity, Signature,
};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::prim_op::PrimitiveGroupsAccumulator;

use crate::error::{Error, ErrorKind};

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_checked_sum", rewrite: check };

fn check(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::AggregateFunction(agg) = &e else { return Ok(Transformed::no(e)) };
    let is_datafusion_sum = agg.func.inner().is::<Sum>();
    let reads_int64 = matches!(agg.params.args.as_slice(), [arg] if arg.get_type(schema).is_ok_and(|t| t == DataType::Int64));
    if !is_datafusion_sum || !reads_int64 || agg.params.distinct {
        return Ok(Transformed::no(e));
    }
    let Expr::AggregateFunction(mut agg) = e else { unreachable!("matched above") };
    agg.func = Arc::new(AggregateUDF::new_from_impl(CheckedSum::default()));
    Ok(Transformed::yes(Expr::AggregateFunction(agg)))
}

fn out_of_range() -> datafusion::error::DataFusionError {
    super::external(Error::new(ErrorKind::NumericValueOutOfRange, "bigint out of range"))
}

/// DataFusion's `sum` over `Int64` with an overflow check; everything else is `sum`'s own.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct CheckedSum {
    sum: Sum,
}

impl AggregateUDFImpl for CheckedSum {
    fn name(&self) -> &str {
        self.sum.name()
    }

    fn signature(&self) -> &Signature {
        self.sum.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.sum.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match args.return_field.data_type() {
            DataType::Int64 if !args.is_distinct => Ok(Box::new(CheckedSumAccumulator::default())),
            _ => self.sum.accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.sum.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.sum.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        if args.return_field.data_type() != &DataType::Int64 {
            return self.sum.create_groups_accumulator(args);
        }
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overflow);
        let inner = PrimitiveGroupsAccumulator::<Int64Type, _>::new(&DataType::Int64, move |acc: &mut i64, v: i64| {
            match acc.checked_add(v) {
                Some(s) => *acc = s,
                None => flag.store(true, Ordering::Relaxed),
            }
        });
        Ok(Box::new(CheckedGroups { inner: Box::new(inner), overflow }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.sum.create_sliding_accumulator(args)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.sum.order_sensitivity()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.sum.set_monotonicity(data_type)
    }
}

/// The sum of one group (an aggregate without GROUP BY), in an `i128` per batch.
#[derive(Debug, Default)]
struct CheckedSumAccumulator {
    sum: Option<i64>,
}

impl Accumulator for CheckedSumAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_primitive::<Int64Type>();
        if values.null_count() == values.len() {
            return Ok(());
        }
        // An i128 cannot overflow over fewer than 2^64 values; the loop without nulls vectorizes.
        let batch: i128 = if values.null_count() == 0 {
            values.values().iter().map(|&v| v as i128).sum()
        } else {
            values.iter().flatten().map(|v| v as i128).sum()
        };
        let total = batch + self.sum.unwrap_or(0) as i128;
        self.sum = Some(i64::try_from(total).map_err(|_| out_of_range())?);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(self.sum))
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// DataFusion's grouped sum, whose add raises `overflow` instead of wrapping; checked after
/// every batch, so no state or result leaves it once a group overflowed.
struct CheckedGroups {
    inner: Box<dyn GroupsAccumulator>,
    overflow: Arc<AtomicBool>,
}

impl CheckedGroups {
    fn checked<T>(&self, r: Result<T>) -> Result<T> {
        if self.overflow.load(Ordering::Relaxed) { Err(out_of_range()) } else { r }
    }
}

impl GroupsAccumulator for CheckedGroups {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[usize], filter: Option<&BooleanArray>, n: usize) -> Result<()> {
        let r = self.inner.update_batch(values, groups, filter, n);
        self.checked(r)
    }

    fn merge_batch(&mut self, values: &[ArrayRef], groups: &[usize], n: usize) -> Result<()> {
        let r = self.inner.merge_batch(values, groups, n);
        self.checked(r)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.checked(Ok(()))?;
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.checked(Ok(()))?;
        self.inner.state(emit_to)
    }

    fn convert_to_state(&self, values: &[ArrayRef], filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn sum_past_bigint_is_22003_not_a_wrapped_number() {
        assert_eq!(answer("SELECT sum(a) FROM (VALUES (9223372036854775807), (1)) AS t(a)").await, "[22003] bigint out of range");
        assert_eq!(answer("SELECT sum(a) FROM (VALUES (-9223372036854775807), (-2)) AS t(a)").await, "[22003] bigint out of range");
        // Grouped (DataFusion's grouped accumulator), in one group of several.
        assert_eq!(
            answer("SELECT max(s) FROM (SELECT g, sum(a) s FROM (VALUES (1, 5), (2, 9223372036854775807), (2, 1)) AS t(g, a) GROUP BY g) x").await,
            "[22003] bigint out of range"
        );
        // Filtered rows do not count.
        assert_eq!(
            answer("SELECT sum(a) FILTER (WHERE a > 1) FROM (VALUES (9223372036854775807), (1)) AS t(a)").await,
            "9223372036854775807"
        );
    }

    #[tokio::test]
    async fn sums_in_range_are_unchanged() {
        assert_eq!(answer("SELECT sum(a) FROM (VALUES (9223372036854775806), (1), (NULL)) AS t(a)").await, "9223372036854775807");
        assert_eq!(answer("SELECT sum(a) FROM (VALUES (9223372036854775807), (-1), (1)) AS t(a)").await, "9223372036854775807");
        assert_eq!(answer("SELECT sum(a) FROM (VALUES (NULL::bigint)) AS t(a)").await, "");
        assert_eq!(answer("SELECT sum(a::int) FROM (VALUES (2147483647), (2147483647)) AS t(a)").await, "4294967294");
        assert_eq!(
            answer("SELECT sum(s) FROM (SELECT g, sum(a) s FROM (VALUES (1, 5), (2, -3), (2, NULL)) AS t(g, a) GROUP BY g) x").await,
            "2"
        );
        assert_eq!(answer("SELECT sum(DISTINCT a) FROM (VALUES (2), (2), (3)) AS t(a)").await, "5");
    }
}
