//! `lakecube generate`: a deterministic, realistic multi-year retail lake.
//!
//! The same seed and parameters always give the same rows: every random draw comes from a
//! ChaCha8 stream seeded by (seed, what is being drawn), never from iteration order. Traffic is
//! produced month by month and written as it is produced, so memory stays bounded whatever the
//! size; each table appears in the lake in one atomic commit.
//!
//! The model, in short: a store's hourly visitors = format base × √surface × store factor ×
//! hour-of-day shape × weekday × month × special days (Black Friday, the run-up to Christmas,
//! sales) × regional growth × noise; a department gets its share of them; tickets = visitors ×
//! conversion (department × format × sales × noise); revenue = tickets × basket; units =
//! tickets × units per ticket. A known share of rows carry sensor faults
//! ([`FAULT_ZERO_RATE`], [`FAULT_SPIKE_RATE`]).

pub mod raw;
pub mod reference;

use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};
use datafusion::arrow::array::{ArrayRef, Date32Builder, Int32Builder, StringBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::storage::Lake;
use crate::storage::schema::{self, TableWriter, TrafficRow, TrafficRows};
use reference::{CITIES, City, DEPARTMENTS, Format};

/// Share of open store-department-hours whose door sensor counted nobody while tickets were
/// rung up (a dead sensor).
pub const FAULT_ZERO_RATE: f64 = 0.002;
/// Share of open store-department-hours whose sensor count is 10–30× too high (a stuck beam).
pub const FAULT_SPIKE_RATE: f64 = 0.0005;

/// Sizes known by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 3 stores × 4 departments × 2 months: for tests.
    Tiny,
    /// 20 stores × 8 departments × 2 years: the demo lake.
    Demo,
    /// 100 stores × 10 departments × 3 years (≈ 10 M traffic rows).
    Sf1,
    /// 1,000 stores × 10 departments × 3 years.
    Sf10,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub stores: u32,
    pub departments: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub seed: u64,
}

impl Preset {
    pub fn params(self) -> Params {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).expect("valid preset date");
        let (stores, departments, from, to) = match self {
            Preset::Tiny => (3, 4, d(2025, 11, 1), d(2025, 12, 31)),
            Preset::Demo => (20, 8, d(2024, 1, 1), d(2025, 12, 31)),
            Preset::Sf1 => (100, 10, d(2023, 1, 1), d(2025, 12, 31)),
            Preset::Sf10 => (1000, 10, d(2023, 1, 1), d(2025, 12, 31)),
        };
        Params { stores, departments, from, to, seed: 42 }
    }
}

impl Params {
    pub fn validate(&self) -> Result<()> {
        if self.stores == 0 || self.stores > 100_000 {
            return Err(Error::config(format!("--stores {} is out of range", self.stores))
                .with_hint("use between 1 and 100000 stores"));
        }
        let max = DEPARTMENTS.len() as u32;
        if self.departments == 0 || self.departments > max {
            return Err(Error::config(format!("--departments {} is out of range", self.departments))
                .with_hint(format!("use between 1 and {max} departments")));
        }
        if self.to < self.from {
            return Err(Error::config(format!("--to {} is before --from {}", self.to, self.from)));
        }
        if (self.to - self.from).num_days() > 366 * 20 {
            return Err(Error::config("the date range is longer than 20 years"));
        }
        Ok(())
    }
}

/// A generated store with the hidden traits that drive its traffic.
#[derive(Clone, Debug)]
pub struct Store {
    pub id: i32,
    pub code: String,
    pub name: String,
    pub city: &'static City,
    pub format: Format,
    pub surface_m2: i32,
    pub opened_on: NaiveDate,
    pub closed_on: Option<NaiveDate>,
    /// Multiplies visitors (location quality).
    pub pull: f64,
    /// Yearly growth of the store's region.
    pub growth: f64,
}

impl Store {
    pub fn is_open_on(&self, d: NaiveDate) -> bool {
        d >= self.opened_on && self.closed_on.is_none_or(|c| d < c)
    }

    /// The opening hours of the store on a day: `None` when closed all day.
    pub fn hours_on(&self, d: NaiveDate) -> Option<(u32, u32)> {
        if !self.is_open_on(d) {
            return None;
        }
        if self.format.closes_on_holidays() && reference::is_public_holiday(d, self.city.country) {
            return None;
        }
        self.format.hours(d.weekday(), self.city.country)
    }
}

fn rng_for(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    // splitmix64 over the parts: a well-mixed, order-sensitive seed.
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for p in parts {
        x ^= p.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(x << 6).wrapping_add(x >> 2);
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    ChaCha8Rng::seed_from_u64(x)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Rounds `x` up or down at random in proportion to its fraction, so sums stay unbiased.
fn stochastic_round(x: f64, rng: &mut ChaCha8Rng) -> i32 {
    let f = x.floor();
    let up = rng.random::<f64>() < (x - f);
    (f as i32) + up as i32
}

/// The stores of a lake: deterministic from the seed and the number of stores.
pub fn stores(p: &Params) -> Vec<Store> {
    let total_weight: f64 = CITIES.iter().map(|c| c.weight).sum();
    let span = (p.to - p.from).num_days().max(1);
    let mut per_city_seq = vec![0u32; CITIES.len()];
    let mut names = std::collections::HashSet::new();
    let region_growth = |region: &str| {
        let h = region.bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
        let mut r = rng_for(p.seed, &[7, h]);
        r.random_range(-0.03..0.08)
    };
    (0..p.stores)
        .map(|i| {
            let mut r = rng_for(p.seed, &[1, i as u64]);
            // The first stores go one per region, alternating countries, so that even small
            // lakes span countries and regions.
            const SPREAD: [usize; 12] = [0, 11, 15, 2, 16, 4, 12, 6, 14, 8, 9, 10];
            let city_idx = if (i as usize) < SPREAD.len() {
                SPREAD[i as usize]
            } else {
                let mut x = r.random_range(0.0..total_weight);
                let mut idx = 0;
                for (k, c) in CITIES.iter().enumerate() {
                    if x < c.weight {
                        idx = k;
                        break;
                    }
                    x -= c.weight;
                }
                idx
            };
            let city = &CITIES[city_idx];
            per_city_seq[city_idx] += 1;
            let seq = per_city_seq[city_idx];
            let format = match (i, r.random_range(0..100)) {
                (0, _) => Format::Mall,
                (1, _) => Format::HighStreet,
                (2, _) => Format::Outlet,
                (_, x) if x < 45 => Format::Mall,
                (_, x) if x < 80 => Format::HighStreet,
                (_, x) if x < 93 => Format::Outlet,
                _ => Format::Airport,
            };
            let (smin, smax) = format.surface();
            let surface_m2 = r.random_range(smin..=smax) / 10 * 10;
            // Opening and closing: in a lake of three or more stores the last store opens
            // inside the range and the one before closes inside it; others at random.
            let n = p.stores;
            let roll = r.random_range(0..100);
            let opens_inside = (n >= 3 && i == n - 1) || (i >= 3 && roll < 12);
            let closes_inside = (n >= 3 && i == n - 2) || (i >= 3 && (12..20).contains(&roll));
            let opened_on = if opens_inside {
                p.from + Duration::days(r.random_range(span / 5..=span * 3 / 5))
            } else {
                p.from - Duration::days(r.random_range(365..365 * 25))
            };
            let closed_on = closes_inside.then(|| p.from + Duration::days(r.random_range(span / 3..=span * 4 / 5)));
            let district = city.districts[(seq as usize - 1) % city.districts.len()];
            let mut name = format!("{} {}", city.name, district);
            let mut k = 2;
            while !names.insert(name.clone()) {
                name = format!("{} {} {}", city.name, district, k);
                k += 1;
            }
            Store {
                id: i as i32 + 1,
                code: format!("{}-{}-{:03}", city.country.iso(), city.code, seq),
                name,
                city,
                format,
                surface_m2,
                opened_on,
                closed_on,
                pull: (normal(&mut r) * 0.2).exp(),
                growth: region_growth(city.region),
            }
        })
        .collect()
}

fn date32(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

pub fn stores_batch(stores: &[Store]) -> Result<RecordBatch> {
    let mut id = Int32Builder::new();
    let mut code = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut city = StringBuilder::new();
    let mut region = StringBuilder::new();
    let mut country = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut surface = Int32Builder::new();
    let mut opened = Date32Builder::new();
    let mut closed = Date32Builder::new();
    for s in stores {
        id.append_value(s.id);
        code.append_value(&s.code);
        name.append_value(&s.name);
        city.append_value(s.city.name);
        region.append_value(s.city.region);
        country.append_value(s.city.country.name());
        format.append_value(s.format.name());
        surface.append_value(s.surface_m2);
        opened.append_value(date32(s.opened_on));
        closed.append_option(s.closed_on.map(date32));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(code.finish()),
        Arc::new(name.finish()),
        Arc::new(city.finish()),
        Arc::new(region.finish()),
        Arc::new(country.finish()),
        Arc::new(format.finish()),
        Arc::new(surface.finish()),
        Arc::new(opened.finish()),
        Arc::new(closed.finish()),
    ];
    Ok(RecordBatch::try_new(schema::stores_schema(), cols)?)
}

pub fn departments_batch(n: u32) -> Result<RecordBatch> {
    let depts = &DEPARTMENTS[..n as usize];
    let cols: Vec<ArrayRef> = vec![
        Arc::new(datafusion::arrow::array::Int32Array::from_iter_values(1..=n as i32)),
        Arc::new(datafusion::arrow::array::StringArray::from_iter_values(depts.iter().map(|d| d.code))),
        Arc::new(datafusion::arrow::array::StringArray::from_iter_values(depts.iter().map(|d| d.name))),
        Arc::new(datafusion::arrow::array::StringArray::from_iter_values(depts.iter().map(|d| d.family))),
    ];
    Ok(RecordBatch::try_new(schema::departments_schema(), cols)?)
}

/// Day-level multiplier for special days and periods.
fn day_factor(d: NaiveDate) -> f64 {
    let mut f = reference::MONTH_FACTOR[d.month0() as usize];
    let bf = reference::black_friday(d.year());
    if d == bf {
        f *= 2.3;
    } else if d > bf && d <= bf + Duration::days(3) {
        f *= 1.3;
    }
    if d.month() == 12 && (15..=24).contains(&d.day()) {
        f *= 1.35;
    }
    if d.month() == 12 && d.day() == 24 {
        f *= 1.1;
    }
    if reference::in_sales(d) {
        f *= 1.15;
    }
    f
}

/// Generates the traffic rows of one store for one day.
fn store_day(p: &Params, s: &Store, d: NaiveDate, b: &mut TrafficRows) -> Result<()> {
    let Some((open, close)) = s.hours_on(d) else { return Ok(()) };
    let day_idx = (d - p.from).num_days() as u64;
    let mut r = rng_for(p.seed, &[2, s.id as u64, day_idx]);
    let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
    let years = (d - p.from).num_days() as f64 / 365.25;
    let growth = (1.0 + s.growth).powf(years);
    let wd = if s.format == Format::Airport { 1.0 } else { reference::weekday_factor(d.weekday()) };
    let sales = reference::in_sales(d);
    let day_noise = (normal(&mut r) * 0.08).exp();
    let base = s.format.base_visitors()
        * (s.surface_m2 as f64 / 3000.0).sqrt()
        * s.pull
        * wd
        * day_factor(d)
        * growth
        * day_noise;
    let midnight: NaiveDateTime = d.and_hms_opt(0, 0, 0).expect("valid");
    let midnight_us = midnight.and_utc().timestamp_micros();
    for h in open..close {
        let hour_visitors = base * reference::hour_shape(h, weekend);
        let ts = midnight_us + h as i64 * 3_600_000_000;
        for (k, dept) in DEPARTMENTS[..p.departments as usize].iter().enumerate() {
            let expected = hour_visitors * dept.share * (normal(&mut r) * 0.15).exp();
            let true_footfall = stochastic_round(expected, &mut r).max(0);
            let conv = (dept.conversion
                * s.format.conversion_factor()
                * if sales { 1.12 } else { 1.0 }
                * (normal(&mut r) * 0.12).exp())
            .clamp(0.01, 0.9);
            let transactions = stochastic_round(true_footfall as f64 * conv, &mut r);
            let basket = dept.basket
                * s.format.basket_factor()
                * if sales { 0.82 } else { 1.0 }
                * (normal(&mut r) * 0.1).exp();
            let revenue_cents = if transactions > 0 {
                (transactions as f64 * basket * 100.0).round() as i128
            } else {
                0
            };
            let units = if transactions > 0 {
                stochastic_round(transactions as f64 * dept.units_per_ticket * (normal(&mut r) * 0.1).exp(), &mut r)
                    .max(transactions)
            } else {
                0
            };
            let fault: f64 = r.random();
            let footfall = if fault < FAULT_ZERO_RATE && transactions > 0 {
                0
            } else if fault >= FAULT_ZERO_RATE && fault < FAULT_ZERO_RATE + FAULT_SPIKE_RATE {
                true_footfall.max(1) * r.random_range(10..=30)
            } else {
                true_footfall
            };
            b.push(TrafficRow { store_id: s.id, department_id: k as i32 + 1, ts_micros: ts, footfall, transactions, revenue_cents, units })?;
        }
    }
    Ok(())
}

/// The months of the range, as (first day in range, last day in range).
fn months(p: &Params) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut start = p.from;
    while start <= p.to {
        let next_month = if start.month() == 12 {
            NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
        }
        .expect("valid");
        let end = (next_month - Duration::days(1)).min(p.to);
        out.push((start, end));
        start = next_month;
    }
    out
}

/// Rows per batch handed to the writer.
const BATCH_ROWS: usize = 256 * 1024;

/// Produces the traffic batches of one month, calling `emit` for each.
fn month_batches(
    p: &Params,
    stores: &[Store],
    (start, end): (NaiveDate, NaiveDate),
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<()> {
    let mut b = TrafficRows::with_capacity(1024);
    for s in stores {
        let mut d = start;
        while d <= end {
            store_day(p, s, d, &mut b)?;
            d += Duration::days(1);
        }
        if b.len() >= BATCH_ROWS && !emit(b.finish()?) {
            return Ok(());
        }
    }
    if !b.is_empty() {
        emit(b.finish()?);
    }
    Ok(())
}

/// What `generate` did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub stores: usize,
    pub departments: u32,
    pub traffic_rows: u64,
    pub months: usize,
    pub seconds: f64,
}

/// Options for [`generate`] that are not part of the data's identity.
#[derive(Default, Clone, Copy)]
pub struct Options {
    /// Replace tables that already exist.
    pub overwrite: bool,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Writes `stores`, `departments` and `traffic` into the lake.
pub async fn generate(lake: &Lake, p: &Params, opts: Options) -> Result<Summary> {
    p.validate()?;
    let t0 = Instant::now();
    lake.check_writable().await?;
    let existing = lake.existing_tables(&schema::ALL_TABLES).await?;
    if !existing.is_empty() && !opts.overwrite {
        return Err(Error::lake(format!("the lake at {} already has tables: {}", lake.display(), existing.join(", ")))
            .with_hint("pass --overwrite to replace them, or choose another --lake"));
    }
    let stores = stores(p);
    let months = months(p);

    // Traffic first (the long part); a generator thread and this task overlap, so both
    // cores work: one builds rows while the other encodes Parquet.
    let bar = progress_bar(opts.progress, months.len() as u64);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Result<RecordBatch>)>(2);
    let gen_params = p.clone();
    let gen_stores = stores.clone();
    let gen_months = months.clone();
    let producer = std::thread::spawn(move || {
        for (i, m) in gen_months.iter().enumerate() {
            let mut open = true;
            let res = month_batches(&gen_params, &gen_stores, *m, |b| {
                open = tx.blocking_send((i, Ok(b))).is_ok();
                open
            });
            if let Err(e) = res {
                let _ = tx.blocking_send((i, Err(e)));
                return;
            }
            if !open {
                return;
            }
        }
    });
    if opts.overwrite {
        for t in &existing {
            lake.delete_table(t).await?;
        }
    }
    let mut traffic = TableWriter::new(lake, schema::TRAFFIC, schema::traffic_schema(), schema::TRAFFIC_PARTITIONS)?;
    let mut current_month = 0usize;
    while let Some((i, batch)) = rx.recv().await {
        if i != current_month {
            // A month is complete: close its files so memory does not grow with the range.
            traffic.flush().await?;
            if let Some(b) = &bar {
                b.set_position(i as u64);
            }
            current_month = i;
        }
        traffic.write(batch?).await?;
    }
    producer.join().map_err(|_| Error::internal("the traffic generator thread panicked"))?;
    let traffic_rows = traffic.commit().await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let mut w = TableWriter::new(lake, schema::STORES, schema::stores_schema(), &[])?;
    w.write(stores_batch(&stores)?).await?;
    w.commit().await?;
    let mut w = TableWriter::new(lake, schema::DEPARTMENTS, schema::departments_schema(), &[])?;
    w.write(departments_batch(p.departments)?).await?;
    w.commit().await?;

    Ok(Summary {
        stores: stores.len(),
        departments: p.departments,
        traffic_rows,
        months: months.len(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Creates the lake's tables with no rows (for planning benchmarks and schema-only tests).
pub async fn create_empty(lake: &Lake) -> Result<()> {
    for (name, schema, partitions) in [
        (schema::TRAFFIC, schema::traffic_schema(), schema::TRAFFIC_PARTITIONS),
        (schema::STORES, schema::stores_schema(), &[][..]),
        (schema::DEPARTMENTS, schema::departments_schema(), &[][..]),
    ] {
        TableWriter::new(lake, name, schema, partitions)?.commit().await?;
    }
    Ok(())
}

fn progress_bar(show: bool, months: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(months);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} months, {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("generating traffic");
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_deterministic_and_varied() {
        let p = Preset::Demo.params();
        let a = stores(&p);
        let b = stores(&p);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let regions: std::collections::HashSet<_> = a.iter().map(|s| s.city.region).collect();
        assert!(regions.len() >= 8, "{regions:?}");
        assert!(a.iter().any(|s| s.closed_on.is_some()));
        assert!(a.iter().any(|s| s.opened_on > p.from));
    }

    #[test]
    fn months_cover_the_range() {
        let p = Preset::Tiny.params();
        assert_eq!(months(&p).len(), 2);
    }
}
