//! `set_config(name, value, is_local)` in a SELECT (asyncpg turns off `jit` this way): the
//! value is checked here and the change reported for the session to apply once the
//! statement is planned; the call's value is the new setting, as in PostgreSQL. A NULL value
//! resets the setting (asyncpg's `set_config(name, NULL, false)`), as PostgreSQL's does.

use datafusion::sql::sqlparser::ast::{Expr, Value};

use super::{Context, Flow, Rule, args, function_name, string_literal, text};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "set_config", calls: &["set_config"], apply };

fn apply(expr: &mut Expr, cx: &mut Context<'_>) -> Result<Flow> {
    let a = args(expr);
    if function_name(expr).as_deref() != Some("set_config") || a.len() != 3 {
        return Ok(Flow::Next);
    }
    let Some(n) = string_literal(&a[0]) else { return Ok(Flow::Done) };
    let mut probe = cx.session.settings.clone();
    let v = if matches!(&a[1], Expr::Value(v) if v.value == Value::Null) {
        probe.reset(&n)?;
        probe.get(&n).unwrap_or_default()
    } else if let Some(v) = string_literal(&a[1]) {
        probe.set(&n, &v)?;
        v
    } else {
        return Ok(Flow::Done);
    };
    cx.changes.push((n, v.clone()));
    *expr = text(&v);
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::{error_of, rewritten_by};

    #[test]
    fn changes_are_checked_and_reported() {
        assert_eq!(rewritten_by(&super::RULE, "SELECT set_config('jit', 'off', false)"), "SELECT 'off'");
        assert_eq!(error_of(&super::RULE, "SELECT set_config('nope', 'x', false)").sqlstate(), "42704");
        // NULL resets: the call's value is the default.
        assert_eq!(rewritten_by(&super::RULE, "SELECT set_config('search_path', NULL, false)"), "SELECT '\"$user\", public'");
    }
}
