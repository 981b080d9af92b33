//! Who reads what: each configured user plans in a session state of their own, whose catalog
//! holds only what their access policies give them (docs/security.md).
//!
//! - `public`: the cube tables they may read, each [`CubeTable::restricted`] to their members
//!   and rows (the row filter travels with the table, so every plan that reads it, whoever
//!   built it, is filtered: the cube rewrite applies it under a policy barrier);
//! - `lake`: the raw tables, only for a user with a role granted `lake: true`;
//! - `lakecube`: the audit log and the lake's history, only for a role granted `audit: true`;
//! - `pg_catalog` and `information_schema`, installed over that catalog, so they list only
//!   those tables and columns.
//!
//! `SET ROLE r` narrows a session to what role `r` alone gives (PostgreSQL's meaning): it
//! plans in the state of (user, r). States are built once per user and role, on their first
//! statement, and kept. Without users
//! (loopback trust) there is no state of a user's: every session reads everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider, SchemaProvider};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionContext;

use super::{ADMIN_SCHEMA, CATALOG, CUBE_SCHEMA, LAKE_SCHEMA};
use crate::config::{RoleSettings, UserAccess};
use crate::error::{Error, Result};
use crate::model::access::{Principal, grant};
use crate::pg::catalog;
use crate::pg::functions::Object;
use crate::pg::settings::Identity;
use crate::semantic::provider::CubeTableProvider;
use crate::semantic::{CubeTable, Semantic};

/// The descriptions `pg_description` shows for `tables` (their comments and their
/// columns', numbered as each table's schema numbers them).
pub fn descriptions<'a>(tables: impl Iterator<Item = &'a CubeTable>) -> Vec<catalog::Description> {
    let mut out = Vec::new();
    for t in tables {
        let mut describe = |column: i32, text: Option<String>| {
            if let Some(text) = text {
                out.push(catalog::Description { schema: CUBE_SCHEMA.into(), table: t.name.clone(), column, text });
            }
        };
        describe(0, t.description.clone());
        for (i, f) in t.schema.fields().iter().enumerate() {
            describe(i as i32 + 1, f.metadata().get("description").cloned());
        }
    }
    out
}

#[derive(Default)]
struct Config {
    users: BTreeMap<String, UserAccess>,
    roles: BTreeMap<String, RoleSettings>,
}

impl Config {
    /// Whether any of `roles` has what `what` asks of a role's settings (`lake`, `audit`).
    fn grants(&self, roles: &[String], what: impl Fn(&RoleSettings) -> bool) -> bool {
        roles.iter().any(|r| self.roles.get(r).is_some_and(&what))
    }
}

/// The users' access and their session states.
pub struct Access {
    ctx: SessionContext,
    semantic: Arc<Semantic>,
    lake: Arc<dyn SchemaProvider>,
    admin: Arc<dyn SchemaProvider>,
    roles: catalog::Roles,
    sizes: catalog::RelationSizes,
    config: RwLock<Option<Arc<Config>>>,
    states: tokio::sync::Mutex<HashMap<(String, Option<String>), SessionState>>,
}

impl Access {
    pub fn new(ctx: SessionContext, semantic: Arc<Semantic>, lake: Arc<dyn SchemaProvider>, admin: Arc<dyn SchemaProvider>, roles: catalog::Roles, sizes: catalog::RelationSizes) -> Access {
        Access { ctx, semantic, lake, admin, roles, sizes, config: RwLock::new(None), states: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// From now on each user reads what `users` and `roles` give them.
    pub fn configure(&self, users: BTreeMap<String, UserAccess>, roles: BTreeMap<String, RoleSettings>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Config { users, roles }));
        if let Ok(mut states) = self.states.try_lock() {
            states.clear();
        }
    }

    /// Who `user` is for `SET ROLE`: the roles granted to them and every role and user
    /// there is (without configured users, no role but the user themselves).
    pub fn identity(&self, user: &str) -> Arc<Identity> {
        let Some(config) = self.config.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Arc::new(Identity { user: user.to_string(), granted: vec![], known: vec![user.to_string()] });
        };
        let granted = config.users.get(user).map(|u| u.roles.clone()).unwrap_or_default();
        let mut known: Vec<String> = config.users.keys().cloned().chain(config.roles.keys().cloned()).collect();
        known.extend(config.users.values().flat_map(|u| u.roles.iter().cloned()));
        known.sort();
        known.dedup();
        Arc::new(Identity { user: user.to_string(), granted, known })
    }

    /// The roles `user` acts with: all theirs, or the one `SET ROLE` took (if theirs).
    fn acting_roles(config: &Config, user: &str, role: Option<&str>) -> Vec<String> {
        let granted = config.users.get(user).map(|u| u.roles.clone()).unwrap_or_default();
        match role {
            Some(r) => granted.into_iter().filter(|g| g == r).collect(),
            None => granted,
        }
    }

    /// Whether `user` acting as `role` sees the raw lake: `None` when no users are configured
    /// (everyone reads everything).
    pub fn sees_lake(&self, user: &str, role: Option<&str>) -> Option<bool> {
        let config = self.config.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(config.grants(&Self::acting_roles(&config, user, role), |r| r.lake))
    }

    /// The state `user` acting as `role` (`None`: with all their roles) plans in; `None`
    /// when no users are configured (everything is read).
    pub async fn state_for(&self, user: &str, role: Option<&str>) -> Result<Option<SessionState>> {
        let Some(config) = self.config.read().unwrap_or_else(|e| e.into_inner()).clone() else { return Ok(None) };
        let key = (user.to_string(), role.map(str::to_string));
        let mut states = self.states.lock().await;
        if let Some(s) = states.get(&key) {
            return Ok(Some(s.clone()));
        }
        let state = self.build(&config, user, role).await?;
        states.insert(key, state.clone());
        Ok(Some(state))
    }

    async fn build(&self, config: &Arc<Config>, user: &str, role: Option<&str>) -> Result<SessionState> {
        // A user the config does not list has no role (they cannot log in with users set).
        let access = config.users.get(user).cloned().unwrap_or_default();
        let who = Principal { user: user.to_string(), roles: Self::acting_roles(config, user, role), attributes: access.attributes.clone() };
        let public = Arc::new(MemorySchemaProvider::new());
        let mut tables = Vec::new();
        for t in self.semantic.tables() {
            let names: Vec<&str> = t.members.iter().map(|m| m.name.as_str()).collect();
            let Some(g) = grant(&t.access_policy, &names, &who) else { continue };
            let restricted = Arc::new(t.restricted(&g).map_err(|e| Error::config(format!("user `{user}`: {}", e.message)))?);
            public.register_table(t.name.clone(), Arc::new(CubeTableProvider { table: restricted.clone() })).map_err(Error::from)?;
            tables.push(restricted);
        }
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(CUBE_SCHEMA, public).map_err(Error::from)?;
        if config.grants(&who.roles, |r| r.lake) {
            catalog.register_schema(LAKE_SCHEMA, self.lake.clone()).map_err(Error::from)?;
        }
        if config.grants(&who.roles, |r| r.audit) {
            catalog.register_schema(ADMIN_SCHEMA, self.admin.clone()).map_err(Error::from)?;
        }
        let list = Arc::new(MemoryCatalogProviderList::new());
        list.register_catalog(CATALOG.to_string(), catalog);
        let ctx = SessionContext::new_with_state(SessionStateBuilder::new_from_existing(self.ctx.state()).with_catalog_list(list).build());
        let others = {
            let (config, semantic, lake, admin) = (config.clone(), self.semantic.clone(), self.lake.clone(), self.admin.clone());
            Arc::new(move |name: &str, object: Object<'_>| serves(&config, &semantic, lake.as_ref(), admin.as_ref(), name, object))
        };
        let grantee = catalog::Grantee { names: std::iter::once(user.to_string()).chain(role.map(str::to_string)).collect(), others };
        catalog::install(&ctx, CATALOG, &descriptions(tables.iter().map(|t| t.as_ref())), self.roles.clone(), self.sizes.clone(), Some(grantee)).await?;
        Ok(ctx.state())
    }
}

/// Whether the user or role `name` is served `object` (the has_*_privilege functions asked
/// about someone else than the session's user): what their policies give them, as
/// [`Access::state_for`] builds it. A group role is answered alone, without attributes.
/// Columns of lake tables are not checked one by one (the lake is all or nothing). `None`
/// for a name that is no user or role.
fn serves(config: &Config, semantic: &Semantic, lake: &dyn SchemaProvider, admin: &dyn SchemaProvider, name: &str, object: Object<'_>) -> Option<bool> {
    let who = match config.users.get(name) {
        Some(u) => Principal { user: name.to_string(), roles: u.roles.clone(), attributes: u.attributes.clone() },
        None if config.roles.contains_key(name) || config.users.values().any(|u| u.roles.iter().any(|r| r == name)) => {
            Principal { user: name.to_string(), roles: vec![name.to_string()], attributes: Default::default() }
        }
        None => return None,
    };
    let (lake_granted, audit_granted) = (config.grants(&who.roles, |r| r.lake), config.grants(&who.roles, |r| r.audit));
    let cube = |table: &str| {
        semantic.tables().find(|t| t.name == table).and_then(|t| {
            let names: Vec<&str> = t.members.iter().map(|m| m.name.as_str()).collect();
            grant(&t.access_policy, &names, &who).map(|g| (t, g))
        })
    };
    let split = |r: &str| match crate::pg::names::split_qualified_name(r).as_slice() {
        [schema, table] => (schema.clone(), table.clone()),
        [table] => (CUBE_SCHEMA.to_string(), table.clone()),
        _ => (String::new(), String::new()),
    };
    let catalog = |s: &str| s == "pg_catalog" || s == "information_schema";
    Some(match object {
        Object::Database(_) | Object::Function(_) => true,
        Object::Schema(s) => s == CUBE_SCHEMA || catalog(s) || (s == LAKE_SCHEMA && lake_granted) || (s == ADMIN_SCHEMA && audit_granted),
        Object::Relation(r) => match split(r) {
            (s, t) if s == CUBE_SCHEMA => cube(&t).is_some(),
            (s, t) if s == LAKE_SCHEMA => lake_granted && lake.table_exist(&t),
            (s, t) if s == ADMIN_SCHEMA => audit_granted && admin.table_exist(&t),
            (s, _) => catalog(&s),
        },
        Object::Column(r, c) => match split(r) {
            (s, t) if s == CUBE_SCHEMA => cube(&t).and_then(|(t, g)| t.restricted(&g).ok()).is_some_and(|t| match c.trim().parse::<usize>() {
                Ok(k) => (1..=t.schema.fields().len()).contains(&k),
                Err(_) => t.schema.field_with_name(c).is_ok(),
            }),
            (s, t) if s == LAKE_SCHEMA => lake_granted && lake.table_exist(&t),
            (s, t) if s == ADMIN_SCHEMA => audit_granted && admin.table_exist(&t),
            (s, _) => catalog(&s),
        },
    })
}
