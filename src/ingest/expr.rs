//! Fields mapped by an expression: `mapping: {amount: {expression: "…"}}`, DataFusion SQL over
//! the source's columns.
//!
//! [`Computing`] sits between a reader and the [`FileSink`](super::sink::FileSink): it keeps records
//! in batches of [`BATCH`], evaluates each expression once per batch over Arrow text columns
//! (DataFusion's vectorized kernels, not an interpreter per row), and hands every record on with
//! the computed values after its own columns, where the header map points
//! ([`super::fields::Column::Computed`]). The result of an expression is read exactly as a
//! column holding the same text would be (decimal commas, date formats, required fields).
//!
//! Columns are named by their header written as an SQL identifier (lower case, accents
//! dropped, any run of other characters as `_`: `Prix unitaire` → `prix_unitaire`), and by the
//! exact header in double quotes. Every column is text (empty values are NULL); an expression
//! casts what it computes on. A batch whose evaluation fails (a cast of `abc` to a number) is
//! evaluated again row by row, so only the rows at fault become rejects, with the error.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::fields::{expressions, normalize};
use super::record::{Fields, Sink};
use super::source::Source;
use crate::error::{Error, Result};

/// Records evaluated together.
pub const BATCH: usize = 4096;

/// One compiled expression.
struct Compiled {
    field: &'static str,
    sql: String,
    expr: Arc<dyn PhysicalExpr>,
}

/// The sink adapter that computes the expression fields (see the module documentation).
pub struct Computing<'s> {
    inner: &'s mut dyn Sink,
    source: &'s Source,
    file: &'s str,
    compiled: Vec<Compiled>,
    /// The evaluation schema: field `j` reads header `columns[j]`.
    schema: Arc<Schema>,
    columns: Vec<usize>,
    /// Which evaluation fields some expression reads (the others are passed as nulls).
    used: Vec<bool>,
    pending: Vec<(u64, Vec<String>)>,
    /// How many headers the file has.
    width: usize,
}

impl<'s> Computing<'s> {
    /// An adapter over `inner` when the source maps some field by an expression.
    pub fn wrap(source: &'s Source, file: &'s str, inner: &'s mut dyn Sink) -> Option<Computing<'s>> {
        if expressions(source.kind, &source.mapping).is_empty() {
            return None;
        }
        let schema = Arc::new(Schema::empty());
        Some(Computing { inner, source, file, compiled: Vec::new(), schema, columns: Vec::new(), used: Vec::new(), pending: Vec::new(), width: 0 })
    }

    fn compile(&mut self, headers: &[String]) -> Result<()> {
        self.width = headers.len();
        let mut fields = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let snake = normalize(h).replace(' ', "_");
            for name in [snake, h.clone()] {
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name.clone());
                    fields.push(Field::new(name, DataType::Utf8, true));
                    self.columns.push(i);
                }
            }
        }
        self.schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone()).map_err(Error::from)?;
        let ctx = SessionContext::new();
        self.used = vec![false; self.columns.len()];
        for (field, sql) in expressions(self.source.kind, &self.source.mapping) {
            let fail = |e: datafusion::error::DataFusionError| {
                Error::config(format!("{}: `mapping.{field}.expression` ({sql}): {}", self.file, e.strip_backtrace()))
                    .with_hint("an expression reads the file's columns by header, as SQL identifiers (lower case, accents dropped, other characters as `_`: `Prix unitaire` is prix_unitaire) or as the exact header in double quotes; every column is text, CAST it to compute")
            };
            let expr = ctx.parse_sql_expr(sql, &df_schema).map_err(fail)?;
            for c in expr.column_refs() {
                if let Some(j) = names.iter().position(|n| *n == c.name) {
                    self.used[j] = true;
                }
            }
            let expr = ctx.create_physical_expr(expr, &df_schema).map_err(fail)?;
            self.compiled.push(Compiled { field, sql: sql.to_string(), expr });
        }
        Ok(())
    }

    /// The batch of `rows` as Arrow text columns (only those an expression reads).
    fn batch(&self, rows: &[(u64, Vec<String>)]) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .zip(&self.used)
            .map(|(&c, &used)| -> ArrayRef {
                if !used {
                    return new_null_array(&DataType::Utf8, rows.len());
                }
                Arc::new(StringArray::from_iter(rows.iter().map(|(_, r)| r.get(c).map(|v| v.trim()).filter(|v| !v.is_empty()))))
            })
            .collect();
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?)
    }

    /// Each expression's values over `rows`, as text.
    fn evaluate(&self, rows: &[(u64, Vec<String>)]) -> std::result::Result<Vec<StringArray>, String> {
        let batch = self.batch(rows).map_err(|e| e.message)?;
        self.compiled
            .iter()
            .map(|c| {
                let fail = |e: &dyn std::fmt::Display| format!("{}: expression `{}` failed: {e}", c.field, c.sql);
                let values = c.expr.evaluate(&batch).and_then(|v| v.into_array(rows.len())).map_err(|e| fail(&e.strip_backtrace()))?;
                let text = datafusion::arrow::compute::cast(&values, &DataType::Utf8).map_err(|e| fail(&e))?;
                Ok(text.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::new_null(rows.len())))
            })
            .collect()
    }

    /// Evaluates the records kept so far and hands them on; call once more after the reader
    /// is done.
    pub fn flush(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.pending);
        if rows.is_empty() {
            return Ok(());
        }
        match self.evaluate(&rows) {
            Ok(values) => {
                for (k, (line, record)) in rows.iter().enumerate() {
                    self.hand_on(*line, record, &values, k)?;
                }
            }
            // Some row breaks the batch: find which, one at a time.
            Err(_) => {
                for row in rows {
                    let one = std::slice::from_ref(&row);
                    match self.evaluate(one) {
                        Ok(values) => self.hand_on(row.0, &row.1, &values, 0)?,
                        Err(reason) => self.inner.reject(row.0, &row.1, reason)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn hand_on(&mut self, line: u64, record: &[String], values: &[StringArray], k: usize) -> Result<()> {
        let computed: Vec<Option<&str>> = values.iter().map(|v| (!v.is_null(k)).then(|| v.value(k))).collect();
        self.inner.record(line, &WithComputed { record, width: self.width, computed })
    }
}

/// A record followed by its computed values: `get(len() + k)` is expression `k`'s value;
/// `len()` stays the record's own, so a reject shows the record as read.
struct WithComputed<'r> {
    record: &'r [String],
    /// The header row's length: computed values come after it, whatever the record's own length.
    width: usize,
    computed: Vec<Option<&'r str>>,
}

impl Fields for WithComputed<'_> {
    fn get(&self, i: usize) -> Option<&str> {
        if i < self.width { self.record.get(i).map(String::as_str) } else { self.computed.get(i - self.width).copied().flatten() }
    }
    fn len(&self) -> usize {
        self.record.len()
    }
    fn separator(&self) -> String {
        " | ".to_string()
    }
}

impl Sink for Computing<'_> {
    fn headers(&mut self, headers: &[String]) -> Result<()> {
        self.compile(headers)?;
        self.inner.headers(headers)
    }

    fn record(&mut self, line: u64, fields: &dyn Fields) -> Result<()> {
        let record: Vec<String> = (0..fields.len()).map(|i| fields.get(i).unwrap_or("").to_string()).collect();
        self.pending.push((line, record));
        if self.pending.len() >= BATCH { self.flush() } else { Ok(()) }
    }

    fn unreadable(&mut self, line: u64, reason: String) -> Result<()> {
        // Keep the rejects in file order.
        self.flush()?;
        self.inner.unreadable(line, reason)
    }
}
