//! A type oid cast to `regtype` shows as the type's name in PostgreSQL (`23::regtype::text` is
//! `integer`); datafusion-pg-catalog reads `regtype` as a plain oid, so the name came back as
//! `23`. pgcli's completion refresh reads column types as `att.atttypid::regtype::text` and
//! function signatures as `COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[]`
//! (oid arrays and the `oidvector` text "23 25"): `X::regtype` cast to text becomes
//! `format_type(X, NULL)`, `X::regtype[]` becomes `regtype_names(X)`, the list of their names.
//! A `regtype` compared as such (`prorettype::regtype != 'trigger'::regtype`) stays an oid.

use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType, Expr};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "regtype_names", calls: &[], apply };

/// The type's name as written, lower case, without schema or modifiers.
fn base_name(t: &DataType) -> String {
    let s = t.to_string().to_ascii_lowercase();
    let s = s.split('(').next().unwrap_or(&s).trim().to_string();
    s.rsplit('.').next().unwrap_or(&s).trim_matches('"').to_string()
}

fn is_regtype(t: &DataType) -> bool {
    base_name(t) == "regtype"
}

fn regtype_array(t: &DataType) -> bool {
    matches!(t, DataType::Array(ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::AngleBracket(inner)) if is_regtype(inner))
}

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let Expr::Cast { expr: inner, data_type, .. } = expr else { return Ok(Flow::Next) };
    if regtype_array(data_type) {
        *expr = parse_expr(&format!("regtype_names({inner})"))?;
        return Ok(Flow::Done);
    }
    let text = matches!(base_name(data_type).as_str(), "text" | "varchar" | "character varying" | "name");
    match inner.as_ref() {
        Expr::Cast { expr: oid, data_type: t, .. } if text && is_regtype(t) => {
            *expr = parse_expr(&format!("format_type({oid}, NULL)"))?;
            Ok(Flow::Done)
        }
        _ => Ok(Flow::Next),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn regtypes_cast_to_text_are_names() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT att.atttypid::regtype::text, prorettype::pg_catalog.regtype::text AS r, x::regtype FROM t"),
            "SELECT format_type(att.atttypid, NULL), format_type(prorettype, NULL) AS r, x::regtype FROM t"
        );
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[] FROM pg_proc"),
            "SELECT COALESCE(regtype_names(proallargtypes), regtype_names(proargtypes))::TEXT[] FROM pg_proc"
        );
    }
}
