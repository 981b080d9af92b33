//! Exact distinct sets, mergeable: how a rollup stores a `count_distinct` measure.
//!
//! A rollup row keeps the distinct values of the measure's input in its group as a list
//! (`array_agg(DISTINCT x)`, readable by any engine that reads Parquet lists). A query at a
//! coarser grain unions the lists of the rows it merges and counts the union: exact, not an
//! estimate, at any grain. [`DistinctSet`] is that union as an aggregate, returning the
//! union itself (to merge again, above a UNION of rollup rows and raw rows) or its size.
//!
//! Integers (the usual keys: store ids, store-hour numbers) are kept in a set of `i64`;
//! other types as scalar values.
//!
//! Its input lists are sets (distinct values, no NULL): the rollup's lists
//! (`array_agg(DISTINCT x) FILTER (WHERE x IS NOT NULL)`) and its own unions. So a group that
//! gets one list (a query at the rollup's own grain: one store's month) counts that list's
//! length and hashes nothing; only a second list makes it build the union.

use std::sync::Arc;

use datafusion::common::HashSet;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility};

/// What [`DistinctSet`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// The union of the sets, as a list.
    Set,
    /// The number of distinct values in the union (`bigint`, as `count(DISTINCT …)`).
    Count,
}

/// The union of list-valued sets (NULL lists are empty sets).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistinctSet {
    output: Output,
    signature: Signature,
}

impl DistinctSet {
    pub fn new(output: Output) -> Self {
        DistinctSet { output, signature: Signature::any(1, Volatility::Immutable) }
    }

    /// `lakecube_set_union(list)` or `lakecube_set_count(list)` over `arg`.
    pub fn call(output: Output, arg: Expr) -> Expr {
        AggregateUDF::from(DistinctSet::new(output)).call(vec![arg])
    }
}

fn element_of(t: &DataType) -> Result<DataType> {
    match t {
        DataType::List(f) | DataType::LargeList(f) => Ok(f.data_type().clone()),
        DataType::Null => Ok(DataType::Null),
        other => Err(DataFusionError::Plan(format!("a distinct set is a list, not {other}"))),
    }
}

fn list_of(element: &DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(element.clone(), true)))
}

impl AggregateUDFImpl for DistinctSet {
    fn name(&self) -> &str {
        match self.output {
            Output::Set => "lakecube_set_union",
            Output::Count => "lakecube_set_count",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match self.output {
            Output::Count => Ok(DataType::Int64),
            Output::Set => Ok(list_of(&element_of(arg_types.first().unwrap_or(&DataType::Null))?)),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let element = element_of(args.exprs.first().map(|e| e.data_type(args.schema)).transpose()?.as_ref().unwrap_or(&DataType::Null))?;
        Ok(Box::new(SetAccumulator::new(element, self.output)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let element = element_of(args.input_fields.first().map(|f| f.data_type()).unwrap_or(&DataType::Null))?;
        Ok(vec![Arc::new(Field::new(format!("{}[set]", args.name), list_of(&element), true))])
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(match self.output {
            Output::Count => ScalarValue::Int64(Some(0)),
            Output::Set => ScalarValue::Null,
        })
    }
}

/// Rows `start..end` of `array` in buffers of their own: a slice shares (and keeps alive, and
/// is counted at the size of) the buffers of the whole array it was cut from.
pub fn copied(array: &dyn Array, start: usize, end: usize) -> Result<ArrayRef> {
    let data = array.to_data();
    let mut copy = datafusion::arrow::array::MutableArrayData::new(vec![&data], false, end - start);
    copy.try_extend(0, start, end)?;
    Ok(datafusion::arrow::array::make_array(copy.freeze()))
}

/// The value range of each non-null list of `lists`, and the values (`None` for a NULL-typed
/// column).
fn list_ranges(lists: &ArrayRef) -> Result<Option<(Vec<(usize, usize)>, ArrayRef)>> {
    Ok(Some(match lists.data_type() {
        DataType::Null => return Ok(None),
        DataType::List(_) => {
            let l = lists.as_list::<i32>();
            let o = l.value_offsets();
            ((0..l.len()).filter(|i| l.is_valid(*i)).map(|i| (o[i] as usize, o[i + 1] as usize)).collect(), l.values().clone())
        }
        DataType::LargeList(_) => {
            let l = lists.as_list::<i64>();
            let o = l.value_offsets();
            ((0..l.len()).filter(|i| l.is_valid(*i)).map(|i| (o[i] as usize, o[i + 1] as usize)).collect(), l.values().clone())
        }
        other => return Err(DataFusionError::Execution(format!("a distinct set is a list, not {other}"))),
    }))
}

/// Whether the sets of `lists` (every row of every array) are pairwise disjoint: then the
/// size of their union is the sum of their sizes. Stops at the first value seen twice.
pub fn disjoint(lists: &[ArrayRef]) -> Result<bool> {
    let mut union: Option<SetAccumulator> = None;
    for l in lists {
        let Some((offsets, values)) = list_ranges(l)? else { continue };
        let union = union.get_or_insert_with(|| SetAccumulator::new(values.data_type().clone(), Output::Count));
        for (start, end) in offsets {
            let before = union.len();
            union.insert(&values, start, end)?;
            let added = end - start - values.slice(start, end - start).null_count();
            if union.len() != before + added {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[derive(Debug)]
enum Values {
    Ints(HashSet<i64>),
    Scalars(HashSet<ScalarValue>),
}

#[derive(Debug)]
struct SetAccumulator {
    element: DataType,
    output: Output,
    values: Values,
    /// The group's only list so far, not yet in `values` (which is then empty).
    pending: Option<ArrayRef>,
}

impl SetAccumulator {
    fn new(element: DataType, output: Output) -> Self {
        let values = if element.is_integer() && element != DataType::UInt64 { Values::Ints(HashSet::new()) } else { Values::Scalars(HashSet::new()) };
        SetAccumulator { element, output, values, pending: None }
    }

    /// Adds the values `values[start..end]` to the union.
    fn insert(&mut self, values: &ArrayRef, start: usize, end: usize) -> Result<()> {
        match &mut self.values {
            Values::Ints(set) => {
                let ints = cast(&values.slice(start, end - start), &DataType::Int64)?;
                let ints = ints.as_primitive::<Int64Type>();
                set.reserve(ints.len());
                set.extend(ints.iter().flatten());
            }
            Values::Scalars(set) => {
                for j in start..end {
                    if values.is_valid(j) {
                        set.insert(ScalarValue::try_from_array(values, j)?);
                    }
                }
            }
        }
        Ok(())
    }

    fn add_lists(&mut self, lists: &ArrayRef) -> Result<()> {
        let Some((offsets, values)) = list_ranges(lists)? else { return Ok(()) };
        for (start, end) in offsets {
            if self.pending.is_none() && self.len() == 0 {
                // Copied (a slice would keep, and count, the whole batch it came from).
                self.pending = Some(copied(values.as_ref(), start, end)?);
                continue;
            }
            if let Some(first) = self.pending.take() {
                self.insert(&first, 0, first.len())?;
            }
            self.insert(&values, start, end)?;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        if let Some(p) = &self.pending {
            return p.len() - p.null_count();
        }
        match &self.values {
            Values::Ints(s) => s.len(),
            Values::Scalars(s) => s.len(),
        }
    }

    fn as_list(&self) -> Result<ScalarValue> {
        let values: ArrayRef = match (&self.pending, &self.values) {
            (Some(p), _) => cast(p, &self.element)?,
            (None, Values::Ints(s)) => cast(&(Arc::new(s.iter().copied().collect::<Int64Array>()) as ArrayRef), &self.element)?,
            (None, Values::Scalars(s)) => {
                if s.is_empty() {
                    datafusion::arrow::array::new_empty_array(&self.element)
                } else {
                    ScalarValue::iter_to_array(s.iter().cloned())?
                }
            }
        };
        Ok(ScalarValue::List(Arc::new(datafusion::arrow::array::ListArray::new(
            Arc::new(Field::new_list_field(self.element.clone(), true)),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        ))))
    }
}

impl Accumulator for SetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(lists) => self.add_lists(lists),
            None => Ok(()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.as_list()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.output {
            Output::Count => Ok(ScalarValue::Int64(Some(self.len() as i64))),
            Output::Set if self.len() == 0 => ScalarValue::try_from(&list_of(&self.element)),
            Output::Set => self.as_list(),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.pending.as_ref().map_or(0, |p| p.get_array_memory_size())
            + match &self.values {
                Values::Ints(s) => s.capacity() * 16,
                Values::Scalars(s) => s.iter().map(|v| v.size()).sum::<usize>() + s.capacity() * 8,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;

    fn ints(rows: Vec<Option<Vec<Option<i32>>>>) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(rows))
    }

    #[test]
    fn unions_integer_sets_exactly() {
        let mut a = SetAccumulator::new(DataType::Int32, Output::Count);
        a.update_batch(&[ints(vec![Some(vec![Some(1), Some(2)]), None, Some(vec![Some(2), Some(3), None])])]).unwrap();
        let mut b = SetAccumulator::new(DataType::Int32, Output::Count);
        b.update_batch(&[ints(vec![Some(vec![Some(3), Some(4)])])]).unwrap();
        let state = b.state().unwrap();
        a.merge_batch(&[state[0].to_array().unwrap()]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int64(Some(4)));
        let mut set = SetAccumulator::new(DataType::Int32, Output::Set);
        set.update_batch(&[ints(vec![Some(vec![Some(5), Some(1)]), Some(vec![Some(1), Some(7)])])]).unwrap();
        let ScalarValue::List(l) = set.evaluate().unwrap() else { panic!("a list") };
        let mut union = l.value(0).as_primitive::<Int32Type>().values().to_vec();
        union.sort();
        assert_eq!(union, vec![1, 5, 7]);
    }

    #[test]
    fn one_list_is_counted_and_passed_on_as_it_is() {
        let mut a = SetAccumulator::new(DataType::Int32, Output::Count);
        // The list's batch holds 10,000 more values (another row's, sliced away).
        let batch = ints(vec![None, Some(vec![Some(4), Some(9), Some(2)]), Some((0..10_000).map(Some).collect())]).slice(0, 2);
        a.update_batch(&[batch]).unwrap();
        assert!(a.pending.as_ref().is_some_and(|p| p.len() == 3 && p.get_array_memory_size() < 1024), "one list is kept, copied, not hashed");
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        let state = a.state().unwrap();
        let mut b = SetAccumulator::new(DataType::Int32, Output::Count);
        b.merge_batch(&[state[0].to_array().unwrap()]).unwrap();
        b.merge_batch(&[ints(vec![Some(vec![Some(9), Some(11)])])]).unwrap();
        assert!(b.pending.is_none());
        assert_eq!(b.evaluate().unwrap(), ScalarValue::Int64(Some(4)));
    }

    #[test]
    fn sets_are_disjoint_until_a_value_repeats_in_another_list() {
        let a = ints(vec![Some(vec![Some(1), Some(2)]), None, Some(vec![Some(3), None])]);
        let b = ints(vec![Some(vec![Some(4)]), Some(vec![])]);
        assert!(disjoint(&[a.clone(), b]).unwrap());
        assert!(!disjoint(&[a.clone(), ints(vec![Some(vec![Some(5), Some(2)])])]).unwrap());
        assert!(!disjoint(&[ints(vec![Some(vec![Some(7)]), Some(vec![Some(7)])])]).unwrap());
        let values = Arc::new(StringArray::from(vec!["a", "b", "a"])) as ArrayRef;
        let strings = ListArray::new(Arc::new(Field::new_list_field(DataType::Utf8, true)), datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 1]), values, None);
        assert!(!disjoint(&[Arc::new(strings)]).unwrap());
        assert!(disjoint(&[]).unwrap());
    }

    #[test]
    fn unions_string_sets_and_counts_an_empty_input_as_zero() {
        let mut a = SetAccumulator::new(DataType::Utf8, Output::Count);
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int64(Some(0)));
        let values = Arc::new(StringArray::from(vec!["a", "b", "a"])) as ArrayRef;
        let lists = ListArray::new(Arc::new(Field::new_list_field(DataType::Utf8, true)), datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 1]), values, None);
        a.update_batch(&[Arc::new(lists)]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
    }
}
