//! The lake's tables: their names, Arrow schemas, and the one way they are written.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{Action, StructType};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use super::Lake;
use crate::error::{Error, Result};

pub const STORES: &str = "stores";
pub const DEPARTMENTS: &str = "departments";
pub const TRAFFIC: &str = "traffic";
/// Every table of a complete lake, in the order `generate` commits them.
pub const ALL_TABLES: [&str; 3] = [DEPARTMENTS, STORES, TRAFFIC];

/// Precision and scale of money columns (`DECIMAL(12,2)`).
pub const MONEY_PRECISION: u8 = 12;
pub const MONEY_SCALE: i8 = 2;

pub fn stores_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("store_id", DataType::Int32, false),
        Field::new("store_code", DataType::Utf8, false),
        Field::new("store_name", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("store_format", DataType::Utf8, false),
        Field::new("surface_m2", DataType::Int32, false),
        Field::new("opened_on", DataType::Date32, false),
        Field::new("closed_on", DataType::Date32, true),
    ]))
}

pub fn departments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("department_id", DataType::Int32, false),
        Field::new("department_code", DataType::Utf8, false),
        Field::new("department", DataType::Utf8, false),
        Field::new("department_family", DataType::Utf8, false),
    ]))
}

/// `traffic`: one row per store × department × opening hour. `month` (the first day of the
/// month of `ts`) is the partition column.
pub fn traffic_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("store_id", DataType::Int32, false),
        Field::new("department_id", DataType::Int32, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("footfall", DataType::Int32, false),
        Field::new("transactions", DataType::Int32, false),
        Field::new("revenue", DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE), false),
        Field::new("units", DataType::Int32, false),
        Field::new("month", DataType::Date32, false),
    ]))
}

pub const TRAFFIC_PARTITIONS: &[&str] = &["month"];

/// Writes a new table in one atomic Delta commit: data files are written as batches arrive
/// (flushed after each `flush_every` batches, so memory stays bounded), and the table only
/// appears, with all its files, when the final commit lands. An interrupted write leaves no
/// table (only unreferenced files, which readers never see).
pub struct TableWriter {
    lake: Lake,
    table: String,
    schema: SchemaRef,
    partitions: Vec<String>,
    writer: RecordBatchWriter,
    adds: Vec<Action>,
    rows: u64,
}

impl TableWriter {
    pub fn new(lake: &Lake, table: &str, schema: SchemaRef, partitions: &[&str]) -> Result<Self> {
        let url = lake.table_url(table);
        let partitions: Vec<String> = partitions.iter().map(|s| s.to_string()).collect();
        let writer = RecordBatchWriter::try_new(
            url.as_str(),
            schema.clone(),
            Some(partitions.clone()),
            None,
        )?;
        Ok(TableWriter {
            lake: lake.clone(),
            table: table.to_string(),
            schema,
            partitions,
            writer,
            adds: Vec::new(),
            rows: 0,
        })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).await?;
        Ok(())
    }

    /// Closes the files written so far (call at a partition boundary to bound memory).
    pub async fn flush(&mut self) -> Result<()> {
        let adds = self.writer.flush().await?;
        self.adds.extend(adds.into_iter().map(Action::Add));
        Ok(())
    }

    /// Flushes and commits the table as version 0. Returns the number of rows written.
    pub async fn commit(mut self) -> Result<u64> {
        self.flush().await?;
        let kernel_schema: StructType = self
            .schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::internal(format!("schema of {}: {e}", self.table)))?;
        let url = self.lake.table_url(&self.table);
        let log_store = deltalake::DeltaTableBuilder::from_url(url)?.build_storage()?;
        deltalake::operations::create::CreateBuilder::new()
            .with_log_store(log_store)
            .with_table_name(self.table.clone())
            .with_columns(kernel_schema.fields().cloned())
            .with_partition_columns(self.partitions.clone())
            .with_actions(self.adds)
            .await?;
        Ok(self.rows)
    }
}
