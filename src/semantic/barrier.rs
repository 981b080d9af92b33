//! The policy barrier: a plan node no predicate crosses.
//!
//! A row policy's filter stands directly over the rows it restricts, and the barrier over that
//! filter. DataFusion's optimizer pushes and merges filters freely, and evaluates the parts of
//! a conjunction in any order, so without the barrier a client's predicate that can fail
//! (`1/(CASE WHEN region = 'Bretagne' THEN 0 ELSE 1 END) = 1`) could run on rows the policy
//! hides and reveal them by its error. PostgreSQL solves this with security-barrier quals and
//! LEAKPROOF functions; here the logical node refuses every predicate push-down (the
//! optimizer's default for extension nodes), and its physical node refuses every filter
//! push-down (the physical optimizer's default for plans that do not accept them), dynamic
//! filters of joins and TopK included. Predicates that cannot fail ([`leakproof`]: comparisons
//! of columns with constants, IN lists, IS NULL, AND/OR/NOT of those) are placed below it by
//! the rewrite, beside the policy filter, so that they still prune files.
//!
//! Column pruning does pass through: the node asks its input for the columns asked of it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchemaRef, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, Operator, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

const NAME: &str = "PolicyBarrier";

/// The logical node: its input's rows, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyBarrier {
    input: Arc<LogicalPlan>,
    schema: DFSchemaRef,
}

impl PartialOrd for PolicyBarrier {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.input.partial_cmp(&other.input)
    }
}

impl PolicyBarrier {
    /// `input` behind a barrier.
    pub fn over(input: LogicalPlan) -> LogicalPlan {
        let schema = input.schema().clone();
        LogicalPlan::Extension(Extension { node: Arc::new(PolicyBarrier { input: Arc::new(input), schema }) })
    }
}

impl UserDefinedLogicalNodeCore for PolicyBarrier {
    fn name(&self) -> &str {
        NAME
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{NAME}")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        let input = inputs.swap_remove(0);
        Ok(PolicyBarrier { schema: input.schema().clone(), input: Arc::new(input) })
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }

    fn supports_limit_pushdown(&self) -> bool {
        // A LIMIT below the barrier would count rows before the client's filters above it.
        false
    }
}

/// Whether a predicate can be evaluated on any row without failing, so that evaluating it on
/// rows a policy hides reveals nothing: columns compared with constants, IN lists of
/// constants, BETWEEN constants, IS [NOT] NULL, and AND / OR / NOT of those.
pub fn leakproof(e: &Expr) -> bool {
    use datafusion::logical_expr::expr::InList;
    use datafusion::logical_expr::{Between, BinaryExpr};
    let operand = |e: &Expr| matches!(e, Expr::Column(_) | Expr::Literal(..));
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And | Operator::Or, right }) => leakproof(left) && leakproof(right),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(op, Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::IsDistinctFrom | Operator::IsNotDistinctFrom)
                && operand(left)
                && operand(right)
        }
        Expr::Not(x) => leakproof(x),
        Expr::IsNull(x) | Expr::IsNotNull(x) => operand(x),
        Expr::InList(InList { expr, list, .. }) => operand(expr) && list.iter().all(|v| matches!(v, Expr::Literal(..))),
        Expr::Between(Between { expr, low, high, .. }) => operand(expr) && matches!(**low, Expr::Literal(..)) && matches!(**high, Expr::Literal(..)),
        Expr::Literal(..) => true,
        _ => false,
    }
}

/// The physical node: its input's batches, unchanged; it accepts no filter from above.
#[derive(Debug)]
pub struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PolicyBarrierExec")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        "PolicyBarrierExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(BarrierExec { input: children.swap_remove(0) }))
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// Plans [`PolicyBarrier`] as [`BarrierExec`].
struct BarrierPlanner;

#[async_trait]
impl ExtensionPlanner for BarrierPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(node.as_any().downcast_ref::<PolicyBarrier>().map(|_| Arc::new(BarrierExec { input: physical_inputs[0].clone() }) as Arc<dyn ExecutionPlan>))
    }
}

/// DataFusion's physical planner, with the barrier's planner.
#[derive(Debug)]
pub struct Planner;

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(&self, logical_plan: &LogicalPlan, session_state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(BarrierPlanner)]).create_physical_plan(logical_plan, session_state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn predicates_that_cannot_fail_are_leakproof() {
        assert!(leakproof(&col("region").eq(lit("Bretagne")).and(col("period").gt_eq(lit("2025-01-01")))));
        assert!(leakproof(&col("store").in_list(vec![lit("a"), lit("b")], false).or(col("store").is_null())));
        assert!(!leakproof(&(lit(1) / col("x")).eq(lit(1))));
        assert!(!leakproof(&Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(col("region")), datafusion::arrow::datatypes::DataType::Int32)).eq(lit(5))));
        assert!(!leakproof(&col("a").eq(col("b") + lit(1))));
    }
}
