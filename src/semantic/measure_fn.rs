//! `MEASURE(m)`: the aggregate that says "this measure, as defined". Cube's SQL API has it;
//! BI tools that let users write custom SQL use it. The cube rewrite replaces every call; one
//! that reaches execution was applied to something that is not a measure, and fails.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MeasureFn {
    signature: Signature,
}

impl MeasureFn {
    pub fn new() -> Self {
        MeasureFn { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl Default for MeasureFn {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for MeasureFn {
    fn name(&self) -> &str {
        "measure"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Err(DataFusionError::Plan(
            "MEASURE() applies to the measures of a cube table only".to_string(),
        ))
    }
}
