//! Text rules: fragments of client statements rewritten before parsing, matched token by
//! token whatever the spacing.
//! - [`FRAGMENTS`]: whole fragments DataFusion cannot plan, or that datafusion-pg-catalog
//!   would replace by a wrong constant, each with its client and reason;
//! - `'pg_catalog.array_in'::regproc` (pgjdbc's type cache): datafusion-pg-catalog resolves
//!   `'array_in'::regproc` but not the schema-qualified name, which is the same function;
//! - `'name'::regclass`, `'name'::pg_catalog.regclass` and `CAST('name' AS regclass)`:
//!   looked up by `regclass_oid()`, which searches pg_catalog for unqualified names as
//!   PostgreSQL's search path does (the crate's rewrite searches the current schema only, so
//!   `'pg_class'::regclass` came back NULL);
//! - `current_user` as `"pg_catalog"."current_user"` (a column reference, which no rule of the
//!   crate touches): the crate renames `current_user` to `session_user`, which is another user
//!   after `SET ROLE` (rewrite::current_user turns it into the current role's name);
//! - array literals, `'{a,"b,c"}'::text[]`, `CAST('{…}' AS int[])` and `= ANY('{r,v}')`: read by
//!   `pg_array_in` ([`crate::pg::array`]); datafusion-pg-catalog splits their text at every
//!   comma, quotes included (`'{"a,b",c}'::text[]` came back as three elements).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::pg::parse::LineIndex;

/// Fragments of client statements that DataFusion cannot plan, or that datafusion-pg-catalog
/// would replace by a wrong constant, each replaced by an equivalent lakecube plans, for the
/// reason given: (client and reason, fragment, replacement). Matched token by token, whatever
/// the spacing.
pub const FRAGMENTS: &[(&str, &str, &str)] = &[
    (
        // psql's `\d+ table` appends the TOAST table's storage options. A correlated
        // `unnest(…)` in FROM does not plan; lakecube tables have no TOAST table, so the left
        // join leaves `tc.reloptions` NULL and the array is empty.
        "psql \\d+: TOAST table options",
        "array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)",
        "CAST(NULL AS VARCHAR[])",
    ),
    (
        // psql's `\dp` lists each row-level policy's roles by a subquery correlated through
        // `oid = ANY (polroles)`, which DataFusion cannot decorrelate. lakecube has no
        // row-level policies (pg_policy is empty), so the list is never shown; the oids stand
        // in for the names. (Access policies in pg_policy will need the names looked up.)
        "psql \\dp: the roles of a row-level policy",
        "pg_catalog.array_to_string(ARRAY(SELECT rolname FROM pg_catalog.pg_roles WHERE oid = ANY (polroles) ORDER BY 1), E', ')",
        "pg_catalog.array_to_string(CAST(polroles AS VARCHAR[]), ', ')",
    ),
    (
        // Grafana's query builder lists the tables of the schemas on the search path. The
        // crate blacklists this subquery as `''` (it had no current_setting()), which left
        // the list empty; lakecube answers current_setting, so the same subquery is kept,
        // spelled with btrim (trim of spaces, as trim) so the blacklist does not match it.
        "Grafana: schemas of the search path",
        r#"SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM
            generate_series(
                array_lower(string_to_array(current_setting('search_path'),','),1),
                array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s"#,
        r#"SELECT CASE WHEN btrim(s[i]) = '"$user"' THEN user ELSE btrim(s[i]) END
           FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
                                array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
                string_to_array(current_setting('search_path'),',') s"#,
    ),
];

/// `sql` with the fragments replaced, and `'pg_catalog.f'::regproc` and regclass literals
/// rewritten (below); the text itself when nothing matched.
pub fn substitute(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let significant = |s: &str| -> Option<Vec<(Token, usize, usize)>> {
        let index = LineIndex::new(s);
        let toks = Tokenizer::new(&PostgreSqlDialect {}, s).tokenize_with_location().ok()?;
        Some(
            toks.into_iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
                .map(|t| {
                    let (a, b) = (index.byte(&t.span.start), index.byte(&t.span.end));
                    (t.token, a, b)
                })
                .collect(),
        )
    };
    let Some(tokens) = significant(sql) else { return sql.into() };
    // The fragments' tokens, once per process.
    static PATTERNS: std::sync::OnceLock<Vec<(Vec<(Token, usize, usize)>, &'static str)>> = std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        FRAGMENTS.iter().filter_map(|(_, fragment, replacement)| Some((significant(fragment)?, *replacement))).collect()
    });
    let mut out = String::new();
    let mut copied = 0;
    for (pattern, replacement) in patterns {
        if pattern.is_empty() || tokens.len() < pattern.len() {
            continue;
        }
        for i in 0..=tokens.len() - pattern.len() {
            if tokens[i].1 < copied {
                continue;
            }
            if tokens[i..i + pattern.len()].iter().zip(pattern).all(|(a, b)| a.0 == b.0) {
                out.push_str(&sql[copied..tokens[i].1]);
                out.push_str(replacement);
                copied = tokens[i + pattern.len() - 1].2;
            }
        }
    }
    // Qualified regproc literals (see the module doc).
    for w in tokens.windows(3) {
        if let [(Token::SingleQuotedString(name), start, _), (Token::DoubleColon, ..), (Token::Word(ty), _, end)] = w
            && ty.value.eq_ignore_ascii_case("regproc")
            && let Some(bare) = name.strip_prefix("pg_catalog.")
            && *start >= copied
        {
            out.push_str(&sql[copied..*start]);
            out.push_str(&format!("'{}'::regproc", bare.replace('\'', "''")));
            copied = *end;
        }
    }
    // Regclass literals (see the module doc).
    let regclass_at = |k: usize| -> Option<usize> {
        match tokens.get(k..k + 3) {
            Some([(Token::Word(a), ..), (Token::Period, ..), (Token::Word(b), _, end)])
                if a.value.eq_ignore_ascii_case("pg_catalog") && b.value.eq_ignore_ascii_case("regclass") =>
            {
                return Some(*end);
            }
            _ => {}
        }
        match tokens.get(k) {
            Some((Token::Word(w), _, end)) if w.value.eq_ignore_ascii_case("regclass") => Some(*end),
            _ => None,
        }
    };
    // An array literal's text is read by `pg_array_in` (see the module doc).
    let array_type_at = |k: usize| -> bool {
        let mut k = k;
        while matches!(tokens.get(k), Some((Token::Word(_) | Token::Period, ..))) {
            k += 1;
        }
        matches!((tokens.get(k), tokens.get(k + 1)), (Some((Token::LBracket, ..)), Some((Token::RBracket, ..))))
    };
    let mut i = 0;
    while i < tokens.len() {
        let found = match &tokens[i..] {
            [(Token::SingleQuotedString(name), start, _), (Token::DoubleColon, ..), ..] => {
                regclass_at(i + 2).map(|end| (format!("regclass_oid('{}')", name.replace('\'', "''")), *start, end))
            }
            [(Token::Word(cast), start, _), (Token::LParen, ..), (Token::SingleQuotedString(name), ..), (Token::Word(as_), ..), ..]
                if cast.value.eq_ignore_ascii_case("cast") && as_.value.eq_ignore_ascii_case("as") =>
            {
                let after = if matches!(tokens.get(i + 5), Some((Token::Period, ..))) { i + 7 } else { i + 5 };
                match (regclass_at(i + 4), tokens.get(after)) {
                    (Some(_), Some((Token::RParen, _, end))) => Some((format!("regclass_oid('{}')", name.replace('\'', "''")), *start, *end)),
                    _ => None,
                }
            }
            _ => None,
        };
        let found = found.or_else(|| match &tokens[i..] {
            // '{a,b}'::text[] and CAST('{a,b}' AS text[])
            [(Token::SingleQuotedString(text), start, end), (Token::DoubleColon | Token::Word(_), ..), ..]
                if (matches!(tokens[i + 1].0, Token::DoubleColon)
                    || matches!(&tokens[i + 1].0, Token::Word(w) if w.value.eq_ignore_ascii_case("as"))
                        && i >= 2
                        && matches!(&tokens[i - 1].0, Token::LParen)
                        && matches!(&tokens[i - 2].0, Token::Word(w) if w.value.eq_ignore_ascii_case("cast")))
                    && array_type_at(i + 2) =>
            {
                Some((format!("pg_array_in('{}')", text.replace('\'', "''")), *start, *end))
            }
            // = ANY('{a,b}')
            [(Token::SingleQuotedString(text), start, end), (Token::RParen, ..), ..]
                if i >= 2
                    && matches!(&tokens[i - 1].0, Token::LParen)
                    && matches!(&tokens[i - 2].0, Token::Word(w) if ["any", "some", "all"].iter().any(|k| w.value.eq_ignore_ascii_case(k))) =>
            {
                Some((format!("pg_array_in('{}')", text.replace('\'', "''")), *start, *end))
            }
            _ => None,
        });
        // current_user, which the crate renames to session_user (they differ after SET ROLE).
        let found = found.or_else(|| match &tokens[i] {
            (Token::Word(w), start, end)
                if w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("current_user")
                    && !matches!(tokens.get(i + 1), Some((Token::LParen, ..)))
                    && (i == 0 || !matches!(tokens[i - 1].0, Token::Period)) =>
            {
                Some((r#""pg_catalog"."current_user""#.to_string(), *start, *end))
            }
            _ => None,
        });
        if let Some((replacement, start, end)) = found
            && start >= copied
        {
            out.push_str(&sql[copied..start]);
            out.push_str(&replacement);
            copied = end;
        }
        i += 1;
    }
    if copied == 0 {
        return sql.into();
    }
    out.push_str(&sql[copied..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn fragments_are_replaced_whatever_the_spacing() {
        let sql = "SELECT a, array(select 'toast.' ||  x\n from pg_catalog.unnest(tc.reloptions) x) FROM t";
        assert_eq!(substitute(sql), "SELECT a, CAST(NULL AS VARCHAR[]) FROM t");
        assert_eq!(substitute("SELECT 1"), "SELECT 1");
        assert_eq!(substitute("SELECT CURRENT_USER, t.current_user, \"current_user\" FROM t"), "SELECT \"pg_catalog\".\"current_user\", t.current_user, \"current_user\" FROM t");
        assert_eq!(
            substitute("SELECT E'to: ' || pg_catalog.array_to_string(\n ARRAY(\n SELECT rolname\n FROM pg_catalog.pg_roles\n WHERE oid = ANY (polroles)\n ORDER BY 1\n ), E', ') FROM pg_policy"),
            "SELECT E'to: ' || pg_catalog.array_to_string(CAST(polroles AS VARCHAR[]), ', ') FROM pg_policy"
        );
    }

    #[test]
    fn qualified_regprocs_lose_their_schema() {
        assert_eq!(
            substitute("SELECT typinput='pg_catalog.array_in'::regproc FROM pg_type"),
            "SELECT typinput='array_in'::regproc FROM pg_type"
        );
    }

    #[test]
    fn array_literals_are_read_by_pg_array_in() {
        assert_eq!(
            substitute(r#"SELECT '{"a,b",c}'::text[], CAST('{1}' AS pg_catalog.int4[]), k = ANY ('{r,v}'), '{x}'::text, 'y'"#),
            r#"SELECT pg_array_in('{"a,b",c}')::text[], CAST(pg_array_in('{1}') AS pg_catalog.int4[]), k = ANY (pg_array_in('{r,v}')), '{x}'::text, 'y'"#
        );
    }

    #[test]
    fn regclass_literals_search_pg_catalog() {
        assert_eq!(
            substitute("SELECT 'pg_class'::regclass, 'x'::pg_catalog.regclass, CAST('t' AS regclass), 'n'::text"),
            "SELECT regclass_oid('pg_class'), regclass_oid('x'), regclass_oid('t'), 'n'::text"
        );
    }
}
