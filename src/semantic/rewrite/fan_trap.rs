//! The fan trap: a cube whose rows repeat in the base relation of a read (a store's surface
//! once per hour of traffic joined to it) must not be summed or counted as it stands there.

use datafusion::common::{Column, JoinType, NullEquality};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};

use super::super::CubeTable;
use crate::error::{Error, Result};
use crate::model::MeasureType;

/// The leaves of a read split by whether their cube's rows repeat in its base relation.
pub(super) struct Leaves {
    /// Aggregated over the base as it is.
    pub(super) plain: Vec<String>,
    /// By cube alias: leaves whose cube's rows repeat in this base. Summed or counted as they
    /// are, they would count a row once per repetition.
    pub(super) repeated: Vec<(String, Vec<String>)>,
}

impl Leaves {
    /// Splits `leaves` for a base relation that joins the cubes `joined`. Min, max and count
    /// distinct do not change under repetition: they stay plain.
    pub(super) fn split(table: &CubeTable, leaves: &[String], joined: &[String]) -> Leaves {
        let mut repeated: Vec<(String, Vec<String>)> = Vec::new();
        let mut plain: Vec<String> = Vec::new();
        for k in leaves {
            let alias = table.alias_of(&CubeTable::leaf_input(k)).unwrap_or_default().to_string();
            let idempotent = matches!(table.leaf_kind(k), MeasureType::Min | MeasureType::Max | MeasureType::CountDistinct);
            if !idempotent && table.multiplied(&alias, joined) {
                match repeated.iter_mut().find(|(a, _)| *a == alias) {
                    Some((_, ks)) => ks.push(k.clone()),
                    None => repeated.push((alias, vec![k.clone()])),
                }
            } else {
                plain.push(k.clone());
            }
        }
        Leaves { plain, repeated }
    }

    /// Joins to `aggregated` (the read's aggregate, group keys `__g_<i>`) each repeated cube's
    /// leaves: its rows once per (group, primary key) — DISTINCT over the group keys, the key
    /// and the leaf inputs of `rows` (the filtered base) — then aggregated per group, and
    /// joined back on the group keys (NULL groups matching NULL groups).
    pub(super) fn join_repeated(
        &self,
        table: &CubeTable,
        groups: &[Expr],
        mut aggregated: LogicalPlanBuilder,
        rows: impl Fn() -> Result<LogicalPlanBuilder>,
    ) -> Result<LogicalPlanBuilder> {
        for (n, (alias, keys)) in self.repeated.iter().enumerate() {
            let group_col = |i: usize| format!("__g{n}_{i}");
            let mut project: Vec<Expr> = groups.iter().enumerate().map(|(i, g)| g.clone().alias(group_col(i))).collect();
            project.extend(table.primary_key_columns(alias)?.iter().map(|c| Expr::Column(Column::new_unqualified(c))));
            project.extend(keys.iter().map(|k| Expr::Column(Column::new_unqualified(CubeTable::leaf_input(k)))));
            let once = rows()?
                .project(project)
                .and_then(|b| b.distinct())
                .and_then(|b| {
                    b.aggregate(
                        (0..groups.len()).map(|i| Expr::Column(Column::new_unqualified(group_col(i)))).collect::<Vec<_>>(),
                        keys.iter().map(|k| table.leaf_aggregate(k)).collect::<Vec<_>>(),
                    )
                })
                .and_then(|b| b.build())
                .map_err(Error::from)?;
            aggregated = if groups.is_empty() {
                aggregated.cross_join(once).map_err(Error::from)?
            } else {
                let left: Vec<Column> = (0..groups.len()).map(|i| Column::new_unqualified(format!("__g_{i}"))).collect();
                let right: Vec<Column> = (0..groups.len()).map(|i| Column::new_unqualified(group_col(i))).collect();
                aggregated.join_detailed(once, JoinType::Inner, (left, right), None, NullEquality::NullEqualsNull).map_err(Error::from)?
            };
        }
        Ok(aggregated)
    }
}
