//! Routing a read to a rollup: which rollup covers it, and the plan that answers it there.
//!
//! A rollup covers a read when (each checked in turn, the first failure is the rollup's
//! reason in EXPLAIN):
//! - it is built and usable at the lake version read ([`RollupState`]);
//! - the read asks only measures (no `count(*)` or other aggregates over rows), and the
//!   rollup stores every leaf they need;
//! - every column the read groups or filters by is one of the rollup's relation ([`Variant`]):
//!   a dimension it stores, or one of a cube joined on keys it stores;
//! - every use of the time dimension is constant within one of the rollup's time buckets
//!   ([`time_safe`]): `date_trunc` to its granularity or coarser, `EXTRACT` of a field the
//!   bucket fixes, a cast to date from days or hours, and comparisons `>=` / `<` with a
//!   bucket boundary.
//!
//! The smallest covering rollup answers. Its partitions that are behind the lake (a commit
//! touched their rows since they were built) and the times it does not hold are answered from
//! the lake and merged with the rollup's rows (partials merge exactly), so an answer from a
//! rollup is the lake's answer.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, LogicalPlanBuilder, Operator, TryCast, lit};

use super::super::CubeTable;
use super::super::rollup::{Partial, RollupState, Routing, TableRollup, Variant, finish, leaf_value, parse_instant, partial_column, pin};
use super::base::{guard, has_subquery};
use super::scope::Scope;
use crate::error::{Error, Result};
use crate::model::Granularity;

/// What routing decided for one read.
pub(super) struct Route {
    /// The aggregate over rollup rows (group keys `__g_<i>`, leaves `__l_<key>`) and the
    /// rollup's id, when a rollup answers.
    pub(super) plan: Option<(LogicalPlanBuilder, String)>,
    /// For EXPLAIN: the rollup chosen, or why each one was not.
    pub(super) note: String,
}

/// What EXPLAIN and the engine learn of a read's routing: the note, and the id of the rollup
/// read, if one is.
pub(super) type Noted = (String, Option<String>);

/// Routes a read (`groups` and `s.pre` over the table's base columns, the leaves it needs,
/// other aggregates over rows) to the smallest rollup that covers it.
pub(super) fn route(s: &Scope, groups: &[Expr], leaves: &[String], others: &[Expr], routing: &Routing) -> Result<Option<Route>> {
    let table = &s.table;
    // A read of neither dimensions nor measures (`EXISTS (SELECT 1 FROM retail …)`) is one
    // row or none, found in the lake at once.
    if table.rollups.is_empty() || (groups.is_empty() && leaves.is_empty() && others.is_empty()) {
        return Ok(None);
    }
    if !routing.enabled {
        return Ok(Some(Route { plan: None, note: "none: rollups are off for this session (lakecube.rollups)".into() }));
    }
    let mut rejected = Vec::new();
    let mut best: Option<(&TableRollup, &Variant, &RollupState)> = None;
    for tr in &table.rollups {
        match covers(tr, s, groups, leaves, others, routing) {
            Ok((variant, state)) => {
                if best.is_none_or(|(_, _, b)| state.rows < b.rows) {
                    best = Some((tr, variant, state));
                }
            }
            Err(why) => rejected.push(format!("{}: {why}", tr.def.name)),
        }
    }
    let Some((tr, variant, state)) = best else {
        return Ok(Some(Route { plan: None, note: format!("none ({})", rejected.join("; ")) }));
    };
    let (plan, raw, summed) = answer(tr, variant, state, s, groups, leaves)?;
    let mut note = format!("{} ({} rows", tr.def.name, state.rows);
    if raw {
        note.push_str(", with the lake for the times it does not hold current");
    }
    if !summed.is_empty() {
        note.push_str(&format!(", {} summed from disjoint sets", summed.join(", ")));
    }
    note.push(')');
    Ok(Some(Route { plan: Some((plan, tr.def.id.clone())), note }))
}

/// The variant and state of a rollup that covers the read, or why it does not.
fn covers<'a>(tr: &'a TableRollup, s: &Scope, groups: &[Expr], leaves: &[String], others: &[Expr], routing: &'a Routing) -> std::result::Result<(&'a Variant, &'a RollupState), String> {
    let state = routing.states.get(&tr.def.id).ok_or("not built")?;
    if let Some(why) = &state.unusable {
        return Err(why.clone());
    }
    if state.fresh.is_empty() {
        return Err("no partition is built and current".into());
    }
    if let Some(o) = others.first() {
        return Err(format!("`{o}` is computed over rows"));
    }
    if let Some(k) = leaves.iter().find(|k| tr.leaf(k).is_none()) {
        let name = k.split_once("__").map(|(_, m)| m).unwrap_or(k);
        return Err(format!("it does not store `{name}`"));
    }
    if s.pre.iter().any(has_subquery) {
        return Err("a filter has a subquery".into());
    }
    let mut cols: Vec<String> = super::base::policy_columns(&s.table);
    for e in groups.iter().chain(&s.pre).chain(&s.table.policy) {
        for c in e.column_refs() {
            if !cols.contains(&c.name) {
                cols.push(c.name.clone());
            }
        }
    }
    let variant = tr.variant_for(&cols).ok_or_else(|| {
        let missing: Vec<&str> = cols.iter().filter(|c| !tr.variants.iter().any(|v| v.columns.contains(*c))).map(String::as_str).collect();
        if missing.is_empty() { "it has no one relation with all of the read's columns".to_string() } else { format!("it has no `{}`", missing.join("`, `")) }
    })?;
    if let (Some(t), Some(time)) = (&tr.def.time, &tr.time_column)
        && !state.exact_time
        && let Some(e) = groups.iter().chain(&s.pre).chain(&s.table.policy).find(|e| !time_safe(e, time, t.granularity))
    {
        return Err(format!("`{e}` needs `{time}` finer than its {} buckets", t.granularity.name()));
    }
    Ok((variant, state))
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn timestamp(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(us), None))
}

/// `time` within one of `ranges`.
fn within(time: &str, ranges: &[(i64, i64)]) -> Expr {
    ranges
        .iter()
        .map(|(a, b)| column(time).gt_eq(timestamp(*a)).and(column(time).lt(timestamp(*b))))
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// The aggregate answering the read from the rollup (and from the lake for what the rollup
/// does not hold current); whether the lake is read too; the distinct counts summed from
/// their sets' sizes.
fn answer(tr: &TableRollup, variant: &Variant, state: &RollupState, s: &Scope, groups: &[Expr], leaves: &[String]) -> Result<(LogicalPlanBuilder, bool, Vec<String>)> {
    let group_exprs: Vec<Expr> = groups.iter().enumerate().map(|(i, g)| g.clone().alias(format!("__g_{i}"))).collect();
    let leaves: Vec<_> = leaves.iter().filter_map(|k| tr.leaf(k)).collect();
    let time = tr.time_column.as_deref();
    // A distinct count whose sets are disjoint within each partition is the sum of their sizes
    // when no group spans two partitions (the read groups by a time bucket within one); the
    // sets are not read at all.
    let one_partition_per_group = match (&tr.def.time, time) {
        (None, _) => true,
        (Some(t), Some(column)) => groups.iter().any(|g| fixes_partition(g, column, t.partition)),
        (Some(_), None) => false,
    };
    let summed: Vec<String> =
        leaves.iter().filter(|l| one_partition_per_group && l.stored().contains(&Partial::Size) && state.disjoint.contains(&l.measure)).map(|l| l.measure.clone()).collect();
    let parts = |l: &super::super::rollup::RollupLeaf| if summed.contains(&l.measure) { &[Partial::Size][..] } else { l.partials() };
    let table = state.table.clone().ok_or_else(|| Error::internal(format!("rollup `{}` is routed to without its rows", tr.def.id)))?;
    let (rollup_rows, mut rollup_filters) = guard(&s.table, LogicalPlanBuilder::from(pin(&variant.plan, &tr.def.id, table).map_err(Error::from)?), &s.pre)?;
    if let Some(t) = time.filter(|_| !state.all_fresh) {
        rollup_filters.push(within(t, &state.fresh));
    }
    let rollup_rows = match conjunction(rollup_filters) {
        Some(f) => rollup_rows.filter(f).map_err(Error::from)?,
        None => rollup_rows,
    };
    let raw_needed = time.is_some() && !state.covers_lake();
    // Each leaf's value from its partial columns, aliased `__l_<key>` as the lake's aggregate has it.
    let leaf_values: Vec<Expr> = leaves
        .iter()
        .map(|l| {
            let parts = parts(l).iter().map(|p| finish(*p, column(&partial_column(&l.key, *p)))).collect();
            leaf_value(l.kind, parts, &l.data_type).alias(format!("__l_{}", l.key))
        })
        .collect();
    if !raw_needed {
        return Ok((rollup_rows.aggregate(group_exprs, leaf_values).map_err(Error::from)?, false, summed));
    }
    // Partials of both sides, each cast to the rollup column's type so that they union.
    let stored = |l: &super::super::rollup::RollupLeaf, p: Partial| {
        tr.def.schema.field_with_name(&l.column(p)).map(|f| f.data_type().clone()).unwrap_or(datafusion::arrow::datatypes::DataType::Null)
    };
    let cast = |e: Expr, t| Expr::Cast(Cast::new(Box::new(e), t));
    let mut from_rollup = Vec::new();
    let mut from_lake = Vec::new();
    for l in &leaves {
        for p in parts(l) {
            let name = partial_column(&l.key, *p);
            from_rollup.push(cast(p.merged(column(&name)), stored(l, *p)).alias(&name));
            from_lake.push(cast(p.over_rows(column(&CubeTable::leaf_input(&l.key))), stored(l, *p)).alias(&name));
        }
    }
    let rollup_side = rollup_rows.aggregate(group_exprs.clone(), from_rollup).and_then(|b| b.build()).map_err(Error::from)?;
    let time = time.expect("raw is needed only with a time dimension");
    let mut cols: Vec<String> = groups.iter().chain(&s.pre).flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone())).collect();
    cols.extend(super::base::policy_columns(&s.table));
    cols.push(time.to_string());
    cols.extend(leaves.iter().map(|l| CubeTable::leaf_input(&l.key)));
    let (_, base) = s.table.base_for(cols.iter().map(String::as_str));
    let (lake_rows, mut lake_filters) = guard(&s.table, LogicalPlanBuilder::from(base), &s.pre)?;
    lake_filters.push(column(time).is_null().or(Expr::Not(Box::new(within(time, &state.fresh)))));
    let lake_side = lake_rows
        .filter(conjunction(lake_filters).expect("non-empty"))
        .and_then(|b| b.aggregate(group_exprs, from_lake))
        .and_then(|b| b.build())
        .map_err(Error::from)?;
    let keys: Vec<Expr> = (0..groups.len()).map(|i| column(&format!("__g_{i}"))).collect();
    let merged = LogicalPlanBuilder::from(rollup_side).union(lake_side).and_then(|b| b.aggregate(keys, leaf_values)).map_err(Error::from)?;
    Ok((merged, true, summed))
}

/// Whether each value of the group key `e` lies within one `partition` period of the time
/// column `time`: the instant itself, or a bucket of it (`date_trunc`, a cast to date) that
/// nests in the partitions (a day in a month; not a week).
fn fixes_partition(e: &Expr, time: &str, partition: Granularity) -> bool {
    match e {
        _ if is_time(e, time) => true,
        Expr::Alias(a) => fixes_partition(&a.expr, time, partition),
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            // A date is a day, and partitions are days or longer.
            *field.data_type() == datafusion::arrow::datatypes::DataType::Date32 && is_time(expr, time) || fixes_partition(expr, time, partition)
        }
        Expr::ScalarFunction(f) if f.func.name() == "date_trunc" => {
            f.args.get(1).is_some_and(|a| is_time(a, time)) && f.args.first().and_then(text).and_then(|u| unit_of(&u)).is_some_and(|u| u.rolls_into(partition))
        }
        _ => false,
    }
}

/// Whether `e` has the same value for every instant of one `g` bucket of the time column
/// `time`, so that it may be computed over the bucket's start.
pub(super) fn time_safe(e: &Expr, time: &str, g: Granularity) -> bool {
    if !e.column_refs().iter().any(|c| c.name == time) {
        return true;
    }
    match e {
        Expr::Column(_) => false,
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let bound = match (is_time(left, time), is_time(right, time)) {
                (true, false) => instant(right).map(|v| (*op, v)),
                (false, true) => instant(left).map(|v| (op.swap().unwrap_or(*op), v)),
                _ => None,
            };
            match bound {
                // `t >= b` and `t < b` split no bucket when b starts one.
                Some((Operator::GtEq | Operator::Lt, v)) => super::super::rollup::truncate(v, g) == v,
                Some(_) => false,
                None => time_safe(left, time, g) && time_safe(right, time, g),
            }
        }
        Expr::ScalarFunction(f) => {
            let name = f.func.name();
            let arg_is_time = f.args.get(1).is_some_and(|a| is_time(a, time));
            let unit = f.args.first().and_then(text);
            match (name, unit, arg_is_time) {
                ("date_trunc", Some(u), true) => unit_of(&u).is_some_and(|u| g.rolls_into(u)),
                ("date_part", Some(field), true) => field_fixed(&field, g),
                _ => f.args.iter().all(|a| time_safe(a, time, g)),
            }
        }
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) if is_time(expr, time) => {
            *field.data_type() == datafusion::arrow::datatypes::DataType::Date32 && matches!(g, Granularity::Hour | Granularity::Day)
        }
        other => {
            let mut safe = true;
            let _ = other.apply_children(|c| {
                safe &= time_safe(c, time, g);
                Ok(if safe { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            });
            safe
        }
    }
}

/// The time column itself, possibly cast to another timestamp type.
fn is_time(e: &Expr, time: &str) -> bool {
    match e {
        Expr::Column(c) => c.name == time,
        // Without a zone: a cast to a zoned timestamp moves the buckets' edges.
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(_, None)) && is_time(expr, time)
        }
        Expr::Alias(a) => is_time(&a.expr, time),
        _ => false,
    }
}

/// A text literal (possibly cast), lower-cased.
fn text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => Some(s.to_ascii_lowercase()),
        Expr::Cast(Cast { expr, .. }) => text(expr),
        _ => None,
    }
}

fn unit_of(u: &str) -> Option<Granularity> {
    Some(match u {
        "hour" => Granularity::Hour,
        "day" => Granularity::Day,
        "week" => Granularity::Week,
        "month" => Granularity::Month,
        "quarter" => Granularity::Quarter,
        "year" => Granularity::Year,
        _ => return None,
    })
}

/// Whether `EXTRACT(field …)` is the same for every instant of a `g` bucket.
fn field_fixed(field: &str, g: Granularity) -> bool {
    use Granularity::*;
    match field {
        "year" | "decade" | "century" | "millennium" => g != Week,
        "quarter" => matches!(g, Hour | Day | Month | Quarter),
        "month" => matches!(g, Hour | Day | Month),
        "week" | "isoyear" => matches!(g, Hour | Day | Week),
        "day" | "dow" | "doy" | "isodow" | "julian" => matches!(g, Hour | Day),
        "hour" => g == Hour,
        _ => false,
    }
}

/// The instant a literal is (µs, naive UTC): a timestamp, a date, or a text in ISO form.
fn instant(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampSecond(Some(s), None) => s.checked_mul(1_000_000),
            ScalarValue::TimestampMillisecond(Some(s), None) => s.checked_mul(1_000),
            ScalarValue::TimestampMicrosecond(Some(s), None) => Some(*s),
            ScalarValue::TimestampNanosecond(Some(s), None) => (s % 1000 == 0).then_some(s / 1000),
            ScalarValue::Date32(Some(d)) => (*d as i64).checked_mul(86_400_000_000),
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => parse_instant(s),
            _ => None,
        },
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(_, None) | datafusion::arrow::datatypes::DataType::Date32) =>
        {
            instant(expr)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::expr_fn::{date_part, date_trunc};

    #[test]
    fn time_uses_within_a_bucket_are_safe() {
        let t = || column("period");
        let day = Granularity::Day;
        assert!(time_safe(&date_trunc(lit("month"), t()), "period", day));
        assert!(time_safe(&date_trunc(lit("week"), t()), "period", day));
        assert!(!time_safe(&date_trunc(lit("hour"), t()), "period", day));
        assert!(!time_safe(&date_trunc(lit("week"), t()), "period", Granularity::Month));
        assert!(time_safe(&date_part(lit("dow"), t()), "period", day));
        assert!(!time_safe(&date_part(lit("hour"), t()), "period", day));
        assert!(time_safe(&date_part(lit("hour"), t()), "period", Granularity::Hour));
        assert!(!time_safe(&t(), "period", day));
        assert!(time_safe(&t().gt_eq(lit("2025-03-01")), "period", Granularity::Month));
        assert!(!time_safe(&t().gt_eq(lit("2025-03-02")), "period", Granularity::Month));
        assert!(time_safe(&t().lt(lit("2025-03-02 00:00:00")), "period", day));
        assert!(!time_safe(&t().lt_eq(lit("2025-03-02")), "period", day));
        assert!(time_safe(&lit("2025-03-01").lt_eq(t()), "period", day));
        assert!(time_safe(&Expr::Cast(Cast::new(Box::new(t()), datafusion::arrow::datatypes::DataType::Date32)), "period", Granularity::Hour));
        assert!(time_safe(&column("region").eq(lit("Bretagne")), "period", Granularity::Year));
        let tableau = Expr::Cast(Cast::new(Box::new(date_trunc(lit("MONTH"), t())), datafusion::arrow::datatypes::DataType::Date32));
        assert!(time_safe(&tableau, "period", day));
    }

    #[test]
    fn group_keys_within_one_partition() {
        let t = || column("period");
        let month = Granularity::Month;
        assert!(fixes_partition(&date_trunc(lit("month"), t()).alias("m"), "period", month));
        assert!(fixes_partition(&date_trunc(lit("day"), t()), "period", month));
        assert!(fixes_partition(&Expr::Cast(Cast::new(Box::new(date_trunc(lit("MONTH"), t())), datafusion::arrow::datatypes::DataType::Date32)), "period", month));
        assert!(fixes_partition(&Expr::Cast(Cast::new(Box::new(t()), datafusion::arrow::datatypes::DataType::Date32)), "period", month));
        assert!(fixes_partition(&t(), "period", month));
        // A week spans two months, a quarter three, a month of the year every year.
        assert!(!fixes_partition(&date_trunc(lit("week"), t()), "period", month));
        assert!(!fixes_partition(&date_trunc(lit("quarter"), t()), "period", month));
        assert!(!fixes_partition(&date_part(lit("month"), t()), "period", month));
        assert!(!fixes_partition(&Expr::Cast(Cast::new(Box::new(date_trunc(lit("week"), t())), datafusion::arrow::datatypes::DataType::Date32)), "period", month));
        assert!(!fixes_partition(&column("region"), "period", month));
    }
}
