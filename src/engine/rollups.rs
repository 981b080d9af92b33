//! Rollups in the lake: building them, knowing which of their partitions are current, and
//! telling the rewrite ([`crate::semantic::rollup::Routing`]) at each statement.
//!
//! A rollup is a Delta table at `<lake>/_rollups/<cube>/<name>`, partitioned by its partition
//! column (`period_month`). Each partition is built by its own Delta commit (overwrite where
//! the partition column is that partition), so a build killed half-way leaves every partition
//! either as it was or rebuilt whole. Each commit records in its commit info
//! (`lakecube.rollup`) what the whole table was built from: the definition's fingerprint, the
//! version of each dimension table it stores columns of, and per partition the version of
//! the fact table it was built at and its row count.
//!
//! A partition is current when no commit of the fact table since that version added or
//! removed a file whose rows fall in the partition's period (file statistics of the time
//! column say where they fall; a file without them makes every partition stale). Routing
//! reads current partitions from the rollup and everything else from the lake.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use datafusion::arrow::array::Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::semantic::rollup::{self, RollupDef, RollupState, Routing};
use crate::storage::Lake;

/// The folder of the rollups under the lake root.
pub const ROLLUPS_DIR: &str = "_rollups";
/// The commit-info key of a rollup commit's record.
const RECORD_KEY: &str = "lakecube.rollup";

/// What a rollup's latest commit says it was built from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub fingerprint: String,
    /// Versions of the dimension tables whose columns the rollup stores.
    pub sources: BTreeMap<String, u64>,
    /// Per partition (its first day, or `all`): the fact table's version it was built at
    /// and its rows.
    pub partitions: BTreeMap<String, Built>,
    /// The Delta table id (`metaData.id`) of the fact table and of each source at the build: a
    /// table deleted and written again starts at version 0 too, with another id.
    #[serde(default)]
    pub ids: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Built {
    pub version: u64,
    pub rows: u64,
    /// Whether every instant of the partition starts its bucket ([`TimeSpec::exact_column`]).
    ///
    /// [`TimeSpec::exact_column`]: crate::semantic::rollup::TimeSpec::exact_column
    #[serde(default)]
    pub exact: bool,
    /// The distinct-count measures whose sets are pairwise disjoint across the partition's
    /// rows ([`RollupState::disjoint`]).
    #[serde(default)]
    pub disjoint: Vec<String>,
}

/// A Delta table followed version by version (a lake table or a rollup).
struct Tracked {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// Its folder in `store`.
    prefix: Path,
    table: tokio::sync::Mutex<Option<DeltaTable>>,
    version: RwLock<Option<u64>>,
    /// The table's Delta id, once loaded.
    id: RwLock<Option<String>>,
}

impl Tracked {
    fn new(lake: &Lake, name: &str) -> Result<Tracked> {
        let (store, prefix) = crate::storage::store_for_url(&lake.table_url(name))?;
        Ok(Tracked { name: name.to_string(), store, prefix, table: tokio::sync::Mutex::new(None), version: RwLock::new(None), id: RwLock::new(None) })
    }

    fn version(&self) -> Option<u64> {
        *self.version.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest version, reading the log only when a new commit file is there (one `head`).
    async fn refresh(&self, lake: &Lake) -> Result<Option<u64>> {
        let seen = self.version();
        let next = seen.map_or(0, |v| v + 1);
        let committed = crate::storage::latest::commit_exists(self.store.as_ref(), &self.prefix, next)
            .await
            .map_err(|e| Error::lake(format!("cannot read the log of {}: {e}", self.name)))?;
        if !committed {
            return Ok(seen);
        }
        let mut guard = self.table.lock().await;
        match guard.as_mut() {
            Some(t) => t.update_incremental(None).await.map_err(Error::from)?,
            None => *guard = lake.open_table(&self.name).await?,
        }
        let v = guard.as_ref().and_then(|t| t.version()).map(|v| v as u64);
        let id = guard
            .as_ref()
            .and_then(|t| t.snapshot().ok())
            .and_then(|s| serde_json::to_value(s.metadata()).ok())
            .and_then(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_string));
        *self.id.write().unwrap_or_else(|e| e.into_inner()) = id;
        *self.version.write().unwrap_or_else(|e| e.into_inner()) = v;
        Ok(v)
    }

    fn id(&self) -> Option<String> {
        self.id.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn table(&self) -> Option<DeltaTable> {
        self.table.lock().await.clone()
    }
}

/// The time range of each data file of a table version, from its statistics.
#[derive(Debug, Default)]
struct FileRanges {
    /// path → (min, max) µs of the time column; `None` when a file has no statistics for it.
    files: HashMap<String, Option<(i64, i64)>>,
    /// Whether some file may hold rows without a time.
    nulls: bool,
}

impl FileRanges {
    fn of(table: &DeltaTable, column: &str) -> Result<FileRanges> {
        let snapshot = table.snapshot().map_err(Error::from)?;
        let mut out = FileRanges::default();
        for f in snapshot.log_data().iter() {
            let stats: Option<serde_json::Value> = f.stats().and_then(|s| serde_json::from_str(&s).ok());
            let value = |key: &str| stats.as_ref().and_then(|s| s.get(key)).and_then(|m| m.get(column)).cloned();
            let range = match (value("minValues"), value("maxValues")) {
                (Some(serde_json::Value::String(a)), Some(serde_json::Value::String(b))) => rollup::parse_instant(&a).zip(rollup::parse_instant(&b)),
                _ => None,
            };
            let nulls = value("nullCount").and_then(|v| v.as_u64());
            if nulls != Some(0) {
                // A file where every row has no time has no min/max but a null count.
                out.nulls |= nulls.is_none_or(|n| n > 0);
            }
            // A delete through a deletion vector keeps the file's path: the vector is part of
            // what the file holds.
            let key = match f.deletion_vector_descriptor() {
                Some(dv) => format!("{}#{}@{:?}", f.path(), dv.path_or_inline_dv, dv.offset),
                None => f.path().to_string(),
            };
            out.files.insert(key, range);
        }
        Ok(out)
    }

    /// The first and last instants of the version's rows, when every file says.
    fn bounds(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for r in self.files.values() {
            let (a, b) = (*r)?;
            lo = lo.min(a);
            hi = hi.max(b);
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// What changed in a table between two versions: the time ranges of the files added or
/// removed, or `None` when some file's range is unknown (everything may have changed).
fn changed(before: &FileRanges, after: &FileRanges) -> Option<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    let only_in = |a: &FileRanges, b: &FileRanges| a.files.iter().filter(|(p, _)| !b.files.contains_key(*p)).map(|(_, r)| *r).collect::<Vec<_>>();
    for r in only_in(after, before).into_iter().chain(only_in(before, after)) {
        out.push(r?);
    }
    Some(out)
}

/// Use of one rollup by this server.
#[derive(Debug, Default)]
struct Usage {
    hits: AtomicU64,
    /// Seconds since 1970 of the last hit (0: never).
    last: AtomicU64,
}

/// The state routing last worked out, and for which versions.
#[derive(Debug, Default)]
struct View {
    key: Vec<Option<u64>>,
    routing: Arc<HashMap<String, Arc<RollupState>>>,
    records: HashMap<String, Option<Record>>,
    epoch: u64,
}

/// Rollups kept decoded in memory ("hot"), within a share of the engine's memory pool: a
/// query answered from one reads no file at all.
struct Hot {
    budget: usize,
    pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
    /// By rollup id: the Delta version kept, its provider, and its reservation in the pool.
    kept: Mutex<HashMap<String, (u64, Arc<dyn datafusion::catalog::TableProvider>, datafusion::execution::memory_pool::MemoryReservation)>>,
}

impl Hot {
    fn used(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).values().map(|(_, _, r)| r.size()).sum()
    }

    /// The provider to read `def` (`rows` rows) from at `version`: the rows in memory when
    /// they fit the budget (loaded now if they are not yet), else `files`.
    async fn provider(&self, ctx: &SessionContext, def: &RollupDef, version: u64, files: Arc<dyn datafusion::catalog::TableProvider>, file_bytes: u64, rows: u64) -> Arc<dyn datafusion::catalog::TableProvider> {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.get(&def.id) {
                Some((v, p, _)) if *v == version => return p.clone(),
                Some(_) => {
                    kept.remove(&def.id);
                }
                None => {}
            }
        }
        // Decoded rows take a few times their compressed files, and at least their fixed-width
        // columns' bytes.
        let fixed: usize = def.schema.fields().iter().filter_map(|f| f.data_type().primitive_width()).sum();
        let least = (file_bytes as usize).saturating_mul(3).max((rows as usize).saturating_mul(fixed));
        if least > self.budget.saturating_sub(self.used()) {
            return files;
        }
        // Read batch by batch, given up as soon as the rows outgrow what is left of the
        // budget: a rollup too large is never decoded whole just to learn it.
        let room = self.budget.saturating_sub(self.used());
        let Ok(df) = ctx.read_table(files.clone()) else { return files };
        let Ok(mut stream) = df.execute_stream().await else { return files };
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = futures::StreamExt::next(&mut stream).await {
            let Ok(b) = next.and_then(|b| Ok(RecordBatch::try_new(def.schema.clone(), b.columns().to_vec())?)) else { return files };
            bytes += b.get_array_memory_size();
            if bytes > room {
                tracing::debug!(rollup = %def.id, room, "rollup larger than what is left of the memory budget: read from its files");
                return files;
            }
            batches.push(b);
        }
        let reservation = datafusion::execution::memory_pool::MemoryConsumer::new(format!("hot rollup {}", def.id)).register(&self.pool);
        if reservation.try_grow(bytes).is_err() {
            return files;
        }
        // Spread over a few partitions, so that a scan of it runs on several threads.
        let parts = std::thread::available_parallelism().map_or(2, |n| n.get()).min(batches.len().max(1));
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
        for (i, b) in batches.into_iter().enumerate() {
            partitions[i % parts].push(b);
        }
        let Ok(table) = datafusion::datasource::MemTable::try_new(def.schema.clone(), partitions) else { return files };
        let provider: Arc<dyn datafusion::catalog::TableProvider> = Arc::new(table);
        tracing::debug!(rollup = %def.id, bytes, "rollup kept in memory");
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).insert(def.id.clone(), (version, provider.clone(), reservation));
        provider
    }
}

/// The rollups of one engine.
pub struct Rollups {
    lake: Lake,
    /// For reading rollups into memory.
    ctx: SessionContext,
    hot: Hot,
    defs: Vec<Arc<RollupDef>>,
    /// The lake tables the rollups read, then the rollups' own tables, by name.
    tracked: Vec<Tracked>,
    view: RwLock<Arc<View>>,
    recompute: tokio::sync::Mutex<()>,
    /// File ranges by (table, version), for the latest few versions.
    ranges: Mutex<HashMap<(String, u64), Arc<FileRanges>>>,
    usage: HashMap<String, Usage>,
}

/// A rollup's table name in the lake (`_rollups/traffic/daily_store_department`).
pub fn table_name(def: &RollupDef) -> String {
    format!("{ROLLUPS_DIR}/{}", def.id)
}

impl Rollups {
    /// The rollups `defs` of `lake`; up to `hot_budget` bytes of them are kept in memory,
    /// reserved in `pool`.
    pub fn new(lake: Lake, defs: Vec<Arc<RollupDef>>, ctx: SessionContext, pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool>, hot_budget: usize) -> Result<Rollups> {
        let mut names: Vec<String> = Vec::new();
        for d in &defs {
            for s in d.sources.iter().chain(d.root_table.iter()) {
                if !names.contains(s) {
                    names.push(s.clone());
                }
            }
        }
        names.extend(defs.iter().map(|d| table_name(d)));
        let tracked = names.iter().map(|n| Tracked::new(&lake, n)).collect::<Result<Vec<_>>>()?;
        let usage = defs.iter().map(|d| (d.id.clone(), Usage::default())).collect();
        let hot = Hot { budget: hot_budget, pool, kept: Mutex::default() };
        Ok(Rollups { lake, ctx, hot, defs, tracked, view: RwLock::default(), recompute: tokio::sync::Mutex::new(()), ranges: Mutex::default(), usage })
    }

    /// The epoch of the states last worked out (0 before any).
    pub fn epoch(&self) -> u64 {
        self.view.read().unwrap_or_else(|e| e.into_inner()).epoch
    }

    pub fn defs(&self) -> &[Arc<RollupDef>] {
        &self.defs
    }

    /// Whether the rollups' epoch follows the versions of lake table `name`.
    pub fn follows(&self, name: &str) -> bool {
        self.tracked(name).is_some()
    }

    fn tracked(&self, name: &str) -> Option<&Tracked> {
        self.tracked.iter().find(|t| t.name == name)
    }

    /// The routing for a statement at the lake's latest versions (a `head` per followed
    /// table; the states are worked out again only when a version moved), and its epoch: it
    /// changes whenever the states do, so a plan kept for one epoch is never used in another.
    pub async fn routing(&self, enabled: bool) -> Result<(Routing, u64)> {
        if self.defs.is_empty() {
            return Ok((Routing { enabled, states: Arc::default() }, 0));
        }
        match self.current().await {
            Ok(view) => Ok((Routing { enabled, states: view.routing.clone() }, view.epoch)),
            // The lake answers, as it always can: an unreadable log must not fail queries.
            Err(e) => {
                tracing::warn!("the rollups' state cannot be read, queries read the lake: {}", e.message);
                Ok((Routing { enabled, states: Arc::default() }, self.epoch()))
            }
        }
    }

    /// The state at the lake's latest versions.
    async fn current(&self) -> Result<Arc<View>> {
        let key = self.versions().await?;
        let view = self.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        if view.key == key && view.epoch > 0 { Ok(view) } else { self.recompute(key).await }
    }

    async fn versions(&self) -> Result<Vec<Option<u64>>> {
        futures::future::try_join_all(self.tracked.iter().map(|t| t.refresh(&self.lake))).await
    }

    async fn recompute(&self, key: Vec<Option<u64>>) -> Result<Arc<View>> {
        let _one = self.recompute.lock().await;
        let current = self.view.read().unwrap_or_else(|e| e.into_inner()).clone();
        if current.key == key && current.epoch > 0 {
            return Ok(current);
        }
        let mut states = HashMap::new();
        let mut records = HashMap::new();
        // Smallest first: the memory budget goes to as many rollups as fit, not to the first
        // large one.
        let mut by_size = Vec::new();
        for def in &self.defs {
            let bytes = match self.tracked(&table_name(def)) {
                Some(t) => t.table().await.map_or(0, |t| crate::storage::latest::file_bytes(&t)),
                None => 0,
            };
            by_size.push((bytes, def));
        }
        by_size.sort_by_key(|(bytes, _)| *bytes);
        for (_, def) in by_size {
            let (state, record) = match self.state_of(def).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(rollup = %def.id, "the rollup's state cannot be read, its queries read the lake: {}", e.message);
                    (RollupState { unusable: Some(format!("its state cannot be read: {}", e.message)), ..Default::default() }, None)
                }
            };
            states.insert(def.id.clone(), Arc::new(state));
            records.insert(def.id.clone(), record);
        }
        let view = Arc::new(View { key, routing: Arc::new(states), records, epoch: current.epoch + 1 });
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view.clone();
        Ok(view)
    }

    /// File ranges of `table`'s time column at `version`, kept for the next statements.
    async fn ranges_at(&self, table: &str, column: &str, version: u64) -> Result<Arc<FileRanges>> {
        let key = (format!("{table}.{column}"), version);
        if let Some(r) = self.ranges.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let tracked = self.tracked(table).ok_or_else(|| Error::internal(format!("{table} is not followed")))?;
        let loaded = match tracked.table().await {
            Some(t) if t.version() == Some(version) => t,
            _ => {
                let mut t = deltalake::DeltaTableBuilder::from_url(self.lake.table_url(table)).map_err(Error::from)?.build().map_err(Error::from)?;
                t.load_version(version).await.map_err(Error::from)?;
                t
            }
        };
        let ranges = Arc::new(FileRanges::of(&loaded, column)?);
        let mut kept = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() > 16 {
            kept.clear();
        }
        kept.insert(key, ranges.clone());
        Ok(ranges)
    }

    /// A rollup's record (its latest commit's) and its table's provider at that version.
    async fn record_of(&self, def: &RollupDef) -> Result<Option<(Record, DeltaTable)>> {
        let Some(tracked) = self.tracked(&table_name(def)) else { return Ok(None) };
        let Some(table) = tracked.table().await else { return Ok(None) };
        let Some(version) = table.version() else { return Ok(None) };
        let bytes = table.log_store().read_commit_entry(version).await.map_err(Error::from)?;
        let record = bytes.and_then(|b| {
            String::from_utf8_lossy(&b).lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                serde_json::from_value::<Record>(v.get("commitInfo")?.get(RECORD_KEY)?.clone()).ok()
            })
        });
        Ok(record.map(|r| (r, table)))
    }

    /// What routing may do with one rollup now.
    async fn state_of(&self, def: &RollupDef) -> Result<(RollupState, Option<Record>)> {
        let unusable = |why: String| RollupState { unusable: Some(why), ..Default::default() };
        let Some((record, table)) = self.record_of(def).await? else {
            return Ok((unusable("not built (`lakecube rollups build`)".into()), None));
        };
        if record.fingerprint != def.fingerprint {
            return Ok((unusable("built from another definition; the refresh rebuilds it".into()), Some(record)));
        }
        for (source, id) in &record.ids {
            if self.tracked(source).and_then(|t| t.id()).as_ref() != Some(id) {
                return Ok((unusable(format!("`{source}` was written anew since it was built")), Some(record)));
            }
        }
        for (source, v) in &record.sources {
            if self.tracked(source).and_then(|t| t.version()) != Some(*v) {
                return Ok((unusable(format!("`{source}` changed since it was built")), Some(record)));
            }
        }
        let provider = table.table_provider().await.map_err(Error::from)?;
        let stored = provider.schema();
        if stored.fields().len() != def.schema.fields().len() || stored.fields().iter().zip(def.schema.fields()).any(|(s, f)| s.name() != f.name() || s.data_type() != f.data_type()) {
            tracing::debug!(rollup = %def.id, stored = ?stored, defined = ?def.schema, "rollup schema differs");
            return Ok((unusable("its files' schema is not the definition's; the refresh rebuilds it".into()), Some(record)));
        }
        let file_bytes = crate::storage::latest::file_bytes(&table);
        let rows = record.partitions.values().map(|b| b.rows).sum();
        let provider = self.hot.provider(&self.ctx, def, table.version().unwrap_or_default(), provider, file_bytes, rows).await;
        let pinned: Option<Arc<dyn datafusion::catalog::TableProvider>> = Some(Arc::new(rollup::RollupTable::pinned(def, provider)));
        let Some(time) = &def.time else {
            let current = record.partitions.get(rollup::WHOLE).is_some_and(|b| Some(b.version) == self.root_version(def));
            let fresh = if current { vec![(i64::MIN, i64::MAX)] } else { vec![] };
            let disjoint = record.partitions.get(rollup::WHOLE).filter(|_| current).map(|b| b.disjoint.clone()).unwrap_or_default();
            return Ok((RollupState { fresh, rows, table: pinned, disjoint, all_fresh: current, ..Default::default() }, Some(record)));
        };
        let Some(root) = &def.root_table else {
            return Ok((unusable("its cube reads no lake table by name, so its freshness is unknown".into()), Some(record)));
        };
        let Some(lake_version) = self.root_version(def) else { return Ok((unusable(format!("the lake has no `{root}`")), Some(record))) };
        let column = time.source_column.clone();
        let (lake_bounds, lake_time_nulls) = match &column {
            Some(c) => {
                let r = self.ranges_at(root, c, lake_version).await?;
                (r.bounds(), r.nulls)
            }
            None => (None, true),
        };
        let mut fresh = Vec::new();
        let mut exact_time = true;
        let mut disjoint: Option<Vec<String>> = None;
        let mut all_fresh = true;
        // Changes since each version partitions were built at.
        let mut since: HashMap<u64, Option<Vec<(i64, i64)>>> = HashMap::new();
        for (name, built) in &record.partitions {
            let Some(start) = rollup::partition_start(name) else { continue };
            let end = rollup::next(start, time.partition);
            let changes = if built.version == lake_version {
                Some(vec![])
            } else if built.version > lake_version {
                None
            } else {
                match since.get(&built.version) {
                    Some(c) => c.clone(),
                    None => {
                        let c = match &column {
                            Some(col) => {
                                let before = self.ranges_at(root, col, built.version).await?;
                                let after = self.ranges_at(root, col, lake_version).await?;
                                changed(&before, &after)
                            }
                            None => None,
                        };
                        since.insert(built.version, c.clone());
                        c
                    }
                }
            };
            if changes.is_some_and(|c| c.iter().all(|(a, b)| *b < start || *a >= end)) {
                fresh.push((start, end));
                exact_time &= built.exact;
                let d = disjoint.get_or_insert_with(|| built.disjoint.clone());
                d.retain(|m| built.disjoint.contains(m));
            } else {
                all_fresh = false;
            }
        }
        let disjoint = disjoint.unwrap_or_default();
        let state = RollupState { unusable: None, fresh: rollup::merge_ranges(fresh), lake_bounds, lake_time_nulls, exact_time, disjoint, all_fresh, rows, table: pinned };
        Ok((state, Some(record)))
    }

    /// Whether the fact table has moved past `version` with a commit touching `range` (or
    /// anything, when it cannot tell).
    async fn moved_into(&self, def: &RollupDef, version: u64, range: Option<(i64, i64)>) -> Result<bool> {
        let (Some(root), Some(tracked)) = (&def.root_table, def.root_table.as_deref().and_then(|r| self.tracked(r))) else { return Ok(false) };
        let now = tracked.refresh(&self.lake).await?;
        if now == Some(version) || now.is_none() {
            return Ok(false);
        }
        let (Some(column), Some((start, end))) = (def.time.as_ref().and_then(|t| t.source_column.clone()), range) else { return Ok(true) };
        let before = self.ranges_at(root, &column, version).await?;
        let after = self.ranges_at(root, &column, now.unwrap_or(version)).await?;
        Ok(match changed(&before, &after) {
            Some(c) => c.iter().any(|(a, b)| *b >= start && *a < end),
            None => true,
        })
    }

    fn root_version(&self, def: &RollupDef) -> Option<u64> {
        def.root_table.as_deref().and_then(|r| self.tracked(r)).and_then(|t| t.version())
    }

    /// Counts a statement answered from rollup `id`.
    pub fn hit(&self, id: &str) {
        if let Some(u) = self.usage.get(id) {
            u.hits.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            u.last.store(now, Ordering::Relaxed);
        }
    }

    /// Builds the partitions of `def` that are missing or behind the lake (all of them when
    /// `full`, or when the rollup was built from another definition), one Delta commit each.
    /// Returns the partitions built.
    pub async fn refresh(&self, ctx: &SessionContext, def: &RollupDef, full: bool, progress: &(dyn Fn(&str, usize, usize) + Send + Sync)) -> Result<Vec<String>> {
        let view = self.current().await?;
        let record = view.records.get(&def.id).cloned().flatten();
        let state = view.routing.get(&def.id).cloned().unwrap_or_default();
        let rebuild_all = full || record.as_ref().is_none_or(|r| r.fingerprint != def.fingerprint) || state.unusable.is_some();
        let lake_version = self.root_version(def).unwrap_or(0);
        let sources: BTreeMap<String, u64> = def
            .sources
            .iter()
            .filter(|s| Some(*s) != def.root_table.as_ref())
            .filter_map(|s| self.tracked(s).and_then(|t| t.version()).map(|v| (s.clone(), v)))
            .collect();
        let wanted: Vec<(String, Option<(i64, i64)>)> = match &def.time {
            None => vec![(rollup::WHOLE.to_string(), None)],
            Some(t) => {
                let bounds = match (&def.root_table, &t.source_column) {
                    (Some(root), Some(c)) => self.ranges_at(root, c, lake_version).await?.bounds(),
                    _ => None,
                };
                let bounds = match bounds {
                    Some(b) => Some(b),
                    None => self.scan_bounds(ctx, def).await?,
                };
                let (lo, hi) = match bounds {
                    Some(b) => b,
                    None => return Ok(vec![]),
                };
                let (lo, hi) = self.build_range(ctx, def, lo, hi).await?;
                let mut out = Vec::new();
                let mut p = rollup::truncate(lo, t.partition);
                while p <= hi {
                    let end = rollup::next(p, t.partition);
                    out.push((rollup::partition_name(p), Some((p, end))));
                    p = end;
                }
                out
            }
        };
        let fresh = |range: &Option<(i64, i64)>| match range {
            None => state.fresh.iter().any(|(a, b)| *a == i64::MIN && *b == i64::MAX),
            Some((a, b)) => state.fresh.iter().any(|(x, y)| x <= a && b <= y),
        };
        let todo: Vec<&(String, Option<(i64, i64)>)> = wanted.iter().filter(|(_, r)| rebuild_all || !fresh(r)).collect();
        let mut record = if rebuild_all { Record { fingerprint: def.fingerprint.clone(), ..Default::default() } } else { record.unwrap_or_default() };
        record.sources = sources;
        record.ids = def
            .sources
            .iter()
            .chain(def.root_table.iter())
            .filter_map(|s| self.tracked(s).and_then(|t| t.id()).map(|id| (s.clone(), id)))
            .collect();
        let mut first = rebuild_all;
        let mut done = Vec::new();
        for (i, (name, range)) in todo.iter().enumerate() {
            progress(name, i, todo.len());
            let plan = def.build_plan(*range)?;
            let batches: Vec<RecordBatch> = ctx.execute_logical_plan(plan).await.map_err(Error::from)?.collect().await.map_err(Error::from)?;
            // The build read the fact table's latest version, which a commit may have moved
            // past `lake_version` meanwhile: if that commit touched this partition, which
            // version the rows are from is unknown, and the partition is left for the next
            // refresh.
            if self.moved_into(def, lake_version, *range).await? {
                tracing::info!(rollup = %def.id, partition = name.as_str(), "the lake changed this partition during its build; it is built again at the next refresh");
                continue;
            }
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            let exact = def.time.as_ref().is_some_and(|t| {
                batches.iter().all(|b| {
                    b.column_by_name(&t.exact_column)
                        .and_then(|c| c.as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>().map(|a| a.iter().all(|v| v != Some(false))))
                        .unwrap_or(false)
                })
            });
            let mut disjoint = Vec::new();
            for l in def.leaves.iter().filter(|l| l.stored().contains(&rollup::Partial::Size)) {
                let sets: Vec<_> = batches.iter().filter_map(|b| b.column_by_name(&l.column(rollup::Partial::Set)).cloned()).collect();
                if rollup::sets::disjoint(&sets).map_err(Error::from)? {
                    disjoint.push(l.measure.clone());
                }
            }
            record.partitions.insert(name.clone(), Built { version: lake_version, rows, exact, disjoint });
            self.commit(def, batches, name, range.is_some(), first, &record).await?;
            first = false;
            done.push(name.clone());
        }
        progress("", todo.len(), todo.len());
        Ok(done)
    }

    /// Writes one partition's rows in one commit: replacing that partition (or, `whole`, the
    /// table: a first build, or one from another definition), with the record.
    async fn commit(&self, def: &RollupDef, batches: Vec<RecordBatch>, partition: &str, timed: bool, whole: bool, record: &Record) -> Result<()> {
        let url = self.lake.table_url(&table_name(def));
        let table = match self.lake.open_table(&table_name(def)).await? {
            Some(t) => t,
            None => {
                if let Ok(path) = url.to_file_path() {
                    std::fs::create_dir_all(&path).map_err(|e| Error::lake(format!("cannot create {}: {e}", path.display())))?;
                }
                deltalake::DeltaTableBuilder::from_url(url).map_err(Error::from)?.build().map_err(Error::from)?
            }
        };
        let exists = table.version().is_some();
        let batches = if batches.is_empty() { vec![RecordBatch::new_empty(def.schema.clone())] } else { batches };
        let meta = serde_json::to_value(record).map_err(|e| Error::internal(e.to_string()))?;
        let mut write = table
            .write(batches)
            .with_commit_properties(CommitProperties::default().with_metadata([(RECORD_KEY.to_string(), meta)]));
        if let Some(properties) = self.lake.writer_properties() {
            write = write.with_writer_properties(properties);
        }
        if let Some(session) = self.lake.read_session() {
            write = write.with_session_state(session);
        }
        if let Some(t) = def.time.as_ref().filter(|_| timed) {
            write = write.with_partition_columns([t.partition_column.clone()]);
        }
        write = match (exists, whole, def.time.as_ref().filter(|_| timed)) {
            (false, _, _) => write.with_save_mode(SaveMode::Append),
            (true, true, _) | (true, false, None) => {
                write.with_save_mode(SaveMode::Overwrite).with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            }
            (true, false, Some(t)) => {
                let days = rollup::partition_start(partition).map(|s| (s / 86_400_000_000) as i32);
                write.with_save_mode(SaveMode::Overwrite).with_replace_where(col(t.partition_column.as_str()).eq(lit(ScalarValue::Date32(days))))
            }
        };
        write.await.map_err(Error::from)?;
        Ok(())
    }

    /// The time bounds of the rollup's rows when file statistics do not say: a scan.
    async fn scan_bounds(&self, ctx: &SessionContext, def: &RollupDef) -> Result<Option<(i64, i64)>> {
        let Some(t) = &def.time else { return Ok(None) };
        let plan = def.build_plan(None)?;
        let df = datafusion::dataframe::DataFrame::new(ctx.state(), plan)
            .aggregate(vec![], vec![
                datafusion::functions_aggregate::expr_fn::min(col(t.column.as_str())).alias("lo"),
                datafusion::functions_aggregate::expr_fn::max(col(t.column.as_str())).alias("hi"),
            ])
            .map_err(Error::from)?;
        let batches = df.collect().await.map_err(Error::from)?;
        let value = |name: &str| -> Option<i64> {
            let b = batches.first()?;
            let c = datafusion::arrow::compute::cast(b.column_by_name(name)?, &datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)).ok()?;
            let a = c.as_any().downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()?;
            a.is_valid(0).then(|| a.value(0))
        };
        Ok(value("lo").zip(value("hi")))
    }

    /// `[lo, hi]` cut to the rollup's build range (its SQL evaluated now).
    async fn build_range(&self, ctx: &SessionContext, def: &RollupDef, lo: i64, hi: i64) -> Result<(i64, i64)> {
        let eval = |sql: Option<String>| async move {
            let Some(sql) = sql else { return Ok::<Option<i64>, Error>(None) };
            let df = ctx.sql(&format!("SELECT CAST(({sql}) AS TIMESTAMP) AS t")).await.map_err(Error::from)?;
            let batches = df.collect().await.map_err(Error::from)?;
            let Some(b) = batches.first() else { return Ok(None) };
            let c = datafusion::arrow::compute::cast(b.column(0), &datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)).map_err(Error::from)?;
            let a = c.as_any().downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>().ok_or_else(|| Error::internal("build range"))?;
            Ok(a.is_valid(0).then(|| a.value(0)))
        };
        let start = eval(def.build_range.0.clone()).await?;
        let end = eval(def.build_range.1.clone()).await?;
        Ok((start.map_or(lo, |s| lo.max(s)), end.map_or(hi, |e| hi.min(e.saturating_sub(1)))))
    }

    /// One line per rollup for `lakecube rollups status`.
    pub async fn status(&self) -> Result<Vec<Status>> {
        let view = self.current().await?;
        let mut out = Vec::new();
        for def in &self.defs {
            let record = view.records.get(&def.id).cloned().flatten();
            let state = view.routing.get(&def.id).cloned().unwrap_or_default();
            let table = match self.tracked(&table_name(def)) {
                Some(t) => t.table().await,
                None => None,
            };
            let bytes = table
                .as_ref()
                .map(crate::storage::latest::file_bytes)
                .unwrap_or(0);
            let partitions = record.as_ref().map_or(0, |r| r.partitions.len());
            let stale = match (&record, &def.time) {
                (Some(r), Some(t)) if state.unusable.is_none() => r
                    .partitions
                    .keys()
                    .filter_map(|n| rollup::partition_start(n))
                    .filter(|s| !state.fresh.iter().any(|(a, b)| a <= s && rollup::next(*s, t.partition) <= *b))
                    .count(),
                (Some(r), _) => r.partitions.len(),
                (None, _) => 0,
            };
            let usage = self.usage.get(&def.id);
            out.push(Status {
                name: def.id.clone(),
                partitions,
                rows: state.rows,
                bytes,
                built_from: record.as_ref().and_then(|r| r.partitions.values().map(|b| b.version).max()),
                stale,
                problem: state.unusable.clone(),
                hits: usage.map_or(0, |u| u.hits.load(Ordering::Relaxed)),
                last_used: usage.map(|u| u.last.load(Ordering::Relaxed)).filter(|s| *s > 0),
            });
        }
        Ok(out)
    }

    /// Keeps every rollup current: every `every`, the partitions behind the lake are rebuilt.
    pub async fn keep_current(self: Arc<Self>, ctx: SessionContext, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            for def in self.defs.clone() {
                let started = std::time::Instant::now();
                let progress = |name: &str, i: usize, n: usize| {
                    if !name.is_empty() {
                        tracing::info!(rollup = %def.id, partition = name, "refreshing rollup partition {}/{}", i + 1, n);
                    }
                };
                match self.refresh(&ctx, &def, false, &progress).await {
                    Ok(done) if !done.is_empty() => {
                        tracing::info!(rollup = %def.id, partitions = done.len(), ms = started.elapsed().as_millis() as u64, "rollup refreshed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(rollup = %def.id, "rollup refresh failed: {}", e.message),
                }
                if shutdown.is_cancelled() {
                    return;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// One rollup, as `lakecube rollups status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub partitions: usize,
    pub rows: u64,
    pub bytes: u64,
    /// The newest fact-table version a partition was built at.
    pub built_from: Option<u64>,
    pub stale: usize,
    pub problem: Option<String>,
    pub hits: u64,
    pub last_used: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_timestamps_parse() {
        assert_eq!(rollup::parse_instant("1970-01-01T00:00:01.000Z"), Some(1_000_000));
        assert_eq!(rollup::parse_instant("1970-01-01T00:00:01.000"), Some(1_000_000));
        assert_eq!(rollup::parse_instant("1970-01-02"), Some(86_400_000_000));
        assert_eq!(rollup::parse_instant("soon"), None);
    }

    #[test]
    fn changes_are_the_files_added_or_removed() {
        let ranges = |files: &[(&str, Option<(i64, i64)>)]| FileRanges { files: files.iter().map(|(p, r)| (p.to_string(), *r)).collect(), nulls: false };
        let before = ranges(&[("a", Some((0, 10))), ("b", Some((20, 30)))]);
        let after = ranges(&[("a", Some((0, 10))), ("c", Some((40, 50)))]);
        let mut c = changed(&before, &after).unwrap();
        c.sort();
        assert_eq!(c, vec![(20, 30), (40, 50)]);
        let unknown = ranges(&[("a", Some((0, 10))), ("d", None)]);
        assert_eq!(changed(&before, &unknown), None);
        assert_eq!(after.bounds(), Some((0, 50)));
    }
}
