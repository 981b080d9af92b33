//! PostgreSQL's typing and arithmetic rules as DataFusion analyzer rules: they work on the
//! logical plan, where every expression's type is known, so they hold for every statement
//! whatever its text (a BI tool's, a driver's, a cube query's plan). One rule per file:
//!
//! - [`unknown_literal`] (before DataFusion's type coercion): a quoted literal has type
//!   *unknown* and takes the type its context needs (`bool_col = 't'`, `1 + '2'`).
//! - [`checked_arith`] (after type coercion): integer `+ - *` raise 22003 on overflow instead
//!   of wrapping around; floating-point division by zero raises 22012 instead of giving
//!   `Infinity`.
//! - [`cast_round`] (after type coercion): a cast of a fraction to an integer type rounds
//!   (numeric half away from zero, floats half to even) instead of truncating.
//! - [`datetime_literal`] (after type coercion): a quoted date or timestamp in one of
//!   PostgreSQL's other input forms (`'2025-03-01 10:00'`, `'March 5, 2025'`) is read.
//! - [`concat_bool`] (before type coercion): a boolean in `concat`, `concat_ws` or `format`
//!   reads `t`/`f`.
//! - [`int4_results`] (after type coercion): `array_length`, `cardinality` and
//!   `array_position` are integers.
//! - [`timestamp_text`] (after type coercion): a timestamp cast to text (or concatenated with
//!   text) reads `2025-03-05 14:07:09`, as PostgreSQL writes it, not Arrow's
//!   `2025-03-05T14:07:09`.
//! - [`numeric_scale`] (after type coercion): `floor`, `ceil` and `trunc` of a numeric have
//!   PostgreSQL's scale (`floor(-1.5)` is `-2`, `trunc(3.789, 1)` is `3.7`).
//! - [`checked_sum`] (after type coercion): `SUM` of integers past a bigint raises 22003
//!   instead of wrapping around.
//! - [`numeric_division`] (before type coercion): `numeric / numeric` and `avg(numeric)` keep
//!   at least 16 significant digits, as PostgreSQL's do, instead of Arrow's 4 extra decimals.
//! - [`float4_promotion`] (before type coercion): `real` with an integer or a numeric is
//!   `double precision`.
//! - [`extract_second`] (before type coercion): `EXTRACT(second …)` keeps the fraction of the
//!   second (`15.500000`), not the whole seconds.
//! - [`sort_subquery`] (before type coercion): a subquery in ORDER BY is computed in a
//!   projection under the sort (DataFusion decorrelates subqueries only there).
//! - [`value_subquery`] (before type coercion, after [`sort_subquery`]): `EXISTS` and `IN`
//!   subqueries in a select list or CASE are computed as scalar subqueries of counts.
//!
//! [`around_coercion`] places them around DataFusion's own analyzer rules. What DataFusion
//! fails on while it plans SQL, before any analyzer rule runs, is typed by expression planners
//! ([`with_planners`]): [`unknown_literal::UnknownLiteralPlanner`] and
//! [`interval_times::IntervalTimesPlanner`] (`interval * number`, `number * interval`,
//! `interval / number`, as PostgreSQL's `interval_mul`).

pub mod cast_round;
pub mod datetime_literal;
pub mod timestamp_text;
pub mod checked_arith;
pub mod checked_sum;
pub mod concat_bool;
pub mod extract_second;
pub mod float4_promotion;
pub mod int4_results;
pub mod interval_times;
pub mod numeric_division;
pub mod numeric_scale;
pub mod sort_subquery;
pub mod unknown_literal;
pub mod value_subquery;

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// One analyzer rule, as DataFusion keeps them.
pub type Rule = Arc<dyn AnalyzerRule + Send + Sync>;

/// DataFusion's analyzer rules (`datafusion`) with PostgreSQL's: `first` (e.g. the cube
/// rewrite) runs before them all; the rules that change types run before type coercion, so
/// that what stands over their expressions is coerced to the new types; [`checked_arith`],
/// [`checked_sum`], [`cast_round`], [`timestamp_text`] and [`numeric_scale`], which read the
/// coerced operand
/// types, after it.
pub fn around_coercion(first: Vec<Rule>, datafusion: Vec<Rule>) -> Vec<Rule> {
    let mut rules = first;
    rules.push(Arc::new(unknown_literal::RULE));
    rules.push(Arc::new(sort_subquery::SortSubquery));
    rules.push(Arc::new(value_subquery::ValueSubquery));
    rules.push(Arc::new(numeric_division::RULE));
    rules.push(Arc::new(float4_promotion::RULE));
    rules.push(Arc::new(concat_bool::RULE));
    rules.push(Arc::new(extract_second::RULE));
    rules.extend(datafusion);
    rules.push(Arc::new(checked_arith::RULE));
    rules.push(Arc::new(checked_sum::RULE));
    rules.push(Arc::new(cast_round::RULE));
    rules.push(Arc::new(datetime_literal::RULE));
    rules.push(Arc::new(int4_results::RULE));
    rules.push(Arc::new(timestamp_text::RULE));
    rules.push(Arc::new(numeric_scale::RULE));
    rules
}

/// An analyzer rule that rewrites a plan's expressions one at a time with `rewrite`
/// ([`rewrite_expressions`]); each rule file defines one as its `RULE`.
#[derive(Debug)]
pub struct ExprRule {
    pub name: &'static str,
    pub rewrite: fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
}

impl AnalyzerRule for ExprRule {
    fn name(&self) -> &str {
        self.name
    }

    fn analyze(&self, plan: LogicalPlan, _: &datafusion::config::ConfigOptions) -> Result<LogicalPlan> {
        rewrite_expressions(plan, &self.rewrite)
    }
}

/// Rewrites every expression of `plan` and of its subqueries bottom-up with `f`, which sees
/// the schema the expression reads (the node's inputs, a scan's table). Top-level
/// expressions keep their names, so the plan's columns stay as they were.
pub(crate) fn rewrite_expressions(
    plan: LogicalPlan,
    f: &dyn Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let mut schema = merge_schema(&node.inputs());
        if let LogicalPlan::TableScan(scan) = &node {
            schema.merge(&DFSchema::try_from_qualified_schema(scan.table_name.clone(), &scan.source.schema())?);
        }
        let names = NamePreserver::new(&node);
        let rewritten = node.map_expressions(|e| {
            let name = names.save(&e);
            Ok(e.transform_up(|e| f(e, &schema))?.update_data(|e| name.restore(e)))
        })?;
        if rewritten.transformed { rewritten.map_data(|p| p.recompute_schema()) } else { Ok(rewritten) }
    })
    .map(|t| t.data)
}

/// A session builder (with DataFusion's default features) with PostgreSQL's typing while
/// DataFusion plans SQL ([`unknown_literal::UnknownLiteralPlanner`], then
/// [`interval_times::IntervalTimesPlanner`], which sees the literals typed), after its planners.
pub fn with_planners(
    mut builder: datafusion::execution::SessionStateBuilder,
) -> datafusion::execution::SessionStateBuilder {
    let planners = builder.expr_planners().get_or_insert_with(Vec::new);
    planners.push(Arc::new(unknown_literal::UnknownLiteralPlanner));
    planners.push(Arc::new(interval_times::IntervalTimesPlanner));
    builder
}

/// A lakecube error raised from inside DataFusion, keeping its SQLSTATE.
pub(crate) fn external(e: crate::error::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

#[cfg(test)]
pub(crate) mod test {
    use datafusion::prelude::SessionContext;

    /// A session with PostgreSQL's analyzer rules around DataFusion's.
    pub fn session() -> SessionContext {
        // As the engine's sessions: a decimal literal is numeric.
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        let rules = super::around_coercion(Vec::new(), datafusion::optimizer::Analyzer::new().rules);
        let builder = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(rules);
        let ctx = SessionContext::new_with_state(super::with_planners(builder).build());
        // With PostgreSQL's functions (to_char, age, div…).
        crate::pg::functions::register(&ctx);
        ctx
    }

    /// The one value `sql` answers, as text, or its error as `[SQLSTATE] message`.
    pub async fn answer(sql: &str) -> String {
        let ctx = session();
        let run = async {
            let batches = ctx.sql(sql).await?.collect().await?;
            let column = batches[0].column(0);
            Ok::<_, datafusion::error::DataFusionError>(
                datafusion::arrow::util::display::array_value_to_string(column, 0).expect("display"),
            )
        };
        match run.await {
            Ok(v) => v,
            Err(e) => {
                let e = crate::error::Error::from(e);
                format!("[{}] {}", e.sqlstate(), e.message)
            }
        }
    }
}
