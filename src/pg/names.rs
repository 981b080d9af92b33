//! Result column names as PostgreSQL gives them (an unaliased `sum(x)` is `sum`, `1 + 2` is
//! `?column?`, `'1'::int` is `int4`): [`pg_column_names`] reads them off the select list and
//! [`resolve_names`] lays them over DataFusion's; and names as PostgreSQL folds them.

use datafusion::sql::sqlparser::ast::{DataType as SqlType, Expr, Ident, Query, SelectItem, SetExpr, Statement};

/// The output column names PostgreSQL gives a query's select list, where they differ from
/// DataFusion's: an unaliased `sum(revenue)` is `sum`, `count(*)` is `count`, an unnamed
/// expression is `?column?`, an alias is as written (a repeated one is renamed for DataFusion
/// by `pg::rewrite::output_names`). [`ColumnName::Keep`] keeps DataFusion's name;
/// [`ColumnName::Expand`] stands for a `*` whose columns keep their names.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnName {
    Keep,
    Name(String),
    Expand,
}

/// The prefix of the aliases datafusion-pg-catalog gives a column repeated beside a wildcard.
const CRATE_ALIAS: &str = "__alias_";

pub fn pg_column_names(stmt: &Statement) -> Option<Vec<ColumnName>> {
    match stmt {
        Statement::Query(q) => query_names(q),
        _ => None,
    }
}

fn query_names(q: &Query) -> Option<Vec<ColumnName>> {
    set_expr_names(&q.body)
}

fn set_expr_names(body: &SetExpr) -> Option<Vec<ColumnName>> {
    match body {
        SetExpr::Select(s) => Some(
            s.projection
                .iter()
                .map(|item| match item {
                    SelectItem::UnnamedExpr(e) => match figure_colname(e) {
                        Some(n) => ColumnName::Name(n),
                        None => ColumnName::Name("?column?".into()),
                    },
                    // datafusion-pg-catalog aliases `n.oid` beside `n.*` as `__alias_oid`
                    // (DataFusion refuses the repeated name); PostgreSQL names it `oid`.
                    SelectItem::ExprWithAlias { alias, .. } if alias.value.starts_with(CRATE_ALIAS) => {
                        ColumnName::Name(alias.value[CRATE_ALIAS.len()..].to_string())
                    }
                    // The alias as written (a repeated one is renamed for DataFusion).
                    SelectItem::ExprWithAlias { alias, .. } => ColumnName::Name(ident_name(alias)),
                    SelectItem::ExprWithAliases { .. } => ColumnName::Keep,
                    SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => ColumnName::Expand,
                })
                .collect(),
        ),
        SetExpr::Query(q) => query_names(q),
        SetExpr::SetOperation { left, .. } => set_expr_names(left),
        _ => None,
    }
}

/// A possibly qualified SQL name split into its parts as PostgreSQL reads them: unquoted
/// parts folded to lower case, quoted parts kept with `""` as `"` (`Public."My Table"` →
/// `public`, `My Table`).
pub fn split_qualified_name(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = name.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.extend(c.to_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

/// An identifier as PostgreSQL folds it: unquoted lower-cased, quoted as written.
pub fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_ascii_lowercase() }
}

/// PostgreSQL's FigureColname: the name an unaliased select-list expression gets.
pub fn figure_colname(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(ids) => ident_name(ids.last()?),
        Expr::Function(f) => {
            let n = f.name.0.last()?.as_ident()?;
            let n = ident_name(n);
            // Functions PostgreSQL rewrites into others before naming.
            match n.as_str() {
                "trim" => "btrim".into(),
                _ => n,
            }
        }
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => return figure_colname(inner),
        // A cast's type names it unless its operand has a stronger name (a column's, a
        // function's): `'7'::int4::int8` is `int8`, `x::text` is `x`.
        Expr::Cast { expr, data_type, .. } => match figure_colname(expr) {
            Some(inner) if !weak_name(expr) => inner,
            _ => type_name(data_type),
        },
        Expr::TypedString(t) => type_name(&t.data_type),
        Expr::Case { .. } => "case".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Array(_) => "array".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Interval(_) => "interval".into(),
        Expr::Subquery(q) => match query_names(q)?.into_iter().next()? {
            ColumnName::Name(n) => n,
            _ => return None,
        },
        _ => return None,
    })
}

/// Whether `e`'s name is one PostgreSQL lets an enclosing cast replace (strength 1 in its
/// FigureColnameInternal): a cast's type name, `case`.
fn weak_name(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => weak_name(inner),
        Expr::Cast { .. } | Expr::TypedString(_) | Expr::Case { .. } => true,
        _ => false,
    }
}

/// PostgreSQL's internal name of a type, as it names a cast column (`'1'::int` is `int4`).
fn type_name(t: &SqlType) -> String {
    let s = t.to_string().to_ascii_lowercase();
    let base = s.split('(').next().unwrap_or(&s).trim().to_string();
    match base.as_str() {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        other => return other.rsplit('.').next().unwrap_or(other).to_string(),
    }
    .to_string()
}

/// Applies PostgreSQL's names to a result's DataFusion names; `None` if the select list
/// cannot be matched to the columns (then DataFusion's names stay).
pub fn resolve_names(pg: &[ColumnName], df: &[String]) -> Option<Vec<String>> {
    let expands = pg.iter().filter(|n| **n == ColumnName::Expand).count();
    let fixed = pg.len() - expands;
    if expands > 1 || (expands == 0 && fixed != df.len()) || fixed > df.len() {
        return None;
    }
    let wide = df.len() - fixed;
    let mut out = Vec::with_capacity(df.len());
    let mut i = 0;
    for n in pg {
        match n {
            ColumnName::Expand => {
                out.extend(df[i..i + wide].iter().cloned());
                i += wide;
            }
            ColumnName::Keep => {
                out.push(df[i].clone());
                i += 1;
            }
            ColumnName::Name(s) => {
                out.push(s.clone());
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn qualified_names_split_as_postgresql_reads_them() {
        assert_eq!(split_qualified_name("public.retail"), ["public", "retail"]);
        assert_eq!(split_qualified_name("Public.\"My \"\"T\"\".x\""), ["public", "My \"T\".x"]);
        assert_eq!(split_qualified_name("Retail"), ["retail"]);
    }

    fn names(sql: &str) -> Vec<ColumnName> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().pop().unwrap();
        pg_column_names(&stmt).unwrap()
    }

    fn n(s: &str) -> ColumnName {
        ColumnName::Name(s.into())
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(
            names("SELECT region, SUM(t.revenue), count(*), 1, 1 + 2, '1'::int, x::text, true, r AS \"R\", CASE WHEN a THEN 1 END, date_trunc('month', period), EXTRACT(YEAR FROM period), \"Mixed\""),
            vec![
                n("region"),
                n("sum"),
                n("count"),
                n("?column?"),
                n("?column?"),
                n("int4"),
                n("x"),
                n("?column?"),
                n("R"),
                n("case"),
                n("date_trunc"),
                n("extract"),
                n("Mixed"),
            ]
        );
        assert_eq!(names("SELECT t.*, sum(x) FROM t"), vec![ColumnName::Expand, n("sum")]);
        assert_eq!(names("SELECT n.oid AS __alias_oid, n.* FROM n"), vec![n("oid"), ColumnName::Expand]);
    }

    #[test]
    fn names_resolve_against_columns() {
        let df: Vec<String> = ["a", "b", "sum(t.x)"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_names(&[ColumnName::Expand, n("sum")], &df), Some(vec!["a".into(), "b".into(), "sum".into()]));
        assert_eq!(resolve_names(&[n("sum")], &df), None);
    }
}
