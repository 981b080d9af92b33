//! One file's records into rows of the lake's grain: [`FileSink`] maps the header row to the
//! kind's fields ([`super::fields`]), parses each record's fields (read by name,
//! [`super::kinds`]) into a [`Row`] whose store and department codes are resolved to lake keys
//! ([`Refs`]), and adds it to the file's [`Batch`]; a record it cannot take is a reject, with
//! personal data masked.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;

use super::batch::Batch;
use super::fields::{self, Value, parse_value};
use super::kinds::{self, FieldType, Kind, fields_of};
use super::record;
use super::reference;
use super::report::{FileReport, Progress, Reject, Rejects};
use super::source::Source;
use crate::error::Result;

/// Reads one file's records into its own batch (merged into the run's once the whole file was
/// read) and the rejects.
pub(super) struct FileSink<'a> {
    source: &'a Source,
    file: &'a str,
    refs: &'a mut Refs,
    rejects: &'a mut Rejects,
    report: FileReport,
    map: Option<fields::HeaderMap>,
    /// Per column: `None` shown as is in a reject, else how it is masked (personal data).
    masks: Vec<Option<Mask>>,
    times: fields::TimeParser,
    batch: Batch,
    progress: Progress,
}

impl<'a> FileSink<'a> {
    pub(super) fn new(source: &'a Source, file: &'a str, refs: &'a mut Refs, rejects: &'a mut Rejects, report: FileReport, progress: bool) -> FileSink<'a> {
        let format = source.kind.time_field().and_then(|f| source.mapping.get(f.name)).and_then(|m| m.format.as_deref());
        FileSink {
            source,
            file,
            refs,
            rejects,
            report,
            map: None,
            masks: Vec::new(),
            times: fields::TimeParser::new(format),
            batch: Batch::default(),
            progress: Progress::new(file, progress),
        }
    }

    pub(super) fn finish(self) -> (Batch, FileReport) {
        (self.batch, self.report)
    }

    /// A record as text for the rejects file, personal data masked: columns whose header names
    /// it and any value that looks like an e-mail are dropped, or shown as their salted hash
    /// when the source maps the column with `pii: hash`.
    fn raw_text(&self, fields: &dyn record::Fields) -> String {
        let salt = self.source.pii_salt.as_deref();
        (0..fields.len())
            .map(|i| {
                let v = fields.get(i).unwrap_or("");
                match self.masks.get(i).copied().flatten() {
                    Some(Mask::Hash) => pii_hash(salt.unwrap_or_default(), v),
                    Some(Mask::Drop) => "[personal data dropped]".to_string(),
                    None if fields::looks_like_email(v) => "[personal data dropped]".to_string(),
                    None => v.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(&fields.separator())
    }

    fn reject(&mut self, line: u64, raw: String, reason: String) -> Result<()> {
        self.report.rows_rejected += 1;
        self.rejects.push(&Reject { file: self.file.to_string(), line, raw, reason })
    }

    /// One record as a row of the lake's grain (`None` for a reference row, upserted into its
    /// members), or the reason it is rejected.
    fn parse(&mut self, fields: &dyn record::Fields) -> std::result::Result<Option<Row>, String> {
        let FileSink { source, refs, map, times, .. } = self;
        let map = map.as_ref().expect("headers come first");
        let specs = fields_of(source.kind);
        let value = |i: usize| map.value(i, fields).ok_or_else(|| format!("{}: empty value", specs[i].name));
        let int = |i: usize| match parse_value(value(i)?, FieldType::Integer, None) {
            Ok(Value::Integer(n)) => Ok(n),
            Ok(_) => unreachable!("an integer field parses to an integer"),
            Err(e) => Err(format!("{}: {e}", specs[i].name)),
        };
        let mut time = |i: usize| times.parse(value(i)?).map_err(|e| format!("{}: {e}", specs[i].name));
        let create = source.create_missing;
        match source.kind {
            Kind::SensorCounts => {
                use kinds::sensor::*;
                let at = time(INTERVAL_START)?;
                let store_id = refs.store(value(STORE_CODE)?, create, at, specs[STORE_CODE].name)?;
                let department_id = refs.department(value(ZONE_CODE)?, create, specs[ZONE_CODE].name)?;
                let count = int(COUNT_IN)?;
                if count < 0 {
                    return Err(format!("{}: {count} is negative", specs[COUNT_IN].name));
                }
                if map.value(COUNT_OUT, fields).is_some() {
                    let out = int(COUNT_OUT)?;
                    if out < 0 {
                        return Err(format!("{}: {out} is negative", specs[COUNT_OUT].name));
                    }
                }
                Ok(Some(Row { store_id, department_id, at, footfall: count, ticket: None, revenue_cents: 0, units: 0 }))
            }
            Kind::PosTickets => {
                use kinds::ticket::*;
                let ticket = value(TICKET_ID)?;
                let at = time(TIMESTAMP)?;
                let store_id = refs.store(value(STORE_CODE)?, create, at, specs[STORE_CODE].name)?;
                let department_id = refs.department(value(DEPARTMENT_CODE)?, create, specs[DEPARTMENT_CODE].name)?;
                let amount_field = specs[AMOUNT].name;
                let mut amount = match parse_value(value(AMOUNT)?, FieldType::Decimal, None) {
                    Ok(Value::Decimal(d)) => d.round_dp(2),
                    Ok(_) => unreachable!("a decimal field parses to a decimal"),
                    Err(e) => return Err(format!("{amount_field}: {e}")),
                };
                // The lake keeps money as numeric(12, 2).
                if amount.abs() >= Decimal::from(10_000_000_000i64) {
                    return Err(format!("{amount_field}: {amount} is out of range (at most 9999999999.99)"));
                }
                amount.rescale(2);
                let revenue_cents = amount.mantissa() as i64;
                Ok(Some(Row { store_id, department_id, at, footfall: 0, ticket: Some(ticket_hash(ticket)), revenue_cents, units: int(QUANTITY)? }))
            }
            Kind::Stores | Kind::Departments => {
                // Field names are the table's column names.
                let key = if source.kind == Kind::Stores { kinds::STORE_KEY } else { kinds::DEPARTMENT_KEY };
                let mut values = Vec::new();
                for (i, spec) in specs.iter().enumerate().filter(|(i, _)| *i != key) {
                    if let Some(raw) = map.value(i, fields) {
                        let format = source.mapping.get(spec.name).and_then(|m| m.format.as_deref());
                        let v = parse_value(raw, spec.ty, format).map_err(|e| format!("{}: {e}", spec.name))?;
                        values.push((spec.name, v.to_text()));
                    }
                }
                let members = if source.kind == Kind::Stores { &mut refs.stores } else { &mut refs.departments };
                members.upsert(value(key)?, &values)?;
                Ok(None)
            }
        }
    }
}

/// The reference tables during a run: codes resolved to keys, and the members it adds.
pub(super) struct Refs {
    pub(super) stores: reference::Members,
    pub(super) departments: reference::Members,
}

impl Refs {
    /// The key of a store code; with `create`, a new store (named by its code, opened on the
    /// row's date, other columns `Unknown`) for a code the lake does not know.
    fn store(&mut self, code: &str, create: bool, at: NaiveDateTime, field: &str) -> std::result::Result<i32, String> {
        match self.stores.id(code) {
            Some(id) => Ok(id),
            None if create => {
                let opened = at.date().format("%Y-%m-%d").to_string();
                let unknown = || "Unknown".to_string();
                let values = [
                    ("store_name", code.trim().to_string()),
                    ("city", unknown()),
                    ("region", unknown()),
                    ("country", unknown()),
                    ("store_format", unknown()),
                    ("surface_m2", "0".to_string()),
                    ("opened_on", opened),
                ];
                self.stores.upsert(code, &values)
            }
            None => Err(format!("{field}: unknown store `{}`", code.trim())),
        }
    }

    /// The key of a department code; with `create`, a new department named by its code.
    fn department(&mut self, code: &str, create: bool, field: &str) -> std::result::Result<i32, String> {
        match self.departments.id(code) {
            Some(id) => Ok(id),
            None if create => self.departments.upsert(code, &[("department", code.trim().to_string()), ("department_family", "Unknown".to_string())]),
            None => Err(format!("{field}: unknown department `{}`", code.trim())),
        }
    }
}

/// How a column of personal data shows in the rejects file.
#[derive(Debug, Clone, Copy)]
enum Mask {
    Drop,
    Hash,
}

/// A value of personal data as `sha256:` and the first 16 hex digits of SHA-256(salt, value):
/// the same value always shows the same, the value itself cannot be read back without the salt.
fn pii_hash(salt: &str, value: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(value.trim().as_bytes());
    format!("sha256:{}", &hex::encode(h.finalize())[..16])
}

/// A ticket id's 64-bit hash (SipHash with fixed keys: the same in every run).
fn ticket_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl record::Sink for FileSink<'_> {
    fn headers(&mut self, headers: &[String]) -> Result<()> {
        let map = fields::map_headers(self.source.kind, headers, &self.source.mapping, self.file)?;
        for (spec, col) in fields_of(self.source.kind).iter().zip(&map.columns) {
            match col {
                fields::Column::At(c) => {
                    self.report.mapping.insert(spec.name.to_string(), headers[*c].clone());
                }
                fields::Column::Constant(v) => {
                    self.report.mapping.insert(spec.name.to_string(), format!("constant `{v}`"));
                }
                fields::Column::Computed(_) => {
                    let sql = self.source.mapping.get(spec.name).and_then(|m| m.expression.clone()).unwrap_or_default();
                    self.report.mapping.insert(spec.name.to_string(), format!("expression `{sql}`"));
                }
                fields::Column::Missing => {}
            }
        }
        let hashed: Vec<usize> = fields_of(self.source.kind)
            .iter()
            .zip(&map.columns)
            .filter(|(spec, _)| self.source.mapping.get(spec.name).and_then(|m| m.pii).is_some())
            .filter_map(|(_, col)| match col {
                fields::Column::At(c) => Some(*c),
                _ => None,
            })
            .collect();
        self.masks = headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if hashed.contains(&i) {
                    Some(Mask::Hash)
                } else if fields::is_pii_header(h) && !map.columns.contains(&fields::Column::At(i)) {
                    Some(Mask::Drop)
                } else {
                    None
                }
            })
            .collect();
        self.map = Some(map);
        Ok(())
    }

    fn record(&mut self, line: u64, fields: &dyn record::Fields) -> Result<()> {
        self.report.rows_read += 1;
        self.progress.tick(self.report.rows_read);
        match self.parse(fields) {
            Ok(row) => {
                if let Some(row) = row {
                    if self.report.sample.len() < 5 {
                        self.report.sample.push(row.describe());
                    }
                    row.add_to(&mut self.batch);
                }
                self.report.rows_accepted += 1;
                Ok(())
            }
            Err(reason) => {
                let raw = self.raw_text(fields);
                self.reject(line, raw, reason)
            }
        }
    }

    fn unreadable(&mut self, line: u64, reason: String) -> Result<()> {
        self.report.rows_read += 1;
        self.reject(line, String::new(), reason)
    }

    fn reject(&mut self, line: u64, fields: &dyn record::Fields, reason: String) -> Result<()> {
        self.report.rows_read += 1;
        self.progress.tick(self.report.rows_read);
        let raw = self.raw_text(fields);
        FileSink::reject(self, line, raw, reason)
    }
}

/// One accepted row, resolved to lake keys.
struct Row {
    store_id: i32,
    department_id: i32,
    at: NaiveDateTime,
    footfall: i64,
    ticket: Option<u64>,
    revenue_cents: i64,
    units: i64,
}

impl Row {
    /// Hours since 1970-01-01 00:00.
    fn hour(&self) -> i64 {
        self.at.and_utc().timestamp().div_euclid(3600)
    }

    fn add_to(self, batch: &mut Batch) {
        let t = batch.entry((self.store_id, self.department_id, self.hour())).or_default();
        t.add(self.footfall, self.revenue_cents, self.units);
        if let Some(ticket) = self.ticket {
            t.tickets.push(ticket);
        }
    }

    fn describe(&self) -> String {
        match &self.ticket {
            Some(_) => format!(
                "store_id={} department_id={} at={} amount={} quantity={}",
                self.store_id,
                self.department_id,
                self.at,
                Decimal::new(self.revenue_cents, 2),
                self.units
            ),
            None => format!("store_id={} department_id={} at={} count_in={}", self.store_id, self.department_id, self.at, self.footfall),
        }
    }
}
