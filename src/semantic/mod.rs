//! The semantic layer: cube definitions compiled into tables that SQL clients query, and the
//! rewrite that turns SQL over those tables into plans over the lake.
//!
//! Each public cube and view becomes a table in schema `public` whose columns are its
//! dimensions and measures. Underneath, a cube table is a *base relation*: the lake tables of
//! its cubes joined as modelled, with one column per dimension and one input column per
//! aggregated ("leaf") measure. [`rewrite::rewrite`] replaces every read of a cube table by an
//! aggregate over that base relation at the query's grain, so that `SUM(conversion)` is
//! `SUM(transactions) / SUM(footfall)` of each group and never a sum of ratios.

pub mod measure_fn;
pub mod barrier;
mod policy;
pub mod provider;
pub mod query;
pub mod rewrite;
pub mod rollup;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::functions_aggregate::expr_fn::{avg, count, count_distinct, max, min, sum};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::prelude::SessionContext;

use crate::error::{Error, ErrorKind, Result};
use crate::model::refs::{self, Ref};
use crate::model::{Cube, DimensionType, Includes, MeasureType, Model, Relationship};

/// Column-name prefixes inside base relations and cube plans; clients never see them.
const DIM: &str = "__d_";
const LEAF_INPUT: &str = "__m_";
const LEAF_AGG: &str = "__l_";
/// Base columns holding a joined cube's primary key (`__k_<alias>__<dimension>`).
const KEY: &str = "__k_";

/// Every cube table, by name.
#[derive(Debug, Default)]
pub struct Semantic {
    tables: BTreeMap<String, Arc<CubeTable>>,
    /// Every rollup of the model, in definition order.
    rollups: Vec<Arc<rollup::RollupDef>>,
}

/// What a column of a cube table is.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberKind {
    Dimension(DimensionType),
    /// A segment: a named boolean filter, served as a boolean column.
    Segment,
    Measure(MeasureType),
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub kind: MemberKind,
    pub data_type: DataType,
    pub title: Option<String>,
    pub description: Option<String>,
    /// For measures: the leaf key (aggregated measures) or the number expression.
    measure: Option<MeasureDef>,
}

impl Member {
    pub fn is_measure(&self) -> bool {
        matches!(self.kind, MemberKind::Measure(_))
    }
}

#[derive(Debug, Clone)]
enum MeasureDef {
    /// Aggregated directly: its key in the base relation.
    Leaf(String),
    /// Calculated from leaf aggregates (columns `__l_<key>`).
    Number(Expr),
}

/// A leaf measure: an aggregate over an input column of the base relation.
#[derive(Debug, Clone)]
struct Leaf {
    kind: MeasureType,
    /// Output type of the aggregate.
    data_type: DataType,
}

/// A served cube or view.
#[derive(Debug, Clone)]
pub struct CubeTable {
    pub name: String,
    pub description: Option<String>,
    /// The joined lake relation (dimension columns under their member names, leaf measure
    /// inputs as `__m_<key>`) in variants by which joined cubes they keep, smallest first;
    /// the last joins every cube.
    bases: Vec<(Vec<String>, LogicalPlan)>,
    /// The cube alias each base column comes from.
    column_alias: HashMap<String, String>,
    /// Each joined cube's parent in the join tree.
    parent_of: HashMap<String, String>,
    /// The cube every join starts from.
    root: String,
    /// The relationship of each joined cube's join from its parent.
    relationship_of: HashMap<String, Relationship>,
    /// Each cube's primary-key columns in the base relation (`__k_…`).
    primary_keys: HashMap<String, Vec<String>>,
    pub members: Vec<Member>,
    pub schema: SchemaRef,
    leaves: BTreeMap<String, Leaf>,
    /// The rollups that can answer reads of this table ([`rollup::TableRollup`]).
    pub rollups: Vec<rollup::TableRollup>,
    /// The rows a restricted user may read ([`CubeTable::restricted`]), as a filter over base
    /// columns; `None`: every row.
    pub policy: Option<Expr>,
    /// The cube's or view's access policies (none: open to everyone).
    pub access_policy: Vec<crate::model::AccessPolicy>,
}

impl CubeTable {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The aggregate expression of a leaf, aliased `__l_<key>`.
    fn leaf_aggregate(&self, key: &str) -> Expr {
        let input = col(format!("{LEAF_INPUT}{key}"));
        let kind = self.leaves.get(key).map(|l| l.kind).unwrap_or(MeasureType::Sum);
        leaf_expr(kind, input).alias(format!("{LEAF_AGG}{key}"))
    }

    /// How a leaf aggregates.
    fn leaf_kind(&self, key: &str) -> MeasureType {
        self.leaves.get(key).map(|l| l.kind).unwrap_or(MeasureType::Sum)
    }

    /// The leaf keys a measure needs.
    fn leaves_of(&self, measure: &str, out: &mut Vec<String>) {
        match self.member(measure).and_then(|m| m.measure.as_ref()) {
            Some(MeasureDef::Leaf(k)) => {
                if !out.contains(k) {
                    out.push(k.clone())
                }
            }
            Some(MeasureDef::Number(e)) => {
                for c in e.column_refs() {
                    if let Some(k) = c.name.strip_prefix(LEAF_AGG) {
                        if !out.iter().any(|x| x == k) {
                            out.push(k.to_string());
                        }
                    }
                }
            }
            None => {}
        }
    }

    /// A measure's value over the leaf aggregate columns `__l_<key>`.
    fn measure_value(&self, measure: &str) -> Option<Expr> {
        match self.member(measure)?.measure.as_ref()? {
            MeasureDef::Leaf(k) => Some(col(format!("{LEAF_AGG}{k}"))),
            MeasureDef::Number(e) => Some(e.clone()),
        }
    }

    /// The base relation joining every cube of the table.
    pub fn base_plan(&self) -> &LogicalPlan {
        &self.bases.last().expect("the full base is always compiled").1
    }

    /// The narrowest base relation that has the given base columns, with the cubes it joins
    /// (the root first).
    fn base_for<'a>(&self, columns: impl IntoIterator<Item = &'a str>) -> (Vec<String>, LogicalPlan) {
        let mut needed: Vec<&str> = Vec::new();
        for c in columns {
            let mut alias = self.column_alias.get(c).map(String::as_str);
            while let Some(a) = alias {
                if !needed.contains(&a) {
                    needed.push(a);
                }
                alias = self.parent_of.get(a).map(String::as_str);
            }
        }
        self.bases
            .iter()
            .find(|(set, _)| needed.iter().all(|a| self.parent_of.get(*a).is_none() || set.iter().any(|s| s == a)))
            .or_else(|| self.bases.last())
            .map(|(set, plan)| (std::iter::once(self.root.clone()).chain(set.iter().cloned()).collect(), plan.clone()))
            .expect("the full base is always compiled")
    }

    /// The cube a base column (dimension, leaf input or key) comes from.
    fn alias_of(&self, column: &str) -> Option<&str> {
        self.column_alias.get(column).map(String::as_str)
    }

    /// Whether the rows of cube `alias` repeat in a base joining `joined` (besides the root):
    /// some other cube of the base is reached from it through a to-many step — down a
    /// one_to_many join, or up a many_to_one join (a store's row repeats for each of its
    /// hours). Such rows must be counted once per key before summing (the fan trap).
    fn multiplied(&self, alias: &str, joined: &[String]) -> bool {
        let chain = |a: &str| -> Vec<String> {
            let mut out = vec![a.to_string()];
            while let Some(p) = self.parent_of.get(out.last().expect("non-empty")) {
                out.push(p.clone());
            }
            out
        };
        let mine = chain(alias);
        joined.iter().filter(|y| y.as_str() != alias).any(|y| {
            let theirs = chain(y);
            let up = mine.iter().take_while(|n| !theirs.contains(n));
            let down = theirs.iter().take_while(|n| !mine.contains(n));
            up.clone().any(|n| self.relationship_of.get(n) == Some(&Relationship::ManyToOne))
                || down.clone().any(|n| self.relationship_of.get(n) == Some(&Relationship::OneToMany))
        })
    }

    /// The primary-key columns of cube `alias` in the base relation, or an error naming the
    /// cube when it declares none.
    fn primary_key_columns(&self, alias: &str) -> Result<&[String]> {
        match self.primary_keys.get(alias) {
            Some(k) if !k.is_empty() => Ok(k),
            _ => Err(Error::new(
                ErrorKind::FeatureNotSupported,
                format!("`{}`: the measures of `{alias}` repeat over a one_to_many join and `{alias}` has no primary key to count each row once", self.name),
            )
            .with_hint(format!("mark the key dimension of `{alias}` with `primary_key: true` in its cube definition"))),
        }
    }

    /// The base columns a leaf aggregate reads.
    fn leaf_input(key: &str) -> String {
        format!("{LEAF_INPUT}{key}")
    }
}

fn leaf_expr(kind: MeasureType, input: Expr) -> Expr {
    match kind {
        MeasureType::Sum | MeasureType::Number => sum(input),
        MeasureType::Avg => avg(input),
        MeasureType::Min => min(input),
        MeasureType::Max => max(input),
        MeasureType::Count => count(input),
        MeasureType::CountDistinct => count_distinct(input),
    }
}

impl Semantic {
    pub fn tables(&self) -> impl Iterator<Item = &Arc<CubeTable>> {
        self.tables.values()
    }

    pub fn table(&self, name: &str) -> Option<&Arc<CubeTable>> {
        self.tables.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Every rollup of the model.
    pub fn rollups(&self) -> &[Arc<rollup::RollupDef>] {
        &self.rollups
    }

    /// Whether `plan` (subqueries included) reads a cube table some rollup may answer.
    pub fn reads_rollups(&self, plan: &LogicalPlan) -> bool {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut found = false;
        let _ = plan.apply_with_subqueries(|n| {
            if let LogicalPlan::TableScan(s) = n
                && let Ok(p) = datafusion::datasource::source_as_provider(&s.source)
                && p.downcast_ref::<provider::CubeTableProvider>().is_some_and(|c| !c.table.rollups.is_empty())
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    }

    /// Compiles every public cube and view of the model against the lake tables registered
    /// in `ctx` (schema `lake`). Type mismatches and SQL errors are reported per member.
    pub async fn compile(model: &Model, ctx: &SessionContext) -> Result<Semantic> {
        let mut tables = BTreeMap::new();
        let mut errors = Vec::new();
        let rollups = match rollup::compile(model, ctx).await {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.message);
                Vec::new()
            }
        };
        let mut specs = Vec::new();
        for c in model.cubes.iter().map(|s| &s.item).filter(|c| c.public != Some(false)) {
            specs.push(Ok(TableSpec::for_cube(c)));
        }
        for v in model.views.iter().map(|s| &s.item).filter(|v| v.public != Some(false)) {
            specs.push(TableSpec::for_view(model, v));
        }
        for spec in specs {
            let compiled = match spec {
                Ok(spec) => match compile_table(ctx, &spec).await {
                    Ok(mut t) => rollup::for_table(ctx, &spec, &t, &rollups).await.map(|r| {
                        t.rollups = r;
                        t
                    }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match compiled {
                Ok(t) => {
                    tables.insert(t.name.clone(), Arc::new(t));
                }
                Err(e) => errors.push(e.message),
            }
        }
        if !errors.is_empty() {
            return Err(Error::config(format!("the cube definitions do not fit the lake: {}", errors.join("; ")))
                .with_hint("fix the definitions (`lakecube validate --lake …` lists these problems) and start again"));
        }
        Ok(Semantic { tables, rollups })
    }
}

/// A table clients may be served, from the model alone (for `lakecube policy explain`).
pub struct ServedTable {
    pub name: String,
    /// Each member, with the members of the table a number measure is computed from.
    pub members: Vec<(String, Vec<String>)>,
    pub access_policy: Vec<crate::model::AccessPolicy>,
}

/// Each table clients may be served: public cubes, then views.
pub fn served_tables(model: &Model) -> Vec<ServedTable> {
    let served = |spec: TableSpec<'_>| {
        let members = spec
            .exposed
            .iter()
            .map(|(exposed, alias, member)| {
                let cube = spec.cubes.iter().find(|(a, _, _)| a == alias).map(|(_, c, _)| *c);
                let sql = cube.and_then(|c| c.measures.iter().find(|m| m.name == *member && m.kind == MeasureType::Number)).and_then(|m| m.sql.clone());
                let uses = sql
                    .and_then(|sql| crate::model::refs::parse(&sql).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| match p {
                        crate::model::refs::Piece::Ref(crate::model::refs::Ref::Name(n)) => {
                            spec.exposed.iter().find(|(_, a, m)| a == alias && *m == n).map(|(e, _, _)| e.clone())
                        }
                        _ => None,
                    })
                    .collect();
                (exposed.clone(), uses)
            })
            .collect();
        ServedTable { name: spec.name.clone(), members, access_policy: spec.access_policy.clone() }
    };
    let mut out = Vec::new();
    for c in model.cubes.iter().map(|s| &s.item).filter(|c| c.public != Some(false)) {
        out.push(served(TableSpec::for_cube(c)));
    }
    for v in model.views.iter().map(|s| &s.item).filter(|v| v.public != Some(false)) {
        if let Ok(spec) = TableSpec::for_view(model, v) {
            out.push(served(spec));
        }
    }
    out
}

/// Which cubes a table joins and which members it exposes.
struct TableSpec<'a> {
    name: String,
    description: Option<String>,
    /// (alias, cube, join from (parent alias, relationship, join sql)) in join order.
    cubes: Vec<(String, &'a Cube, Option<(String, Relationship, String)>)>,
    /// (exposed name, alias, member name).
    exposed: Vec<(String, String, String)>,
    access_policy: Vec<crate::model::AccessPolicy>,
}

impl<'a> TableSpec<'a> {
    /// The sets of joined cubes (besides the root) a base relation may join: all of them,
    /// and, for up to 4 joined cubes, every proper subset closed under "its parent is in it".
    fn join_subsets(&self) -> Vec<Vec<String>> {
        let root = &self.cubes[0].0;
        let joined: Vec<String> = self.cubes.iter().skip(1).map(|(a, _, _)| a.clone()).collect();
        let parent = |a: &str| self.cubes.iter().find(|(x, _, _)| x == a).and_then(|(_, _, j)| j.as_ref()).map(|(p, _, _)| p);
        let mut subsets: Vec<Vec<String>> = vec![joined.clone()];
        if joined.len() <= 4 {
            for mask in 0..(1u32 << joined.len()) {
                let set: Vec<String> = joined.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, a)| a.clone()).collect();
                let closed = set.iter().all(|a| parent(a).is_none_or(|p| p == root || set.contains(p)));
                if closed && set.len() < joined.len() {
                    subsets.push(set);
                }
            }
        }
        subsets
    }

    fn for_cube(c: &'a Cube) -> Self {
        let alias = c.name.clone();
        let mut exposed = Vec::new();
        for d in c.dimensions.iter().filter(|d| d.public != Some(false)) {
            exposed.push((d.name.clone(), alias.clone(), d.name.clone()));
        }
        for m in c.measures.iter().filter(|m| m.public != Some(false)) {
            exposed.push((m.name.clone(), alias.clone(), m.name.clone()));
        }
        for s in c.segments.iter().filter(|s| s.public != Some(false)) {
            exposed.push((s.name.clone(), alias.clone(), s.name.clone()));
        }
        TableSpec { name: c.name.clone(), description: c.description.clone(), cubes: vec![(alias, c, None)], exposed, access_policy: c.access_policy.clone() }
    }

    fn for_view(model: &'a Model, v: &crate::model::View) -> Result<Self> {
        let mut spec = TableSpec { name: v.name.clone(), description: v.description.clone(), cubes: Vec::new(), exposed: Vec::new(), access_policy: v.access_policy.clone() };
        for vc in &v.cubes {
            let path: Vec<&str> = vc.join_path.split('.').collect();
            let mut alias = String::new();
            let mut parent: Option<(String, &Cube)> = None;
            for (i, step) in path.iter().enumerate() {
                alias = path[..=i].join("__");
                let cube = model
                    .cube(step)
                    .ok_or_else(|| Error::config(format!("view `{}`: unknown cube `{step}`", v.name)))?;
                if !spec.cubes.iter().any(|(a, _, _)| *a == alias) {
                    let join = match &parent {
                        None => None,
                        Some((pa, pc)) => {
                            let j = pc.joins.iter().find(|j| j.name == *step).ok_or_else(|| {
                                Error::config(format!("view `{}`: cube `{}` has no join to `{step}`", v.name, pc.name))
                            })?;
                            Some((pa.clone(), j.relationship, j.sql.clone()))
                        }
                    };
                    if join.is_none() && !spec.cubes.is_empty() && i == 0 && spec.cubes[0].0 != alias {
                        return Err(Error::config(format!(
                            "view `{}`: every join_path must start at the same cube (`{}`), not `{step}`",
                            v.name, spec.cubes[0].0
                        )));
                    }
                    spec.cubes.push((alias.clone(), cube, join));
                }
                parent = Some((alias.clone(), cube));
            }
            let cube = parent.expect("non-empty path").1;
            let all: Vec<(String, bool)> = cube
                .dimensions
                .iter()
                .map(|d| (d.name.clone(), d.public != Some(false)))
                .chain(cube.measures.iter().map(|m| (m.name.clone(), m.public != Some(false))))
                .chain(cube.segments.iter().map(|s| (s.name.clone(), s.public != Some(false))))
                .collect();
            let names: Vec<String> = match &vc.includes {
                Includes::All(_) => all.iter().filter(|(_, p)| *p).map(|(n, _)| n.clone()).collect(),
                Includes::List(l) => l.clone(),
            };
            for n in names.into_iter().filter(|n| !vc.excludes.contains(n)) {
                let exposed = if vc.prefix { format!("{}_{n}", cube.name) } else { n.clone() };
                spec.exposed.push((exposed, alias.clone(), n));
            }
        }
        Ok(spec)
    }
}

fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

/// Row-level SQL of a cube's member, with `{CUBE}` → `src` and own-member references inlined.
fn row_sql(cube: &Cube, sql: &str, src: &str, depth: usize) -> Result<String> {
    if depth > 16 {
        return Err(Error::config(format!("cube `{}`: references nest too deep (a cycle?)", cube.name)));
    }
    refs::substitute(sql, |r| {
        let member = match r {
            Ref::ThisCube => return Ok(src.to_string()),
            Ref::Name(n) => n,
            Ref::Qualified(c, m) if c == "CUBE" || *c == cube.name => m,
            Ref::Qualified(c, m) => {
                return Err(format!("`{{{c}.{m}}}`: row-level SQL may only reference its own cube's members"));
            }
        };
        let inner = cube
            .dimensions
            .iter()
            .find(|d| d.name == *member)
            .map(|d| d.sql.clone())
            .or_else(|| cube.segments.iter().find(|s| s.name == *member).map(|s| s.sql.clone()))
            .ok_or_else(|| format!("unknown dimension `{member}`"))?;
        row_sql(cube, &inner, src, depth + 1).map(|s| format!("({s})")).map_err(|e| e.message)
    })
    .map_err(|e| Error::config(format!("cube `{}`: {e}", cube.name)))
}

/// The inner subquery of one cube: its source's columns plus every dimension, segment and
/// leaf measure input.
fn cube_subquery(c: &Cube, leaf_prefix: &str) -> Result<String> {
    let src = "__src";
    let source = match (&c.sql_table, &c.sql) {
        (Some(t), _) => t.clone(),
        (None, Some(sql)) => format!("({sql})"),
        (None, None) => return Err(Error::config(format!("cube `{}` has no sql_table or sql", c.name))),
    };
    let mut cols = vec![format!("{src}.*")];
    for d in &c.dimensions {
        cols.push(format!("({}) AS {}", row_sql(c, &d.sql, src, 0)?, quote(&format!("{DIM}{}", d.name))));
    }
    for s in &c.segments {
        cols.push(format!("({}) AS {}", row_sql(c, &s.sql, src, 0)?, quote(&format!("{DIM}{}", s.name))));
    }
    for m in c.measures.iter().filter(|m| m.kind != MeasureType::Number) {
        let input = match &m.sql {
            Some(sql) => row_sql(c, sql, src, 0)?,
            None => "1".to_string(),
        };
        let input = if m.filters.is_empty() {
            input
        } else {
            let conds: Vec<String> =
                m.filters.iter().map(|f| row_sql(c, &f.sql, src, 0).map(|s| format!("({s})"))).collect::<Result<_>>()?;
            format!("CASE WHEN {} THEN {input} END", conds.join(" AND "))
        };
        cols.push(format!("({input}) AS {}", quote(&format!("{LEAF_INPUT}{leaf_prefix}{}", m.name))));
    }
    Ok(format!("(SELECT {} FROM {source} AS {src})", cols.join(", ")))
}

/// The base column of a cube's primary-key dimension.
fn key_column(alias: &str, dimension: &str) -> String {
    format!("{KEY}{alias}__{dimension}")
}

/// The ON condition of the join of cube `cube` (as `alias`) to its parent `parent_alias`:
/// `{CUBE}.x` and `{x}` are the parent's dimension columns, `{cube.x}` the joined cube's.
fn join_on(spec: &TableSpec<'_>, parent_alias: &str, alias: &str, cube: &Cube, sql: &str) -> Result<String> {
    let parent = spec.cubes.iter().find(|(a, _, _)| a == parent_alias).map(|(_, c, _)| *c).expect("parent first");
    refs::substitute(sql, |r| {
        Ok(match r {
            Ref::ThisCube => quote(parent_alias),
            Ref::Name(n) if *n == cube.name => quote(alias),
            Ref::Name(n) => format!("{}.{}", quote(parent_alias), quote(&format!("{DIM}{n}"))),
            Ref::Qualified(c, m) if c == "CUBE" || *c == parent.name => {
                format!("{}.{}", quote(parent_alias), quote(&format!("{DIM}{m}")))
            }
            Ref::Qualified(c, m) if *c == cube.name => format!("{}.{}", quote(alias), quote(&format!("{DIM}{m}"))),
            Ref::Qualified(c, m) => return Err(format!("join condition references `{c}.{m}`, outside the join")),
        })
    })
    .map_err(|e| Error::config(format!("`{}`: {e}", spec.name)))
}

/// SQL of the base relation with the root cube and the joined cubes in `joined`.
fn base_sql(spec: &TableSpec<'_>, joined: &[String]) -> Result<String> {
    let included = |alias: &str| spec.cubes.first().is_some_and(|(a, _, _)| a == alias) || joined.iter().any(|j| j == alias);
    let mut from = String::new();
    for (alias, cube, join) in spec.cubes.iter().filter(|(a, _, _)| included(a)) {
        let sub = cube_subquery(cube, &format!("{alias}__"))?;
        match join {
            None => from.push_str(&format!("{sub} AS {}", quote(alias))),
            Some((parent_alias, _, sql)) => {
                let on = join_on(spec, parent_alias, alias, cube, sql)?;
                from.push_str(&format!(" LEFT JOIN {sub} AS {} ON {on}", quote(alias)));
            }
        }
    }
    let mut select = Vec::new();
    for (exposed, alias, member) in spec.exposed.iter().filter(|(_, a, _)| included(a)) {
        let cube = spec.cubes.iter().find(|(a, _, _)| a == alias).map(|(_, c, _)| *c).expect("alias known");
        if cube.dimensions.iter().any(|d| d.name == *member) || cube.segments.iter().any(|s| s.name == *member) {
            select.push(format!("{}.{} AS {}", quote(alias), quote(&format!("{DIM}{member}")), quote(exposed)));
        }
    }
    for (alias, cube, _) in spec.cubes.iter().filter(|(a, _, _)| included(a)) {
        for d in cube.dimensions.iter().filter(|d| d.primary_key) {
            let k = key_column(alias, &d.name);
            select.push(format!("{}.{} AS {}", quote(alias), quote(&format!("{DIM}{}", d.name)), quote(&k)));
        }
        for m in cube.measures.iter().filter(|m| m.kind != MeasureType::Number) {
            let key = format!("{alias}__{}", m.name);
            select.push(format!("{}.{} AS {}", quote(alias), quote(&format!("{LEAF_INPUT}{key}")), quote(&format!("{LEAF_INPUT}{key}"))));
        }
    }
    Ok(format!("SELECT {} FROM {from}", select.join(", ")))
}

async fn compile_table(ctx: &SessionContext, spec: &TableSpec<'_>) -> Result<CubeTable> {
    let ctx_err = |what: &str, e: Error| Error::new(e.kind, format!("`{}`: {what}: {}", spec.name, e.message));
    // 1. The base relation, as SQL: every cube joined; plus, for tables with few joins, one
    //    variant per subset of joined cubes, so that a query that needs none of a
    //    many_to_one cube's members does not join it (a LEFT JOIN on a unique key never
    //    changes the row count, so leaving it out changes no answer).
    let parent_of: HashMap<String, String> = spec
        .cubes
        .iter()
        .filter_map(|(a, _, j)| j.as_ref().map(|(p, _, _)| (a.clone(), p.clone())))
        .collect();
    let mut bases = Vec::new();
    for set in &spec.join_subsets() {
        let sql = base_sql(spec, set)?;
        let plan = ctx
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(|e| ctx_err("its SQL does not plan over the lake", e.into()))?;
        bases.push((set.clone(), plan));
    }
    // Smallest first, so the rewrite picks the narrowest base that has what a query needs.
    bases.sort_by_key(|(set, _)| set.len());
    let base = bases.last().expect("the full base").1.clone(); // for types and measures below
    let mut column_alias: HashMap<String, String> = HashMap::new();
    for (exposed, alias, _) in &spec.exposed {
        column_alias.insert(exposed.clone(), alias.clone());
    }
    let mut primary_keys: HashMap<String, Vec<String>> = HashMap::new();
    for (alias, cube, _) in &spec.cubes {
        for m in cube.measures.iter().filter(|m| m.kind != MeasureType::Number) {
            column_alias.insert(format!("{LEAF_INPUT}{alias}__{}", m.name), alias.clone());
        }
        for d in cube.dimensions.iter().filter(|d| d.primary_key) {
            let k = key_column(alias, &d.name);
            column_alias.insert(k.clone(), alias.clone());
            primary_keys.entry(alias.clone()).or_default().push(k);
        }
    }
    let relationship_of: HashMap<String, Relationship> =
        spec.cubes.iter().filter_map(|(a, _, j)| j.as_ref().map(|(_, r, _)| (a.clone(), *r))).collect();
    // Members' types as the rows will have them: the analyzed plan's (an unanalyzed CASE has
    // its first branch's type, `THEN 0.5 ELSE 1` a numeric(1,1) that cannot hold 1).
    let state = ctx.state();
    let base_schema = state
        .analyzer()
        .execute_and_check(base.clone(), state.config_options(), |_, _| {})
        .map(|p| p.schema().clone())
        .unwrap_or_else(|_| base.schema().clone());

    // 2. Leaf aggregates and their types.
    let mut leaves = BTreeMap::new();
    let mut leaf_aggs = Vec::new();
    for (alias, cube, _) in &spec.cubes {
        for m in cube.measures.iter().filter(|m| m.kind != MeasureType::Number) {
            let key = format!("{alias}__{}", m.name);
            leaf_aggs.push(leaf_expr(m.kind, col(format!("{LEAF_INPUT}{key}"))).alias(format!("{LEAF_AGG}{key}")));
            leaves.insert(key, Leaf { kind: m.kind, data_type: DataType::Null });
        }
    }
    let agg_schema: DFSchema = if leaf_aggs.is_empty() {
        DFSchema::empty()
    } else {
        LogicalPlanBuilder::from(base.clone())
            .aggregate(Vec::<Expr>::new(), leaf_aggs)
            .and_then(|b| b.build())
            .map_err(|e| ctx_err("its measures do not aggregate", e.into()))?
            .schema()
            .as_ref()
            .clone()
    };
    for (key, leaf) in leaves.iter_mut() {
        leaf.data_type = agg_schema
            .field_with_unqualified_name(&format!("{LEAF_AGG}{key}"))
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
    }

    // 3. Number measures: expressions over leaf aggregates, integers as floating point so that
    //    ratios never truncate.
    let number_sql = |alias: &str, cube: &Cube, name: &str| -> Result<String> {
        fn expand(cube: &Cube, alias: &str, name: &str, leaves: &BTreeMap<String, Leaf>, depth: usize) -> Result<String> {
            if depth > 16 {
                return Err(Error::config(format!("cube `{}`: measure references nest too deep", cube.name)));
            }
            let m = cube.measures.iter().find(|m| m.name == name).ok_or_else(|| Error::config(format!("unknown measure `{name}`")))?;
            if m.kind != MeasureType::Number {
                let key = format!("{alias}__{name}");
                let is_int = leaves.get(&key).is_some_and(|l| l.data_type.is_integer());
                let c = quote(&format!("{LEAF_AGG}{key}"));
                return Ok(if is_int { format!("CAST({c} AS DOUBLE)") } else { c });
            }
            let sql = m.sql.clone().unwrap_or_default();
            refs::substitute(&sql, |r| {
                let target = match r {
                    Ref::Name(n) => n.clone(),
                    Ref::Qualified(c, n) if c == "CUBE" || *c == cube.name => n.clone(),
                    other => return Err(format!("measure `{name}`: unsupported reference {other:?}")),
                };
                expand(cube, alias, &target, leaves, depth + 1).map(|s| format!("({s})")).map_err(|e| e.message)
            })
            .map_err(|e| Error::config(format!("cube `{}`: {e}", cube.name)))
        }
        expand(cube, alias, name, &leaves, 0)
    };

    // 4. Members, in the order the definitions list them.
    let mut members = Vec::new();
    for (exposed, alias, name) in &spec.exposed {
        let cube = spec.cubes.iter().find(|(a, _, _)| a == alias).map(|(_, c, _)| *c).expect("alias known");
        if let Some(d) = cube.dimensions.iter().find(|d| d.name == *name) {
            let dt = base_schema.field_with_unqualified_name(exposed).map(|f| f.data_type().clone()).unwrap_or(DataType::Null);
            check_dimension_type(&spec.name, exposed, d.kind, &dt)?;
            members.push(Member {
                name: exposed.clone(),
                kind: MemberKind::Dimension(d.kind),
                data_type: dt,
                title: d.title.clone(),
                description: d.description.clone(),
                measure: None,
            });
        } else if let Some(s) = cube.segments.iter().find(|s| s.name == *name) {
            members.push(Member {
                name: exposed.clone(),
                kind: MemberKind::Segment,
                data_type: DataType::Boolean,
                title: s.title.clone(),
                description: s.description.clone(),
                measure: None,
            });
        } else if let Some(m) = cube.measures.iter().find(|m| m.name == *name) {
            let (def, dt) = if m.kind == MeasureType::Number {
                let sql = number_sql(alias, cube, name)?;
                let expr = ctx
                    .parse_sql_expr(&sql, &agg_schema)
                    .map_err(|e| ctx_err(&format!("measure `{exposed}` does not plan"), e.into()))?;
                let dt = expr
                    .get_type(&agg_schema)
                    .map_err(|e| ctx_err(&format!("measure `{exposed}` has no type"), e.into()))?;
                (MeasureDef::Number(expr), dt)
            } else {
                let key = format!("{alias}__{name}");
                let dt = leaves.get(&key).map(|l| l.data_type.clone()).unwrap_or(DataType::Null);
                (MeasureDef::Leaf(key), dt)
            };
            members.push(Member {
                name: exposed.clone(),
                kind: MemberKind::Measure(m.kind),
                data_type: dt,
                title: m.title.clone(),
                description: m.description.clone(),
                measure: Some(def),
            });
        }
    }
    // Dimensions first, then segments, then measures: how BI tools list a table's columns.
    members.sort_by_key(|m| match m.kind {
        MemberKind::Dimension(_) => 0,
        MemberKind::Segment => 1,
        MemberKind::Measure(_) => 2,
    });
    let fields: Vec<Field> = members
        .iter()
        .map(|m| {
            let mut md = HashMap::new();
            if let Some(d) = &m.description {
                md.insert("description".to_string(), d.clone());
            }
            md.insert("lakecube.kind".to_string(), if m.is_measure() { "measure" } else { "dimension" }.to_string());
            Field::new(&m.name, m.data_type.clone(), true).with_metadata(md)
        })
        .collect();
    Ok(CubeTable {
        name: spec.name.clone(),
        description: spec.description.clone(),
        bases,
        column_alias,
        parent_of,
        root: spec.cubes[0].0.clone(),
        relationship_of,
        primary_keys,
        members,
        schema: Arc::new(Schema::new(fields)),
        leaves,
        rollups: Vec::new(),
        policy: None,
        access_policy: spec.access_policy.clone(),
    })
}

fn check_dimension_type(table: &str, name: &str, kind: DimensionType, dt: &DataType) -> Result<()> {
    let ok = match kind {
        DimensionType::Time => matches!(dt, DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)),
        DimensionType::Number => dt.is_numeric(),
        DimensionType::String => matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        DimensionType::Boolean => matches!(dt, DataType::Boolean),
    };
    if ok || matches!(dt, DataType::Null) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "`{table}`: dimension `{name}` is declared `type: {}` but its SQL gives {dt}",
            format!("{kind:?}").to_lowercase()
        )))
    }
}
