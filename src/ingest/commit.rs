//! The lake side of an ingest: whether a file was already ingested, and the one Delta commit
//! that merges a batch into `traffic` (reference rows: [`super::reference`]).

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

use super::batch::Batch;
use crate::error::{Error, Result};
use crate::storage::schema::{self, MONEY_SCALE, TrafficRow, TrafficRows};

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

/// The properties of an ingest batch's commit: its application transactions, and its
/// provenance (source, kind, files with their SHA-256 and rows), which the commit info keeps
/// and `lakecube.lake_history` shows.
pub fn properties(txns: &[(String, i64)], provenance: &serde_json::Value) -> CommitProperties {
    CommitProperties::default()
        .with_application_transactions(app_transactions(txns))
        .with_metadata([(crate::storage::PROVENANCE_KEY.to_string(), provenance.clone())])
}

/// Merges the batch into `traffic` in one Delta commit that also records the batch's
/// application transactions (id, version) and provenance ([`properties`]): matching store-department-hours get the new counts added, the others
/// are inserted. Returns the committed version.
pub async fn merge_into_traffic(lake: &crate::storage::Lake, traffic: DeltaTable, batch: Batch, txns: &[(String, i64)], provenance: &serde_json::Value) -> Result<i64> {
    let mut rows = TrafficRows::with_capacity(batch.len());
    let narrow = |v: i64, what: &str| i32::try_from(v).map_err(|_| Error::new(crate::error::ErrorKind::DataException, format!("{what} {v} does not fit the lake's int4")));
    debug_assert_eq!(MONEY_SCALE, 2, "revenue is summed in cents");
    for ((store_id, department_id, hour), mut t) in batch {
        let footfall = narrow(t.footfall, schema::traffic::FOOTFALL)?;
        let transactions = narrow(t.transactions(), schema::traffic::TRANSACTIONS)?;
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
        let units = narrow(t.units, schema::traffic::UNITS)?;
        let ts_micros = hour * 3_600_000_000;
        rows.push(TrafficRow { store_id, department_id, ts_micros, footfall, transactions, revenue_cents: t.revenue_cents as i128, units })?;
    }
    let batch = rows.finish()?;
    let source = SessionContext::new().read_batch(batch).map_err(Error::from)?;
    let mut merge = traffic.merge(source, schema::traffic::KEY.map(|c| format!("t.{c} = s.{c}")).join(" AND "));
    if let Some(p) = lake.writer_properties() {
        merge = merge.with_writer_properties(p);
    }
    if let Some(session) = lake.read_session() {
        merge = merge.with_session_state(session);
    }
    let (table, _metrics) = merge
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(properties(txns, provenance))
        .when_matched_update(|u| schema::traffic::COUNTS.into_iter().fold(u, |u, c| u.update(c, format!("t.{c} + s.{c}"))))
        .map_err(Error::from)?
        .when_not_matched_insert(|i| schema::traffic::COLUMNS.into_iter().fold(i, |i, c| i.set(c, format!("s.{c}"))))
        .map_err(Error::from)?
        .await
        .map_err(Error::from)?;
    Ok(table.version().unwrap_or_default() as i64)
}
