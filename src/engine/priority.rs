//! CPU priority: a heavy statement runs on a background thread pool that the operating
//! system schedules below the interactive one, so a dashboard keeps answering while a cross
//! join grinds on.
//!
//! Memory admission ([`super::memory`]) keeps hostile statements from exhausting RAM, but
//! not from taking every core: on one tokio runtime, eight CPU-bound statements and a
//! dashboard's query share the workers evenly, and the dashboard waits nine times as long.
//! So each statement is classed before it runs, by the work its physical plan is estimated
//! to do ([`estimated_rows`]: the rows every operator is estimated to produce, summed, from
//! DataFusion's statistics: Parquet footers, join and filter estimates):
//! - up to `background_rows` (default [`DEFAULT_BACKGROUND_ROWS`]) it is **interactive** and
//!   runs where the connection runs, as before;
//! - beyond it, or a cross or nested-loop join of unknown size, it is **background**: it
//!   runs on a runtime of its own whose threads have a lower OS priority (Linux nice
//!   [`BACKGROUND_NICE`]), and its batches reach the connection through a one-batch channel.
//!   All background statements together share that pool's threads (as many as cores), so
//!   eight of them cannot outnumber the interactive workers, and the kernel gives the
//!   interactive threads the CPU whenever both want it. On an idle server a background
//!   statement runs at full speed: priority only matters under contention.
//!
//! This is DataFusion's own advice for latency under concurrent load (a separate runtime for
//! CPU-bound plans, the `thread_pools` example) with ClickHouse's `os_thread_priority` for
//! the lower class; the class is decided up front, like Trino's first scheduling level, not
//! by demotion (a running plan's tasks cannot move between runtimes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};

/// Statements estimated to produce more rows than this, summed over their operators, run at
/// background priority (100 million: a cross join of any fact table, a join that explodes;
/// not a grouped scan of a month of hourly facts).
pub const DEFAULT_BACKGROUND_ROWS: u64 = 100_000_000;
/// The background threads' nice value on Linux (0 is normal, 19 the lowest): the kernel
/// weighs a nice-10 thread at about a tenth of a normal one.
pub const BACKGROUND_NICE: i32 = 10;

/// How statements are classed and where background ones run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityConfig {
    /// The estimated rows beyond which a statement is background; `None`: all interactive.
    pub background_rows: Option<u64>,
    /// Threads of the background pool.
    pub threads: usize,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            background_rows: Some(DEFAULT_BACKGROUND_ROWS),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A statement's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

/// The rows `plan` is estimated to produce, summed over every operator (saturating): a
/// measure of the work it will do. Operators without an estimate count nothing, except a
/// cross or nested-loop join, whose unknown size counts as unbounded (every row of one side
/// meets every row of the other).
pub fn estimated_rows(plan: &dyn ExecutionPlan) -> u64 {
    fn walk(plan: &dyn ExecutionPlan, stats: &StatisticsContext, total: &mut u64) {
        let rows = stats
            .compute(plan, &StatisticsArgs::new())
            .ok()
            .and_then(|s| s.num_rows.get_value().copied());
        let rows = match rows {
            Some(n) => n as u64,
            None if plan.is::<CrossJoinExec>() || plan.is::<NestedLoopJoinExec>() => u64::MAX,
            None => 0,
        };
        *total = total.saturating_add(rows);
        for child in plan.children() {
            walk(child.as_ref(), stats, total);
        }
    }
    let mut total = 0;
    walk(plan, &StatisticsContext::new(), &mut total);
    total
}

/// The statement classes and the background pool.
#[derive(Clone)]
pub struct Priorities {
    /// The estimated rows beyond which a statement is background, and the pool it runs on;
    /// `None`: every statement is interactive.
    background: Option<(u64, Arc<Pool>)>,
}

/// The background runtime; shut down without waiting when the engine goes (a runtime may
/// not be dropped inside another's worker).
struct Pool(Option<tokio::runtime::Runtime>);

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pool {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle())
    }
}

impl Priorities {
    /// Starts the background pool, unless every statement is interactive.
    pub fn new(config: PriorityConfig) -> Result<Priorities> {
        let Some(limit) = config.background_rows else { return Ok(Priorities { background: None }) };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("lakecube-background")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the background query pool: {e}")))?;
        Ok(Priorities { background: Some((limit, Arc::new(Pool(Some(runtime))))) })
    }

    /// The class of a statement with this physical plan.
    pub fn class(&self, plan: &dyn ExecutionPlan) -> Priority {
        match &self.background {
            Some((limit, _)) if estimated_rows(plan) > *limit => Priority::Background,
            _ => Priority::Interactive,
        }
    }

    /// Runs `plan` in its class: interactive ones here, background ones on the pool.
    pub fn execute(&self, plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let pool = self.background.as_ref().and_then(|(_, pool)| pool.handle());
        match pool {
            Some(runtime) if self.class(plan.as_ref()) == Priority::Background => {
                tracing::debug!("statement runs at background priority");
                Ok(on_runtime(runtime, plan, task))
            }
            _ => datafusion::physical_plan::execute_stream(plan, task).map_err(Error::from),
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux: a thread's nice value is its own).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id, no memory passed.
        let failed = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE) != 0
        };
        if failed {
            tracing::warn!("cannot lower a background query thread's priority: {}", std::io::Error::last_os_error());
        }
    }
}

/// Executes `plan` in a task on `runtime` (so the tasks its operators spawn run there too),
/// its batches coming back through a channel of one.
fn on_runtime(runtime: &tokio::runtime::Handle, plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> SendableRecordBatchStream {
    let schema = plan.schema();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let join = runtime.spawn(async move {
        let mut stream = match datafusion::physical_plan::execute_stream(plan, task) {
            Ok(stream) => stream,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        while let Some(batch) = stream.next().await {
            let failed = batch.is_err();
            if tx.send(batch).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(Bridge { schema, rx, join })
}

/// The connection's end of a background statement. Dropping it (the client went, a
/// timeout, a cancel) aborts the statement's task, which drops its plan.
struct Bridge {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<datafusion::error::Result<RecordBatch>>,
    join: tokio::task::JoinHandle<()>,
}

impl Stream for Bridge {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        // The channel closed: the task ended, or panicked. A panic goes on here, where
        // the connection's guard turns it into an error (as DataFusion's own tasks do),
        // never a result that silently ends early.
        match Pin::new(&mut self.join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(None),
            Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(datafusion::error::DataFusionError::Execution(format!(
                "the statement's background task ended early: {e}"
            ))))),
        }
    }
}

impl RecordBatchStream for Bridge {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.join.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    async fn physical(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap()
    }

    /// A 3-row table `t`, and `thread(n)`: the name of the thread that computes it.
    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) v(n, s)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let thread = |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(std::thread::current().name().map(str::to_string))))
        };
        ctx.register_udf(create_udf("thread", vec![DataType::Int64], DataType::Utf8, Volatility::Volatile, Arc::new(thread)));
        ctx
    }

    async fn run(p: &Priorities, ctx: &SessionContext, plan: &Arc<dyn ExecutionPlan>) -> Vec<RecordBatch> {
        let stream = p.execute(plan.clone(), ctx.task_ctx()).unwrap();
        datafusion::physical_plan::common::collect(stream).await.unwrap()
    }

    fn at(rows: Option<u64>) -> Priorities {
        Priorities::new(PriorityConfig { background_rows: rows, threads: 1 }).unwrap()
    }

    #[tokio::test]
    async fn estimates_follow_the_plan() {
        let ctx = context().await;
        let scan = estimated_rows(physical(&ctx, "SELECT n FROM t").await.as_ref());
        assert!((3..100).contains(&scan), "a 3-row scan estimated at {scan}");
        // A cross join is estimated at its product, over and above its inputs.
        let cross = estimated_rows(physical(&ctx, "SELECT a.n FROM t a, t b, t c").await.as_ref());
        assert!(cross >= 27 + scan, "a 27-row cross join estimated at {cross}");
        // A cross join with a side of unknown size (a recursive query) counts as unbounded.
        let unknown = "WITH RECURSIVE r(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM r WHERE v < 10) SELECT a.n, r.v FROM t a, r";
        assert_eq!(estimated_rows(physical(&ctx, unknown).await.as_ref()), u64::MAX);
    }

    #[tokio::test]
    async fn classes_follow_the_threshold() {
        let ctx = context().await;
        let plan = physical(&ctx, "SELECT a.n FROM t a, t b").await;
        assert_eq!(at(Some(1)).class(plan.as_ref()), Priority::Background);
        assert_eq!(at(Some(1_000_000)).class(plan.as_ref()), Priority::Interactive);
        assert_eq!(at(None).class(plan.as_ref()), Priority::Interactive);
    }

    #[tokio::test]
    async fn background_statements_run_on_the_pool_and_answer_the_same() {
        let ctx = context().await;
        let plan = physical(&ctx, "SELECT a.n, b.s, thread(a.n) AS thread FROM t a, t b ORDER BY 1, 2").await;
        let threads = |batches: &[RecordBatch]| -> Vec<Option<String>> {
            batches
                .iter()
                .flat_map(|b| {
                    let col = b.column(2).as_any().downcast_ref::<StringArray>().unwrap().clone();
                    (0..col.len()).map(move |i| col.is_valid(i).then(|| col.value(i).to_string()))
                })
                .collect()
        };
        let background = run(&at(Some(1)), &ctx, &plan).await;
        let interactive = run(&at(None), &ctx, &plan).await;
        assert_eq!(threads(&background), vec![Some("lakecube-background".to_string()); 9]);
        assert!(threads(&interactive).iter().all(|t| t.as_deref() != Some("lakecube-background")));
        let without_threads = |batches: &[RecordBatch]| {
            let cut: Vec<RecordBatch> = batches.iter().map(|b| b.project(&[0, 1]).unwrap()).collect();
            datafusion::arrow::util::pretty::pretty_format_batches(&cut).unwrap().to_string()
        };
        assert_eq!(without_threads(&background), without_threads(&interactive));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_threads_have_a_lower_os_priority() {
        // The nice value of the thread that computes each row, read by that thread itself (not
        // by listing the process's threads: other tests' pools start threads whose nice value
        // is not yet set when they are listed).
        let ctx = context().await;
        let nice = |_: &[ColumnarValue]| {
            // SAFETY: plain system calls about the calling thread's own id.
            let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) };
            Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(n))))
        };
        ctx.register_udf(create_udf("nice", vec![DataType::Int64], DataType::Int32, Volatility::Volatile, Arc::new(nice)));
        let plan = physical(&ctx, "SELECT thread(n), nice(n) FROM t").await;
        let batches = run(&at(Some(0)), &ctx, &plan).await;
        let mut seen = Vec::new();
        for b in &batches {
            let (names, nices) = (b.column(0).as_any().downcast_ref::<StringArray>().unwrap(), b.column(1).as_any().downcast_ref::<datafusion::arrow::array::Int32Array>().unwrap());
            seen.extend((0..b.num_rows()).map(|i| (names.value(i).to_string(), nices.value(i))));
        }
        assert!(!seen.is_empty() && seen.iter().all(|(name, _)| name == "lakecube-background"), "{seen:?}");
        assert!(seen.iter().all(|(_, n)| *n == BACKGROUND_NICE), "{seen:?}");
    }

    #[tokio::test]
    async fn a_dropped_background_statement_stops() {
        let ctx = context().await;
        // Unbounded work: it ends only when aborted.
        let plan = physical(&ctx, "SELECT count(*) FROM generate_series(1, 9000000000000) a").await;
        let p = at(Some(0));
        let mut stream = p.execute(plan, ctx.task_ctx()).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
        assert!(first.is_err(), "the count cannot have finished");
        drop(stream);
        // The pool's one thread is free again: a small statement answers (the timeout only
        // guards against a hang).
        let small = physical(&ctx, "SELECT 1").await;
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), run(&p, &ctx, &small)).await;
        assert_eq!(answered.expect("the aborted statement still holds the pool")[0].num_rows(), 1);
    }
}
