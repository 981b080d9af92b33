//! COPY out on the wire: the rows of a query streamed as CopyData messages, one per row as
//! PostgreSQL sends them (CopyOutResponse, CopyData…, CopyDone, `COPY n`), in the text, CSV or
//! binary format of [`crate::pg::copy`]. The rows come from the same bounded stream as a
//! SELECT's DataRows ([`super::cancel::data_rows`]: cancel, statement_timeout, the query log),
//! so server memory does not grow with the size of what is copied.
//!
//! Hand-written rather than pgwire's `Response::CopyOut` because pgwire 0.42 counts CopyData
//! messages as rows (a binary header or a batch of rows would be miscounted in `COPY n`), sends
//! the frontend's CopyFail message on an error mid-stream where PostgreSQL sends an
//! ErrorResponse, and its CSV encoder writes the empty string as it writes NULL.

use std::fmt::Debug;

use bytes::Bytes;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::results::{QueryResponse, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::DataRow;

use crate::error::{Error, ErrorKind};
use crate::pg::copy::{BINARY_HEADER, BINARY_TRAILER, CopyFormat, CopyTo, ForceQuote, text_row};

/// A COPY out ready to send: the rows of its query and how to write them.
pub struct CopyOut {
    rows: QueryResponse,
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
    /// `rows` must be encoded in text for the text and CSV formats, in binary for binary.
    pub fn new(rows: QueryResponse, copy: CopyTo) -> Result<CopyOut, Error> {
        let names: Vec<String> = rows.row_schema().iter().map(|f| f.name().to_string()).collect();
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
        Ok(CopyOut { rows, copy, quoted })
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
        let data = |bytes: Vec<u8>| PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(bytes)));
        // Binary: the signature goes out with the first row (or the trailer), as PostgreSQL
        // sends it (tokio-postgres reads both from one CopyData).
        let mut prefix = Vec::new();
        match &self.copy.format {
            CopyFormat::Binary => prefix.extend_from_slice(BINARY_HEADER),
            text if self.copy.header => {
                let names: Vec<Vec<u8>> = self.rows.row_schema().iter().map(|f| f.name().as_bytes().to_vec()).collect();
                let mut line = Vec::new();
                text_row(text, names.iter().map(|n| Some(n.as_slice())), &vec![false; columns], &mut line);
                client.feed(data(line)).await?;
            }
            _ => {}
        }
        let mut rows = 0usize;
        while let Some(row) = self.rows.data_rows().next().await {
            let row = row?;
            let mut bytes = std::mem::take(&mut prefix);
            self.encode(&row, &mut bytes)?;
            client.feed(data(bytes)).await?;
            rows += 1;
        }
        if self.copy.format == CopyFormat::Binary {
            prefix.extend_from_slice(BINARY_TRAILER);
            client.feed(data(prefix)).await?;
        }
        client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
        Ok(Tag::new("COPY").with_rows(rows))
    }

    /// Appends one row's CopyData to `out`: in binary the DataRow's own fields after the field count; in text
    /// and CSV its text values, escaped.
    fn encode(&self, row: &DataRow, out: &mut Vec<u8>) -> PgWireResult<()> {
        out.reserve(row.data.len() + 8);
        if self.copy.format == CopyFormat::Binary {
            out.extend_from_slice(&row.field_count.to_be_bytes());
            out.extend_from_slice(&row.data);
        } else {
            let mut fields = Fields { data: &row.data, malformed: false };
            text_row(&self.copy.format, &mut fields, &self.quoted, out);
            if fields.malformed || !fields.data.is_empty() {
                return Err(PgWireError::ApiError("a malformed row in COPY".into()));
            }
        }
        Ok(())
    }
}

/// The values of a DataRow's fields (`None` for NULL), read as they are written; `malformed`
/// is set if the row ends inside a field (the values read so far are kept).
struct Fields<'a> {
    data: &'a [u8],
    malformed: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = self.data.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            self.data = rest;
            return Some(None);
        }
        let Some((value, rest)) = rest.split_at_checked(len as usize) else {
            self.malformed = true;
            self.data = &[];
            return None;
        };
        self.data = rest;
        Some(Some(value))
    }
}
