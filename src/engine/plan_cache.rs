//! A cache of optimized plans for repeated cube statements.
//!
//! Dashboards send the same statements again and again (every refresh, every viewer), and a
//! cube statement costs 1–6 ms to plan, about half of it parsing, the cube rewrite and
//! DataFusion's logical optimizer (for `SELECT * FROM retail`: 0.7 + 1.7 ms of 5; physical
//! planning is the rest). [`PlanCache`] keeps the *optimized logical* plan of a
//! statement, keyed by its text and everything of the session the text's planning depends on
//! (user and settings, which [`crate::pg::rewrite::rewrite_session`] substitutes into the statement).
//!
//! What makes a cached plan still right when it is used again:
//! - Data: the plan's table scans are [`crate::storage::latest::LatestTable`]s, which find the
//!   lake table's latest commit when the *physical* plan is made; physical planning is never
//!   cached, so a batch ingested since shows on the next run.
//! - Time and chance: the optimizer folds `now()`, `current_date` and the like into constants,
//!   so a plan calling any function that is not immutable is never cached.
//! - Parameters: a plan with `$n` placeholders is never cached (its values come later).
//! - Only plans over cubes, over the catalogs (`pg_catalog`, `information_schema`: the
//!   statements drivers and BI tools send while browsing, 3 ms each to plan), or over no table
//!   at all (`SELECT 1`, which pools and drivers send to check a connection, `SELECT
//!   version()`), with no side effect on the session, are kept. A catalog table's rows are
//!   made when the plan runs, from the engine's tables, fixed for its lifetime; a few catalog
//!   functions declared stable but fixed in the same way ([`CATALOG_STABLE`]) may be called.
//!   A constant or catalog statement costs little to run: planning is most of its round trip,
//!   and once it has run, its rows are kept with its plan ([`answer_is_fixed`],
//!   [`super::constant`]).
//!
//! The cache is bounded (least recently used entries go first) and shared by all sessions of
//! one engine; the model and the lake's table schemas are fixed for an engine's lifetime.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan, Volatility};

use super::Planned;
use crate::pg::settings::Settings;

/// How many plans an engine keeps by default.
pub const DEFAULT_ENTRIES: usize = 256;

/// What a statement's plan depends on besides the lake's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub sql: String,
    pub user: String,
    pub settings: Settings,
    /// The rollups' epoch the plan was made in ([`super::rollups::Rollups::routing`]): a plan
    /// that reads a rollup is only right while its partitions' freshness is what it was.
    pub rollups: u64,
}

/// How many statements came from the cache, and how many plans were stored in it (for tests
/// and benchmarks; statements that may not be cached count in neither).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub stored: u64,
}

pub struct PlanCache {
    entries: Option<Mutex<lru::LruCache<Key, Planned>>>,
    hits: AtomicU64,
    stored: AtomicU64,
}

impl PlanCache {
    /// A cache of `capacity` plans; 0 turns caching off.
    pub fn new(capacity: usize) -> PlanCache {
        PlanCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(lru::LruCache::new(c))),
            hits: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub fn get(&self, key: &Key) -> Option<Planned> {
        let entries = self.entries.as_ref()?;
        let found = entries.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    pub fn put(&self, key: Key, planned: Planned) {
        if let Some(entries) = &self.entries {
            entries.lock().unwrap_or_else(|e| e.into_inner()).put(key, planned);
            self.stored.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> Stats {
        Stats { hits: self.hits.load(Ordering::Relaxed), stored: self.stored.load(Ordering::Relaxed) }
    }
}

/// Whether an optimized plan still holds a subquery expression DataFusion's physical planner
/// cannot run: a correlated one its optimizer could not turn into a join (it runs
/// uncorrelated scalar subqueries, and fails on more than one row, as PostgreSQL does).
pub fn has_subquery_expressions(plan: &LogicalPlan) -> bool {
    any_expression(plan, |e| match e {
        Expr::ScalarSubquery(s) => !s.outer_ref_columns.is_empty(),
        Expr::Exists(_) | Expr::InSubquery(_) => true,
        _ => false,
    })
}

/// Whether any expression of `plan` or of its subqueries, at any depth, is one `pred` finds.
fn any_expression(plan: &LogicalPlan, pred: impl Fn(&Expr) -> bool) -> bool {
    any_node(plan, |node| {
        let mut found = false;
        let _ = node.apply_expressions(|e| {
            e.apply(|e| {
                found |= pred(e);
                Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
            })
        });
        found
    })
}

/// Whether a cacheable plan's answer is fixed for the engine's lifetime, so that its rows may
/// be kept ([`super::constant`]): it reads no table, or only catalog tables whose rows are
/// made from what is fixed for the engine (not [`LIVE_CATALOG_TABLES`]).
pub(crate) fn answer_is_fixed(plan: &LogicalPlan) -> bool {
    !reads_tables_other_than(plan, fixed_catalog_table)
}

/// Whether an optimized plan answered from rollups has one answer for as long as the
/// rollups' epoch it was planned in lasts, so that its rows may be kept with it
/// ([`super::constant`]): every table it reads is a fixed catalog table, a rollup pinned at
/// one version, or a lake table whose versions the epoch follows (`followed`: a rollup's
/// sources; the raw side of a partly stale rollup, the dimension tables its rows join). The
/// epoch moves with any commit to those tables, and a kept plan is used only after the check
/// that it has not ([`super::Engine::plan_uncached`]).
pub(crate) fn answer_is_fixed_in_epoch(plan: &LogicalPlan, followed: impl Fn(&dyn datafusion::catalog::TableProvider) -> bool) -> bool {
    !reads_tables_other_than(plan, |scan| {
        fixed_catalog_table(scan) || datafusion::datasource::source_as_provider(&scan.source).is_ok_and(|p| followed(p.as_ref()))
    })
}

/// Whether a scan reads a catalog table whose rows are fixed for the engine's lifetime.
fn fixed_catalog_table(scan: &TableScan) -> bool {
    catalog_table(scan) && !LIVE_CATALOG_TABLES.contains(&scan.table_name.table())
}

fn catalog_table(scan: &TableScan) -> bool {
    scan.table_name.schema().is_some_and(|s| CATALOG_SCHEMAS.contains(&s))
}

/// Catalog tables whose rows describe the server's live state rather than its fixed model
/// (sessions, locks, a session's prepared statements and cursors, statistics): a statement
/// reading one is planned once but run every time. (lakecube fills none of them with live rows
/// yet; the list keeps them out when it does.)
const LIVE_CATALOG_TABLES: &[&str] = &[
    "pg_stat_activity",
    "pg_locks",
    "pg_prepared_statements",
    "pg_cursors",
    "pg_prepared_xacts",
    "pg_stat_database",
    "pg_stat_user_tables",
    "pg_stat_all_tables",
    "pg_statio_user_tables",
    "pg_stat_statements",
];

/// Whether a plan, or a subquery of it, reads a table that is not a catalog's.
fn reads_non_catalog_tables(plan: &LogicalPlan) -> bool {
    reads_tables_other_than(plan, catalog_table)
}

/// Whether a plan, or a subquery of it, scans a table `keep` does not accept (a cube's
/// extension node counts as such a table).
fn reads_tables_other_than(plan: &LogicalPlan, keep: impl Fn(&TableScan) -> bool) -> bool {
    any_node(plan, |node| match node {
        LogicalPlan::TableScan(scan) => !keep(scan),
        LogicalPlan::Extension(_) => true,
        _ => false,
    })
}

/// Whether any node of `plan` or of its subqueries, at any depth, is one `pred` finds.
fn any_node(plan: &LogicalPlan, pred: impl Fn(&LogicalPlan) -> bool) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found |= pred(node);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// Whether a freshly planned (not yet optimized) statement may be optimized once and reused:
/// a query over cubes or over no table at all (`SELECT 1`, a driver's `SELECT version()`),
/// with no placeholders, no effect on the session's settings, and only immutable functions
/// (see the module documentation).
pub fn cacheable(planned: &Planned) -> bool {
    if (planned.cube_queries.is_empty() && reads_non_catalog_tables(&planned.plan)) || !planned.setting_changes.is_empty() {
        return false;
    }
    if matches!(
        planned.plan,
        LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_)
    ) {
        return false;
    }
    !any_expression(&planned.plan, |e| match e {
        Expr::Placeholder(_) => true,
        Expr::ScalarFunction(f) => {
            f.func.signature().volatility != Volatility::Immutable && !CATALOG_STABLE.contains(&f.func.name())
        }
        _ => false,
    })
}

/// Catalog functions declared stable whose answer depends only on what is fixed for an
/// engine's lifetime (its tables, types and roles) and on the key's user and settings: a plan
/// calling them may be kept. (Not the size functions: an ingest changes a table's bytes.)
const CATALOG_STABLE: &[&str] = &[
    "format_type",
    "pg_get_expr",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_collation_is_visible",
    "quote_ident",
];

/// The schemas of PostgreSQL's catalogs: their tables' rows are made when a plan runs, from
/// the engine's tables, which are fixed for its lifetime.
const CATALOG_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];


#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{LogicalPlanBuilder, logical_plan::table_scan};

    fn scan(name: &str) -> datafusion::logical_expr::LogicalPlan {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
        table_scan(Some(name), &schema, None).and_then(LogicalPlanBuilder::build).expect("scan")
    }

    #[test]
    fn fixed_answers_read_only_the_fixed_catalog() {
        assert!(super::answer_is_fixed(&scan("pg_catalog.pg_class")));
        assert!(super::answer_is_fixed(&scan("information_schema.tables")));
        assert!(!super::answer_is_fixed(&scan("pg_catalog.pg_stat_activity")), "live state");
        assert!(!super::answer_is_fixed(&scan("lake.traffic")), "the lake changes");
        assert!(!super::answer_is_fixed(&scan("retail")), "a cube reads the lake");
    }
}
