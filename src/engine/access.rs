//! Who reads what: each configured user plans in a session state of their own, whose catalog
//! holds only what their access policies give them (docs/security.md).
//!
//! - `public`: the cube tables they may read, each [`CubeTable::restricted`] to their members
//!   and rows (the row filter travels with the table, so every plan that reads it, whoever
//!   built it, is filtered: the cube rewrite applies it under a policy barrier);
//! - `lake`: the raw tables, only for a user with a role granted `lake: true`;
//! - `pg_catalog` and `information_schema`, installed over that catalog, so they list only
//!   those tables and columns.
//!
//! States are built once per user, on their first statement, and kept. Without users
//! (loopback trust) there is no state of a user's: every session reads everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider, SchemaProvider};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionContext;

use super::{CATALOG, CUBE_SCHEMA, LAKE_SCHEMA};
use crate::config::{RoleSettings, UserAccess};
use crate::error::{Error, Result};
use crate::model::access::{Principal, grant};
use crate::pg::catalog;
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

/// The users' access and their session states.
pub struct Access {
    ctx: SessionContext,
    semantic: Arc<Semantic>,
    lake: Arc<dyn SchemaProvider>,
    roles: catalog::Roles,
    sizes: catalog::RelationSizes,
    config: RwLock<Option<Arc<Config>>>,
    states: tokio::sync::Mutex<HashMap<String, SessionState>>,
}

impl Access {
    pub fn new(ctx: SessionContext, semantic: Arc<Semantic>, lake: Arc<dyn SchemaProvider>, roles: catalog::Roles, sizes: catalog::RelationSizes) -> Access {
        Access { ctx, semantic, lake, roles, sizes, config: RwLock::new(None), states: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// From now on each user reads what `users` and `roles` give them.
    pub fn configure(&self, users: BTreeMap<String, UserAccess>, roles: BTreeMap<String, RoleSettings>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Config { users, roles }));
        if let Ok(mut states) = self.states.try_lock() {
            states.clear();
        }
    }

    /// Whether `user` sees the raw lake: `None` when no users are configured (everyone
    /// reads everything).
    pub fn sees_lake(&self, user: &str) -> Option<bool> {
        let config = self.config.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        let roles = config.users.get(user).map(|u| u.roles.clone()).unwrap_or_default();
        Some(roles.iter().any(|r| config.roles.get(r).is_some_and(|r| r.lake)))
    }

    /// The state `user` plans in; `None` when no users are configured (everything is read).
    pub async fn state_for(&self, user: &str) -> Result<Option<SessionState>> {
        let Some(config) = self.config.read().unwrap_or_else(|e| e.into_inner()).clone() else { return Ok(None) };
        let mut states = self.states.lock().await;
        if let Some(s) = states.get(user) {
            return Ok(Some(s.clone()));
        }
        let state = self.build(&config, user).await?;
        states.insert(user.to_string(), state.clone());
        Ok(Some(state))
    }

    async fn build(&self, config: &Config, user: &str) -> Result<SessionState> {
        // A user the config does not list has no role (they cannot log in with users set).
        let access = config.users.get(user).cloned().unwrap_or_default();
        let who = Principal { user: user.to_string(), roles: access.roles.clone(), attributes: access.attributes.clone() };
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
        if who.roles.iter().any(|r| config.roles.get(r).is_some_and(|r| r.lake)) {
            catalog.register_schema(LAKE_SCHEMA, self.lake.clone()).map_err(Error::from)?;
        }
        let list = Arc::new(MemoryCatalogProviderList::new());
        list.register_catalog(CATALOG.to_string(), catalog);
        let ctx = SessionContext::new_with_state(SessionStateBuilder::new_from_existing(self.ctx.state()).with_catalog_list(list).build());
        catalog::install(&ctx, CATALOG, &descriptions(tables.iter().map(|t| t.as_ref())), self.roles.clone(), self.sizes.clone()).await?;
        Ok(ctx.state())
    }
}
