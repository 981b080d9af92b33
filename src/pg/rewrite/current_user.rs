//! `current_user`: the session's user, not datafusion-pg-catalog's fixed "postgres". Also
//! `session_user`, `current_role`, `user()` and `user` without parentheses, which is
//! PostgreSQL's current_user (Grafana's table list uses it).

use datafusion::sql::sqlparser::ast::{Expr, Ident};

use super::{Context, Flow, Rule, function_name, text};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "current_user", calls: &["current_user", "session_user", "user", "current_role"], apply };

fn apply(expr: &mut Expr, cx: &mut Context<'_>) -> Result<Flow> {
    let bare_user = matches!(expr, Expr::Identifier(Ident { value, quote_style: None, .. }) if value.eq_ignore_ascii_case("user"));
    if bare_user || function_name(expr).is_some_and(|n| RULE.calls.contains(&n.as_str())) {
        *expr = text(&cx.session.user);
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn the_sessions_user() {
        assert_eq!(rewritten_by(&super::RULE, "SELECT user, current_user, session_user, current_role(), \"user\" FROM t"), "SELECT 'alice', 'alice', 'alice', 'alice', \"user\" FROM t");
    }
}
