//! The grouped read: `Aggregate` over a chain over a cube scan. Measure columns inside
//! SUM/AVG/MIN/MAX/COUNT/MEASURE become the measure's own definition at the aggregate's grain;
//! other aggregates run over the base rows.

use datafusion::common::{Column, DFSchemaRef};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, Cast, Expr, LogicalPlan};

use super::super::MemberKind;
use super::super::rollup::Routing;
use super::super::query::{CubeQuery, DimensionUse, MeasureUse};
use super::base::{aggregate_base, leaves_of};
use super::scope::{Scope, measure_of, output_column, strip_alias, substitute};
use super::shaping::Shaping;
use super::top_groups::TopGroups;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Granularity, MeasureType};

/// Which client aggregates a measure type accepts (after Cube's SQL API).
fn accepts(kind: MeasureType, func: &str, distinct: bool) -> bool {
    use MeasureType::*;
    match (func, distinct) {
        ("measure", _) => true,
        ("sum", false) => matches!(kind, Sum | Count | Number),
        ("count", false) => kind == Count,
        ("count", true) => kind == CountDistinct,
        ("avg", false) => matches!(kind, Avg | Number),
        ("min", false) => matches!(kind, Min | Number),
        ("max", false) => matches!(kind, Max | Number),
        _ => false,
    }
}

fn wrong_aggregate(measure: &str, kind: MeasureType, func: &str, distinct: bool) -> Error {
    let call = if distinct { format!("{}(DISTINCT {measure})", func.to_uppercase()) } else { format!("{}({measure})", func.to_uppercase()) };
    let fitting = match kind {
        MeasureType::Sum => format!("SUM({measure})"),
        MeasureType::Count => format!("COUNT({measure}) or SUM({measure})"),
        MeasureType::CountDistinct => format!("COUNT(DISTINCT {measure})"),
        MeasureType::Avg => format!("AVG({measure})"),
        MeasureType::Min => format!("MIN({measure})"),
        MeasureType::Max => format!("MAX({measure})"),
        MeasureType::Number => format!("SUM({measure})"),
    };
    Error::new(ErrorKind::InvalidAggregate, format!("{call} does not apply to measure `{measure}` of type {}", kind.name()))
        .with_hint(format!("`{measure}` is a {} measure: write {fitting} or MEASURE({measure}) for its value at the query's grain", kind.name()))
}

/// An aggregate of the client's query, resolved.
enum Agg {
    Measure { measure: String },
    /// Any other aggregate, over base rows.
    Other(Expr),
}

pub(super) fn grouped(a: &Aggregate, s: Scope, shape: &Shaping, routing: &Routing) -> Result<(LogicalPlan, CubeQuery)> {
    if let Some(p) = s.post.first() {
        return Err(Error::new(ErrorKind::InvalidAggregate, format!("a measure cannot be filtered in WHERE: {p}"))
            .with_hint("filter measures in HAVING (HAVING SUM(revenue) > 1000)"));
    }
    let mut q = CubeQuery { cube: s.table.name.clone(), filters: s.filter_texts.clone(), ..Default::default() };
    let mut groups = Vec::new();
    for g in &a.group_expr {
        if matches!(g, Expr::GroupingSet(_)) {
            return Err(Error::new(ErrorKind::FeatureNotSupported, "GROUPING SETS, ROLLUP and CUBE over cube tables are not supported yet")
                .with_hint("group by the dimensions and let the BI tool compute totals"));
        }
        let (e, has_measure) = substitute(g, &s)?;
        if has_measure {
            return Err(Error::new(ErrorKind::InvalidAggregate, format!("cannot group by a measure: {g}"))
                .with_hint("group by dimensions; measures are aggregated"));
        }
        q.dimensions.push(dimension_use(g, &e));
        groups.push(e);
    }
    let mut aggs = Vec::new();
    for e in &a.aggr_expr {
        let inner = strip_alias(e);
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(Error::new(ErrorKind::FeatureNotSupported, format!("unsupported aggregate over a cube table: {e}")));
        };
        let name = func.name().to_lowercase();
        let AggregateFunctionParams { args, distinct, filter, order_by, .. } = params;
        let measure = if args.len() == 1 { measure_of(&args[0], &s) } else { None };
        if let Some(m) = measure {
            let member = s.table.member(&m).expect("scope measures are members");
            let MemberKind::Measure(kind) = member.kind else { unreachable!("measure item") };
            if filter.is_some() || !order_by.is_empty() {
                return Err(Error::new(ErrorKind::FeatureNotSupported, format!("FILTER or ORDER BY inside an aggregate of measure `{m}` is not supported"))
                    .with_hint("filter the rows in WHERE instead"));
            }
            if !accepts(kind, &name, *distinct) {
                return Err(wrong_aggregate(&m, kind, &name, *distinct));
            }
            q.measures.push(MeasureUse { measure: m.clone(), wrapper: Some(name.clone()) });
            aggs.push(Agg::Measure { measure: m });
        } else {
            let mut any_measure = false;
            let mut new_args = Vec::new();
            for arg in args {
                let (x, hm) = substitute(arg, &s)?;
                any_measure |= hm;
                new_args.push(x);
            }
            if any_measure {
                return Err(Error::new(ErrorKind::InvalidAggregate, format!("measures can only be aggregated directly, not inside an expression: {inner}"))
                    .with_hint("write SUM(revenue) * 2 rather than SUM(revenue * 2)"));
            }
            let new_filter = match filter {
                Some(f) => Some(Box::new(substitute(f, &s)?.0)),
                None => None,
            };
            let new = Expr::AggregateFunction(AggregateFunction::new_udf(
                func.clone(),
                new_args,
                *distinct,
                new_filter,
                order_by.clone(),
                params.null_treatment,
            ));
            q.other_aggregates.push(inner.to_string());
            aggs.push(Agg::Other(new));
        }
    }
    let top = TopGroups::find(
        shape,
        &groups,
        |e| match e {
            Expr::Column(c) => a.schema.index_of_column(c).ok().filter(|i| *i < groups.len()),
            _ => None,
        },
        &s.table,
    );
    let (plan, route) = build(&s, &groups, &aggs, a.schema.clone(), top, routing)?;
    if let Some((note, id)) = route {
        q.rollup = Some(note);
        q.rollup_id = id;
    }
    Ok((plan, q))
}

/// Builds Filter → Aggregate → Projection over the base relation for a grouped read. `output`
/// is the client's aggregate schema: group keys first, then one column per aggregate.
fn build(s: &Scope, groups: &[Expr], aggs: &[Agg], output: DFSchemaRef, top: Option<TopGroups>, routing: &Routing) -> Result<(LogicalPlan, Option<super::route::Noted>)> {
    let table = &s.table;
    let leaves = leaves_of(table, aggs.iter().filter_map(|a| match a {
        Agg::Measure { measure } => Some(measure),
        Agg::Other(_) => None,
    }));
    let others: Vec<Expr> = aggs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| if let Agg::Other(e) = a { Some(e.clone().alias(format!("__a_{i}"))) } else { None })
        .collect();
    let (b, route) = aggregate_base(s, groups, &leaves, others, top, routing)?;
    let mut out = Vec::new();
    for (i, (qualifier, field)) in output.iter().enumerate() {
        let value = if i < groups.len() {
            Expr::Column(Column::new_unqualified(format!("__g_{i}")))
        } else {
            let k = i - groups.len();
            match &aggs[k] {
                Agg::Measure { measure, .. } => table.measure_value(measure).expect("measure has a value"),
                Agg::Other(_) => Expr::Column(Column::new_unqualified(format!("__a_{k}"))),
            }
        };
        out.push(output_column(value, qualifier, field));
    }
    b.project(out).and_then(|b| b.build()).map(|p| (p, route)).map_err(Error::from)
}


/// Describes a group key for the cube query: a member, a time member at a granularity, or
/// an expression.
pub(super) fn dimension_use(client: &Expr, base: &Expr) -> DimensionUse {
    let members: Vec<String> = base.column_refs().iter().map(|c| c.name.clone()).collect();
    // Tableau casts truncated dates: CAST(DATE_TRUNC('MONTH', period) AS DATE).
    let inner = match strip_alias(base) {
        Expr::Cast(Cast { expr, .. }) if matches!(expr.as_ref(), Expr::ScalarFunction(f) if f.func.name() == "date_trunc") => expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::Column(c) => DimensionUse::Member(c.name.clone()),
        Expr::ScalarFunction(f) if f.func.name() == "date_trunc" && f.args.len() == 2 => {
            let unit = match &f.args[0] {
                Expr::Literal(v, _) => v.to_string().trim_matches('\'').to_lowercase(),
                _ => String::new(),
            };
            let g = match unit.as_str() {
                "hour" => Some(Granularity::Hour),
                "day" => Some(Granularity::Day),
                "week" => Some(Granularity::Week),
                "month" => Some(Granularity::Month),
                "quarter" => Some(Granularity::Quarter),
                "year" => Some(Granularity::Year),
                _ => None,
            };
            match (g, &f.args[1]) {
                (Some(granularity), Expr::Column(c)) => DimensionUse::Time { member: c.name.clone(), granularity },
                _ => DimensionUse::Expr { text: client.to_string(), members },
            }
        }
        _ => DimensionUse::Expr { text: client.to_string(), members },
    }
}

