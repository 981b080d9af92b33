//! `LIKE … ESCAPE 'c'` (SQLAlchemy escapes with '/'): DataFusion only takes a backslash, so
//! the pattern is rewritten to backslash escapes (existing backslashes made literal first).

use datafusion::sql::sqlparser::ast::{Expr, Value};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "like_escape", calls: &[], apply };

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    if let Expr::Like { pattern, escape_char, .. } | Expr::ILike { pattern, escape_char, .. } = expr
        && let Some(v) = escape_char.as_ref()
        && let Value::SingleQuotedString(c) = &v.value
        && c != "\\"
        && c.chars().count() == 1
    {
        let c = c.replace('\'', "''");
        **pattern = parse_expr(&format!("replace(replace({pattern}, '\\', '\\\\'), '{c}', '\\')"))?;
        *escape_char = Some(Value::SingleQuotedString("\\".into()).into());
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn other_escapes_become_backslashes() {
        assert_eq!(
            rewritten_by(&super::RULE, r"SELECT x LIKE 'a/_%' ESCAPE '/', x ILIKE 'b\_' ESCAPE '\' FROM t"),
            r"SELECT x LIKE replace(replace('a/_%', '\', '\\'), '/', '\') ESCAPE '\', x ILIKE 'b\_' ESCAPE '\' FROM t"
        );
    }
}
