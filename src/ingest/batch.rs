//! The batch a run commits: hourly totals by store, department and hour, the lake's grain.
//! A file's rows are added into a batch of its own ([`super::sink`]), merged into the run's once
//! the whole file was read, and committed as one ([`super::commit`]).

/// Hourly totals of one store, department and hour (64 bytes with its key: a batch's memory
/// grows with its store-hours, not with its rows or bytes).
#[derive(Debug, Default, Clone)]
pub struct HourTotals {
    pub footfall: i64,
    /// Revenue in cents (each amount is below 10¹² cents; sums saturate, and a sum beyond the
    /// lake's numeric(12, 2) fails the batch before writing).
    pub revenue_cents: i64,
    pub units: i64,
    /// The tickets' lines, by a 64-bit hash of the ticket id (memory per line, not per id's
    /// length; a collision among one store-hour's tickets has odds of about n²/2⁶⁵). Counted
    /// distinct by [`HourTotals::transactions`].
    pub tickets: Vec<u64>,
}

impl HourTotals {
    /// Adds counts, saturating (see [`HourTotals::revenue_cents`]).
    pub(super) fn add(&mut self, footfall: i64, revenue_cents: i64, units: i64) {
        self.footfall = self.footfall.saturating_add(footfall);
        self.revenue_cents = self.revenue_cents.saturating_add(revenue_cents);
        self.units = self.units.saturating_add(units);
    }

    /// Adds another file's totals of the same store-department-hour.
    pub(super) fn absorb(&mut self, other: HourTotals) {
        self.add(other.footfall, other.revenue_cents, other.units);
        self.tickets.extend(other.tickets);
    }

    /// Distinct tickets (sorts and dedups the ticket hashes in place).
    pub fn transactions(&mut self) -> i64 {
        self.tickets.sort_unstable();
        self.tickets.dedup();
        self.tickets.len() as i64
    }
}

/// A store-department-hour: (store_id, department_id, hours since 1970-01-01 00:00).
pub type HourKey = (i32, i32, i64);

/// The batch to commit: hourly totals by store, department and hour.
pub type Batch = foldhash::HashMap<HourKey, HourTotals>;
