//! PostgreSQL's text form of arrays, `{r,v}`, `{"a b",NULL,"say \"hi\""}`: what a client
//! sends for an array parameter in text format (psycopg sends a Python list of strings so,
//! typed *unknown*; pgcli's `relkind = ANY(%s)`, pgjdbc's `setArray`), and what `'{1,2}'::int[]`
//! reads. Arrow's cast from text to a list makes a list of the one string, so `{r,v}` was the
//! one-element array `['{r,v}']` and `ANY` found nothing. [`parse`] reads the text form
//! (pgwire's reader takes a quoted `"NULL"` and `""` for NULL); [`PgArrayIn`] is the function
//! [`super::rewrite::array_cast`] puts under array casts and `ANY` of a parameter.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::error::{Error, ErrorKind, Result};

/// The elements of a one-dimensional array in PostgreSQL's text form; `None` for NULL.
pub fn parse(text: &str) -> Result<Vec<Option<String>>> {
    let malformed = |why: &str| {
        Error::new(ErrorKind::InvalidTextRepresentation, format!("malformed array literal: \"{text}\""))
            .with_hint(format!("{why}; an array reads as {{a,b,\"c d\",NULL}}"))
    };
    let body = text.trim();
    let body = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| malformed("it must start with \"{\" and end with \"}\""))?;
    let mut out = Vec::new();
    if body.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        match chars.peek() {
            Some('"') => {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => item.push(chars.next().ok_or_else(|| malformed("it ends inside an escape"))?),
                        Some('"') => break,
                        Some(c) => item.push(c),
                        None => return Err(malformed("a quoted element is not closed")),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('{') => {
                return Err(Error::new(ErrorKind::FeatureNotSupported, "multidimensional arrays are not supported")
                    .with_hint("send a one-dimensional array, {a,b}"));
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    match c {
                        ',' => break,
                        '\\' => {
                            chars.next();
                            item.push(chars.next().ok_or_else(|| malformed("it ends inside an escape"))?);
                        }
                        '"' | '{' | '}' => return Err(malformed("unexpected quote or brace inside an element")),
                        c => {
                            item.push(c);
                            chars.next();
                        }
                    }
                }
                let trimmed = item.trim_end().len();
                item.truncate(trimmed);
                if item.is_empty() {
                    return Err(malformed("an element is empty"));
                }
            }
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("NULL") { None } else { Some(item) });
        match chars.next() {
            Some(',') => continue,
            None => return Ok(out),
            Some(_) => return Err(malformed("elements must be separated by commas")),
        }
    }
}

/// An array in text form as a list value of `element` values (read as casts read them).
pub fn list_value(text: &str, element: &DataType) -> Result<ScalarValue> {
    let items: StringArray = parse(text)?.into_iter().collect();
    // Not the safe cast, which makes an element that does not read a NULL.
    let options = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
    let values = datafusion::arrow::compute::cast_with_options(&items, element, &options).map_err(|e| {
        Error::new(ErrorKind::InvalidTextRepresentation, format!("malformed array literal: \"{text}\": {e}"))
    })?;
    Ok(list_of(values))
}

/// One list value holding `values`.
pub fn list_of(values: ArrayRef) -> ScalarValue {
    SingleRowListArrayBuilder::new(values).with_nullable(true).build_list_scalar()
}

/// `pg_array_in(x)`: text in PostgreSQL's array form read as a `text[]` (a list stays as
/// it is), so that a cast to `int[]` after it casts each element.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgArrayIn {
    signature: Signature,
}

impl Default for PgArrayIn {
    fn default() -> Self {
        PgArrayIn { signature: Signature::any(1, Volatility::Immutable) }
    }
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl ScalarUDFImpl for PgArrayIn {
    fn name(&self) -> &str {
        "pg_array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match &arg_types[0] {
            t @ (DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)) => t.clone(),
            _ => text_list(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arg = &args.args[0];
        if matches!(arg.data_type(), DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)) {
            return Ok(arg.clone());
        }
        let fail = |e: Error| DataFusionError::External(Box::new(e));
        let read = |s: Option<&str>| -> DfResult<ScalarValue> {
            match s {
                Some(s) => list_value(s, &DataType::Utf8).map_err(fail),
                None => ScalarValue::try_from(&text_list()),
            }
        };
        match arg {
            ColumnarValue::Scalar(v) => {
                let v = v.cast_to(&DataType::Utf8)?;
                let ScalarValue::Utf8(s) = &v else { unreachable!("cast to Utf8") };
                Ok(ColumnarValue::Scalar(read(s.as_deref())?))
            }
            ColumnarValue::Array(a) => {
                let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                let strings = a.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                let lists = strings.iter().map(read).collect::<DfResult<Vec<_>>>()?;
                Ok(ColumnarValue::Array(ScalarValue::iter_to_array(lists)?))
            }
        }
    }
}

/// Registers [`PgArrayIn`].
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::from(PgArrayIn::default()));
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn ok(text: &str) -> Vec<Option<String>> {
        parse(text).unwrap_or_else(|e| panic!("{text}: {}", e.message))
    }

    #[test]
    fn reads_postgresql_array_text() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(ok("{r,v}"), vec![s("r"), s("v")]);
        assert_eq!(ok("{}"), Vec::<Option<String>>::new());
        assert_eq!(ok(" { a , b c } "), vec![s("a"), s("b c")]);
        assert_eq!(ok(r#"{"a,b","say \"hi\"",NULL,"NULL","",null}"#), vec![s("a,b"), s(r#"say "hi""#), None, s("NULL"), s(""), None]);
        assert_eq!(ok(r"{a\,b}"), vec![s("a,b")]);
    }

    #[test]
    fn malformed_arrays_are_22p02() {
        for bad in ["r,v", "{a,,b}", "{\"a}", "{a\"b}", "{a,}", "{a} b"] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.sqlstate(), "22P02", "{bad}");
        }
        assert_eq!(parse("{{1,2},{3,4}}").expect_err("2-d").sqlstate(), "0A000");
    }
}
