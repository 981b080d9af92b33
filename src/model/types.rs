//! The cube model: Cube's (cube.dev) YAML keys, as Rust types. Unknown keys are errors.

use serde::{Deserialize, Serialize};

/// One definitions file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    #[serde(default)]
    pub cubes: Vec<Cube>,
    #[serde(default)]
    pub views: Vec<View>,
}

/// A cube: a lake table (or SQL) with its dimensions, measures, joins and segments.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cube {
    pub name: String,
    /// A lake table, e.g. `lake.traffic`.
    pub sql_table: Option<String>,
    /// A SQL query over lake tables, instead of `sql_table`.
    pub sql: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Whether the cube is a table clients see (default true).
    pub public: Option<bool>,
    #[serde(default)]
    pub joins: Vec<Join>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    #[serde(default)]
    pub measures: Vec<Measure>,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub hierarchies: Vec<Hierarchy>,
    #[serde(default)]
    pub pre_aggregations: Vec<PreAggregation>,
    /// Who may read the cube, which members and which rows (Cube's `access_policy`).
    #[serde(default)]
    pub access_policy: Vec<AccessPolicy>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The cube joined to.
    pub name: String,
    pub relationship: Relationship,
    /// The join condition, with `{CUBE}` and `{other_cube.member}` references.
    pub sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    #[serde(alias = "belongs_to", alias = "belongsTo", alias = "manyToOne")]
    ManyToOne,
    #[serde(alias = "has_many", alias = "hasMany", alias = "oneToMany")]
    OneToMany,
    #[serde(alias = "has_one", alias = "hasOne", alias = "oneToOne")]
    OneToOne,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    pub sql: String,
    #[serde(rename = "type")]
    pub kind: DimensionType,
    #[serde(default)]
    pub primary_key: bool,
    pub title: Option<String>,
    pub description: Option<String>,
    pub format: Option<String>,
    pub public: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DimensionType {
    String,
    Number,
    Time,
    Boolean,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub name: String,
    /// The column or expression aggregated; for `number`, an expression over other measures
    /// (`{transactions} / NULLIF({footfall}, 0)`). Optional for `count`.
    pub sql: Option<String>,
    #[serde(rename = "type")]
    pub kind: MeasureType,
    /// Row filters applied before aggregating (`sql:` boolean expressions).
    #[serde(default)]
    pub filters: Vec<Filter>,
    pub format: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasureType {
    Count,
    #[serde(alias = "countDistinct")]
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    Number,
}

impl MeasureType {
    pub fn name(self) -> &'static str {
        match self {
            MeasureType::Count => "count",
            MeasureType::CountDistinct => "count_distinct",
            MeasureType::Sum => "sum",
            MeasureType::Avg => "avg",
            MeasureType::Min => "min",
            MeasureType::Max => "max",
            MeasureType::Number => "number",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub sql: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    /// A boolean expression over the cube's columns and members.
    pub sql: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hierarchy {
    pub name: String,
    pub title: Option<String>,
    /// Dimension names, coarsest first.
    pub levels: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreAggregation {
    pub name: String,
    #[serde(rename = "type", default = "rollup")]
    pub kind: PreAggregationType,
    #[serde(default)]
    pub measures: Vec<String>,
    #[serde(default)]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    pub time_dimension: Option<String>,
    pub granularity: Option<Granularity>,
    pub partition_granularity: Option<Granularity>,
    pub refresh_key: Option<RefreshKey>,
    /// The first instant of the time dimension the rollup holds (`sql:` returning a timestamp).
    pub build_range_start: Option<BuildRange>,
    /// The instant after the last one it holds.
    pub build_range_end: Option<BuildRange>,
}

/// One end of a rollup's time range, as Cube writes it: `{ sql: "SELECT now() - INTERVAL '2 years'" }`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildRange {
    pub sql: String,
}

fn rollup() -> PreAggregationType {
    PreAggregationType::Rollup
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PreAggregationType {
    Rollup,
    OriginalSql,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshKey {
    /// e.g. `1 hour`.
    pub every: Option<String>,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Quarter => "quarter",
            Granularity::Year => "year",
        }
    }

    /// Whether every `self` period lies whole inside one `coarser` period, so that values at
    /// `self` add up to values at `coarser`: hour → day → month → quarter → year, and hours and
    /// days into ISO weeks; a week rolls up into no month, quarter or year (it may straddle
    /// two).
    pub fn rolls_into(self, coarser: Granularity) -> bool {
        use Granularity::*;
        let rank = |g: Granularity| match g {
            Hour => 0,
            Day => 1,
            Week => 2,
            Month => 3,
            Quarter => 4,
            Year => 5,
        };
        match (self, coarser) {
            (a, b) if a == b => true,
            (Week, _) => false,
            (_, Week) => matches!(self, Hour | Day),
            _ => rank(self) < rank(coarser),
        }
    }
}

/// A view: a facade over cubes joined from a root.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
    pub cubes: Vec<ViewCube>,
    /// Who may read the view, which members and which rows (Cube's `access_policy`).
    #[serde(default)]
    pub access_policy: Vec<AccessPolicy>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewCube {
    /// The root cube, or a dotted path of joins from it (`traffic.stores`).
    pub join_path: String,
    /// `"*"` or a list of member names.
    pub includes: Includes,
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Prefix the members with the cube name (`stores_city`).
    #[serde(default)]
    pub prefix: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Includes {
    All(String),
    List(Vec<String>),
}

/// One access policy (Cube's `access_policy` entry): the roles it is for (Cube's groups),
/// the members they see and the rows they see.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// A role the policy is for, or `"*"` for every user.
    pub group: Option<String>,
    /// Several roles at once.
    pub groups: Option<Vec<String>>,
    pub member_level: Option<MemberLevel>,
    pub row_level: Option<RowLevel>,
}

impl AccessPolicy {
    /// The roles the policy names (`*`: everyone).
    pub fn roles(&self) -> Vec<&str> {
        self.group.iter().map(String::as_str).chain(self.groups.iter().flatten().map(String::as_str)).collect()
    }
}

/// The members a policy shows: `includes` (`"*"` or a list, default all) less `excludes`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberLevel {
    pub includes: Option<Includes>,
    pub excludes: Option<Includes>,
}

/// The rows a policy shows: those passing every filter, or all (`allow_all: true`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowLevel {
    #[serde(default)]
    pub filters: Vec<RowFilter>,
    pub allow_all: Option<bool>,
}

/// A row filter in Cube's query filter format: a member, an operator and values, or `or` /
/// `and` of filters. A value `"{ userAttributes.region }"` is the user's attribute (each of
/// its values, for a list).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    pub member: Option<String>,
    pub operator: Option<FilterOperator>,
    #[serde(default)]
    pub values: Vec<FilterValue>,
    pub or: Option<Vec<RowFilter>>,
    pub and: Option<Vec<RowFilter>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FilterOperator {
    Equals,
    NotEquals,
    Contains,
    NotContains,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    Set,
    NotSet,
}

impl FilterOperator {
    pub fn name(self) -> &'static str {
        match self {
            FilterOperator::Equals => "equals",
            FilterOperator::NotEquals => "notEquals",
            FilterOperator::Contains => "contains",
            FilterOperator::NotContains => "notContains",
            FilterOperator::StartsWith => "startsWith",
            FilterOperator::NotStartsWith => "notStartsWith",
            FilterOperator::EndsWith => "endsWith",
            FilterOperator::NotEndsWith => "notEndsWith",
            FilterOperator::Gt => "gt",
            FilterOperator::Gte => "gte",
            FilterOperator::Lt => "lt",
            FilterOperator::Lte => "lte",
            FilterOperator::Set => "set",
            FilterOperator::NotSet => "notSet",
        }
    }

    /// How many values it takes: none (`set`), one (`gt`), or one or more.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            FilterOperator::Set | FilterOperator::NotSet => (0, Some(0)),
            FilterOperator::Gt | FilterOperator::Gte | FilterOperator::Lt | FilterOperator::Lte => (1, Some(1)),
            _ => (1, None),
        }
    }
}

/// A filter value as YAML writes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum FilterValue {
    Text(String),
    Integer(i64),
    Number(f64),
    Bool(bool),
}

impl FilterValue {
    /// The value as text (how it is compared after a cast to the member's type), or the
    /// user attribute it names (`{ userAttributes.region }`).
    pub fn text(&self) -> String {
        match self {
            FilterValue::Text(s) => s.clone(),
            FilterValue::Integer(i) => i.to_string(),
            FilterValue::Number(f) => f.to_string(),
            FilterValue::Bool(b) => b.to_string(),
        }
    }

    /// `Some(Ok(name))` for `{ userAttributes.name }` (also `{ securityContext.name }`, Cube's
    /// older spelling), `Some(Err)` for another `{…}`, `None` for a plain value.
    pub fn attribute(&self) -> Option<Result<String, String>> {
        let FilterValue::Text(s) = self else { return None };
        let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
        let name = inner.strip_prefix("userAttributes.").or_else(|| inner.strip_prefix("securityContext."));
        Some(match name {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_') => Ok(n.to_string()),
            _ => Err(format!("`{s}` is not a user attribute: write {{ userAttributes.NAME }}")),
        })
    }
}
