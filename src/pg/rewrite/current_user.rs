//! `current_user`: the session's user, not datafusion-pg-catalog's fixed "postgres". Also
//! `session_user`, `current_role`, `user()` and `user` without parentheses, which is
//! PostgreSQL's current_user (Grafana's table list uses it). After `SET ROLE r`,
//! `current_user`, `current_role` and `user` are `r` and `session_user` stays the user who
//! logged in, as in PostgreSQL.

use datafusion::sql::sqlparser::ast::{Expr, Ident};

use super::{Context, Flow, Rule, function_name, text};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "current_user", calls: &["current_user", "session_user", "user", "current_role"], apply };

/// Which of the calls an expression written without parentheses is: they are keywords, which
/// the parser may leave as identifiers. `"pg_catalog"."current_user"` is how
/// rewrite::fragments spells `current_user` past the crate's parser (which renames it to
/// session_user).
pub fn bare_keyword(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(Ident { value, quote_style: None, .. }) => Some(value.to_ascii_lowercase()).filter(|v| RULE.calls.contains(&v.as_str())),
        Expr::CompoundIdentifier(ids) if matches!(ids.as_slice(), [s, n] if s.value == "pg_catalog" && n.value == "current_user") => Some("current_user".into()),
        _ => None,
    }
}

fn apply(expr: &mut Expr, cx: &mut Context<'_>) -> Result<Flow> {
    let name = bare_keyword(expr).or_else(|| function_name(expr).filter(|n| RULE.calls.contains(&n.as_str())));
    if name.is_some() {
        let current = cx.session.settings.role().unwrap_or_else(|| cx.session.user.clone());
        *expr = text(if name.as_deref() == Some("session_user") { &cx.session.user } else { &current });
        return Ok(Flow::Done);
    }
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::test::{rewritten_by, run_in};
    use crate::pg::settings::SessionInfo;

    #[test]
    fn the_sessions_user() {
        assert_eq!(rewritten_by(&super::RULE, "SELECT user, current_user, session_user, current_role(), \"user\" FROM t"), "SELECT 'alice', 'alice', 'alice', 'alice', \"user\" FROM t");
    }

    #[test]
    fn after_set_role_the_current_user_is_the_role() {
        let mut session = SessionInfo { user: "alice".into(), ..Default::default() };
        session.settings.set("role", "analyst").unwrap();
        assert_eq!(run_in(&super::RULE, "SELECT \"pg_catalog\".\"current_user\", current_role, user, session_user", &session).unwrap(), "SELECT 'analyst', 'analyst', 'analyst', 'alice'");
    }
}
