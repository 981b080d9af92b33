//! Raw exports to records, streamed: memory stays bounded whatever the file's size.
//!
//! A file is read twice. [`probe`] (pass one) hashes it (SHA-256, the exactly-once key, and
//! optionally of its first bytes, to recognise a grown file), checks it is not empty and has no line longer than [`MAX_LINE`] (a 2 GB line is an error,
//! not 2 GB of memory), and settles the encoding (byte-order mark, UTF-16 without one, strict
//! UTF-8, else chardetng's guess such as Windows-1252) and the CSV delimiter, unless the source
//! names them. Pass two ([`read_csv`], [`read_json`], [`read_parquet`], [`read_xlsx`]) hands
//! each record to a [`Sink`]; the `csv` crate reads quoted fields with embedded delimiters and
//! newlines, and CRLF line ends. Pass two hashes exactly the bytes it parses ([`Hashing`]) and
//! fails if they are not the bytes pass one hashed: a file rewritten or grown between the two
//! passes is an error, never rows of one content recorded under the hash of another.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use encoding_rs::Encoding;
use sha2::Digest;

use super::record::{Fields, Sink};
use super::source::CsvOptions;
use crate::error::{Error, Result};

/// The longest line a text export may have: longer is not a row-per-line export.
pub const MAX_LINE: usize = 16 << 20;
const CHUNK: usize = 1 << 20;
/// How much of the start of a file the delimiter and UTF-16 detection look at.
const PREFIX: usize = 64 << 10;

fn bad(file: &str, message: String) -> Error {
    Error::new(crate::error::ErrorKind::DataException, format!("{file}: {message}"))
}

fn io(file: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData => bad(file, e.to_string()),
        _ => Error::config(format!("cannot read {file}: {e}")),
    }
}

/// What pass one learnt of a file.
#[derive(Debug, Clone)]
pub struct Probe {
    pub sha256: String,
    pub bytes: u64,
    /// The SHA-256 of the first `prefix_len` bytes asked of [`probe`], when the file is longer.
    pub prefix_sha256: Option<String>,
    pub encoding: &'static Encoding,
    /// Length of the byte-order mark to skip.
    pub bom: usize,
    pub delimiter: u8,
    /// Whether lines end with CRLF (the csv crate then places a record's start one line early).
    pub crlf: bool,
}

impl Probe {
    pub fn delimiter_name(&self) -> String {
        match self.delimiter {
            b'\t' => "\\t".to_string(),
            d => (d as char).to_string(),
        }
    }
}

/// Incremental UTF-8 validation over chunks (a character may straddle two).
#[derive(Default)]
struct Utf8Check {
    carry: Vec<u8>,
    valid: bool,
}

impl Utf8Check {
    fn feed(&mut self, chunk: &[u8]) {
        if !self.valid {
            return;
        }
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            joined = [self.carry.as_slice(), chunk].concat();
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(_) => self.carry.clear(),
            Err(e) if e.error_len().is_none() => self.carry = data[e.valid_up_to()..].to_vec(),
            Err(_) => self.valid = false,
        }
    }

    fn finish(&self) -> bool {
        self.valid && self.carry.is_empty()
    }
}

/// Pass one over a file (see the module's doc). `text`: whether the format is text (CSV,
/// JSON); a binary format (Parquet, xlsx) is only hashed. With `prefix_len`, also hashes the
/// first `prefix_len` bytes of a file longer than that.
pub fn probe(path: &Path, options: &CsvOptions, file: &str, text: bool, prefix_len: Option<u64>) -> Result<Probe> {
    let mut f = std::fs::File::open(path).map_err(|e| io(file, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut prefix: Vec<u8> = Vec::new();
    let (mut total, mut blank, mut line, mut line_len) = (0u64, true, 1u64, 0usize);
    let mut utf8 = Utf8Check { valid: true, ..Default::default() };
    let mut detector: Option<chardetng::EncodingDetector> = None;
    let mut prefix_sha256 = None;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(file, e)),
        };
        let chunk = &buf[..n];
        if let Some(p) = prefix_len.filter(|p| prefix_sha256.is_none() && (total..total + n as u64).contains(p)) {
            let mut h = hasher.clone();
            h.update(&chunk[..(p - total) as usize]);
            prefix_sha256 = Some(hex::encode(h.finalize()));
        }
        hasher.update(chunk);
        total += n as u64;
        if !text {
            continue;
        }
        if prefix.len() < PREFIX {
            prefix.extend_from_slice(&chunk[..n.min(PREFIX - prefix.len())]);
        }
        blank = blank && chunk.iter().all(|b| b.is_ascii_whitespace());
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if line_len + i > MAX_LINE {
                break;
            }
            line += 1;
            line_len = 0;
            rest = &rest[i + 1..];
        }
        line_len += rest.len();
        if line_len > MAX_LINE {
            return Err(bad(file, format!("line {line} is longer than {} MiB: this is not a row-per-line export", MAX_LINE >> 20))
                .with_hint("check the file is the export you meant (not a binary or a one-line dump), and its line ends"));
        }
        utf8.feed(chunk);
        if !utf8.valid {
            detector.get_or_insert_with(chardetng::EncodingDetector::new).feed(chunk, false);
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    if !text {
        if total == 0 {
            return Err(bad(file, "the file is empty".into()).with_hint("check that the export finished writing"));
        }
        return Ok(Probe { sha256, bytes: total, prefix_sha256, encoding: encoding_rs::UTF_8, bom: 0, delimiter: b',', crlf: false });
    }
    if blank {
        return Err(bad(file, "the file is empty".into()).with_hint("check that the export finished writing"));
    }
    let declared = options.encoding.as_deref().filter(|e| !e.eq_ignore_ascii_case("auto"));
    let (encoding, bom) = match declared {
        Some(label) => {
            let enc = Encoding::for_label(label.as_bytes()).ok_or_else(|| {
                Error::config(format!("{file}: unknown encoding `{label}`")).with_hint("use utf-8, windows-1252, latin1, utf-16le, utf-16be or auto")
            })?;
            let bom = match Encoding::for_bom(&prefix) {
                Some((b, len)) if b == enc => len,
                _ => 0,
            };
            if enc == encoding_rs::UTF_8 && !utf8.finish() {
                return Err(not_valid(file, enc));
            }
            (enc, bom)
        }
        None => detect(&prefix, utf8.finish(), detector),
    };
    let (head, _) = encoding.decode_without_bom_handling(&prefix[bom..]);
    // Only whole lines of the prefix: the last may be cut.
    let head = if total as usize > prefix.len() { head.rsplit_once('\n').map(|(h, _)| h).unwrap_or(&head).to_string() } else { head.into_owned() };
    let delimiter = match options.delimiter.as_deref().filter(|d| !d.eq_ignore_ascii_case("auto")) {
        Some("\\t") | Some("\t") | Some("tab") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        Some(d) => return Err(Error::config(format!("{file}: delimiter `{d}` is not one character")).with_hint("use \",\", \";\", \"|\", \"\\t\" or auto")),
        None => sniff_delimiter(&head),
    };
    Ok(Probe { sha256, bytes: total, prefix_sha256, encoding, bom, delimiter, crlf: head.contains("\r\n") })
}

fn not_valid(file: &str, enc: &'static Encoding) -> Error {
    bad(file, format!("the file has bytes that are not valid {}", enc.name()))
        .with_hint("fix the export, or set `csv: {encoding: auto}` to let lakecube detect it")
}

fn detect(prefix: &[u8], utf8: bool, detector: Option<chardetng::EncodingDetector>) -> (&'static Encoding, usize) {
    if let Some((enc, len)) = Encoding::for_bom(prefix) {
        return (enc, len);
    }
    // UTF-16 without a byte-order mark: text in ASCII range leaves every other byte zero.
    let sample = &prefix[..prefix.len().min(4096)];
    let zeros_at = |parity: usize| sample.iter().skip(parity).step_by(2).filter(|b| **b == 0).count();
    let half = sample.len() / 2;
    if half > 8 {
        for (parity, enc) in [(1, encoding_rs::UTF_16LE), (0, encoding_rs::UTF_16BE)] {
            if zeros_at(parity) * 10 > half * 8 {
                return (enc, 0);
            }
        }
    }
    if utf8 {
        return (encoding_rs::UTF_8, 0);
    }
    let mut detector = detector.unwrap_or_else(chardetng::EncodingDetector::new);
    detector.feed(&[], true);
    (detector.guess(None, true), 0)
}

/// Pass two's input: the file's bytes as UTF-8, decoded strictly from its encoding (a byte
/// that is not valid there is an error naming its offset, not a replacement character), and
/// NUL bytes refused (a binary file). `encoding_rs_io` only decodes with replacement, hence
/// this small adapter over `encoding_rs`'s streaming decoder.
pub struct Decode<R> {
    inner: R,
    /// `None` for UTF-8, which pass one validated: bytes pass through.
    decoder: Option<encoding_rs::Decoder>,
    encoding: &'static Encoding,
    raw: Vec<u8>,
    raw_len: usize,
    raw_pos: usize,
    out: Vec<u8>,
    out_pos: usize,
    out_len: usize,
    offset: u64,
    eof: bool,
    finished: bool,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn refuse_nul(bytes: &[u8]) -> std::io::Result<()> {
    match memchr::memchr(0, bytes) {
        Some(_) => Err(invalid("the file holds NUL bytes: it is binary, not a text export".into())),
        None => Ok(()),
    }
}

impl<R: Read> Decode<R> {
    pub fn new(mut inner: R, encoding: &'static Encoding, bom: usize) -> std::io::Result<Decode<R>> {
        let mut skip = vec![0u8; bom];
        inner.read_exact(&mut skip)?;
        let decoder = (encoding != encoding_rs::UTF_8).then(|| encoding.new_decoder_without_bom_handling());
        Ok(Decode {
            inner,
            decoder,
            encoding,
            raw: vec![0; 64 << 10],
            raw_len: 0,
            raw_pos: 0,
            out: vec![0; 3 * (64 << 10) + 16],
            out_pos: 0,
            out_len: 0,
            offset: bom as u64,
            eof: false,
            finished: false,
        })
    }
}

impl<R: Read> Read for Decode<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            let n = self.inner.read(buf)?;
            refuse_nul(&buf[..n])?;
            return Ok(n);
        };
        while self.out_pos == self.out_len {
            if self.finished {
                return Ok(0);
            }
            if self.raw_pos == self.raw_len && !self.eof {
                self.raw_len = self.inner.read(&mut self.raw)?;
                self.raw_pos = 0;
                self.eof = self.raw_len == 0;
            }
            let (result, read, written) = decoder.decode_to_utf8_without_replacement(&self.raw[self.raw_pos..self.raw_len], &mut self.out, self.eof);
            self.raw_pos += read;
            self.offset += read as u64;
            self.out_pos = 0;
            self.out_len = written;
            match result {
                encoding_rs::DecoderResult::Malformed(..) => {
                    return Err(invalid(format!("the file has bytes that are not valid {} (near byte {})", self.encoding.name(), self.offset)));
                }
                encoding_rs::DecoderResult::InputEmpty if self.eof => self.finished = true,
                _ => {}
            }
            refuse_nul(&self.out[..written])?;
        }
        let n = buf.len().min(self.out_len - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

struct CsvFields<'a>(&'a csv::StringRecord, u8);

impl Fields for CsvFields<'_> {
    fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn separator(&self) -> String {
        (self.1 as char).to_string()
    }
}

/// A reader that hashes (SHA-256) and counts every byte read through it.
pub struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hasher: sha2::Sha256::new(), bytes: 0 }
    }

    /// Reads whatever the parser left unread, then checks that the bytes read are the ones
    /// pass one hashed.
    pub fn verify(mut self, probe: &Probe, file: &str) -> Result<()> {
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| io(file, e))?;
        if self.bytes == probe.bytes && hex::encode(self.hasher.finalize()) == probe.sha256 {
            return Ok(());
        }
        Err(bad(file, "the file changed while it was being ingested; nothing of it was written".into())
            .with_hint("ingest it again once it is complete (write exports under another name and rename them when done)"))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens the file for pass two: its bytes, hashed as they are read.
fn open_hashed(path: &Path, file: &str) -> Result<Hashing<std::fs::File>> {
    Ok(Hashing::new(std::fs::File::open(path).map_err(|e| io(file, e))?))
}

/// Pass two over a text file: `records` parses its decoded text, then the bytes read are
/// checked against pass one's hash.
fn read_text(path: &Path, probe: &Probe, file: &str, records: impl FnOnce(Decode<&mut Hashing<std::fs::File>>) -> Result<()>) -> Result<()> {
    let mut bytes = open_hashed(path, file)?;
    records(Decode::new(&mut bytes, probe.encoding, probe.bom).map_err(|e| io(file, e))?)?;
    bytes.verify(probe, file)
}

/// A private copy of a binary file (Parquet, xlsx: read by offset, not in one stream), made
/// while hashing it and checked against pass one's hash: pass two parses the copy, whose bytes
/// are the ones hashed. Keeps the file's extension (calamine picks the format by it).
fn checked_copy(path: &Path, probe: &Probe, file: &str) -> Result<tempfile::NamedTempFile> {
    let suffix = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let mut copy = tempfile::Builder::new().suffix(&suffix).tempfile().map_err(|e| Error::config(format!("cannot make a temporary copy of {file}: {e}")))?;
    let mut bytes = open_hashed(path, file)?;
    std::io::copy(&mut bytes, copy.as_file_mut()).map_err(|e| Error::config(format!("cannot make a temporary copy of {file}: {e}")))?;
    bytes.verify(probe, file)?;
    Ok(copy)
}

/// Pass two for CSV.
pub fn read_csv(path: &Path, probe: &Probe, file: &str, sink: &mut dyn Sink) -> Result<()> {
    read_text(path, probe, file, |text| csv_records(text, probe.delimiter, probe.crlf, file, sink))
}

/// CSV records from any UTF-8 reader.
pub fn csv_records(input: impl Read, delimiter: u8, crlf: bool, file: &str, sink: &mut dyn Sink) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).buffer_capacity(1 << 16).from_reader(input);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim_start_matches('\u{feff}').to_string()).collect(),
        Err(e) => return Err(csv_error(file, e)),
    };
    sink.headers(&headers)?;
    let mut record = csv::StringRecord::new();
    // The csv crate counts lines by line feeds from a record's start; after a CRLF the start
    // is the line feed ending the previous line, one line early.
    let shift = crlf as u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map(|p| p.line() + shift).unwrap_or(0);
                sink.record(line, &CsvFields(&record, delimiter))?;
            }
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(csv_error(file, e));
                }
                let line = e.position().map(|p| p.line() + shift).unwrap_or(0);
                sink.unreadable(line, e.to_string())?;
            }
        }
    }
}

fn csv_error(file: &str, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => io(file, e),
        other => bad(file, format!("{other:?}")),
    }
}

/// Pass two for JSON: an array of objects (streamed item by item) or one object per line
/// (NDJSON). The header row is the first object's keys; a later object's values are read by
/// those keys (missing or `null` is empty, numbers and booleans as written).
pub fn read_json(path: &Path, probe: &Probe, file: &str, sink: &mut dyn Sink) -> Result<()> {
    read_text(path, probe, file, |text| json_records(text, file, sink))
}

/// JSON records from any UTF-8 reader.
pub fn json_records(input: impl Read, file: &str, sink: &mut dyn Sink) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let array = loop {
        let buf = reader.fill_buf().map_err(|e| io(file, e))?;
        let Some(&b) = buf.first() else { return sink.headers(&[]) };
        if b.is_ascii_whitespace() {
            reader.consume(1);
        } else {
            break b == b'[';
        }
    };
    let mut rows = JsonRows { headers: None, sink, error: None };
    if array {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let outcome = serde::Deserializer::deserialize_seq(&mut de, ArrayVisitor(&mut rows));
        if let Some(e) = rows.error.take() {
            return Err(e);
        }
        if let Err(e) = outcome {
            rows.ensure_headers(None)?;
            rows.sink.unreadable(e.line() as u64, format!("not a JSON array of objects: {e}"))?;
        }
        return rows.ensure_headers(None);
    }
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| io(file, e))? == 0 {
            return rows.ensure_headers(None);
        }
        n += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(o)) => rows.object(n, o)?,
            Ok(other) => {
                rows.ensure_headers(None)?;
                rows.sink.unreadable(n, format!("not a JSON object: {other}"))?
            }
            Err(e) => {
                rows.ensure_headers(None)?;
                rows.sink.unreadable(n, format!("not valid JSON: {e}"))?
            }
        }
    }
}

struct JsonRows<'a> {
    headers: Option<Vec<String>>,
    sink: &'a mut dyn Sink,
    /// A sink error raised inside serde's visitor, returned as it is.
    error: Option<Error>,
}

impl JsonRows<'_> {
    fn ensure_headers(&mut self, first: Option<&serde_json::Map<String, serde_json::Value>>) -> Result<()> {
        if self.headers.is_none() {
            let h: Vec<String> = first.map(|o| o.keys().cloned().collect()).unwrap_or_default();
            self.sink.headers(&h)?;
            self.headers = Some(h);
        }
        Ok(())
    }

    fn object(&mut self, line: u64, o: serde_json::Map<String, serde_json::Value>) -> Result<()> {
        use serde_json::Value as J;
        self.ensure_headers(Some(&o))?;
        let headers = self.headers.as_ref().expect("headers set");
        let fields: Vec<String> = headers
            .iter()
            .map(|h| match o.get(h) {
                None | Some(J::Null) => String::new(),
                Some(J::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        self.sink.record(line, &fields)
    }
}

struct ArrayVisitor<'r, 'a>(&'r mut JsonRows<'a>);

impl<'de> serde::de::Visitor<'de> for ArrayVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut i = 0u64;
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            i += 1;
            let outcome = match item {
                serde_json::Value::Object(o) => self.0.object(i, o),
                other => self.0.ensure_headers(None).and_then(|_| self.0.sink.unreadable(i, format!("item {i} is not an object: {other}"))),
            };
            if let Err(e) = outcome {
                self.0.error = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// Pass two for Parquet: every column read as text (Arrow's cast: timestamps in ISO 8601,
/// decimals with a point), a record per row; `line` is the row number.
pub fn read_parquet(path: &Path, probe: &Probe, file: &str, sink: &mut dyn Sink) -> Result<()> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let copy = checked_copy(path, probe, file)?;
    let f = copy.reopen().map_err(|e| io(file, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| bad(file, format!("not a readable Parquet file: {e}")))?;
    let headers: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    sink.headers(&headers)?;
    let reader = builder.with_batch_size(8192).build().map_err(|e| bad(file, format!("not a readable Parquet file: {e}")))?;
    let mut row = 0u64;
    let mut fields = vec![String::new(); headers.len()];
    for batch in reader {
        let batch = batch.map_err(|e| bad(file, format!("cannot read row {}: {e}", row + 1)))?;
        let mut texts = Vec::with_capacity(batch.num_columns());
        for (c, name) in batch.columns().iter().zip(&headers) {
            let t = datafusion::arrow::compute::cast(c, &DataType::Utf8)
                .map_err(|e| bad(file, format!("column `{name}` ({}) cannot be read as text: {e}", c.data_type())))?;
            texts.push(t);
        }
        let texts: Vec<&StringArray> = texts.iter().map(|t| t.as_any().downcast_ref::<StringArray>().expect("cast to Utf8")).collect();
        for i in 0..batch.num_rows() {
            row += 1;
            for (f, t) in fields.iter_mut().zip(&texts) {
                f.clear();
                if t.is_valid(i) {
                    f.push_str(t.value(i));
                }
            }
            sink.record(row, &fields)?;
        }
    }
    Ok(())
}

/// Pass two for spreadsheets (calamine: xlsx, xlsm, xlsb, xls, ods): the named sheet or the
/// first; the first non-empty row is the header row; dates as ISO 8601 text, whole numbers
/// without a fraction; `line` is the sheet's row number. calamine loads a sheet whole (a
/// sheet holds at most 1,048,576 rows).
pub fn read_xlsx(path: &Path, probe: &Probe, file: &str, sheet: Option<&str>, sink: &mut dyn Sink) -> Result<()> {
    use calamine::Reader;
    let copy = checked_copy(path, probe, file)?;
    let mut book = calamine::open_workbook_auto(copy.path()).map_err(|e| bad(file, format!("not a readable spreadsheet: {e}")))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(s) => names.iter().find(|n| n.as_str() == s).cloned().ok_or_else(|| {
            bad(file, format!("no sheet named `{s}`")).with_hint(format!("its sheets: {}", names.join(", ")))
        })?,
        None => names.first().cloned().ok_or_else(|| bad(file, "the workbook has no sheet".into()))?,
    };
    let range = book.worksheet_range(&name).map_err(|e| bad(file, format!("cannot read sheet `{name}`: {e}")))?;
    let first_row = range.start().map(|(r, _)| r as u64).unwrap_or(0);
    let mut headers: Option<Vec<String>> = None;
    for (i, r) in range.rows().enumerate() {
        let fields: Vec<String> = r.iter().map(cell_text).collect();
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match &headers {
            None => {
                sink.headers(&fields)?;
                headers = Some(fields);
            }
            Some(_) => sink.record(first_row + i as u64 + 1, &fields)?,
        }
    }
    if headers.is_none() {
        return Err(bad(file, format!("sheet `{name}` is empty")));
    }
    Ok(())
}

fn cell_text(c: &calamine::Data) -> String {
    use calamine::Data;
    match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => match d.as_datetime() {
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            None => d.as_f64().to_string(),
        },
        Data::Error(e) => format!("#{e}"),
    }
}

/// The delimiter among `,` `;` tab `|` that splits the first lines most consistently (counted
/// outside double quotes), the header line having at least one.
pub fn sniff_delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    let count = |line: &str, d: char| {
        let mut quoted = false;
        line.chars().filter(|c| {
            if *c == '"' {
                quoted = !quoted;
            }
            !quoted && *c == d
        })
        .count()
    };
    let mut best = (b',', 0usize, 0usize);
    for d in [',', ';', '\t', '|'] {
        let Some(first) = lines.first() else { break };
        let n = count(first, d);
        if n == 0 {
            continue;
        }
        let consistent = lines.iter().filter(|l| count(l, d) == n).count();
        if (consistent, n) > (best.1, best.2) {
            best = (d as u8, consistent, n);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a reader hands over.
    #[derive(Default)]
    struct Collect {
        headers: Vec<String>,
        records: Vec<(u64, Vec<String>)>,
        unreadable: Vec<(u64, String)>,
    }

    impl Sink for Collect {
        fn headers(&mut self, headers: &[String]) -> Result<()> {
            self.headers = headers.to_vec();
            Ok(())
        }
        fn record(&mut self, line: u64, fields: &dyn Fields) -> Result<()> {
            let v: Vec<String> = (0..).map_while(|i| fields.get(i).map(str::to_string)).collect();
            self.records.push((line, v));
            Ok(())
        }
        fn unreadable(&mut self, line: u64, reason: String) -> Result<()> {
            self.unreadable.push((line, reason));
            Ok(())
        }
    }

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    fn probed(bytes: &[u8], opts: &CsvOptions) -> Result<(tempfile::NamedTempFile, Probe)> {
        let f = file(bytes);
        let p = probe(f.path(), opts, "f", true, None)?;
        Ok((f, p))
    }

    fn csv(bytes: &[u8], opts: &CsvOptions) -> Result<Collect> {
        let (f, p) = probed(bytes, opts)?;
        let mut c = Collect::default();
        read_csv(f.path(), &p, "f", &mut c)?;
        Ok(c)
    }

    #[test]
    fn encodings_and_delimiters_are_detected() {
        let opts = CsvOptions::default();
        let (_, p) = probed("store;zone;in\nFR;D01;3\n".as_bytes(), &opts).unwrap();
        assert_eq!((p.encoding.name(), p.delimiter), ("UTF-8", b';'));
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice("a\tb\n1\t2\n".as_bytes());
        let c = csv(&bom, &opts).unwrap();
        assert_eq!((c.headers.clone(), c.records[0].1.clone()), (vec!["a".to_string(), "b".into()], vec!["1".to_string(), "2".into()]));
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode("magasin|entrées|début\nFR|3|x\nFR|4|é\n");
        let (_, p) = probed(&latin, &opts).unwrap();
        assert_eq!((p.encoding.name(), p.delimiter), ("windows-1252", b'|'));
        let c = csv(&latin, &opts).unwrap();
        assert_eq!(c.headers, ["magasin", "entrées", "début"]);
        assert_eq!(c.records[1].1[2], "é");
        let utf16: Vec<u8> = "store,in\nFR,3\nES,4\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let c = csv(&utf16, &opts).unwrap();
        assert_eq!((c.headers.len(), c.records.len(), c.records[1].1[0].as_str()), (2, 2, "ES"));
        assert!(probed(b"", &opts).unwrap_err().message.contains("empty"));
        let e = csv(b"\x00\x01\x02\x03binary\x00\xff\xfe\x00", &opts).err().expect("binary is refused");
        assert!(e.message.contains("NUL") || e.message.contains("not valid"), "{}", e.message);
        let strict = CsvOptions { encoding: Some("utf-8".into()), delimiter: None };
        assert!(probed(&latin, &strict).unwrap_err().message.contains("not valid UTF-8"));
        // A Windows-1252 file whose first accented letter comes after the first megabyte.
        let mut late = "a,b\n".repeat(300_000).into_bytes();
        late.extend_from_slice(&encoding_rs::WINDOWS_1252.encode("é,è\n").0);
        let c = csv(&late, &opts).unwrap();
        assert_eq!(c.records.last().unwrap().1, ["é", "è"]);
    }

    #[test]
    fn quoted_fields_and_crlf() {
        let c = csv(b"a,b\r\n\"x, y\",\"multi\nline\"\r\n1,2\r\n", &CsvOptions::default()).unwrap();
        assert_eq!(c.headers, ["a", "b"]);
        assert_eq!(c.records[0].1, ["x, y", "multi\nline"]);
        assert_eq!((c.records[0].0, c.records[1].0), (2, 4));
        let c = csv(b"a,b\n\"x, y\",\"multi\nline\"\n1,2\n", &CsvOptions::default()).unwrap();
        assert_eq!((c.records[0].0, c.records[1].0), (2, 4));
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_error_not_memory() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"store,in\nFR,").unwrap();
        std::io::Write::write_all(&mut f, &vec![b'9'; MAX_LINE + 10]).unwrap();
        let e = probe(f.path(), &CsvOptions::default(), "f", true, None).unwrap_err();
        assert!(e.message.contains("line 2 is longer than 16 MiB"), "{}", e.message);
    }

    #[test]
    fn json_arrays_stream_and_ndjson_lines_count() {
        let mut c = Collect::default();
        json_records(&br#"[{"store": "FR", "in": 3}, 7, {"in": null, "store": "ES"}]"#[..], "f", &mut c).unwrap();
        // Keys in serde_json's order (sorted).
        assert_eq!(c.headers, ["in", "store"]);
        assert_eq!(c.records, vec![(1, vec!["3".to_string(), "FR".into()]), (3, vec![String::new(), "ES".into()])]);
        assert_eq!(c.unreadable[0].0, 2);
        let mut c = Collect::default();
        json_records(&b"{\"a\": 1}\n\nnot json\n{\"a\": 2}\n"[..], "f", &mut c).unwrap();
        assert_eq!(c.records.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(c.unreadable[0].0, 3);
    }

    /// Pass two checks the bytes it parsed against pass one's hash: a file rewritten, grown or
    /// cut between the two passes is an error, however its new content parses.
    #[test]
    fn a_file_that_changes_between_the_passes_is_an_error() {
        let opts = CsvOptions::default();
        let (f, p) = probed(b"store,in\nFR,3\nES,4\n", &opts).unwrap();
        let mut c = Collect::default();
        read_csv(f.path(), &p, "f", &mut c).unwrap();
        assert_eq!(c.records.len(), 2);
        for changed in [&b"store,in\nFR,3\nES,5\n"[..], b"store,in\nFR,3\nES,4\nIT,9\n", b"store,in\nFR,3\n"] {
            std::fs::write(f.path(), changed).unwrap();
            let e = read_csv(f.path(), &p, "f", &mut Collect::default()).unwrap_err();
            assert!(e.message.contains("f: the file changed while it was being ingested; nothing of it was written"), "{}", e.message);
            assert!(e.hint.as_deref().unwrap_or("").contains("ingest it again once it is complete"), "{e:?}");
            let e = read_json(f.path(), &p, "f", &mut Collect::default()).unwrap_err();
            assert!(e.message.contains("changed while"), "{}", e.message);
            let e = checked_copy(f.path(), &p, "f").unwrap_err();
            assert!(e.message.contains("changed while"), "{}", e.message);
        }
    }

    #[test]
    fn the_prefix_hash_covers_exactly_the_first_bytes() {
        let text = "store,in\n".to_string() + &"FR,3\n".repeat(500_000);
        let f = file(text.as_bytes());
        let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
        // Within the first chunk, across the chunk boundary, the whole file (no longer prefix).
        for len in [9u64, CHUNK as u64, CHUNK as u64 + 7, text.len() as u64 - 1] {
            let p = probe(f.path(), &CsvOptions::default(), "f", true, Some(len)).unwrap();
            assert_eq!(p.prefix_sha256, Some(sha(&text.as_bytes()[..len as usize])), "{len}");
        }
        let p = probe(f.path(), &CsvOptions::default(), "f", true, Some(text.len() as u64)).unwrap();
        assert_eq!((p.prefix_sha256, p.sha256), (None, sha(text.as_bytes())));
    }
}
