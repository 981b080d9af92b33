//! Raw export bytes to text and records: the encoding (byte-order mark, UTF-16 without one,
//! strict UTF-8, else chardetng's guess such as Windows-1252) and the delimiter are detected
//! unless the source names them; the `csv` crate reads quoted fields with embedded delimiters
//! and newlines, and CRLF line ends.

use encoding_rs::Encoding;

use super::source::CsvOptions;
use crate::error::{Error, Result};

/// A decoded file and how it was read.
#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static str,
    pub delimiter: u8,
}

fn bad(file: &str, message: String) -> Error {
    Error::new(crate::error::ErrorKind::DataException, format!("{file}: {message}"))
}

/// Decodes a whole file and finds its delimiter.
pub fn decode(bytes: &[u8], options: &CsvOptions, file: &str) -> Result<Decoded> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(bad(file, "the file is empty".into()).with_hint("check that the export finished writing"));
    }
    let declared = options.encoding.as_deref().filter(|e| !e.eq_ignore_ascii_case("auto"));
    let (text, encoding) = match declared {
        Some(label) => {
            let enc = Encoding::for_label(label.as_bytes()).ok_or_else(|| {
                Error::config(format!("{file}: unknown encoding `{label}`")).with_hint("use utf-8, windows-1252, latin1, utf-16le, utf-16be or auto")
            })?;
            let (body, enc) = match Encoding::for_bom(bytes) {
                Some((bom_enc, len)) if bom_enc == enc => (&bytes[len..], enc),
                _ => (bytes, enc),
            };
            let text = enc.decode_without_bom_handling_and_without_replacement(body).ok_or_else(|| {
                bad(file, format!("the file has bytes that are not valid {}", enc.name()))
                    .with_hint("fix the export, or set `csv: {encoding: auto}` to let lakecube detect it")
            })?;
            (text.into_owned(), enc.name())
        }
        None => detect(bytes, file)?,
    };
    if text.contains('\0') {
        return Err(bad(file, "the file holds NUL bytes: it is binary, not a text export".into()));
    }
    let delimiter = match options.delimiter.as_deref().filter(|d| !d.eq_ignore_ascii_case("auto")) {
        Some("\\t") | Some("\t") | Some("tab") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        Some(d) => return Err(Error::config(format!("{file}: delimiter `{d}` is not one character")).with_hint("use \",\", \";\", \"|\", \"\\t\" or auto")),
        None => sniff_delimiter(&text),
    };
    Ok(Decoded { text, encoding, delimiter })
}

fn detect(bytes: &[u8], file: &str) -> Result<(String, &'static str)> {
    if let Some((enc, len)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[len..]);
        if had_errors {
            return Err(bad(file, format!("the file starts with a {} byte-order mark but holds invalid bytes", enc.name())));
        }
        return Ok((text.into_owned(), enc.name()));
    }
    // UTF-16 without a byte-order mark: text in ASCII range leaves every other byte zero.
    let sample = &bytes[..bytes.len().min(4096)];
    let zeros_at = |parity: usize| sample.iter().skip(parity).step_by(2).filter(|b| **b == 0).count();
    let half = sample.len() / 2;
    if half > 8 {
        for (parity, enc) in [(1, encoding_rs::UTF_16LE), (0, encoding_rs::UTF_16BE)] {
            if zeros_at(parity) * 10 > half * 8 {
                let (text, had_errors) = enc.decode_without_bom_handling(bytes);
                if !had_errors {
                    return Ok((text.into_owned(), enc.name()));
                }
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok((s.to_string(), "UTF-8"));
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    let enc = detector.guess(None, true);
    let (text, had_errors) = enc.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(bad(file, format!("the file is neither UTF-8 nor valid {}", enc.name()))
            .with_hint("name its encoding in the source definition: `csv: {encoding: windows-1252}`"));
    }
    Ok((text.into_owned(), enc.name()))
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

/// The keys and records of a JSON export: an array of objects, or one object per line
/// (NDJSON). Keys become headers in the order they first appear; a record's `line` is its
/// line in the file for NDJSON and its position in the array for an array. Strings are taken
/// as they are, numbers and booleans as written, `null` as empty; a line that is not a JSON
/// object is a record error (rejected).
pub fn json_records(text: &str) -> (Vec<String>, Vec<std::result::Result<Record, (u64, String)>>) {
    use serde_json::Value as J;
    let mut headers: Vec<String> = Vec::new();
    let mut objects: Vec<std::result::Result<(u64, serde_json::Map<String, J>), (u64, String)>> = Vec::new();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<J>>(trimmed) {
            Ok(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    objects.push(match item {
                        J::Object(o) => Ok((i as u64 + 1, o)),
                        other => Err((i as u64 + 1, format!("item {} is not an object: {other}", i + 1))),
                    });
                }
            }
            Err(e) => objects.push(Err((e.line() as u64, format!("not a JSON array of objects: {e}")))),
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim().trim_start_matches('\u{feff}');
            if line.is_empty() {
                continue;
            }
            objects.push(match serde_json::from_str::<J>(line) {
                Ok(J::Object(o)) => Ok((i as u64 + 1, o)),
                Ok(other) => Err((i as u64 + 1, format!("not a JSON object: {other}"))),
                Err(e) => Err((i as u64 + 1, format!("not valid JSON: {e}"))),
            });
        }
    }
    for o in objects.iter().flatten() {
        for k in o.1.keys() {
            if !headers.contains(k) {
                headers.push(k.clone());
            }
        }
    }
    let records = objects
        .into_iter()
        .map(|o| {
            o.map(|(line, obj)| Record {
                line,
                fields: headers
                    .iter()
                    .map(|h| match obj.get(h) {
                        None | Some(J::Null) => String::new(),
                        Some(J::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    })
                    .collect(),
            })
        })
        .collect();
    (headers, records)
}

/// One data record: its 1-based line number in the file and its fields.
#[derive(Debug)]
pub struct Record {
    pub line: u64,
    pub fields: Vec<String>,
}

/// The header row and the records of a decoded file. A record the CSV reader cannot read
/// (an unterminated quote…) is returned as an error string with its line, to be rejected.
pub fn records(decoded: &Decoded) -> (Vec<String>, Vec<std::result::Result<Record, (u64, String)>>) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(decoded.delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(decoded.text.as_bytes());
    let headers: Vec<String> = reader.headers().map(|h| h.iter().map(|s| s.trim_start_matches('\u{feff}').to_string()).collect()).unwrap_or_default();
    // Line numbers from byte offsets (the csv crate's own line count is off by one with CRLF
    // line ends), counted once through the text as records come in order.
    let bytes = decoded.text.as_bytes();
    let (mut counted_to, mut line) = (0usize, 1u64);
    let mut line_at = |offset: u64| {
        let mut offset = (offset as usize).min(bytes.len());
        // After CRLF the reader places a record at the line feed that ends the previous line.
        while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        if offset >= counted_to {
            line += bytes[counted_to..offset].iter().filter(|b| **b == b'\n').count() as u64;
            counted_to = offset;
        }
        line
    };
    let mut out = Vec::new();
    for r in reader.records() {
        match r {
            Ok(rec) => {
                let line = rec.position().map(|p| line_at(p.byte())).unwrap_or(0);
                out.push(Ok(Record { line, fields: rec.iter().map(str::to_string).collect() }))
            }
            Err(e) => {
                let line = e.position().map(|p| line_at(p.byte())).unwrap_or(0);
                out.push(Err((line, e.to_string())));
            }
        }
    }
    (headers, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_and_delimiters_are_detected() {
        let opts = CsvOptions::default();
        let d = decode("store;zone;in\nFR;D01;3\n".as_bytes(), &opts, "f").unwrap();
        assert_eq!((d.encoding, d.delimiter), ("UTF-8", b';'));
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice("a\tb\n1\t2\n".as_bytes());
        assert_eq!(decode(&bom, &opts, "f").unwrap().delimiter, b'\t');
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode("magasin|entrées|début\nFR|3|x\nFR|4|é\n");
        let d = decode(&latin, &opts, "f").unwrap();
        assert_eq!((d.encoding, d.delimiter), ("windows-1252", b'|'));
        assert!(d.text.starts_with("magasin|entrées|début"));
        let utf16: Vec<u8> = "store,in\nFR,3\nES,4\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(decode(&utf16, &opts, "f").unwrap().encoding, "UTF-16LE");
        assert!(decode(b"", &opts, "f").unwrap_err().message.contains("empty"));
        assert!(decode(b"\x00\x01\x02\x03binary\x00\xff\xfe\x00", &opts, "f").is_err());
        let strict = CsvOptions { encoding: Some("utf-8".into()), delimiter: None };
        assert!(decode(&latin, &strict, "f").unwrap_err().message.contains("not valid UTF-8"));
    }

    #[test]
    fn quoted_fields_and_crlf() {
        let d = decode(b"a,b\r\n\"x, y\",\"multi\nline\"\r\n1,2\r\n", &CsvOptions::default(), "f").unwrap();
        let (h, r) = records(&d);
        assert_eq!(h, ["a", "b"]);
        let r: Vec<Record> = r.into_iter().map(|r| r.ok().unwrap()).collect();
        assert_eq!(r[0].fields, ["x, y", "multi\nline"]);
        assert_eq!((r[0].line, r[1].line), (2, 4));
    }
}
