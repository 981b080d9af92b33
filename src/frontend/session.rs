//! A connection's session state: its settings, the parameters it started with, its open
//! cursors. The statements that change them are in [`super::command`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::pg::settings::{SessionInfo, Settings};
use crate::error::{Error, Result};

/// An open cursor: its result stream, read forward on demand.
pub struct Cursor {
    pub schema: SchemaRef,
    pub binary: bool,
    pub hold: bool,
    reader: Arc<tokio::sync::Mutex<Reader>>,
}

/// A cursor's stream and the rest of a batch a FETCH cut.
struct Reader {
    stream: Option<SendableRecordBatchStream>,
    buffered: VecDeque<RecordBatch>,
}

impl Reader {
    /// The next batch of at most `want` rows; `None` at the end.
    async fn next_batch(&mut self, want: u64) -> Result<Option<RecordBatch>> {
        let batch = match self.buffered.pop_front() {
            Some(b) => b,
            None => match self.stream.as_mut() {
                Some(s) => match s.next().await {
                    Some(b) => b.map_err(Error::from)?,
                    None => {
                        self.stream = None;
                        return Ok(None);
                    }
                },
                None => return Ok(None),
            },
        };
        let rows = batch.num_rows() as u64;
        if rows <= want {
            return Ok(Some(batch));
        }
        self.buffered.push_front(batch.slice(want as usize, (rows - want) as usize));
        Ok(Some(batch.slice(0, want as usize)))
    }
}

impl Cursor {
    pub fn new(schema: SchemaRef, stream: SendableRecordBatchStream, binary: bool, hold: bool) -> Cursor {
        let reader = Reader { stream: Some(stream), buffered: VecDeque::new() };
        Cursor { schema, binary, hold, reader: Arc::new(tokio::sync::Mutex::new(reader)) }
    }

    /// Up to `n` rows (all that remain for `None`), read batch by batch as the stream is
    /// polled: a `FETCH ALL` holds one batch at a time, never the whole result. The cursor is
    /// locked for one batch at a time, so a FETCH left suspended in a portal never blocks the
    /// next FETCH of the same cursor.
    pub fn rows(&self, n: Option<u64>) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
        let start: (Arc<tokio::sync::Mutex<Reader>>, u64) = (self.reader.clone(), n.unwrap_or(u64::MAX));
        futures::stream::unfold(start, |(reader, want)| async move {
            if want == 0 {
                return None;
            }
            let next = reader.lock().await.next_batch(want).await;
            match next {
                Ok(Some(b)) => {
                    let left = want - b.num_rows() as u64;
                    Some((Ok(b), (reader, left)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), (reader, 0))),
            }
        })
    }
}

/// One connection's session state.
pub struct Session {
    pub user: String,
    pub settings: Settings,
    /// Settings given at startup, kept by `RESET ALL` / `DISCARD ALL`.
    pub startup: Vec<(String, String)>,
    pub cursors: HashMap<String, Cursor>,
}

/// Cursors one session may have open at once.
pub const MAX_CURSORS: usize = 64;

impl Session {
    /// A session for `user` with its startup parameters, on the server's default settings.
    /// `identity` is who the user is for `SET ROLE` (`None` without configured users).
    pub fn new(
        user: String,
        startup: &HashMap<String, String>,
        defaults: std::sync::Arc<std::collections::BTreeMap<String, String>>,
        identity: Option<std::sync::Arc<crate::pg::settings::Identity>>,
    ) -> Session {
        let mut settings = Settings::with_server_defaults(defaults).with_identity(identity);
        let mut kept = Vec::new();
        let mut params: Vec<(String, String)> = startup.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // `options=-c name=value -c …` (libpq's PGOPTIONS).
        if let Some(opts) = startup.get("options") {
            let mut parts = opts.split_whitespace();
            while let Some(p) = parts.next() {
                let kv = if p == "-c" { parts.next() } else { p.strip_prefix("--").or_else(|| p.strip_prefix("-c")) };
                if let Some((k, v)) = kv.and_then(|kv| kv.split_once('=')) {
                    params.push((k.replace('-', "_"), v.to_string()));
                }
            }
        }
        for (k, v) in params {
            if matches!(k.as_str(), "user" | "database" | "options" | "replication") {
                continue;
            }
            // Unknown startup parameters are ignored, as the issue of any driver's extra
            // parameters (ssl_renegotiation_limit, …) must not fail a connection.
            if settings.set(&k, &v).is_ok() {
                kept.push((k, v));
            }
        }
        let _ = settings.set("session_authorization", &user);
        Session { user, settings, startup: kept, cursors: HashMap::new() }
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo { user: self.user.clone(), settings: self.settings.clone() }
    }

    /// `RESET ALL`: back to the defaults and what the connection was opened with.
    pub fn reset_all(&mut self) {
        self.settings = Settings::with_server_defaults(self.settings.server_defaults()).with_identity(self.settings.identity());
        for (k, v) in &self.startup {
            let _ = self.settings.set(k, v);
        }
        let _ = self.settings.set("session_authorization", &self.user);
    }

    /// End of a transaction block: cursors without WITH HOLD close.
    pub fn end_transaction(&mut self) {
        self.cursors.retain(|_, c| c.hold);
    }
}

