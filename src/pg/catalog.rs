//! PostgreSQL's system catalogs over lakecube's tables: `pg_catalog` and `information_schema`,
//! as BI tools and drivers read them when they connect and browse.
//!
//! `pg_catalog` comes from datafusion-pg-catalog: PostgreSQL 17's own static catalog rows
//! (types, procs, operators, …) plus `pg_namespace`, `pg_class`, `pg_attribute` and
//! `pg_database` generated from the session's tables. lakecube overrides a few of its tables
//! with views that say more about lakecube's tables, each for a stated client need:
//!
//! - `pg_description`: the cube and member descriptions from `cube-defs/`, which BI tools show
//!   as table and column comments (and `col_description()` / `obj_description()` read);
//! - `pg_class`: adds `relhasoids` (always false), which PostgreSQL 12 removed but the psqlODBC
//!   09.x that Tableau bundles still selects;
//! - `pg_views`: the cubes and views served in `public` (they are views: computed, not stored);
//! - `pg_settings`: every setting of [`super::settings::DEFAULTS`] (pgjdbc reads
//!   `max_index_keys`, DBeaver `search_path`);
//! - `pg_roles`, `pg_user` and `pg_auth_members`: the users, the config's group roles and who
//!   has which (the crate numbers every role 0 and knows no membership);
//! - the ACL columns (`relacl`, `nspacl`, `datacl`, `attacl`, `proacl`) as arrays of aclitem
//!   text, granting what lakecube grants (`=r/owner`: SELECT to PUBLIC on every relation,
//!   `=U/owner` on schemas, `=c/owner` on databases), so that psql's `\dp`, `\dn+` and `\l+`
//!   (`array_to_string(nspacl, E'\n')`) and psqlODBC's privilege lists read them;
//! - `pg_proc`'s argument lists (`proargnames`, `proargmodes`, `proallargtypes`) as arrays, as
//!   pgcli and psqlODBC's SQLProcedureColumns read them (the crate holds them as text);
//! - `pg_database.datlocprovider` as PostgreSQL's one-letter code (psql's `\l`).
//!
//! Relation and database sizes (`pg_table_size()`, `pg_relation_size()`,
//! `pg_total_relation_size()`, `pg_database_size()`: psql's `\dt+` and `\l+`) are the bytes
//! of the lake's files, which the engine reports through [`RelationSizes`].
//!
//! `information_schema` is PostgreSQL's own shape (real PostgreSQL type names in `data_type`,
//! which Power BI maps column types from), written as views over `pg_catalog` as PostgreSQL
//! itself defines it, so the two never disagree. DataFusion's own `information_schema` (Arrow
//! type names) is not installed.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::Result as DfResult;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::functions::{HasPrivilege, Object, PRIVILEGE_FUNCTIONS};
use super::settings::DEFAULTS;
use crate::error::{Error, ErrorKind, Result};

/// A comment on a table (`column` 0) or on one of its columns (1-based), as PostgreSQL
/// stores it in `pg_description`.
#[derive(Debug, Clone)]
pub struct Description {
    pub schema: String,
    pub table: String,
    pub column: i32,
    pub text: String,
}

const PG_CATALOG: &str = "pg_catalog";
const INFORMATION_SCHEMA: &str = "information_schema";
/// A table registered only while the catalog views are planned.
const SCRATCH: &str = "__lakecube_descriptions";

/// The bytes a relation's data takes (the files of its version last read), by schema and
/// name; `None` for a relation without files of its own (catalogs, cubes: views).
pub type RelationSizes = Arc<dyn Fn(&str, &str) -> Option<u64> + Send + Sync>;

/// The roles `pg_roles` lists: the users who may connect, and the group roles the config
/// grants them (which cannot log in), with their members (`pg_auth_members`). Until the
/// server says otherwise, the default user `lakecube`.
#[derive(Debug, Clone)]
pub struct Roles(Arc<std::sync::RwLock<RoleList>>);

#[derive(Debug, Clone, Default)]
struct RoleList {
    logins: Vec<String>,
    /// Group role → its members.
    groups: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles(Arc::new(std::sync::RwLock::new(RoleList { logins: vec!["lakecube".to_string()], groups: Default::default() })))
    }
}

impl Roles {
    /// The users who may connect.
    pub fn set(&self, names: Vec<String>) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).logins = names;
    }

    /// The group roles and their members.
    pub fn set_groups(&self, groups: std::collections::BTreeMap<String, Vec<String>>) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).groups = groups;
    }

    fn list(&self) -> RoleList {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A role's oid: stable for its name (a hash above PostgreSQL's reserved range), so that
    /// `pg_auth_members` and `pg_roles` agree across sessions and restarts.
    pub fn oid(name: &str) -> i32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        16384 + (h % 2_000_000_000) as i32
    }

    /// `pg_roles`' rows, or with `logins_only` `pg_user`'s, in `pg_roles`' columns.
    fn batch(&self, logins_only: bool) -> DfResult<RecordBatch> {
        use datafusion::arrow::array::{BooleanArray, ListBuilder, StringBuilder, TimestampMicrosecondArray};
        let list = self.list();
        let mut rows: Vec<(String, bool)> = list.logins.iter().map(|n| (n.clone(), true)).collect();
        if !logins_only {
            rows.extend(list.groups.keys().filter(|g| !list.logins.contains(g)).map(|g| (g.clone(), false)));
        }
        let n = rows.len();
        let flag = |v: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![v; n])) };
        let mut config = ListBuilder::new(StringBuilder::new());
        for _ in 0..n {
            config.append(false);
        }
        Ok(RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>())),
                flag(false),
                flag(true),
                flag(false),
                flag(false),
                Arc::new(BooleanArray::from(rows.iter().map(|(_, login)| *login).collect::<Vec<_>>())),
                flag(false),
                Arc::new(Int32Array::from(vec![-1; n])),
                Arc::new(StringArray::from(vec![Some("********"); n])),
                Arc::new(TimestampMicrosecondArray::from(vec![None; n]).with_timezone("UTC")),
                flag(false),
                Arc::new(config.finish()),
                Arc::new(Int32Array::from(rows.iter().map(|(r, _)| Self::oid(r)).collect::<Vec<_>>())),
            ],
        )?)
    }

    fn schema() -> Arc<Schema> {
        use datafusion::arrow::datatypes::TimeUnit;
        let b = |n: &str| Field::new(n, DataType::Boolean, true);
        Arc::new(Schema::new(vec![
            Field::new("rolname", DataType::Utf8, true),
            b("rolsuper"),
            b("rolinherit"),
            b("rolcreaterole"),
            b("rolcreatedb"),
            b("rolcanlogin"),
            b("rolreplication"),
            Field::new("rolconnlimit", DataType::Int32, true),
            Field::new("rolpassword", DataType::Utf8, true),
            Field::new("rolvaliduntil", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            b("rolbypassrls"),
            Field::new("rolconfig", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
            Field::new("oid", DataType::Int32, true),
        ]))
    }

    /// `pg_auth_members`: each member of each group role (PostgreSQL 16's columns).
    fn members(&self) -> DfResult<RecordBatch> {
        use datafusion::arrow::array::BooleanArray;
        let list = self.list();
        let pairs: Vec<(i32, i32)> =
            list.groups.iter().flat_map(|(g, members)| members.iter().map(move |m| (Self::oid(g), Self::oid(m)))).collect();
        let n = pairs.len();
        let int = |f: &dyn Fn(usize) -> i32| -> ArrayRef { Arc::new(Int32Array::from((0..n).map(f).collect::<Vec<_>>())) };
        let flag = |v: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![v; n])) };
        let schema = Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, true),
            Field::new("roleid", DataType::Int32, true),
            Field::new("member", DataType::Int32, true),
            Field::new("grantor", DataType::Int32, true),
            Field::new("admin_option", DataType::Boolean, true),
            Field::new("inherit_option", DataType::Boolean, true),
            Field::new("set_option", DataType::Boolean, true),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![int(&|i| 16384 + i as i32), int(&|i| pairs[i].0), int(&|i| pairs[i].1), int(&|_| 10), flag(false), flag(true), flag(true)],
        )?)
    }
}

#[async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        let list = self.list();
        list.logins.iter().chain(list.groups.keys()).cloned().collect()
    }

    /// Users may log in and read, group roles only read; none is a superuser or may create
    /// anything (lakecube is read-only for clients).
    async fn role(&self, name: &str) -> Option<Role> {
        let list = self.list();
        let login = list.logins.iter().any(|r| r == name);
        (login || list.groups.contains_key(name)).then(|| Role {
            name: name.to_string(),
            is_superuser: false,
            can_login: login,
            can_create_db: false,
            can_create_role: false,
            can_create_user: false,
            can_replication: false,
            grants: vec![],
            inherited_roles: vec![],
        })
    }
}

/// A catalog table computed when it is read (the roles change when the server's config is
/// loaded, after the catalog is installed; the audit log and the lake's history all the time).
struct Live {
    schema: Arc<Schema>,
    rows: Arc<dyn Fn() -> futures::future::BoxFuture<'static, DfResult<RecordBatch>> + Send + Sync>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("schema", &self.schema).finish()
    }
}

#[async_trait]
impl TableProvider for Live {
    fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }
    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::View
    }
    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        MemTable::try_new(self.schema.clone(), vec![vec![(self.rows)().await?]])?.scan(state, projection, filters, limit).await
    }
}

/// A table whose rows are computed each time it is read (catalog rows that change while the
/// server runs: the roles, the audit log).
pub fn live(rows: impl Fn() -> DfResult<RecordBatch> + Send + Sync + 'static) -> Result<Arc<dyn TableProvider>> {
    let schema = rows()?.schema();
    let rows = Arc::new(rows);
    Ok(live_async(schema, move || {
        let rows = rows.clone();
        Box::pin(async move { rows() })
    }))
}

/// [`live`] with rows that take a wait to compute (the lake's history, from its Delta logs).
pub fn live_async(schema: Arc<Schema>, rows: impl Fn() -> futures::future::BoxFuture<'static, DfResult<RecordBatch>> + Send + Sync + 'static) -> Arc<dyn TableProvider> {
    Arc::new(Live { schema, rows: Arc::new(rows) })
}

/// Who a user's catalog is for, for the has_*_privilege functions' user argument: the names
/// answered from the catalog itself (the user, the role they act as), and the answer for
/// anyone else (`None` for a role that does not exist).
#[derive(Clone)]
pub struct Grantee {
    pub names: Vec<String>,
    pub others: Arc<dyn Fn(&str, Object<'_>) -> Option<bool> + Send + Sync>,
}

/// Installs `pg_catalog` and `information_schema` into the session's catalog. `grantee` is
/// the user a per-user catalog is for (`None`: the catalog serves everyone alike).
pub async fn install(ctx: &SessionContext, catalog_name: &str, descriptions: &[Description], roles: Roles, sizes: RelationSizes, grantee: Option<Grantee>) -> Result<()> {
    datafusion_pg_catalog::setup_pg_catalog(ctx, catalog_name, roles.clone())
        .map_err(|e| Error::internal(format!("pg_catalog setup: {e}")))?;
    super::type_names::install(ctx);
    let catalog = ctx
        .catalog(catalog_name)
        .ok_or_else(|| Error::internal("catalog missing after pg_catalog setup"))?;
    let inner = catalog.schema(PG_CATALOG).ok_or_else(|| Error::internal("pg_catalog missing"))?;

    // Views are planned against the crate's tables, then put in front of them.
    ctx.register_table(SCRATCH, descriptions_table(descriptions)?).map_err(Error::from)?;
    let mut overrides: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
    for (name, sql) in PG_CATALOG_VIEWS {
        overrides.insert(name.to_string(), view(ctx, &sql.replace("{system_oid}", &system_oid_sql())).await?);
    }
    ctx.deregister_table(SCRATCH).map_err(Error::from)?;
    overrides.insert("pg_settings".into(), settings_table()?);
    let r = roles.clone();
    overrides.insert("pg_roles".into(), live(move || r.batch(false))?);
    let r = roles.clone();
    overrides.insert("pg_user".into(), live(move || {
        let b = r.batch(true)?;
        // pg_user's columns, from pg_roles'.
        let pick = |n: &str| b.column_by_name(n).cloned().expect("pg_roles column");
        let schema = Schema::new(vec![
            Field::new("usename", DataType::Utf8, true),
            Field::new("usesysid", DataType::Int32, true),
            Field::new("usecreatedb", DataType::Boolean, true),
            Field::new("usesuper", DataType::Boolean, true),
            Field::new("userepl", DataType::Boolean, true),
            Field::new("usebypassrls", DataType::Boolean, true),
            Field::new("passwd", DataType::Utf8, true),
            Field::new("valuntil", b.schema().field_with_name("rolvaliduntil")?.data_type().clone(), true),
            Field::new("useconfig", DataType::Utf8, true),
        ]);
        let config: ArrayRef = Arc::new(StringArray::from(vec![None::<String>; b.num_rows()]));
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![pick("rolname"), pick("oid"), pick("rolcreatedb"), pick("rolsuper"), pick("rolreplication"), pick("rolbypassrls"), pick("rolpassword"), pick("rolvaliduntil"), config],
        )?)
    })?);
    let r = roles.clone();
    overrides.insert("pg_auth_members".into(), live(move || r.members())?);
    catalog
        .register_schema(PG_CATALOG, Arc::new(PgCatalog { inner, overrides }))
        .map_err(Error::from)?;

    register_function_info(ctx, sizes, grantee).await?;

    let info = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(INFORMATION_SCHEMA, info.clone()).map_err(Error::from)?;
    for (name, sql) in INFORMATION_SCHEMA_VIEWS {
        info.register_table(name.to_string(), view(ctx, sql).await?).map_err(Error::from)?;
    }
    for (name, columns) in INFORMATION_SCHEMA_EMPTY {
        info.register_table(name.to_string(), view(ctx, &empty_view_sql(columns)).await?).map_err(Error::from)?;
    }
    Ok(())
}

async fn view(ctx: &SessionContext, sql: &str) -> Result<Arc<dyn TableProvider>> {
    let plan = ctx
        .sql(sql)
        .await
        .map_err(|e| Error::internal(format!("catalog view does not plan: {e}\n{sql}")))?
        .into_unoptimized_plan();
    Ok(Arc::new(ViewTable::new(plan, Some(sql.to_string()))))
}

/// `pg_get_function_result(oid)` and `pg_get_function_arguments(oid)` (psql's `\df`),
/// `regproc_oid(name)`, `to_regtype(name)` and `regtype_names(oids)`, from the static
/// `pg_proc` and `pg_type`; `regclass_oid(name)`, `to_regclass(name)` and the size functions
/// over the relations and databases served.
async fn register_function_info(ctx: &SessionContext, sizes: RelationSizes, grantee: Option<Grantee>) -> Result<()> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    let collect = |sql: &'static str| async move {
        ctx.sql(sql).await?.collect().await
    };
    let as_text = texts;
    let oid_list = |s: &str| -> Vec<i64> {
        s.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).filter_map(|t| t.parse().ok()).collect()
    };
    let mut type_names: HashMap<i64, String> = HashMap::new();
    // datafusion-pg-catalog's format_type names the types it has no word for `oid(705)`;
    // PostgreSQL's gives their typname (`unknown`, `point`, `oidvector`).
    let names_sql = "SELECT CAST(oid AS BIGINT), CASE WHEN format_type(oid, NULL) LIKE 'oid(%' THEN typname ELSE format_type(oid, NULL) END FROM pg_catalog.pg_type";
    for b in collect(names_sql).await? {
        let oids = as_text(b.column(0).as_ref())?;
        let names = as_text(b.column(1).as_ref())?;
        for (o, n) in oids.into_iter().zip(names) {
            if let (Some(o), Some(n)) = (o.and_then(|o| o.parse().ok()), n) {
                type_names.insert(o, n);
            }
        }
    }
    register_to_regtype(ctx, &type_names);
    let name_of = |oid: i64| type_names.get(&oid).cloned().unwrap_or_else(|| oid.to_string());
    let mut proc_oids: HashMap<String, i32> = HashMap::new();
    let mut results: HashMap<i64, String> = HashMap::new();
    let mut arguments: HashMap<i64, String> = HashMap::new();
    for b in collect("SELECT CAST(oid AS BIGINT), CAST(prorettype AS BIGINT), proargtypes, proretset, proname FROM pg_catalog.pg_proc").await? {
        let oids = as_text(b.column(0).as_ref())?;
        let rets = as_text(b.column(1).as_ref())?;
        let args = as_text(b.column(2).as_ref())?;
        let sets = as_text(b.column(3).as_ref())?;
        let names = as_text(b.column(4).as_ref())?;
        for i in 0..oids.len() {
            let Some(oid) = oids[i].as_deref().and_then(|o| o.parse::<i64>().ok()) else { continue };
            if let Some(n) = &names[i] {
                let e = proc_oids.entry(n.clone()).or_insert(oid as i32);
                *e = (*e).min(oid as i32);
            }
            let ret = rets[i].as_deref().and_then(|r| r.parse().ok()).map(name_of).unwrap_or_default();
            let setof = matches!(sets[i].as_deref(), Some("true" | "t"));
            results.insert(oid, if setof { format!("SETOF {ret}") } else { ret });
            let list = args[i].as_deref().map(oid_list).unwrap_or_default();
            arguments.insert(oid, list.into_iter().map(name_of).collect::<Vec<_>>().join(", "));
        }
    }
    for (name, map) in [("pg_get_function_result", results), ("pg_get_function_arguments", arguments)] {
        let map = Arc::new(map);
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let oids = arrays[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let out: StringArray =
                    (0..oids.len()).map(|i| if oids.is_valid(i) { map.get(&oids.value(i)).cloned() } else { None }).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ));
    }
    // pg_typeof(value), and regtype_names(oids): the names `oids::regtype[]` shows
    // (rewrite::regtype_names).
    let type_names = Arc::new(type_names);
    ctx.register_udf(TypeNames::udf("pg_typeof", &type_names));
    ctx.register_udf(TypeNames::udf("regtype_names", &type_names));
    // regclass_oid(name): the oid of the relation a (possibly qualified, possibly quoted) name
    // designates, unqualified names searched in pg_catalog then public (PostgreSQL's
    // search path); an unknown relation is an error, as in PostgreSQL. to_regclass(name): the
    // same, NULL for an unknown relation. The relations are those of the engine at start.
    let mut relations = Relations::default();
    for b in collect("SELECT CAST(c.oid AS BIGINT), n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace").await? {
        let oids = as_text(b.column(0).as_ref())?;
        let schemas = as_text(b.column(1).as_ref())?;
        let names = as_text(b.column(2).as_ref())?;
        for i in 0..oids.len() {
            if let (Some(o), Some(s), Some(n)) = (oids[i].as_deref().and_then(|o| o.parse().ok()), &schemas[i], &names[i]) {
                relations.by_name.insert((s.clone(), n.clone()), o);
                relations.by_oid.insert(o, (s.clone(), n.clone()));
            }
        }
    }
    let relations = Arc::new(relations);
    register_privileges(ctx, &relations, grantee, collect("SELECT CAST(attrelid AS BIGINT), attname, CAST(attnum AS BIGINT) FROM pg_catalog.pg_attribute WHERE attnum > 0").await?, collect("SELECT nspname FROM pg_catalog.pg_namespace").await?)?;
    let r = relations.clone();
    ctx.register_udf(oid_lookup_udf("regclass_oid", move |name| r.resolve(name).map(Some)));
    let r = relations.clone();
    ctx.register_udf(oid_lookup_udf("to_regclass", move |name| Ok(r.resolve(name).ok())));
    register_sizes(ctx, relations, sizes, collect("SELECT CAST(oid AS BIGINT), datname FROM pg_catalog.pg_database").await?)?;
    // pg_get_indexdef(index [, column, pretty]): an index's CREATE INDEX statement, or with a
    // column number > 0 that key column's name (pgjdbc's getIndexInfo, SQLAlchemy's index
    // reflection); NULL for an oid that is no index of a relation served here.
    let mut indexes: HashMap<i64, (String, Vec<String>)> = HashMap::new();
    let index_rows = collect(
        "SELECT CAST(i.indexrelid AS BIGINT), i.indisunique, ci.relname, n.nspname, ct.relname, i.indkey, am.amname,
                (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum > 0)
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
         JOIN pg_catalog.pg_class ct ON ct.oid = i.indrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = ct.relnamespace
         LEFT JOIN pg_catalog.pg_am am ON am.oid = ci.relam",
    )
    .await?;
    for b in index_rows {
        let cols: Vec<Vec<Option<String>>> = (0..7).map(|k| as_text(b.column(k).as_ref())).collect::<Result<_>>()?;
        let lists = b.column(7).as_list::<i32>();
        for r in 0..b.num_rows() {
            let Some(oid) = cols[0][r].as_deref().and_then(|o| o.parse().ok()) else { continue };
            let table_columns = if lists.is_null(r) { vec![] } else { as_text(lists.value(r).as_ref())?.into_iter().map(Option::unwrap_or_default).collect() };
            let keys: Vec<String> = cols[5][r]
                .as_deref()
                .map(oid_list)
                .unwrap_or_default()
                .into_iter()
                .map(|k| table_columns.get((k as usize).wrapping_sub(1)).cloned().unwrap_or_else(|| k.to_string()))
                .collect();
            let unique = matches!(cols[1][r].as_deref(), Some("true" | "t"));
            let def = format!(
                "CREATE {}INDEX {} ON {}.{} USING {} ({})",
                if unique { "UNIQUE " } else { "" },
                cols[2][r].clone().unwrap_or_default(),
                cols[3][r].clone().unwrap_or_default(),
                cols[4][r].clone().unwrap_or_default(),
                cols[6][r].clone().unwrap_or_else(|| "btree".into()),
                keys.join(", ")
            );
            indexes.insert(oid, (def, keys));
        }
    }
    let indexes = Arc::new(indexes);
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(IndexDef { indexes, signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable) }));
    // regproc_oid(name): the oid of the function a regproc column names (the lowest, for an
    // overloaded name, as a regproc column only ever names one of them).
    ctx.register_udf(oid_lookup_udf("regproc_oid", move |name| {
        let n = name.strip_prefix("pg_catalog.").unwrap_or(name);
        Ok(if n == "-" { Some(0) } else { proc_oids.get(n).copied() })
    }));
    Ok(())
}

/// The has_*_privilege functions over what this catalog serves: a schema, relation or column
/// is served when it is in the catalog (a user's catalog holds only what they may read), a
/// database or function always. A relation named but not served is false, whether it exists
/// for someone else or not at all (PostgreSQL raises 42P01 for the latter: lakecube does not
/// tell the two apart, so a name reveals nothing), an unknown oid NULL, as in PostgreSQL. For
/// another user than the catalog's, [`Grantee::others`] answers, about what this catalog
/// serves only (anything else is false, so that no name hidden from the session is confirmed).
fn register_privileges(ctx: &SessionContext, relations: &Arc<Relations>, grantee: Option<Grantee>, attributes: Vec<RecordBatch>, namespaces: Vec<RecordBatch>) -> Result<()> {
    let text = |a: &ArrayRef| texts(a.as_ref());
    let mut columns: HashMap<i32, Vec<(String, i64)>> = HashMap::new();
    for b in &attributes {
        let (rels, names, nums) = (text(b.column(0))?, text(b.column(1))?, text(b.column(2))?);
        for i in 0..b.num_rows() {
            if let (Some(r), Some(n), Some(k)) = (rels[i].as_deref().and_then(|r| r.parse().ok()), &names[i], nums[i].as_deref().and_then(|k| k.parse().ok())) {
                columns.entry(r).or_default().push((n.clone(), k));
            }
        }
    }
    let mut schemas = std::collections::HashSet::new();
    for b in &namespaces {
        schemas.extend(text(b.column(0))?.into_iter().flatten());
    }
    let rels = relations.clone();
    // A relation argument's oid in this catalog: `Err(())` for an oid it does not hold.
    let relation = move |r: &str| -> std::result::Result<Option<i32>, ()> {
        match r.trim().parse::<i32>() {
            Ok(oid) => rels.by_oid.contains_key(&oid).then_some(Some(oid)).ok_or(()),
            Err(_) => Ok(rels.resolve(r).ok()),
        }
    };
    let own = move |object: Object<'_>| -> Option<bool> {
        match object {
            Object::Database(_) | Object::Function(_) => Some(true),
            Object::Schema(s) => Some(schemas.contains(s.trim_matches('"'))),
            Object::Relation(r) => relation(r).ok().map(|oid| oid.is_some()),
            Object::Column(r, c) => {
                let Some(oid) = relation(r).ok()? else { return Some(false) };
                let cols = columns.get(&oid).map(Vec::as_slice).unwrap_or_default();
                Some(match c.trim().parse::<i64>() {
                    Ok(k) => cols.iter().any(|(_, n)| *n == k),
                    Err(_) => cols.iter().any(|(n, _)| n == c),
                })
            }
        }
    };
    let rels = relations.clone();
    let objects: super::functions::Objects = Arc::new(move |user: Option<&str>, object: Object<'_>| match (&grantee, user) {
        (Some(g), Some(u)) if !g.names.iter().any(|n| n == u) && u.parse::<i64>().is_err() => {
            // Another user, about what this session is served only: of a table or column
            // hidden from it, nothing is said (not even whether someone else may read it).
            if !own(object)? {
                return Some(false);
            }
            // A relation given by this catalog's oid, by its qualified name.
            let named = |r: &str| r.trim().parse::<i32>().ok().map(|oid| rels.by_oid.get(&oid).map(|(s, n)| format!("{s}.{n}")));
            match object {
                Object::Relation(r) => match named(r) {
                    Some(Some(q)) => (g.others)(u, Object::Relation(&q)),
                    Some(None) => None,
                    None => (g.others)(u, object),
                },
                Object::Column(r, c) => match named(r) {
                    Some(Some(q)) => (g.others)(u, Object::Column(&q, c)),
                    Some(None) => None,
                    None => (g.others)(u, object),
                },
                _ => (g.others)(u, object),
            }
        }
        _ => own(object),
    });
    for name in PRIVILEGE_FUNCTIONS {
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(HasPrivilege::new(name, Some(objects.clone()))));
    }
    Ok(())
}

/// A column's values as text (NULL as `None`).
fn texts(a: &dyn datafusion::arrow::array::Array) -> Result<Vec<Option<String>>> {
    use datafusion::arrow::array::{Array, AsArray};
    let a = datafusion::arrow::compute::cast(&datafusion::arrow::array::make_array(a.to_data()), &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect())
}

/// The relations served (pg_class), by schema and name and by oid.
#[derive(Debug, Default)]
struct Relations {
    by_name: HashMap<(String, String), i32>,
    by_oid: HashMap<i32, (String, String)>,
}

impl Relations {
    /// The oid of the relation a name designates (a number is an oid), as `'name'::regclass`.
    fn resolve(&self, name: &str) -> std::result::Result<i32, String> {
        if let Ok(oid) = name.trim().parse::<i32>() {
            return Ok(oid);
        }
        let parts = crate::pg::names::split_qualified_name(name);
        let found = match parts.as_slice() {
            [schema, name] => self.by_name.get(&(schema.clone(), name.clone())),
            [name] => ["pg_catalog", "public"].iter().find_map(|s| self.by_name.get(&(s.to_string(), name.clone()))),
            _ => None,
        };
        found.copied().ok_or_else(|| format!("relation \"{name}\" does not exist"))
    }
}

/// `pg_relation_size(rel [, fork])`, `pg_table_size(rel)`, `pg_total_relation_size(rel)`,
/// `pg_indexes_size(rel)` (a relation by oid or name) and `pg_database_size(db)` (by name or
/// oid): the bytes of the lake's files. A relation without files (a catalog, a cube) takes 0
/// bytes, as a view does in PostgreSQL; there are no indexes; a database holds every relation
/// served. An unknown oid is NULL, an unknown name an error, as in PostgreSQL.
fn register_sizes(ctx: &SessionContext, relations: Arc<Relations>, sizes: RelationSizes, databases: Vec<RecordBatch>) -> Result<()> {
    use super::functions::ObjectMeasure;
    let bytes = {
        let sizes = sizes.clone();
        move |oid: i32, relations: &Relations| relations.by_oid.get(&oid).map(|(s, n)| sizes(s, n).unwrap_or(0) as i64)
    };
    let relation = move |relations: &Relations, rel: &str| -> Result<Option<i32>> {
        match rel.trim().parse::<i32>() {
            Ok(oid) => Ok(relations.by_oid.contains_key(&oid).then_some(oid)),
            Err(_) => relations.resolve(rel).map(Some).map_err(|e| Error::new(ErrorKind::UndefinedTable, e)),
        }
    };
    for name in ["pg_relation_size", "pg_table_size", "pg_total_relation_size", "pg_indexes_size"] {
        let (relations, bytes) = (relations.clone(), bytes.clone());
        ctx.register_udf(ObjectMeasure::udf(name, move |rel, fork| {
            let Some(oid) = relation(&relations, rel)? else { return Ok(None) };
            Ok(match (name, fork.map(str::trim)) {
                ("pg_indexes_size", _) | ("pg_relation_size", Some("fsm" | "vm" | "init")) => Some(0),
                ("pg_relation_size", Some(f)) if f != "main" => {
                    return Err(Error::new(ErrorKind::InvalidParameterValue, format!("invalid fork name \"{f}\""))
                        .with_hint("the forks are main, fsm, vm and init"));
                }
                _ => bytes(oid, &relations),
            })
        }));
    }
    let mut names: HashMap<String, i64> = HashMap::new();
    for b in databases {
        use datafusion::arrow::array::AsArray;
        let oids = datafusion::arrow::compute::cast(b.column(0), &DataType::Int64)?;
        let datnames = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        for (o, n) in oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().zip(datnames.as_string::<i32>().iter()) {
            if let (Some(o), Some(n)) = (o, n) {
                names.insert(n.to_string(), o);
            }
        }
    }
    ctx.register_udf(ObjectMeasure::udf("pg_database_size", move |db, _| {
        let known = names.contains_key(db) || db.trim().parse::<i64>().is_ok_and(|o| names.values().any(|v| *v == o));
        if !known {
            return Err(Error::new(ErrorKind::UndefinedObject, format!("database \"{db}\" does not exist")));
        }
        Ok(Some(relations.by_oid.keys().filter_map(|oid| bytes(*oid, &relations)).sum()))
    }));
    Ok(())
}

/// The functions answered from the types' names (`format_type`'s, by oid):
/// `pg_typeof(value)`, the name of the type a value is sent as (`integer`, `numeric`,
/// `timestamp without time zone`, `text[]`), and `regtype_names(oids)`, a list of type oids or
/// an oidvector's text ("23 25") as the list of the types' names (an oid of no type shows as
/// its number, as in PostgreSQL).
#[derive(Debug)]
struct TypeNames {
    function: &'static str,
    names: Arc<HashMap<i64, String>>,
    signature: datafusion::logical_expr::Signature,
}

impl TypeNames {
    fn udf(function: &'static str, names: &Arc<HashMap<i64, String>>) -> datafusion::logical_expr::ScalarUDF {
        let signature = datafusion::logical_expr::Signature::any(1, datafusion::logical_expr::Volatility::Stable);
        datafusion::logical_expr::ScalarUDF::from(TypeNames { function, names: names.clone(), signature })
    }

    fn name_of(&self, oid: i64) -> String {
        self.names.get(&oid).cloned().unwrap_or_else(|| oid.to_string())
    }
}

impl PartialEq for TypeNames {
    fn eq(&self, other: &Self) -> bool {
        self.function == other.function && Arc::ptr_eq(&self.names, &other.names)
    }
}
impl Eq for TypeNames {}
impl std::hash::Hash for TypeNames {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.function.hash(state)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for TypeNames {
    fn name(&self) -> &str {
        self.function
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(match self.function {
            "pg_typeof" => DataType::Utf8,
            _ => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        })
    }
    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
        use datafusion::logical_expr::ColumnarValue;
        if self.function == "pg_typeof" {
            let name = self.name_of(super::functions::type_oid(args.arg_fields[0].data_type()));
            return Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(name))));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        // Lists and vector texts alike, as text ("23 25"), split into numbers.
        let texts = super::functions::array_texts(&arrays[0])?;
        let texts = texts.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for r in 0..texts.len() {
            if texts.is_null(r) {
                out.append(false);
                continue;
            }
            for oid in super::functions::vector_items(texts.value(r)) {
                out.values().append_value(self.name_of(oid.unwrap_or_default()));
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// A UDF from names (text) to oids (int4) by `lookup`: NULL stays NULL, `Ok(None)` is NULL,
/// an error fails the statement with its message.
fn oid_lookup_udf(
    name: &'static str,
    lookup: impl Fn(&str) -> std::result::Result<Option<i32>, String> + Send + Sync + 'static,
) -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let mut out = Int32Array::builder(names.len());
            for i in 0..names.len() {
                if names.is_null(i) {
                    out.append_null();
                    continue;
                }
                match lookup(names.value(i)) {
                    Ok(oid) => out.append_option(oid),
                    Err(e) => return datafusion::common::plan_err!("{e}"),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `to_regtype(name)`: the oid of a type named as SQL names it (`integer`, `double precision`,
/// `text[]`, `pg_catalog.numeric`), NULL when there is none. psycopg looks types up this way.
fn register_to_regtype(ctx: &SessionContext, type_names: &HashMap<i64, String>) {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    // format_type's names ("integer", "text[]") and the internal ones ("int4", "_text").
    let mut by_name: HashMap<String, i32> = HashMap::new();
    for (oid, name) in type_names {
        by_name.insert(name.to_ascii_lowercase(), *oid as i32);
    }
    for (alias, internal) in [
        ("int", "integer"), ("int4", "integer"), ("int8", "bigint"), ("int2", "smallint"), ("float8", "double precision"),
        ("float4", "real"), ("float", "double precision"), ("bool", "boolean"), ("varchar", "character varying"),
        ("char", "character"), ("bpchar", "character"), ("decimal", "numeric"), ("timestamp", "timestamp without time zone"),
        ("timestamptz", "timestamp with time zone"), ("time", "time without time zone"), ("timetz", "time with time zone"),
    ] {
        if let Some(oid) = by_name.get(internal).copied() {
            by_name.entry(alias.to_string()).or_insert(oid);
        }
    }
    let lookup = move |name: &str| -> Option<i32> {
        let mut n = name.trim().trim_matches('"').to_ascii_lowercase();
        if let Some(rest) = n.strip_prefix("pg_catalog.") {
            n = rest.to_string();
        }
        let (base, array) = match n.strip_suffix("[]") {
            Some(b) => (b.trim().to_string(), true),
            None => (n.clone(), false),
        };
        let base = match base.find('(') {
            Some(i) => base[..i].trim().to_string(),
            None => base,
        };
        if array {
            by_name.get(&format!("{base}[]")).or_else(|| by_name.get(&format!("_{base}"))).copied()
        } else {
            by_name.get(&base).copied()
        }
    };
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[datafusion::logical_expr::ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let out: Int32Array =
                (0..names.len()).map(|i| if names.is_valid(i) { lookup(names.value(i)) } else { None }).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
}

fn descriptions_table(descriptions: &[Description]) -> Result<Arc<MemTable>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("nspname", DataType::Utf8, false),
        Field::new("relname", DataType::Utf8, false),
        Field::new("objsubid", DataType::Int32, false),
        Field::new("description", DataType::Utf8, false),
    ]));
    let col = |f: fn(&Description) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(descriptions.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            col(|d| &d.schema),
            col(|d| &d.table),
            Arc::new(Int32Array::from(descriptions.iter().map(|d| d.column).collect::<Vec<_>>())),
            col(|d| &d.text),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn settings_table() -> Result<Arc<dyn TableProvider>> {
    let names = ["name", "setting", "unit", "category", "short_desc", "extra_desc", "context", "vartype", "source"];
    let mut fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect();
    for n in ["min_val", "max_val", "enumvals", "boot_val", "reset_val", "sourcefile"] {
        fields.push(Field::new(n, DataType::Utf8, true));
    }
    fields.push(Field::new("sourceline", DataType::Int32, true));
    fields.push(Field::new("pending_restart", DataType::Boolean, true));
    let schema = Arc::new(Schema::new(fields));
    let n = DEFAULTS.len();
    let strs = |f: &dyn Fn(&(&str, &str, &str)) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(DEFAULTS.iter().map(f).collect::<Vec<_>>()))
    };
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![Some(v.to_string()); n])) };
    let none = || -> ArrayRef { Arc::new(StringArray::from(vec![None::<String>; n])) };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            strs(&|(name, _, _)| Some(name.to_string())),
            strs(&|(_, v, _)| Some(v.to_string())),
            none(),
            constant("lakecube"),
            strs(&|(_, _, d)| Some(d.to_string())),
            none(),
            constant("user"),
            constant("string"),
            constant("default"),
            none(),
            none(),
            none(),
            strs(&|(_, v, _)| Some(v.to_string())),
            strs(&|(_, v, _)| Some(v.to_string())),
            none(),
            Arc::new(Int32Array::from(vec![None::<i32>; n])),
            Arc::new(datafusion::arrow::array::BooleanArray::from(vec![Some(false); n])),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `pg_catalog` with lakecube's overrides in front of datafusion-pg-catalog's tables.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    overrides: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for k in self.overrides.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.overrides.get(&name.to_ascii_lowercase()) {
            Some(t) => Ok(Some(t.clone())),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.overrides.contains_key(&name.to_ascii_lowercase()) || self.inner.table_exist(name)
    }
}

/// The oids PostgreSQL 15 gives its system catalogs (fixed in its headers). The crate numbers
/// its catalog tables from 16384 like user tables, so `'pg_class'::regclass` would not be
/// 1259, the classoid of pg_description's rows and what clients compare with.
const SYSTEM_RELATION_OIDS: &[(&str, i32)] = &[
    ("pg_aggregate", 2600), ("pg_am", 2601), ("pg_amop", 2602), ("pg_amproc", 2603), ("pg_attrdef", 2604),
    ("pg_attribute", 1249), ("pg_auth_members", 1261), ("pg_authid", 1260), ("pg_cast", 2605), ("pg_class", 1259),
    ("pg_collation", 3456), ("pg_constraint", 2606), ("pg_conversion", 2607), ("pg_database", 1262),
    ("pg_db_role_setting", 2964), ("pg_default_acl", 826), ("pg_depend", 2608), ("pg_description", 2609),
    ("pg_enum", 3501), ("pg_event_trigger", 3466), ("pg_extension", 3079), ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417), ("pg_foreign_table", 3118), ("pg_index", 2610), ("pg_inherits", 2611),
    ("pg_init_privs", 3394), ("pg_language", 2612), ("pg_largeobject", 2613), ("pg_largeobject_metadata", 2995),
    ("pg_namespace", 2615), ("pg_opclass", 2616), ("pg_operator", 2617), ("pg_opfamily", 2753),
    ("pg_partitioned_table", 3350), ("pg_policy", 3256), ("pg_proc", 1255), ("pg_publication", 6104),
    ("pg_publication_namespace", 6237), ("pg_publication_rel", 6106), ("pg_range", 3541),
    ("pg_replication_origin", 6000), ("pg_rewrite", 2618), ("pg_seclabel", 3596), ("pg_sequence", 2224),
    ("pg_shdepend", 1214), ("pg_shdescription", 2396), ("pg_shseclabel", 3592), ("pg_statistic", 2619),
    ("pg_statistic_ext", 3381), ("pg_statistic_ext_data", 3429), ("pg_subscription", 6100),
    ("pg_subscription_rel", 6102), ("pg_tablespace", 1213), ("pg_trigger", 2620), ("pg_ts_config", 3602),
    ("pg_ts_dict", 3600), ("pg_ts_parser", 3601), ("pg_ts_template", 3764), ("pg_type", 1247),
    ("pg_user_mapping", 1418),
];

/// A pg_class row's oid with the system catalogs' fixed oids (over columns `relname`,
/// `relnamespace` and `oid`, unqualified or of alias `c`).
fn system_oid_sql() -> String {
    let arms: String = SYSTEM_RELATION_OIDS.iter().map(|(n, o)| format!(" WHEN '{n}' THEN {o}")).collect();
    format!("CAST(CASE WHEN c.relnamespace = 11 THEN CASE c.relname{arms} ELSE c.oid END ELSE c.oid END AS INT)")
}

/// Views over the crate's `pg_catalog` tables (and, for `pg_description`, the scratch table
/// of lakecube's descriptions), planned once at start.
const PG_CATALOG_VIEWS: &[(&str, &str)] = &[
    (
        "pg_description",
        "SELECT CAST(c.oid AS INT) AS objoid, CAST(1259 AS INT) AS classoid, d.objsubid, d.description
         FROM __lakecube_descriptions d
         JOIN pg_catalog.pg_class c ON c.relname = d.relname
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = d.nspname
         UNION ALL
         SELECT CAST(objoid AS INT), CAST(classoid AS INT), CAST(objsubid AS INT), CAST(description AS VARCHAR)
         FROM pg_catalog.pg_description",
    ),
    (
        "pg_class",
        "SELECT {system_oid} AS oid, relname, relnamespace, reltype, reloftype, relowner, relam, relfilenode, reltablespace,
                relpages, reltuples, relallvisible, reltoastrelid, relhasindex, relisshared, relpersistence, relkind, relnatts,
                relchecks, relhasrules, relhastriggers, relhassubclass, relrowsecurity, relforcerowsecurity, relispopulated,
                relreplident, relispartition, relrewrite, relfrozenxid, relminmxid, relpartbound,
                false AS relhasoids,
                CASE WHEN c.relkind IN ('r', 'v', 'm', 'p', 'f') THEN make_array(concat('=r/', pg_get_userbyid(c.relowner))) END AS relacl,
                CAST(NULL AS VARCHAR[]) AS reloptions
         FROM pg_catalog.pg_class c",
    ),
    (
        "pg_attribute",
        "SELECT CASE WHEN c.relnamespace = 11 THEN {system_oid} ELSE a.attrelid END AS attrelid, a.attname, a.atttypid,
                a.attstattarget, a.attlen, a.attnum, a.attndims, a.attcacheoff, a.atttypmod, a.attbyval, a.attalign,
                a.attstorage, a.attcompression, a.attnotnull, a.atthasdef, a.atthasmissing, a.attidentity, a.attgenerated,
                a.attisdropped, a.attislocal, a.attinhcount, a.attcollation, CAST(NULL AS VARCHAR[]) AS attacl, a.attoptions, a.attfdwoptions,
                a.attmissingval
         FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_class c ON c.oid = a.attrelid",
    ),
    (
        "pg_namespace",
        "SELECT oid, nspname, nspowner, make_array(concat('=U/', pg_get_userbyid(nspowner))) AS nspacl, options
         FROM pg_catalog.pg_namespace",
    ),
    (
        "pg_database",
        "SELECT oid, datname, datdba, encoding,
                CASE datlocprovider WHEN 'libc' THEN 'c' WHEN 'icu' THEN 'i' ELSE datlocprovider END AS datlocprovider,
                datcollate, datctype, datistemplate, datallowconn, datconnlimit, datlastsysoid, datfrozenxid, datminmxid,
                dattablespace, daticulocale, daticurules, make_array(concat('=c/', pg_get_userbyid(datdba))) AS datacl
         FROM pg_catalog.pg_database",
    ),
    (
        // The argument lists as arrays (the crate holds "['acl', 'grantor']" and "[1034, 26]").
        "pg_proc",
        "SELECT oid, proname, pronamespace, proowner, prolang, procost, prorows, provariadic, prosupport, prokind,
                prosecdef, proleakproof, proisstrict, proretset, provolatile, proparallel, pronargs, pronargdefaults,
                prorettype, proargtypes,
                CAST(string_to_array(NULLIF(btrim(proallargtypes, '[]'), ''), ',') AS INT[]) AS proallargtypes,
                string_to_array(regexp_replace(NULLIF(btrim(proargmodes, '[]'), ''), '['' ]', '', 'g'), ',') AS proargmodes,
                string_to_array(regexp_replace(NULLIF(btrim(proargnames, '[]'), ''), '['' ]', '', 'g'), ',') AS proargnames,
                proargdefaults, protrftypes, prosrc, probin, prosqlbody, proconfig, CAST(NULL AS VARCHAR[]) AS proacl
         FROM pg_catalog.pg_proc",
    ),
    (
        // polroles as oid[] (the crate holds text), which psql's \\dp reads with `= ANY`.
        "pg_policy",
        "SELECT oid, polname, polrelid, polcmd, polpermissive, CAST(NULL AS INT[]) AS polroles, polqual, polwithcheck
         FROM pg_catalog.pg_policy",
    ),
    (
        "pg_views",
        "SELECT n.nspname AS schemaname, c.relname AS viewname, 'lakecube' AS viewowner,
                concat('-- lakecube cube ', c.relname, ': computed from the lake by its definition in cube-defs/') AS definition
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v'",
    ),
    (
        // conkey/confkey as smallint arrays, as PostgreSQL types them (the crate keeps them as
        // text "[1, 2]"): Metabase's foreign-key sync compares `attnum = ANY(c.conkey)`.
        "pg_constraint",
        "SELECT oid, conname, connamespace, contype, condeferrable, condeferred, convalidated, conrelid, contypid,
                conindid, conparentid, confrelid, confupdtype, confdeltype, confmatchtype, conislocal, coninhcount,
                connoinherit,
                CASE WHEN conkey IS NULL OR conkey = '' THEN NULL ELSE CAST(string_to_array(btrim(conkey, '[]'), ',') AS SMALLINT[]) END AS conkey,
                CASE WHEN confkey IS NULL OR confkey = '' THEN NULL ELSE CAST(string_to_array(btrim(confkey, '[]'), ',') AS SMALLINT[]) END AS confkey,
                conpfeqop, conppeqop, conffeqop, confdelsetcols, conexclop, conbin
         FROM pg_catalog.pg_constraint",
    ),
];

/// `information_schema` views that are empty because lakecube declares no constraints (cube
/// primary keys are not enforced keys): their columns, `name` text or `name:int`.
const INFORMATION_SCHEMA_EMPTY: &[(&str, &[&str])] = &[
    (
        "table_constraints",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "table_catalog", "table_schema", "table_name",
            "constraint_type", "is_deferrable", "initially_deferred", "enforced", "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "table_catalog", "table_schema", "table_name",
            "column_name", "ordinal_position:int", "position_in_unique_constraint:int",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog", "constraint_schema", "constraint_name", "unique_constraint_catalog",
            "unique_constraint_schema", "unique_constraint_name", "match_option", "update_rule", "delete_rule",
        ],
    ),
];

fn empty_view_sql(columns: &[&str]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| match c.split_once(':') {
            Some((name, _)) => format!("CAST(NULL AS INT) AS {name}"),
            None => format!("CAST(NULL AS VARCHAR) AS {c}"),
        })
        .collect();
    format!("SELECT {} WHERE false", cols.join(", "))
}

/// PostgreSQL's `information_schema`, as views over `pg_catalog` (the subset clients read).
const INFORMATION_SCHEMA_VIEWS: &[(&str, &str)] = &[
    (
        "schemata",
        "SELECT current_database() AS catalog_name, n.nspname AS schema_name, 'lakecube' AS schema_owner,
                CAST(NULL AS VARCHAR) AS default_character_set_catalog, CAST(NULL AS VARCHAR) AS default_character_set_schema,
                CAST(NULL AS VARCHAR) AS default_character_set_name, CAST(NULL AS VARCHAR) AS sql_path
         FROM pg_catalog.pg_namespace n",
    ),
    (
        "tables",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name,
                CASE WHEN n.nspname LIKE 'pg\\_temp%' THEN 'LOCAL TEMPORARY'
                     WHEN c.relkind IN ('r', 'p') THEN 'BASE TABLE'
                     WHEN c.relkind = 'v' THEN 'VIEW'
                     WHEN c.relkind = 'f' THEN 'FOREIGN'
                     ELSE NULL END AS table_type,
                CAST(NULL AS VARCHAR) AS self_referencing_column_name, CAST(NULL AS VARCHAR) AS reference_generation,
                CAST(NULL AS VARCHAR) AS user_defined_type_catalog, CAST(NULL AS VARCHAR) AS user_defined_type_schema,
                CAST(NULL AS VARCHAR) AS user_defined_type_name, 'NO' AS is_insertable_into, 'NO' AS is_typed,
                CAST(NULL AS VARCHAR) AS commit_action
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'v', 'f', 'p')",
    ),
    (
        "views",
        "SELECT current_database() AS table_catalog, schemaname AS table_schema, viewname AS table_name,
                definition AS view_definition, 'NONE' AS check_option, 'NO' AS is_updatable,
                'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable,
                'NO' AS is_trigger_insertable_into
         FROM pg_catalog.pg_views",
    ),
    (
        "columns",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name,
                a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position,
                CAST(NULL AS VARCHAR) AS column_default,
                CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
                CASE t.typname
                    WHEN 'bool' THEN 'boolean' WHEN 'int2' THEN 'smallint' WHEN 'int4' THEN 'integer'
                    WHEN 'int8' THEN 'bigint' WHEN 'float4' THEN 'real' WHEN 'float8' THEN 'double precision'
                    WHEN 'numeric' THEN 'numeric' WHEN 'text' THEN 'text' WHEN 'varchar' THEN 'character varying'
                    WHEN 'bpchar' THEN 'character' WHEN 'name' THEN 'name' WHEN 'date' THEN 'date'
                    WHEN 'time' THEN 'time without time zone' WHEN 'timetz' THEN 'time with time zone'
                    WHEN 'timestamp' THEN 'timestamp without time zone'
                    WHEN 'timestamptz' THEN 'timestamp with time zone'
                    WHEN 'interval' THEN 'interval' WHEN 'bytea' THEN 'bytea' WHEN 'oid' THEN 'oid'
                    ELSE CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE 'USER-DEFINED' END
                END AS data_type,
                CAST(NULL AS INT) AS character_maximum_length,
                CASE WHEN t.typname IN ('text', 'varchar', 'bpchar') THEN 1073741824 ELSE CAST(NULL AS INT) END AS character_octet_length,
                CASE t.typname WHEN 'int2' THEN 16 WHEN 'int4' THEN 32 WHEN 'int8' THEN 64 WHEN 'float4' THEN 24
                    WHEN 'float8' THEN 53 ELSE CAST(NULL AS INT) END AS numeric_precision,
                CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'float4', 'float8') THEN 2
                     WHEN t.typname = 'numeric' THEN 10 ELSE CAST(NULL AS INT) END AS numeric_precision_radix,
                CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 ELSE CAST(NULL AS INT) END AS numeric_scale,
                CASE WHEN t.typname = 'date' THEN 0
                     WHEN t.typname IN ('time', 'timetz', 'timestamp', 'timestamptz', 'interval') THEN 6
                     ELSE CAST(NULL AS INT) END AS datetime_precision,
                CAST(NULL AS VARCHAR) AS interval_type, CAST(NULL AS INT) AS interval_precision,
                CAST(NULL AS VARCHAR) AS character_set_catalog, CAST(NULL AS VARCHAR) AS character_set_schema,
                CAST(NULL AS VARCHAR) AS character_set_name, CAST(NULL AS VARCHAR) AS collation_catalog,
                CAST(NULL AS VARCHAR) AS collation_schema, CAST(NULL AS VARCHAR) AS collation_name,
                CAST(NULL AS VARCHAR) AS domain_catalog, CAST(NULL AS VARCHAR) AS domain_schema,
                CAST(NULL AS VARCHAR) AS domain_name, current_database() AS udt_catalog, 'pg_catalog' AS udt_schema,
                t.typname AS udt_name, CAST(NULL AS VARCHAR) AS scope_catalog, CAST(NULL AS VARCHAR) AS scope_schema,
                CAST(NULL AS VARCHAR) AS scope_name, CAST(NULL AS INT) AS maximum_cardinality,
                CAST(a.attnum AS VARCHAR) AS dtd_identifier, 'NO' AS is_self_referencing, 'NO' AS is_identity,
                CAST(NULL AS VARCHAR) AS identity_generation, CAST(NULL AS VARCHAR) AS identity_start,
                CAST(NULL AS VARCHAR) AS identity_increment, CAST(NULL AS VARCHAR) AS identity_maximum,
                CAST(NULL AS VARCHAR) AS identity_minimum, CAST(NULL AS VARCHAR) AS identity_cycle,
                'NEVER' AS is_generated, CAST(NULL AS VARCHAR) AS generation_expression, 'NO' AS is_updatable
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_class c ON a.attrelid = c.oid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'f', 'p')",
    ),
    (
        "character_sets",
        "SELECT CAST(NULL AS VARCHAR) AS character_set_catalog, CAST(NULL AS VARCHAR) AS character_set_schema,
                'UTF8' AS character_set_name, 'UCS' AS character_repertoire, 'UTF8' AS form_of_use,
                current_database() AS default_collate_catalog, 'pg_catalog' AS default_collate_schema,
                'C' AS default_collate_name",
    ),
];

/// `pg_get_indexdef(index [, column, pretty])` over the index definitions found at start.
#[derive(Debug)]
struct IndexDef {
    indexes: Arc<HashMap<i64, (String, Vec<String>)>>,
    signature: datafusion::logical_expr::Signature,
}

impl PartialEq for IndexDef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.indexes, &other.indexes)
    }
}
impl Eq for IndexDef {}
impl std::hash::Hash for IndexDef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_indexdef".hash(state)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for IndexDef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::Int64Type;
        if !(1..=3).contains(&args.args.len()) {
            return datafusion::common::plan_err!("pg_get_indexdef takes 1 to 3 arguments");
        }
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let oids = cast(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let column = match arrays.get(1) {
            Some(c) => Some(cast(c, &DataType::Int64)?),
            None => None,
        };
        let out: StringArray = (0..args.number_rows)
            .map(|r| {
                let (def, keys) = self.indexes.get(&oids.is_valid(r).then(|| oids.value(r))?)?;
                match column.as_ref().map(|c| c.as_primitive::<Int64Type>()) {
                    Some(c) if c.is_valid(r) && c.value(r) > 0 => keys.get(c.value(r) as usize - 1).cloned(),
                    _ => Some(def.clone()),
                }
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(out)))
    }
}
