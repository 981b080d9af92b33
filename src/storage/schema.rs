//! The lake's tables: their names, Arrow schemas, and the one way they are written.

use std::sync::Arc;

use chrono::Datelike;
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{Action, StructType};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use super::Lake;
use crate::error::{Error, ErrorKind, Result};

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

/// The columns of `traffic`, by name.
pub mod traffic {
    pub const STORE_ID: &str = "store_id";
    pub const DEPARTMENT_ID: &str = "department_id";
    /// The hour's start.
    pub const TS: &str = "ts";
    pub const FOOTFALL: &str = "footfall";
    pub const TRANSACTIONS: &str = "transactions";
    pub const REVENUE: &str = "revenue";
    pub const UNITS: &str = "units";
    /// The first day of the month of `ts`: the partition column.
    pub const MONTH: &str = "month";
    /// Every column, in the table's order.
    pub const COLUMNS: [&str; 8] = [STORE_ID, DEPARTMENT_ID, TS, FOOTFALL, TRANSACTIONS, REVENUE, UNITS, MONTH];
    /// What identifies a row: its store, department and hour (with the hour's month).
    pub const KEY: [&str; 4] = [STORE_ID, DEPARTMENT_ID, TS, MONTH];
    /// The counts, which add up when two rows have the same key.
    pub const COUNTS: [&str; 4] = [FOOTFALL, TRANSACTIONS, REVENUE, UNITS];
}

/// `traffic`: one row per store × department × opening hour. `month` (the first day of the
/// month of `ts`) is the partition column. Its rows are built by [`TrafficRows`].
pub fn traffic_schema() -> SchemaRef {
    use traffic::*;
    Arc::new(Schema::new(vec![
        Field::new(STORE_ID, DataType::Int32, false),
        Field::new(DEPARTMENT_ID, DataType::Int32, false),
        Field::new(TS, DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new(FOOTFALL, DataType::Int32, false),
        Field::new(TRANSACTIONS, DataType::Int32, false),
        Field::new(REVENUE, DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE), false),
        Field::new(UNITS, DataType::Int32, false),
        Field::new(MONTH, DataType::Date32, false),
    ]))
}

pub const TRAFFIC_PARTITIONS: &[&str] = &[traffic::MONTH];

/// One row of `traffic`, as [`TrafficRows::push`] takes it (`month` is derived from `ts`).
#[derive(Debug, Clone, Copy)]
pub struct TrafficRow {
    pub store_id: i32,
    pub department_id: i32,
    /// The hour's start, in microseconds since 1970-01-01 00:00 (local time, no time zone).
    pub ts_micros: i64,
    pub footfall: i32,
    pub transactions: i32,
    /// Revenue in cents (the lake's `numeric(12, 2)`; the caller keeps it within 12 digits).
    pub revenue_cents: i128,
    pub units: i32,
}

/// `traffic` rows built into the table's Arrow columns, in [`traffic_schema`]'s order: what
/// `generate` and `ingest` both write.
pub struct TrafficRows {
    store_id: Int32Builder,
    department_id: Int32Builder,
    ts: TimestampMicrosecondBuilder,
    footfall: Int32Builder,
    transactions: Int32Builder,
    revenue: Decimal128Builder,
    units: Int32Builder,
    month: Date32Builder,
    /// The day of the last row (days since 1970-01-01) and its month's first day (a Date32):
    /// rows come hour by hour, so most share their month with the row before.
    last_day: Option<(i64, i32)>,
}

impl TrafficRows {
    /// An empty batch with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> TrafficRows {
        TrafficRows {
            store_id: Int32Builder::with_capacity(rows),
            department_id: Int32Builder::with_capacity(rows),
            ts: TimestampMicrosecondBuilder::with_capacity(rows),
            footfall: Int32Builder::with_capacity(rows),
            transactions: Int32Builder::with_capacity(rows),
            revenue: Decimal128Builder::with_capacity(rows)
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .expect("a valid decimal type"),
            units: Int32Builder::with_capacity(rows),
            month: Date32Builder::with_capacity(rows),
            last_day: None,
        }
    }

    /// Rows pushed since the last [`TrafficRows::finish`].
    pub fn len(&self) -> usize {
        self.store_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a row; an error (22000) when its `ts` is out of the range of dates.
    pub fn push(&mut self, row: TrafficRow) -> Result<()> {
        let month = self.month_of(row.ts_micros)?;
        self.store_id.append_value(row.store_id);
        self.department_id.append_value(row.department_id);
        self.ts.append_value(row.ts_micros);
        self.footfall.append_value(row.footfall);
        self.transactions.append_value(row.transactions);
        self.revenue.append_value(row.revenue_cents);
        self.units.append_value(row.units);
        self.month.append_value(month);
        Ok(())
    }

    /// The first day of the month of `ts` (a Date32).
    fn month_of(&mut self, ts_micros: i64) -> Result<i32> {
        let day = ts_micros.div_euclid(86_400_000_000);
        if let Some((last, month)) = self.last_day
            && last == day
        {
            return Ok(month);
        }
        let at = chrono::DateTime::from_timestamp_micros(ts_micros).ok_or_else(|| Error::new(ErrorKind::DataException, "an hour out of range"))?;
        let first = at.date_naive().with_day(1).expect("day 1");
        let month = (first - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
        self.last_day = Some((day, month));
        Ok(month)
    }

    /// The rows pushed so far as one record batch of [`traffic_schema`]; the builder is empty
    /// again.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.store_id.finish()),
            Arc::new(self.department_id.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.footfall.finish()),
            Arc::new(self.transactions.finish()),
            Arc::new(self.revenue.finish().with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?),
            Arc::new(self.units.finish()),
            Arc::new(self.month.finish()),
        ];
        Ok(RecordBatch::try_new(traffic_schema(), columns)?)
    }
}

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
        let mut writer = RecordBatchWriter::try_new(
            url.as_str(),
            schema.clone(),
            Some(partitions.clone()),
            None,
        )?;
        if let Some(properties) = lake.writer_properties() {
            writer = writer.with_writer_properties(properties);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use datafusion::arrow::array::{Array, Date32Array};

    #[test]
    fn traffic_rows_derive_each_hour_s_month() {
        let hour = |y, m, d, h| NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, 0, 0).unwrap().and_utc().timestamp_micros();
        let first_of = |y, m| (NaiveDate::from_ymd_opt(y, m, 1).unwrap() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
        let mut rows = TrafficRows::with_capacity(4);
        for ts in [hour(2024, 1, 31, 23), hour(2024, 2, 1, 0), hour(2024, 2, 1, 5), hour(1969, 12, 31, 23)] {
            rows.push(TrafficRow { store_id: 1, department_id: 2, ts_micros: ts, footfall: 3, transactions: 1, revenue_cents: 1250, units: 2 }).unwrap();
        }
        assert_eq!(rows.len(), 4);
        let batch = rows.finish().unwrap();
        assert!(rows.is_empty());
        assert_eq!(batch.schema(), traffic_schema());
        let month = batch.column_by_name(traffic::MONTH).unwrap().as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(month.values().to_vec(), [first_of(2024, 1), first_of(2024, 2), first_of(2024, 2), first_of(1969, 12)]);
    }
}
