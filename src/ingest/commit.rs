//! The lake side of an ingest: whether a file was already ingested, and the one Delta commit
//! that merges a batch into `traffic` (reference rows: [`super::reference`]).

use std::sync::Arc;

use chrono::Datelike;
use datafusion::arrow::array::{Date32Array, Decimal128Array, Int32Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

use super::batch::Batch;
use crate::error::{Error, Result};
use crate::storage::schema::{self, MONEY_SCALE};

/// The version of the latest application transaction with this id in the table's commits.
pub async fn recorded_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let state = table.snapshot().map_err(Error::from)?;
    state.transaction_version(table.log_store().as_ref(), app_id).await.map_err(Error::from)
}

/// Whether a commit of the table already carries this application transaction.
pub async fn already_ingested(traffic: &DeltaTable, app_id: &str) -> Result<bool> {
    Ok(recorded_version(traffic, app_id).await?.is_some())
}

/// The application transactions (id, version) as a commit records them.
pub fn app_transactions(txns: &[(String, i64)]) -> Vec<Transaction> {
    txns.iter().map(|(id, version)| Transaction::new(id, *version)).collect()
}

/// Merges the batch into `traffic` in one Delta commit that also records the batch's
/// application transactions (id, version): matching store-department-hours get the new counts added, the others
/// are inserted. Returns the committed version.
pub async fn merge_into_traffic(traffic: DeltaTable, batch: Batch, txns: &[(String, i64)]) -> Result<i64> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    let n = batch.len();
    let mut store = Vec::with_capacity(n);
    let mut department = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut footfall = Vec::with_capacity(n);
    let mut transactions = Vec::with_capacity(n);
    let mut revenue = Vec::with_capacity(n);
    let mut units = Vec::with_capacity(n);
    let mut month = Vec::with_capacity(n);
    let narrow = |v: i64, what: &str| i32::try_from(v).map_err(|_| Error::new(crate::error::ErrorKind::DataException, format!("{what} {v} does not fit the lake's int4")));
    debug_assert_eq!(MONEY_SCALE, 2, "revenue is summed in cents");
    for ((s, d, hour), mut t) in batch {
        store.push(s);
        department.push(d);
        ts.push(hour * 3_600_000_000);
        footfall.push(narrow(t.footfall, "footfall")?);
        transactions.push(narrow(t.transactions(), "transactions")?);
        if (t.revenue_cents as i128).unsigned_abs() >= 10u128.pow(schema::MONEY_PRECISION as u32) {
            return Err(Error::new(
                crate::error::ErrorKind::DataException,
                format!(
                    "revenue {} of one store-hour does not fit the lake's numeric({}, {MONEY_SCALE})",
                    rust_decimal::Decimal::new(t.revenue_cents, 2),
                    schema::MONEY_PRECISION
                ),
            ));
        }
        revenue.push(t.revenue_cents as i128);
        units.push(narrow(t.units, "units")?);
        let at = chrono::DateTime::from_timestamp(hour * 3600, 0).ok_or_else(|| Error::new(crate::error::ErrorKind::DataException, "an hour out of range"))?;
        let first = at.date_naive().with_day(1).expect("day 1");
        month.push((first - epoch).num_days() as i32);
    }
    let schema = schema::traffic_schema();
    let columns: Vec<Arc<dyn datafusion::arrow::array::Array>> = vec![
        Arc::new(Int32Array::from(store)),
        Arc::new(Int32Array::from(department)),
        Arc::new(TimestampMicrosecondArray::from(ts)),
        Arc::new(Int32Array::from(footfall)),
        Arc::new(Int32Array::from(transactions)),
        Arc::new(
            Decimal128Array::from(revenue)
                .with_precision_and_scale(schema::MONEY_PRECISION, MONEY_SCALE)
                .map_err(Error::from)?,
        ),
        Arc::new(Int32Array::from(units)),
        Arc::new(Date32Array::from(month)),
    ];
    let batch = RecordBatch::try_new(schema, columns).map_err(Error::from)?;
    let source = SessionContext::new().read_batch(batch).map_err(Error::from)?;
    let txns = app_transactions(txns);
    let (table, _metrics) = traffic
        .merge(source, "t.store_id = s.store_id AND t.department_id = s.department_id AND t.ts = s.ts AND t.month = s.month")
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
        .when_matched_update(|u| {
            u.update("footfall", "t.footfall + s.footfall")
                .update("transactions", "t.transactions + s.transactions")
                .update("revenue", "t.revenue + s.revenue")
                .update("units", "t.units + s.units")
        })
        .map_err(Error::from)?
        .when_not_matched_insert(|i| {
            ["store_id", "department_id", "ts", "footfall", "transactions", "revenue", "units", "month"]
                .into_iter()
                .fold(i, |i, c| i.set(c, format!("s.{c}")))
        })
        .map_err(Error::from)?
        .await
        .map_err(Error::from)?;
    Ok(table.version().unwrap_or_default() as i64)
}
