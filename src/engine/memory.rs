//! How much memory and spill disk the engine may use: one DataFusion memory pool for the whole
//! server, a share of it per query, headroom kept for small queries, and a cap on spill files.
//!
//! Every query runs with its own [`QueryPool`] in front of the server's pool
//! ([`Memory::for_query`]). Operators that can spill (sorts, aggregations) spill to disk when
//! their reservation is refused; the others fail the query with `ResourcesExhausted`, which
//! SQL clients receive as SQLSTATE 53200 (out_of_memory). Other sessions carry on.
//!
//! Two rules keep one query from starving the others:
//! - a query may hold at most `query_memory_limit` (default: half of `memory_limit`);
//! - the last eighth of `memory_limit` is headroom only queries still small (under a
//!   sixty-fourth of `memory_limit`) may take, so that a dashboard's aggregation still gets
//!   memory while a runaway sort or join fills the pool.
//!
//! The pool only sees what operators reserve (hash tables, sort buffers, join build sides);
//! Parquet decoding, batches in flight and scalar-function results are outside it, which is
//! why the default `memory_limit` is half the machine's memory, not all of it
//! (docs/config.md, docs/performance.md).

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::error::{Error, Result};

/// Default cap on spill files, all queries together.
pub const DEFAULT_SPILL_LIMIT: u64 = 10 << 30;

/// The engine's memory and spill settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// Bytes all queries together may reserve.
    pub limit: usize,
    /// Bytes one query may reserve.
    pub query_limit: usize,
    /// Where spill files go (the OS temp dir when `None`).
    pub spill_dir: Option<PathBuf>,
    /// Bytes of spill files all queries together may write.
    pub spill_limit: u64,
}

impl MemoryConfig {
    /// Defaults for this machine: half of its memory (or of its cgroup's limit, when lower),
    /// half of that per query.
    pub fn for_machine() -> MemoryConfig {
        MemoryConfig::with_limit(machine_memory() / 2)
    }

    /// `limit` bytes in all, half of them per query, spill files in the OS temp dir.
    pub fn with_limit(limit: usize) -> MemoryConfig {
        MemoryConfig { limit, query_limit: limit / 2, spill_dir: None, spill_limit: DEFAULT_SPILL_LIMIT }
    }

    fn check(&self) -> Result<()> {
        if self.limit < 64 << 20 {
            return Err(Error::config(format!("memory_limit {} is below the 64MB the engine needs", human(self.limit)))
                .with_hint("give memory_limit in bytes or with a unit, e.g. 4GB"));
        }
        if self.query_limit == 0 || self.query_limit > self.limit {
            return Err(Error::config(format!(
                "query_memory_limit {} must be more than 0 and at most memory_limit ({})",
                human(self.query_limit),
                human(self.limit)
            ))
            .with_hint("e.g. memory_limit: 8GB, query_memory_limit: 4GB"));
        }
        Ok(())
    }
}

/// The server's memory pool and spill disk; [`Memory::for_query`] gives each query its share.
#[derive(Debug, Clone)]
pub struct Memory {
    config: MemoryConfig,
    shared: Arc<dyn MemoryPool>,
    runtime: Arc<RuntimeEnv>,
}

impl Memory {
    /// The pool and disk manager for `config` (checked).
    pub fn new(config: MemoryConfig) -> Result<Memory> {
        config.check()?;
        // TrackConsumersPool names the largest consumers in the error a refused query gets.
        let top = NonZeroUsize::new(3).expect("3 > 0");
        let shared: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(FairSpillPool::new(config.limit), top));
        let mode = match &config.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(format!("cannot create the spill folder {}: {e}", dir.display()))
                        .with_hint("set spill_dir to a writable folder")
                })?;
                DiskManagerMode::Directories(vec![dir.clone()])
            }
            None => DiskManagerMode::OsTmpDirectory,
        };
        let disk = DiskManagerBuilder::default().with_mode(mode).with_max_temp_directory_size(config.spill_limit);
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(shared.clone())
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(Error::from)?;
        Ok(Memory { config, shared, runtime })
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// The runtime the session is built on: the shared pool and the spill disk.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    /// Bytes reserved now, all queries together.
    pub fn reserved(&self) -> usize {
        self.shared.reserved()
    }

    /// A runtime for one query: `base` (the session's, with its object stores) with this
    /// query's own pool in front of the shared one.
    pub fn for_query(&self, base: &RuntimeEnv) -> Result<Arc<RuntimeEnv>> {
        let pool = QueryPool {
            shared: self.shared.clone(),
            used: AtomicUsize::new(0),
            limit: self.config.query_limit,
            pool_limit: self.config.limit,
            headroom: self.config.limit / 8,
            small: self.config.limit / 64,
        };
        // Same disk manager, caches and object stores; only the pool differs.
        RuntimeEnvBuilder::from_runtime_env(base).with_memory_pool(Arc::new(pool)).build_arc().map_err(Error::from)
    }
}

/// One query's share of the shared pool (see the module docs for its two rules).
#[derive(Debug)]
struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    used: AtomicUsize,
    limit: usize,
    pool_limit: usize,
    headroom: usize,
    small: usize,
}

impl QueryPool {
    /// Whether this query may take `additional` more bytes, by its two rules (the shared pool
    /// then applies its own).
    fn admit(&self, used: usize, additional: usize) -> std::result::Result<(), String> {
        let after = used.saturating_add(additional);
        if after > self.limit {
            return Err(format!(
                "the query needs more than its share of the server's memory (query_memory_limit {}; {} held, {} more asked)",
                human(self.limit),
                human(used),
                human(additional)
            ));
        }
        if after > self.small && self.shared.reserved().saturating_add(additional) > self.pool_limit - self.headroom {
            return Err(format!(
                "the server's memory pool is nearly full ({} of memory_limit {} reserved; the last {} is kept for small queries)",
                human(self.shared.reserved()),
                human(self.pool_limit),
                human(self.headroom)
            ));
        }
        Ok(())
    }
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query(limit: {}) over {}", human(self.limit), self.shared)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        // Count first, so that two operators of one query growing at once cannot both pass.
        let used = self.used.fetch_add(additional, Ordering::Relaxed);
        let outcome = match self.admit(used, additional) {
            Ok(()) => self.shared.try_grow(reservation, additional),
            Err(why) => Err(DataFusionError::ResourcesExhausted(format!(
                "{why}, for {}",
                reservation.consumer().name()
            ))),
        };
        if outcome.is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
        }
        outcome
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// Bytes as PostgreSQL prints memory settings (`512MB`, `4GB`).
pub fn human(bytes: usize) -> String {
    const UNITS: &[(&str, usize)] = &[("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= *size && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    for (unit, size) in UNITS {
        if bytes >= *size {
            return format!("{:.1}{unit}", bytes as f64 / *size as f64);
        }
    }
    format!("{bytes}B")
}

/// The memory this process may use: the machine's, or its cgroup's limit when lower.
pub fn machine_memory() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kb| kb.saturating_mul(1024))
        // Not Linux: assume a small machine rather than none.
        .unwrap_or(4 << 30);
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|v| v.trim().parse::<usize>().ok());
    match cgroup {
        Some(c) if c > 0 && c < total => c,
        _ => total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name).register(pool)
    }

    #[test]
    fn a_query_gets_its_share_and_no_more() {
        let memory = Memory::new(MemoryConfig { query_limit: 256 << 20, ..MemoryConfig::with_limit(1 << 30) }).unwrap();
        let base = RuntimeEnvBuilder::new().build().unwrap();
        let q = memory.for_query(&base).unwrap().memory_pool.clone();
        let r = reservation(&q, "join");
        r.try_grow(200 << 20).unwrap();
        let e = r.try_grow(100 << 20).unwrap_err().to_string();
        assert!(e.contains("query_memory_limit 256MB"), "{e}");
        assert_eq!(memory.reserved(), 200 << 20, "a refused grow reserves nothing");
        drop(r);
        assert_eq!(memory.reserved(), 0, "a dropped reservation frees its memory");
    }

    #[test]
    fn big_queries_leave_headroom_for_small_ones() {
        // 1 GB pool: headroom 128 MB, "small" up to 16 MB, a query may hold 1 GB.
        let memory = Memory::new(MemoryConfig { query_limit: 1 << 30, ..MemoryConfig::with_limit(1 << 30) }).unwrap();
        let base = RuntimeEnvBuilder::new().build().unwrap();
        let (a, b) = (memory.for_query(&base).unwrap().memory_pool.clone(), memory.for_query(&base).unwrap().memory_pool.clone());
        let big = reservation(&a, "sort");
        big.try_grow(880 << 20).unwrap();
        let e = big.try_grow(20 << 20).unwrap_err().to_string();
        assert!(e.contains("kept for small queries"), "{e}");
        let small = reservation(&b, "dashboard");
        small.try_grow(10 << 20).expect("a small query still gets memory from the headroom");
        let e = small.try_grow(10 << 20).unwrap_err().to_string();
        assert!(e.contains("nearly full"), "past 16 MB it is no longer small: {e}");
    }

    #[test]
    fn limits_are_checked() {
        assert!(Memory::new(MemoryConfig::with_limit(1 << 20)).is_err());
        assert!(Memory::new(MemoryConfig { query_limit: 2 << 30, ..MemoryConfig::with_limit(1 << 30) }).is_err());
        assert!(machine_memory() > 64 << 20);
        assert_eq!(human(4 << 30), "4GB");
        assert_eq!(human(1536 << 20), "1536MB");
    }
}
