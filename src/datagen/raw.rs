//! `lakecube generate --raw DIR`: the raw exports a retailer's systems would have sent for the
//! last days of a generated lake, for demos and ingest tests. Each store-department-hour of
//! `traffic` becomes four 15-minute door-sensor counts and one ticket line per transaction
//! (revenue and units split across them to the cent and the unit), written in four dialects:
//!
//! - `sensors_utf8.csv`: UTF-8, `,`, English headers, ISO date-times;
//! - `capteurs_cp1252.csv`: Windows-1252, `;`, CRLF, French headers, `dd/mm/yyyy HH:MM`;
//! - `tickets_utf16.txt`: UTF-16LE with a byte-order mark, tab, French headers, decimal comma;
//! - `tickets.ndjson`: one JSON object per line.
//!
//! Stores alternate between the two files of a kind. One extra row in 200 is bad (a count that
//! is no number, an unknown store, a date that does not exist, an amount in words): good rows
//! sum exactly to the lake's, and `manifest.json` lists the files, their rows, bad rows and the
//! window's totals.

use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::{Array, Decimal128Array, Int32Array, StringArray, TimestampMicrosecondArray};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::schema::{self, traffic};
use crate::storage::Lake;

/// One bad row in this many good ones.
const BAD_EVERY: u64 = 200;

#[derive(Debug, Default, Serialize)]
pub struct RawFile {
    pub file: String,
    pub rows: u64,
    pub bad_rows: u64,
}

/// What `--raw` wrote (`manifest.json`).
#[derive(Debug, Default, Serialize)]
pub struct Manifest {
    pub from: String,
    pub to: String,
    pub files: Vec<RawFile>,
    /// Totals of the window in the lake, which the good rows add up to.
    pub footfall: i64,
    pub transactions: i64,
    pub revenue: String,
    pub units: i64,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::config(format!("cannot write {}: {e}", path.display()))
}

/// A raw file being written: text lines encoded as its dialect says.
struct Out {
    path: std::path::PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    encoding: &'static encoding_rs::Encoding,
    eol: &'static str,
    report: RawFile,
}

impl Out {
    fn create(dir: &Path, name: &str, encoding: &'static encoding_rs::Encoding, eol: &'static str, header: &str) -> Result<Out> {
        let path = dir.join(name);
        let f = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        let mut out = Out { path, w: std::io::BufWriter::new(f), encoding, eol, report: RawFile { file: name.to_string(), ..Default::default() } };
        if encoding == encoding_rs::UTF_16LE {
            out.w.write_all(&[0xFF, 0xFE]).map_err(|e| io(&out.path, e))?;
        }
        if !header.is_empty() {
            out.line(header)?;
        }
        Ok(out)
    }

    fn line(&mut self, text: &str) -> Result<()> {
        let text = format!("{text}{}", self.eol);
        let bytes: Vec<u8> = if self.encoding == encoding_rs::UTF_16LE {
            text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
        } else {
            self.encoding.encode(&text).0.into_owned()
        };
        self.w.write_all(&bytes).map_err(|e| io(&self.path, e))
    }

    fn row(&mut self, text: &str, bad: Option<&str>) -> Result<()> {
        self.line(text)?;
        self.report.rows += 1;
        if self.report.rows.is_multiple_of(BAD_EVERY)
            && let Some(b) = bad
        {
            self.line(b)?;
            self.report.bad_rows += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RawFile> {
        self.w.flush().map_err(|e| io(&self.path, e))?;
        Ok(self.report)
    }
}

/// `n` split in `parts` whole parts, the remainder going to the first ones.
fn split(n: i64, parts: i64) -> impl Iterator<Item = i64> {
    (0..parts).map(move |i| n / parts + i64::from(i < n % parts))
}

/// Writes the raw exports of the last `days` days of the lake's `traffic` into `dir`.
pub async fn write_raw(lake: &Lake, dir: &Path, days: u32) -> Result<Manifest> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let ctx = lake.context();
    lake.register_tables(&ctx, &schema::ALL_TABLES).await?;
    let sql = format!(
        "SELECT s.store_code, d.department_code, t.ts, t.footfall, t.transactions, t.revenue, t.units \
         FROM traffic t JOIN stores s USING (store_id) JOIN departments d USING (department_id) \
         WHERE t.ts >= (SELECT date_trunc('day', MAX(ts)) FROM traffic) - INTERVAL '{} days' ORDER BY t.ts, s.store_code, d.department_code",
        days.saturating_sub(1)
    );
    let batches = ctx.sql(&sql).await.map_err(Error::from)?.collect().await.map_err(Error::from)?;
    let mut sensors = [
        Out::create(dir, "sensors_utf8.csv", encoding_rs::UTF_8, "\n", "store,zone,interval_start,entries,exits")?,
        Out::create(dir, "capteurs_cp1252.csv", encoding_rs::WINDOWS_1252, "\r\n", "Magasin;Rayon;Début;Entrées;Sorties")?,
    ];
    let mut tickets = [
        Out::create(dir, "tickets_utf16.txt", encoding_rs::UTF_16LE, "\r\n", "N° ticket\tMagasin\tRayon\tDate heure\tMontant\tQté")?,
        Out::create(dir, "tickets.ndjson", encoding_rs::UTF_8, "\n", "")?,
    ];
    let mut m = Manifest::default();
    let mut revenue_cents: i128 = 0;
    let (mut first, mut last) = (None, None);
    let mut halves: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for b in &batches {
        let column = |name: &str| b.column_by_name(name).ok_or_else(|| Error::lake(format!("the query has no column {name}")));
        let text = |name: &str| -> Result<StringArray> {
            let t = datafusion::arrow::compute::cast(column(name)?, &datafusion::arrow::datatypes::DataType::Utf8).map_err(Error::from)?;
            t.as_any().downcast_ref::<StringArray>().cloned().ok_or_else(|| Error::lake("codes are not text"))
        };
        let int = |name: &str| column(name)?.as_any().downcast_ref::<Int32Array>().cloned().ok_or_else(|| Error::lake("counts are not int4"));
        let (stores, departments) = (text("store_code")?, text("department_code")?);
        let ts = column(traffic::TS)?.as_any().downcast_ref::<TimestampMicrosecondArray>().cloned().ok_or_else(|| Error::lake("ts is not a timestamp"))?;
        let (footfall, transactions, units) = (int(traffic::FOOTFALL)?, int(traffic::TRANSACTIONS)?, int(traffic::UNITS)?);
        let revenue = column(traffic::REVENUE)?.as_any().downcast_ref::<Decimal128Array>().cloned().ok_or_else(|| Error::lake("revenue is not numeric"))?;
        for r in 0..b.num_rows() {
            let (store, dept) = (stores.value(r), departments.value(r));
            let at = chrono::DateTime::from_timestamp_micros(ts.value(r)).ok_or_else(|| Error::lake("a timestamp out of range"))?.naive_utc();
            first = first.or(Some(at));
            last = Some(at);
            // Stores alternate between the two files of a kind, in the order they come.
            let seen = halves.len();
            let h = *halves.entry(store.to_string()).or_insert(seen % 2);
            let f = footfall.value(r) as i64;
            m.footfall += f;
            for (q, count) in split(f, 4).enumerate() {
                let start = at + chrono::Duration::minutes(15 * q as i64);
                let exits = count * 9 / 10;
                if h == 0 {
                    let line = format!("{store},{dept},{},{count},{exits}", start.format("%Y-%m-%d %H:%M:%S"));
                    sensors[0].row(&line, Some(&format!("{store},{dept},{},n/a,0", start.format("%Y-%m-%d %H:%M:%S"))))?;
                } else {
                    let line = format!("{store};{dept};{};{count};{exits}", start.format("%d/%m/%Y %H:%M"));
                    sensors[1].row(&line, Some(&format!("ZZ-INCONNU;{dept};{};{count};{exits}", start.format("%d/%m/%Y %H:%M"))))?;
                }
            }
            let t = transactions.value(r) as i64;
            m.transactions += t;
            m.units += units.value(r) as i64;
            revenue_cents += revenue.value(r);
            if t == 0 {
                continue;
            }
            let cents: Vec<i64> = split(revenue.value(r) as i64, t).collect();
            for (k, (amount, qty)) in cents.into_iter().zip(split(units.value(r) as i64, t)).enumerate() {
                let id = format!("{store}-{}-{dept}-{k}", at.format("%Y%m%d%H"));
                let sold = at + chrono::Duration::minutes((k as i64 * 7) % 60);
                let euros = format!("{}.{:02}", amount / 100, amount % 100);
                if h == 0 {
                    let line = format!("{id}\t{store}\t{dept}\t{}\t{}\t{qty}", sold.format("%d/%m/%Y %H:%M"), euros.replace('.', ","));
                    tickets[0].row(&line, Some(&format!("{id}-X\t{store}\t{dept}\t31/02/{} 10:00\t1,00\t1", sold.format("%Y"))))?;
                } else {
                    let line = serde_json::json!({"ticket": id, "store": store, "department": dept, "sold_at": sold.format("%Y-%m-%dT%H:%M:%S").to_string(), "amount": euros, "qty": qty});
                    let bad = serde_json::json!({"ticket": format!("{id}-X"), "store": store, "department": dept, "sold_at": sold.format("%Y-%m-%dT%H:%M:%S").to_string(), "amount": "douze", "qty": 1});
                    tickets[1].row(&line.to_string(), Some(&bad.to_string()))?;
                }
            }
        }
    }
    for out in sensors.into_iter().chain(tickets) {
        m.files.push(out.finish()?);
    }
    m.from = first.map(|t| t.to_string()).unwrap_or_default();
    m.to = last.map(|t| t.to_string()).unwrap_or_default();
    m.revenue = rust_decimal::Decimal::from_i128_with_scale(revenue_cents, 2).to_string();
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&m).expect("manifest serializes")).map_err(|e| io(&path, e))?;
    Ok(m)
}
