//! `lakecube ingest`: raw exports into the lake, by a YAML source definition, exactly once
//! and atomically.
//!
//! A run reads each file of a source, or the spooled answer of its PostgreSQL query or HTTP
//! API ([`fetch`]), streamed ([`read`]: encoding and delimiter detected), maps its
//! headers to the kind's fields ([`fields`] over [`kinds`]: built-in English and French aliases
//! plus the source's), validates and parses every row (bad rows become rejects with file, line, raw text
//! and reason), resolves store and department codes against the lake's reference tables
//! (unknown codes are rejects unless `create_missing`), and aggregates to the lake's grain:
//! one row per store, department and hour (a `stores` or `departments` source upserts its
//! rows instead, [`reference`]). The whole batch is then merged into `traffic` in **one Delta commit**
//! ([`commit`]): a store-hour already in the lake gets the new counts added, a new one is
//! inserted. The commit carries one Delta application transaction per file, keyed by the
//! file's SHA-256, so a file already ingested (or a second copy in the same batch) is skipped
//! and a batch retried after a crash is committed once; and two per file name (`NameIds`, in `run`),
//! so a file that grew since it was ingested under that name is refused. A writing run holds
//! the lake's ingest lock ([`lock`]) from reading the lake to its last commit.
//!
//! The files, bottom up (each uses only files above it in this list; `mod.rs` only re-exports):
//!
//! 1. `kinds` (kinds of source and their field tables), `record` (the reader → sink interface),
//!    `report` (summary, file reports, the rejects file), `batch` (hourly totals);
//! 2. `source` (source definitions) → `kinds`;
//! 3. `fields` (header matching, value parsing) → `kinds`, `record`, `source`;
//! 4. `expr` (computed fields) → `fields`, `record`, `source`; `read` (the readers) → `record`,
//!    `source`; `fetch` (PostgreSQL and HTTP inputs) → `source`;
//! 5. `commit` (the Delta MERGE into `traffic`) → `batch`; `reference` (store and department
//!    members) → `commit`; `lock` (one writer per lake);
//! 6. `sink` (records into rows and the batch) → `batch`, `fields`, `kinds`, `record`,
//!    `reference`, `report`, `source`;
//! 7. `run` (the conductor) → everything above; `watch` (`--watch`) → `run`; `maintain` → `lock`.

mod batch;
pub mod commit;
pub mod expr;
pub mod fetch;
pub mod fields;
pub mod kinds;
pub mod lock;
pub mod maintain;
pub mod read;
pub mod record;
pub mod reference;
mod report;
mod run;
mod sink;
pub mod source;
mod watch;

pub use batch::{Batch, HourKey, HourTotals};
pub use report::{FileReport, Reject, Summary};
pub use run::{Options, app_id, run};
pub use watch::{MAX_RETRY_DELAY, check_watchable, is_transient, retry_delay, watch};
