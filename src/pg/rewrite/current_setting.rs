//! `current_setting(name [, missing_ok])`: the session's value (Grafana reads
//! `server_version_num`, asyncpg `jit`, DBeaver `search_path`); an unknown name is 42704 as
//! in PostgreSQL, or NULL with `missing_ok`.

use datafusion::sql::sqlparser::ast::{Expr, Value};

use super::{Context, Flow, Rule, args, bool_literal, function_name, string_literal, text};
use crate::error::{Error, ErrorKind, Result};

pub const RULE: Rule = Rule { name: "current_setting", calls: &["current_setting"], apply };

fn apply(expr: &mut Expr, cx: &mut Context<'_>) -> Result<Flow> {
    if function_name(expr).as_deref() != Some("current_setting") {
        return Ok(Flow::Next);
    }
    let a = args(expr);
    let Some(setting) = a.first().and_then(string_literal) else { return Ok(Flow::Done) };
    let missing_ok = a.get(1).and_then(bool_literal).unwrap_or(false);
    *expr = match cx.session.settings.get(&setting) {
        Some(v) => text(&v),
        None if missing_ok => Expr::value(Value::Null),
        None => {
            return Err(Error::new(ErrorKind::UndefinedObject, format!("unrecognized configuration parameter \"{setting}\"")));
        }
    };
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use super::super::test::{error_of, rewritten_by};

    #[test]
    fn settings_are_the_sessions() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT current_setting('server_version_num'), current_setting('nope', true), current_setting(x)"),
            "SELECT '150008', NULL, current_setting(x)"
        );
        assert_eq!(error_of(&super::RULE, "SELECT current_setting('nope')").sqlstate(), "42704");
    }
}
