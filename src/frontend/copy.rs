//! COPY out on the wire: the rows of a query streamed as CopyData messages, one per row as
//! PostgreSQL sends them (CopyOutResponse, CopyData…, CopyDone, `COPY n`), in the text, CSV or
//! binary format of [`crate::pg::copy`]. The rows come one batch at a time under the same
//! bounds as a SELECT's ([`super::cancel::guarded`]: cancel, statement_timeout, the query
//! log), so server memory does not grow with the size of what is copied. Text and CSV lines
//! are written straight from the values' text forms ([`super::encode::TextValues`], the bytes
//! a text DataRow would carry), binary ones from binary DataRows.
//!
//! Hand-written rather than pgwire's `Response::CopyOut` because pgwire 0.42 counts CopyData
//! messages as rows (a binary header or a batch of rows would be miscounted in `COPY n`), sends
//! the frontend's CopyFail message on an error mid-stream where PostgreSQL sends an
//! ErrorResponse, and its CSV encoder writes the empty string as it writes NULL.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::{FieldInfo, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};

use super::cancel::QueryLog;
use super::encode::{TextValues, encode_batch, to_pg_error};
use crate::error::{Error, ErrorKind};
use crate::pg::copy::{BINARY_HEADER, BINARY_TRAILER, CopyFormat, CopyTo, ForceQuote, text_field, text_row};

/// The most a batch's buffer is sized for up front (it grows past it as needed).
const MAX_RESERVE: usize = 4 << 20;

/// A COPY out ready to send: the batches of its query and how to write them.
pub struct CopyOut {
    /// Under the statement's cancel and timeout ([`super::cancel::guarded`]).
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
    /// The query's columns, in text format for the text and CSV formats, binary for binary.
    fields: Arc<Vec<FieldInfo>>,
    log: Arc<QueryLog>,
    copy: CopyTo,
    /// Per column: whether FORCE_QUOTE names it.
    quoted: Vec<bool>,
}

impl std::fmt::Debug for CopyOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOut").field("copy", &self.copy).finish()
    }
}

impl CopyOut {
    /// `fields` must be in the format [`CopyOut::wire_format`] gives.
    pub fn new(
        fields: Arc<Vec<FieldInfo>>,
        batches: BoxStream<'static, Result<RecordBatch, Error>>,
        log: Arc<QueryLog>,
        copy: CopyTo,
    ) -> Result<CopyOut, Error> {
        let names: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
        let quoted = match &copy.format {
            CopyFormat::Csv { force_quote: ForceQuote::All, .. } => vec![true; names.len()],
            CopyFormat::Csv { force_quote: ForceQuote::Columns(cols), .. } => {
                if let Some(c) = cols.iter().find(|c| !names.contains(c)) {
                    return Err(Error::new(ErrorKind::UndefinedColumn, format!("FORCE_QUOTE column \"{c}\" not referenced by COPY"))
                        .with_hint(format!("the columns copied are: {}", names.join(", "))));
                }
                names.iter().map(|n| cols.contains(n)).collect()
            }
            _ => vec![false; names.len()],
        };
        Ok(CopyOut { batches, fields, log, copy, quoted })
    }

    /// The format of the rows the query must produce.
    pub fn wire_format(copy: &CopyTo) -> pgwire::api::portal::Format {
        match copy.format {
            CopyFormat::Binary => pgwire::api::portal::Format::UnifiedBinary,
            _ => pgwire::api::portal::Format::UnifiedText,
        }
    }

    /// Sends the whole COPY out and returns its `COPY n` tag (not sent: the caller completes
    /// the command). An error mid-stream (a cancel, the statement timeout) is returned after
    /// the rows sent so far, as PostgreSQL ends a COPY with an ErrorResponse.
    ///
    /// The rows of a batch are written into one buffer, each row's CopyData a slice of it: one
    /// allocation a batch, not one a row.
    pub async fn send<C>(mut self, client: &mut C) -> PgWireResult<Tag>
    where
        C: Sink<PgWireBackendMessage> + Unpin,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let columns = self.quoted.len();
        let format = self.copy.format_code();
        client
            .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(format, columns as i16, vec![format as i16; columns])))
            .await?;
        let data = |bytes: Bytes| PgWireBackendMessage::CopyData(CopyData::new(bytes));
        // Binary: the signature goes out with the first row (or the trailer), as PostgreSQL
        // sends it (tokio-postgres reads both from one CopyData).
        let mut prefix = Vec::new();
        match &self.copy.format {
            CopyFormat::Binary => prefix.extend_from_slice(BINARY_HEADER),
            text if self.copy.header => {
                let mut line = Vec::new();
                text_row(text, self.fields.iter().map(|f| Some(f.name().as_bytes())), &vec![false; columns], &mut line);
                client.feed(data(line.into())).await?;
            }
            _ => {}
        }
        let mut rows = 0usize;
        let mut lines = Lines::default();
        // Bytes a row, from the batch before, so that a batch's buffer seldom grows; the hint
        // is bounded (a batch of a few huge values must not size the next one).
        let mut row_bytes = 64;
        while let Some(batch) = self.batches.next().await {
            let batch = batch.map_err(to_pg_error)?;
            if batch.num_rows() == 0 {
                continue;
            }
            lines.clear();
            lines.bytes.reserve(batch.num_rows().saturating_mul(row_bytes).min(MAX_RESERVE) + prefix.len());
            if self.copy.format == CopyFormat::Binary {
                lines.bytes.append(&mut prefix);
                self.binary_lines(&batch, &mut lines)?;
            } else {
                self.text_lines(&batch, &mut lines)?;
            }
            row_bytes = lines.bytes.len() / batch.num_rows() + 1;
            let bytes = Bytes::from(std::mem::take(&mut lines.bytes));
            let mut start = 0;
            for &end in &lines.ends {
                client.feed(data(bytes.slice(start..end))).await?;
                start = end;
            }
            rows += lines.ends.len();
            self.log.rows.fetch_add(lines.ends.len() as u64, Ordering::Relaxed);
        }
        if self.copy.format == CopyFormat::Binary {
            prefix.extend_from_slice(BINARY_TRAILER);
            client.feed(data(prefix.into())).await?;
        }
        client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
        Ok(Tag::new("COPY").with_rows(rows))
    }

    /// A batch's rows in the text or CSV format, written from its values' text forms.
    fn text_lines(&self, batch: &RecordBatch, lines: &mut Lines) -> PgWireResult<()> {
        let mut values = TextValues::new(batch, &self.fields)?;
        let mut value = Vec::new();
        for row in 0..batch.num_rows() {
            for col in 0..self.quoted.len() {
                let v = values.value(col, row, &mut value)?.then_some(value.as_slice());
                text_field(&self.copy.format, col, v, &self.quoted, &mut lines.bytes);
            }
            lines.bytes.push(b'\n');
            lines.ends.push(lines.bytes.len());
        }
        Ok(())
    }

    /// A batch's rows in the binary format: each binary DataRow's field count and fields.
    fn binary_lines(&self, batch: &RecordBatch, lines: &mut Lines) -> PgWireResult<()> {
        for row in encode_batch(batch, &self.fields)? {
            lines.bytes.extend_from_slice(&row.field_count.to_be_bytes());
            lines.bytes.extend_from_slice(&row.data);
            lines.ends.push(lines.bytes.len());
        }
        Ok(())
    }
}

/// The rows of one batch: their bytes, one after the other, and where each ends.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}
