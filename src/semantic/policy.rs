//! A cube table as one user may read it ([`CubeTable::restricted`]): only the members their
//! access policies show, and a row filter ([`CubeTable::policy`]) that the rewrite puts
//! directly over every relation the table reads, lake or rollup, behind a
//! [`super::barrier::PolicyBarrier`].

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, lit};

use super::{CubeTable, LEAF_AGG, MeasureDef};
use crate::error::{Error, Result};
use crate::model::FilterOperator;
use crate::model::access::{Condition, Grant, Rows};

impl CubeTable {
    /// The table as a user with `grant` sees it: hidden members are not in it (nor the
    /// number measures computed from a hidden measure, which would reveal it), and its rows
    /// are those the grant's conditions allow.
    pub fn restricted(&self, grant: &Grant) -> Result<CubeTable> {
        let mut hidden_leaves: Vec<String> = Vec::new();
        for m in &self.members {
            if !grant.sees(&m.name)
                && let Some(MeasureDef::Leaf(key)) = &m.measure
            {
                hidden_leaves.push(format!("{LEAF_AGG}{key}"));
            }
        }
        let reveals_hidden = |m: &super::Member| match &m.measure {
            Some(MeasureDef::Number(e)) => e.column_refs().iter().any(|c| hidden_leaves.contains(&c.name)),
            _ => false,
        };
        let keep: Vec<bool> = self.members.iter().map(|m| grant.sees(&m.name) && !reveals_hidden(m)).collect();
        let members = self.members.iter().zip(&keep).filter(|(_, k)| **k).map(|(m, _)| m.clone()).collect();
        let fields: Vec<_> = self.schema.fields().iter().filter(|f| self.members.iter().zip(&keep).any(|(m, k)| *k && m.name == *f.name())).cloned().collect();
        let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(fields, self.schema.metadata().clone()));
        let policy = match &grant.rows {
            Rows::All => None,
            Rows::AnyOf(conditions) => Some(any_of(conditions.iter().map(|c| self.condition(c)).collect::<Result<Vec<_>>>()?)),
        };
        Ok(CubeTable { members, schema, policy, ..self.clone() })
    }

    /// A condition over the table's members as a filter over its base columns.
    fn condition(&self, c: &Condition) -> Result<Expr> {
        Ok(match c {
            Condition::Nothing => lit(false),
            Condition::And(cs) => cs.iter().map(|c| self.condition(c)).collect::<Result<Vec<_>>>()?.into_iter().reduce(Expr::and).unwrap_or(lit(true)),
            Condition::Or(cs) => any_of(cs.iter().map(|c| self.condition(c)).collect::<Result<Vec<_>>>()?),
            Condition::Test { member, operator, values } => {
                let m = self.member(member).filter(|m| !m.is_measure()).ok_or_else(|| {
                    Error::config(format!("table `{}`: an access policy filters on `{member}`, which is not one of its dimensions", self.name))
                })?;
                let column = Expr::Column(Column::new_unqualified(&m.name));
                let typed = |v: &String| {
                    ScalarValue::try_from_string(v.clone(), &m.data_type).map(|s| Expr::Literal(s, None)).map_err(|_| {
                        Error::config(format!("table `{}`: an access policy compares `{member}` ({}) with `{v}`, which is not a value of that type", self.name, m.data_type))
                    })
                };
                let like = |pattern: fn(&str) -> String| -> Result<Expr> {
                    if !matches!(m.data_type, datafusion::arrow::datatypes::DataType::Utf8 | datafusion::arrow::datatypes::DataType::Utf8View | datafusion::arrow::datatypes::DataType::LargeUtf8) {
                        return Err(Error::config(format!("table `{}`: `{}` applies to text, and `{member}` is {}", self.name, operator.name(), m.data_type)));
                    }
                    Ok(any_of(values.iter().map(|v| column.clone().ilike(lit(pattern(&escape_like(v))))).collect()))
                };
                // Cube's negative operators keep the rows where the member is NULL.
                let or_null = |e: Expr| column.clone().is_null().or(Expr::Not(Box::new(e)));
                match operator {
                    FilterOperator::Equals => column.clone().in_list(values.iter().map(typed).collect::<Result<_>>()?, false),
                    FilterOperator::NotEquals => or_null(column.clone().in_list(values.iter().map(typed).collect::<Result<_>>()?, false)),
                    FilterOperator::Contains => like(|v| format!("%{v}%"))?,
                    FilterOperator::NotContains => or_null(like(|v| format!("%{v}%"))?),
                    FilterOperator::StartsWith => like(|v| format!("{v}%"))?,
                    FilterOperator::NotStartsWith => or_null(like(|v| format!("{v}%"))?),
                    FilterOperator::EndsWith => like(|v| format!("%{v}"))?,
                    FilterOperator::NotEndsWith => or_null(like(|v| format!("%{v}"))?),
                    FilterOperator::Gt | FilterOperator::Gte | FilterOperator::Lt | FilterOperator::Lte => {
                        let v = typed(values.first().ok_or_else(|| Error::config(format!("table `{}`: `{}` on `{member}` needs a value", self.name, operator.name())))?)?;
                        match operator {
                            FilterOperator::Gt => column.gt(v),
                            FilterOperator::Gte => column.gt_eq(v),
                            FilterOperator::Lt => column.lt(v),
                            _ => column.lt_eq(v),
                        }
                    }
                    FilterOperator::Set => column.is_not_null(),
                    FilterOperator::NotSet => column.is_null(),
                }
            }
        })
    }
}

/// OR of `conditions`; none is no row.
fn any_of(conditions: Vec<Expr>) -> Expr {
    conditions.into_iter().reduce(Expr::or).unwrap_or(lit(false))
}

/// A value matched literally inside a LIKE pattern (`\` is LIKE's escape).
fn escape_like(v: &str) -> String {
    v.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
