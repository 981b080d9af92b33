//! The record interface between the readers ([`super::read`], [`super::expr`]) and what
//! consumes their records (the file sink): a record's [`Fields`], and the [`Sink`] that receives
//! the header row, each record and each reject.

use crate::error::Result;

/// A record's fields, however the format holds them.
pub trait Fields {
    fn get(&self, i: usize) -> Option<&str>;
    fn len(&self) -> usize;
    /// What joins the fields when the record is written out as text (a reject).
    fn separator(&self) -> String;
}

impl Fields for Vec<String> {
    fn get(&self, i: usize) -> Option<&str> {
        self.as_slice().get(i).map(String::as_str)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn separator(&self) -> String {
        " | ".to_string()
    }
}

/// What a reader hands the header row and each record to.
pub trait Sink {
    /// Called once, before any record.
    fn headers(&mut self, headers: &[String]) -> Result<()>;
    /// One record; `line` is its 1-based line (CSV, NDJSON), item (JSON array) or row (Parquet,
    /// xlsx) number.
    fn record(&mut self, line: u64, fields: &dyn Fields) -> Result<()>;
    /// A record the reader could not read (an unterminated quote, a line that is not JSON).
    fn unreadable(&mut self, line: u64, reason: String) -> Result<()>;
    /// A record read but refused before it reached [`Sink::record`] (an expression over it
    /// failed); by default reported as unreadable.
    fn reject(&mut self, line: u64, _fields: &dyn Fields, reason: String) -> Result<()> {
        self.unreadable(line, reason)
    }
}
