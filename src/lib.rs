//! lakecube: an OLAP cube server for retail analytics over a Delta/Parquet lake, spoken to
//! as PostgreSQL.
//!
//! A map of the code, front to back (dependencies point down this list, never up):
//!
//! - [`cli`]: the `lakecube` command line; wires the pieces together.
//! - [`frontend`]: the PostgreSQL wire protocol (pgwire): listener, connection loop, startup
//!   and authentication (`startup`, `auth`), the query path and simple query (`handler`),
//!   Parse/Bind/Describe/Execute (`extended`), session commands (`command`), cancel and
//!   timeouts (`cancel`), COPY out (`copy`), Arrow → wire encoding. Knows the engine (`Engine`, `Planned`) and
//!   `pg`, nothing of cubes or the lake.
//! - [`engine`]: a read-only DataFusion session over the lake (`lake.*` tables) and the
//!   cube tables (`public.*`): memory pool, CPU priority, plan cache, rollups, and each
//!   configured user's own session state (`access`: the tables and rows their policies give).
//! - [`pg`]: how DataFusion looks like PostgreSQL 15 (statement text, client-compatibility
//!   rewrite rules, result names, settings, COPY's syntax and formats, catalogs, functions); knows no cube and no lake,
//!   serves `frontend` and `engine`, depends only on `error`.
//! - [`semantic`]: cube definitions compiled into tables, and the rewrite of SQL over them
//!   into plans over the lake (measures computed at the query's grain), one DataFusion
//!   analyzer rule that no plan bypasses; tables restricted to a user's members and rows,
//!   the row filter under a policy barrier no predicate crosses.
//! - [`model`]: cube definitions (`cube-defs/*.yaml`): loading and validation; access
//!   policies evaluated for a user (`access`).
//! - [`datagen`]: `lakecube generate`, the deterministic retail data generator.
//! - [`ingest`]: `lakecube ingest`, raw exports (CSV, JSON, Parquet, spreadsheets, a
//!   PostgreSQL query, an HTTP API) into the lake by YAML source definitions, streamed,
//!   exactly once, in one Delta commit per batch.
//! - [`storage`]: the lake: locations (local, S3, memory), Delta tables, their schemas, and
//!   encryption at rest of their Parquet files (`crypto`).
//! - Leaves: [`config`] (layered settings; it imports only `error` and `pg::settings`'s
//!   duration grammar), [`error`] (one error type, one SQLSTATE map), [`telemetry`] (logging,
//!   the record of recent failed statements), [`audit`] (the audit log of statements and
//!   logins: JSON-lines files and the latest records for `lakecube.query_log`).

pub mod audit;
pub mod cli;
pub mod config;
pub mod datagen;
pub mod engine;
pub mod error;
pub mod frontend;
pub mod ingest;
pub mod model;
pub mod pg;
pub mod semantic;
pub mod storage;
pub mod telemetry;

/// mimalloc for every binary linking lakecube (server, tests, benches): planning allocates
/// many small objects, and glibc's malloc/free were a fifth of planning time (perf, see
/// docs/performance.md). DataFusion's own CLI makes the same choice.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
