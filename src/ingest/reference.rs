//! The reference tables (`stores`, `departments`) as an ingest sees them: codes to keys for
//! fact sources, the rows a `stores` or `departments` source upserts by code, and the members
//! a fact source with `create_missing: true` adds for codes the lake does not know. Changed
//! rows are merged into their table in one Delta commit, keyed by code. New keys follow the
//! largest in the table: two runs adding members at the same moment could pick the same key,
//! which is why a writing run holds the lake's ingest lock ([`super::lock`]) from loading the
//! members to its commit.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use crate::error::{Error, Result};
use crate::storage::Lake;
use crate::storage::schema;

/// One reference table's rows, as text in the table's column order (the key first, the code
/// second), by code.
pub struct Members {
    pub table: &'static str,
    schema: SchemaRef,
    rows: Vec<Vec<Option<String>>>,
    /// Code as written, and folded (trimmed, lower case) → index in `rows`.
    by_code: HashMap<String, usize>,
    changed: BTreeSet<usize>,
    /// The largest key (0 for an empty table).
    max_id: i32,
}

impl Members {
    /// Loads `stores` or `departments` from the lake.
    pub async fn load(lake: &Lake, table: &'static str) -> Result<Members> {
        let schema = match table {
            schema::STORES => schema::stores_schema(),
            schema::DEPARTMENTS => schema::departments_schema(),
            other => return Err(Error::internal(format!("{other} is no reference table"))),
        };
        let ctx = lake.context();
        lake.register_tables(&ctx, &[table]).await?;
        let columns: Vec<String> = schema.fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
        let batches = ctx.sql(&format!("SELECT {} FROM {table} ORDER BY 1", columns.join(", "))).await.map_err(Error::from)?.collect().await.map_err(Error::from)?;
        let mut members = Members { table, schema, rows: Vec::new(), by_code: HashMap::new(), changed: BTreeSet::new(), max_id: 0 };
        for b in batches {
            let texts: Vec<ArrayRef> = b.columns().iter().map(|c| cast(c, &DataType::Utf8)).collect::<Result<_>>()?;
            let cols: Vec<&StringArray> = texts.iter().map(|c| c.as_any().downcast_ref::<StringArray>().expect("cast to Utf8")).collect();
            for i in 0..b.num_rows() {
                let row = cols.iter().map(|c| c.is_valid(i).then(|| c.value(i).to_string())).collect();
                members.push(row);
            }
        }
        Ok(members)
    }

    fn push(&mut self, row: Vec<Option<String>>) -> usize {
        let at = self.rows.len();
        let code = row[1].clone().unwrap_or_default();
        self.by_code.insert(code.trim().to_string(), at);
        self.by_code.insert(code.trim().to_lowercase(), at);
        if let Some(id) = row[0].as_deref().and_then(|k| k.parse::<i32>().ok()) {
            self.max_id = self.max_id.max(id);
        }
        self.rows.push(row);
        at
    }

    fn index(&self, code: &str) -> Option<usize> {
        let code = code.trim();
        self.by_code.get(code).or_else(|| self.by_code.get(&code.to_lowercase())).copied()
    }

    /// The key of a code (matched ignoring case and surrounding spaces).
    pub fn id(&self, code: &str) -> Option<i32> {
        let row = &self.rows[self.index(code)?];
        row[0].as_deref().and_then(|k| k.parse().ok())
    }

    /// Sets the given columns of the member with this code, adding it (with the next key) if
    /// new; a new member must get every column the table requires. Returns its key, or the
    /// reason the row is rejected.
    pub fn upsert(&mut self, code: &str, values: &[(&str, String)]) -> std::result::Result<i32, String> {
        let at = match self.index(code) {
            Some(at) => at,
            None => {
                let missing: Vec<&str> = self
                    .schema
                    .fields()
                    .iter()
                    .skip(2)
                    .filter(|f| !f.is_nullable() && !values.iter().any(|(c, _)| c == f.name()))
                    .map(|f| f.name().as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(format!("a new {} (`{}`) needs {}", singular(self.table), code.trim(), missing.join(", ")));
                }
                let mut row = vec![None; self.schema.fields().len()];
                row[0] = Some((self.max_id + 1).to_string());
                row[1] = Some(code.trim().to_string());
                self.push(row)
            }
        };
        for (column, value) in values {
            let i = self.schema.index_of(column).map_err(|_| format!("{} has no column {column}", self.table))?;
            self.rows[at][i] = Some(value.clone());
        }
        self.changed.insert(at);
        Ok(self.id(code).expect("just set"))
    }

    /// Whether any row was added or changed.
    pub fn is_changed(&self) -> bool {
        !self.changed.is_empty()
    }

    /// How many rows were added or changed.
    pub fn changed(&self) -> usize {
        self.changed.len()
    }

    /// Merges the changed rows into the table in one Delta commit carrying the application
    /// transactions `txns` (id, version) and the batch's provenance
    /// ([`super::commit::properties`]): an existing code gets its columns updated, a new one
    /// is inserted. Returns the version.
    pub async fn commit(&self, lake: &Lake, txns: &[(String, i64)], provenance: &serde_json::Value) -> Result<i64> {
        let delta: DeltaTable = lake.require_table(self.table).await?;
        // Typed as the table (a value that is not of its column's type fails here, before
        // anything is written).
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, f)| cast(&(Arc::new(self.changed.iter().map(|r| self.rows[*r][c].clone()).collect::<StringArray>()) as ArrayRef), f.data_type()))
            .collect::<Result<_>>()?;
        let nullable = Arc::new(Schema::new(self.schema.fields().iter().map(|f| Field::new(f.name(), f.data_type().clone(), true)).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(nullable, columns).map_err(Error::from)?;
        let source = SessionContext::new().read_batch(batch).map_err(Error::from)?;
        let names: Vec<String> = self.schema.fields().iter().map(|f| f.name().clone()).collect();
        let code = &names[1];
        let mut merge = delta.merge(source, format!("t.\"{code}\" = s.\"{code}\""));
        if let Some(p) = lake.writer_properties() {
            merge = merge.with_writer_properties(p);
        }
        if let Some(session) = lake.read_session() {
            merge = merge.with_session_state(session);
        }
        let (table, _) = merge
            .with_source_alias("s")
            .with_target_alias("t")
            .with_commit_properties(super::commit::properties(txns, provenance))
            .when_matched_update(|u| names.iter().skip(2).fold(u, |u, c| u.update(format!("\"{c}\""), format!("s.\"{c}\""))))
            .map_err(Error::from)?
            .when_not_matched_insert(|i| names.iter().fold(i, |i, c| i.set(format!("\"{c}\""), format!("s.\"{c}\""))))
            .map_err(Error::from)?
            .await
            .map_err(Error::from)?;
        Ok(table.version().unwrap_or_default() as i64)
    }
}

fn singular(table: &str) -> &str {
    match table {
        schema::STORES => "store",
        _ => "department",
    }
}

/// Arrow's cast, failing on a value it cannot convert (rather than making it null).
fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let options = datafusion::arrow::compute::CastOptions { safe: false, ..Default::default() };
    datafusion::arrow::compute::cast_with_options(array, to, &options).map_err(|e| Error::new(crate::error::ErrorKind::DataException, e.to_string()))
}
