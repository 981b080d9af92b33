//! PostgreSQL type names DataFusion's SQL planner does not know, as cast targets: `name` (the
//! type of every catalog identifier: Tableau's foreign-key query casts `'cube'::name`,
//! psqlODBC's SQLForeignKeys compares with `'x'::name`), `"char"` (`relkind`), `aclitem`,
//! `pg_node_tree`, `unknown`. Each is text. datafusion-pg-catalog's planner maps the oid
//! types (`regclass`, `oid` …) and the `pg_catalog.`-qualified builtins; this one handles the
//! rest and then asks it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ObjectNamePart};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

/// Text types of PostgreSQL's catalogs, by their (unqualified or `pg_catalog.`) name.
const TEXT_TYPES: &[&str] = &["name", "char", "aclitem", "pg_node_tree", "unknown", "bpchar", "citext"];

#[derive(Debug, Default)]
pub struct PgTypePlanner {
    oid_types: PgOidTypePlanner,
}

impl TypePlanner for PgTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        if let SqlType::Custom(name, args) = sql_type
            && args.is_empty()
            && let Some(ObjectNamePart::Identifier(last)) = name.0.last()
            && (name.0.len() == 1
                || matches!(name.0.first(), Some(ObjectNamePart::Identifier(s)) if s.value.eq_ignore_ascii_case("pg_catalog")))
            && TEXT_TYPES.contains(&last.value.to_ascii_lowercase().as_str())
        {
            return Ok(Some(Arc::new(Field::new("", DataType::Utf8, true))));
        }
        self.oid_types.plan_type_field(sql_type)
    }
}

/// Puts [`PgTypePlanner`] on the session, in place of datafusion-pg-catalog's (which it asks).
pub fn install(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let existing = state.read().clone();
    let replaced = datafusion::execution::SessionStateBuilder::new_from_existing(existing)
        .with_type_planner(Arc::new(PgTypePlanner::default()))
        .build();
    *state.write() = replaced;
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    #[tokio::test]
    async fn catalog_type_names_are_text() {
        let ctx = SessionContext::new();
        super::install(&ctx);
        for sql in ["SELECT 'cube'::name", "SELECT CAST('r' AS \"char\")", "SELECT 'x'::pg_catalog.name", "SELECT 1::regclass"] {
            let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            let t = df.schema().field(0).data_type().clone();
            let expected = if sql.contains("regclass") { super::DataType::Int32 } else { super::DataType::Utf8 };
            assert_eq!(t, expected, "{sql}");
        }
    }
}
