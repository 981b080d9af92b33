//! The cube query: what a BI statement asks of a cube, as plain data.
//!
//! The rewrite ([`super::rewrite`]) builds the plan over lake tables for each grouped (or
//! ungrouped) read of a cube table directly, and reports what it asked as one of these (for
//! EXPLAIN and tests). Rollups will match cube queries against pre-aggregations, so it stays a
//! plain structure; it will have to become the rewrite's input then, not only its report.

use std::fmt;

use crate::model::Granularity;

/// How a measure is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureUse {
    /// The measure's name in the cube table.
    pub measure: String,
    /// The aggregate the client wrapped it in (`sum`, `avg`, `count`, `measure`, …), or
    /// `None` when read ungrouped.
    pub wrapper: Option<String>,
}

/// A dimension at the query's grain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionUse {
    /// A dimension as is (`region`).
    Member(String),
    /// A time dimension truncated to a granularity (`date_trunc('month', period)`).
    Time { member: String, granularity: Granularity },
    /// Any other expression over dimensions (`EXTRACT(DOW FROM period)`), as SQL-ish text,
    /// with the members it uses.
    Expr { text: String, members: Vec<String> },
}

/// What a statement asks of one cube table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CubeQuery {
    pub cube: String,
    pub measures: Vec<MeasureUse>,
    pub dimensions: Vec<DimensionUse>,
    /// Row filters on dimensions, applied before aggregating (SQL-ish text).
    pub filters: Vec<String>,
    /// Filters on measures, applied after aggregating.
    pub measure_filters: Vec<String>,
    /// Other aggregates over dimensions (`count(DISTINCT store)`, `min(period)`, `count(*)`).
    pub other_aggregates: Vec<String>,
    /// True when the client did not group: measures at the grain of the selected dimensions.
    pub ungrouped: bool,
    /// ORDER BY directly over the cube query's result (SQL-ish text).
    pub order: Vec<String>,
    /// LIMIT (and OFFSET) directly over the cube query's result.
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// For a table with rollups: the one that answers, or why none does (EXPLAIN shows it).
    pub rollup: Option<String>,
    /// The id of the rollup read (`traffic/daily_store_department`), if one is.
    pub rollup_id: Option<String>,
}

impl fmt::Display for CubeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CubeQuery cube={}", self.cube)?;
        let ms: Vec<String> = self
            .measures
            .iter()
            .map(|m| match &m.wrapper {
                Some(w) => format!("{}({})", w, m.measure),
                None => m.measure.clone(),
            })
            .collect();
        write!(f, " measures=[{}]", ms.join(", "))?;
        let ds: Vec<String> = self
            .dimensions
            .iter()
            .map(|d| match d {
                DimensionUse::Member(m) => m.clone(),
                DimensionUse::Time { member, granularity } => format!("{member} by {granularity:?}").to_lowercase(),
                DimensionUse::Expr { text, .. } => text.clone(),
            })
            .collect();
        write!(f, " dimensions=[{}]", ds.join(", "))?;
        if !self.filters.is_empty() {
            write!(f, " filters=[{}]", self.filters.join(" AND "))?;
        }
        if !self.measure_filters.is_empty() {
            write!(f, " measure_filters=[{}]", self.measure_filters.join(" AND "))?;
        }
        if !self.other_aggregates.is_empty() {
            write!(f, " other=[{}]", self.other_aggregates.join(", "))?;
        }
        if !self.order.is_empty() {
            write!(f, " order=[{}]", self.order.join(", "))?;
        }
        if let Some(l) = self.limit {
            write!(f, " limit={l}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset={o}")?;
        }
        if self.ungrouped {
            write!(f, " ungrouped")?;
        }
        Ok(())
    }
}
