//! The cube rewrite: every read of a cube table in a logical plan becomes an aggregate over
//! the cube's base relation at the query's grain.
//!
//! It runs on the plan straight out of the SQL planner, before DataFusion's analyzer, so the
//! plan it produces is type-checked and optimized like any other. Three shapes are handled,
//! top-down, so that the outermost match wins:
//!
//! 1. **Grouped**: `Aggregate` over a chain of `Filter` / `SubqueryAlias` / `Projection` over a
//!    cube scan. Measure columns inside SUM/AVG/MIN/MAX/COUNT/MEASURE become the measure's own
//!    definition at the aggregate's grain (Cube's SQL API semantics); other aggregates
//!    (`count(DISTINCT store)`, `min(period)`, `count(*)`) run over the base rows.
//! 2. **Ungrouped**: `Projection` over such a chain (`SELECT region, revenue FROM retail`):
//!    measures at the grain of the selected dimensions.
//! 3. **Anything else** reading a cube table: the table at its finest grain (every dimension).
//!
//! Wrapped queries (Power BI's and Tableau's subqueries and CTEs) need nothing special: the
//! SQL planner inlines them, and the inner grouped read is matched where it stands. Subqueries
//! inside expressions (`IN (SELECT …)`, `EXISTS`, scalar subqueries) are rewritten the same way.
//!
//! One walk, top-down, carries the ORDER BY / LIMIT standing over each node ([`Shaping`]) down
//! to the read it reaches. The engine calls [`rewrite`] on each statement it plans, for the
//! cube queries; [`CubeRewrite`] is the same rewrite as DataFusion's first analyzer rule, so
//! that no plan reaches execution with a cube read left in it, whoever built the plan.
//!
//! Where each part lives: [`scope`] (what names mean over a cube scan), [`grouped`] and
//! [`ungrouped`] (the two read shapes), [`base`] (the aggregate both stand on), [`fan_trap`]
//! (cubes whose rows repeat in a join), [`top_groups`] (LIMIT over groups), [`shaping`].

mod base;
mod fan_trap;
mod grouped;
mod route;
mod scope;
mod shaping;
mod top_groups;
mod ungrouped;

use std::sync::{Arc, OnceLock};

use datafusion::common::Column;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use super::Semantic;
use super::query::CubeQuery;
use super::rollup::Routing;
use crate::error::{Error, Result};
use scope::chain;
use shaping::Shaping;

/// A rewritten plan and the cube queries found in it.
#[derive(Debug)]
pub struct Rewritten {
    pub plan: LogicalPlan,
    pub queries: Vec<CubeQuery>,
}

/// Rewrites every read of a cube table in `plan`, answering from rollups as `routing` allows.
pub fn rewrite(plan: LogicalPlan, sem: &Semantic, routing: &Routing) -> Result<Rewritten> {
    if sem.is_empty() {
        return Ok(Rewritten { plan, queries: vec![] });
    }
    let mut walk = Walk { queries: vec![], failure: None, routing };
    let out = walk.node(plan, &Shaping::default()).map_err(Error::from)?;
    match walk.failure {
        Some(e) => Err(e),
        None => Ok(Rewritten { plan: out.data, queries: walk.queries }),
    }
}

/// The cube rewrite as DataFusion's first analyzer rule (before type coercion, as where the
/// engine calls it). A plan the engine has rewritten already has no cube read left: the
/// rule then walks it and changes nothing.
#[derive(Debug, Default)]
pub struct CubeRewrite {
    /// Set once the cubes are compiled (they are compiled over the session the rule is in).
    semantic: OnceLock<Arc<Semantic>>,
}

impl CubeRewrite {
    /// Gives the rule the cubes; a second call keeps the first cubes and says so.
    pub fn set(&self, semantic: Arc<Semantic>) -> Result<()> {
        self.semantic.set(semantic).map_err(|_| Error::internal("the cube rewrite was given its cubes twice"))
    }
}

impl AnalyzerRule for CubeRewrite {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> datafusion::error::Result<LogicalPlan> {
        match self.semantic.get() {
            // Plans the engine did not rewrite itself read the lake only: routing needs the
            // rollups' state at the lake version read, which only the engine has.
            Some(sem) => rewrite(plan, sem, &Routing::default()).map(|r| r.plan).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "cube_rewrite"
    }
}

/// The one walk: each node is a cube read (rewritten, with the shaping over it) or not (its
/// subqueries and inputs walked, with the shaping that passes through it).
struct Walk<'r> {
    queries: Vec<CubeQuery>,
    /// The first error; the walk stops there.
    failure: Option<Error>,
    routing: &'r Routing,
}

impl Walk<'_> {
    fn node(&mut self, node: LogicalPlan, shape: &Shaping) -> datafusion::error::Result<Transformed<LogicalPlan>> {
        if self.failure.is_some() {
            return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
        }
        match read(&node, shape, self.routing) {
            Some(Ok((plan, mut q))) => {
                shape.describe(&mut q);
                self.queries.push(q);
                // What the read became reads the lake only, apart from subqueries of its
                // filters (`WHERE store IN (SELECT …)`), which may read cubes.
                let plan = self.subqueries(plan)?;
                Ok(Transformed::new(plan.data, true, plan.tnr))
            }
            Some(Err(e)) => {
                self.failure = Some(e);
                Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
            }
            None => {
                let below = shape.below(&node);
                node.map_subqueries(|sub| self.node(sub, &Shaping::default()))?
                    .transform_sibling(|n| n.map_children(|child| self.node(child, &below)))
            }
        }
    }

    /// `plan` with the subqueries of its expressions, at any depth, walked.
    fn subqueries(&mut self, plan: LogicalPlan) -> datafusion::error::Result<Transformed<LogicalPlan>> {
        plan.transform_down(|n| n.map_subqueries(|sub| self.node(sub, &Shaping::default())))
    }
}

/// The read `node` is, rewritten at its grain; `None` when it is not a cube read.
fn read(node: &LogicalPlan, shape: &Shaping, routing: &Routing) -> Option<Result<(LogicalPlan, CubeQuery)>> {
    match node {
        LogicalPlan::Aggregate(a) => Some(chain(&a.input)?.and_then(|s| grouped::grouped(a, s, shape, routing))),
        LogicalPlan::Projection(p) => Some(chain(&p.input)?.and_then(|s| ungrouped::ungrouped(&p.expr, p.schema.clone(), s, shape, routing))),
        LogicalPlan::TableScan(_) => Some(chain(node)?.and_then(|s| {
            let exprs: Vec<Expr> = node.schema().iter().map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name()))).collect();
            ungrouped::ungrouped(&exprs, node.schema().clone(), s, shape, routing)
        })),
        _ => None,
    }
}
