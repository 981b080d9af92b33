//! Statement text, the PostgreSQL way: a simple-query message split into statements, tokens
//! with their byte offsets, the first words of a statement, and one statement parsed with
//! PostgreSQL's syntax, its syntax errors pointing at the character PostgreSQL would report.

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{Error, ErrorKind, Result};

/// Parses one statement, `text` (the client's `sql` after the text rules), with PostgreSQL's
/// syntax and datafusion-pg-catalog's catalog-compatibility rewrites. Syntax errors point
/// into `sql`, the text the client sent.
pub fn parse_one(parser: &datafusion_pg_catalog::sql::PostgresCompatibilityParser, text: &str, sql: &str) -> Result<Option<Statement>> {
    let mut statements = match parser.parse(text) {
        Ok(s) => s,
        // The compatibility parser drops token positions; the plain parser reports them.
        Err(e) => return Err(syntax_error(sql, Parser::parse_sql(&PostgreSqlDialect {}, sql).err().unwrap_or(e))),
    };
    match statements.len() {
        0 => Ok(None),
        1 => Ok(statements.pop()),
        n => Err(Error::new(ErrorKind::Syntax, format!("expected one statement, found {n}"))
            .with_hint("send statements one at a time, or as one simple-query message")),
    }
}

/// The statement `parsed` (from [`parse_one`] of `text`) with the subqueries of its select
/// lists as the client wrote them, when datafusion-pg-catalog changed them; `None` when it
/// did not. Its `RemoveSubqueryFromProjection` replaces a correlated subquery in a select
/// list with NULL (`SELECT a, (SELECT count(*) FROM s WHERE b <= t.a) FROM t` answered NULL
/// for every row, without a word) and adds `LIMIT 1` to the others (hiding PostgreSQL's
/// "more than one row returned by a subquery"), so that catalog queries DataFusion cannot
/// plan still run. The crate's parser keeps its rule list private, so this parses `text`
/// again and applies the same rules but that one; the result counts only if that rule turns
/// it into `parsed` (otherwise the crate replaced the whole statement, by its list of
/// known client queries). The engine plans this statement first, and `parsed` only if
/// DataFusion cannot.
pub fn with_select_list_subqueries(text: &str, parsed: &Statement) -> Option<Statement> {
    use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};
    static BEFORE: std::sync::LazyLock<Vec<Box<dyn SqlStatementRewriteRule>>> = std::sync::LazyLock::new(|| {
        vec![
            Box::new(rules::AliasDuplicatedProjectionRewrite),
            Box::new(rules::ResolveUnqualifiedIdentifier),
            Box::new(rules::RewriteArrayAnyAllOperation),
            Box::new(rules::PrependUnqualifiedPgTableName),
            Box::new(rules::StripCallableQualifier),
            Box::new(rules::FixArrayLiteral),
            Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
            Box::new(rules::StripCollate),
            Box::new(rules::RewritePgCatalogOperator),
            Box::new(rules::RewriteRegCastToSubquery::new()),
        ]
    });
    // Only where that rule could have acted: a select-list item NULL, or a subquery with a limit.
    if !select_list_null_or_limited_subquery(parsed) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, text).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let before = BEFORE.iter().fold(statements.pop()?, |s, rule| rule.rewrite(s));
    let theirs = rules::FixVersionColumnName.rewrite(rules::RemoveSubqueryFromProjection.rewrite(before.clone()));
    if theirs != *parsed {
        return None;
    }
    let ours = rules::FixVersionColumnName.rewrite(before);
    (ours != *parsed).then_some(ours)
}

/// Whether a select list of `stmt` holds a bare NULL or a subquery with a LIMIT: what
/// `RemoveSubqueryFromProjection` leaves where it acts.
fn select_list_null_or_limited_subquery(stmt: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Value, Visit, Visitor};
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> std::ops::ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_ref() else { return std::ops::ControlFlow::Continue(()) };
            let acted = select.projection.iter().any(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => match e {
                    Expr::Value(v) => v.value == Value::Null,
                    Expr::Subquery(q) => q.limit_clause.is_some(),
                    _ => false,
                },
                _ => false,
            });
            if acted { std::ops::ControlFlow::Break(()) } else { std::ops::ControlFlow::Continue(()) }
        }
    }
    stmt.visit(&mut Finder).is_break()
}

fn syntax_error(sql: &str, e: datafusion::sql::sqlparser::parser::ParserError) -> Error {
    let msg = e.to_string();
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg).to_string();
    let position = position_of(sql, &msg);
    let mut err = Error::new(ErrorKind::Syntax, format!("syntax error: {msg}"));
    if let Some(p) = position {
        err = err.with_position(p);
    }
    err
}

/// Byte offsets of sqlparser's 1-based (line, column in characters) locations.
pub struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(sql: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { sql, line_starts }
    }

    pub fn byte(&self, loc: &datafusion::sql::sqlparser::tokenizer::Location) -> usize {
        let Some(&start) = self.line_starts.get((loc.line as usize).saturating_sub(1)) else { return self.sql.len() };
        let line = &self.sql[start..];
        start + line.char_indices().nth((loc.column as usize).saturating_sub(1)).map(|(i, _)| i).unwrap_or(line.len())
    }
}

/// The 1-based character position of sqlparser's "Line: l, Column: c" in `sql`.
fn position_of(sql: &str, msg: &str) -> Option<usize> {
    if msg.contains("found: EOF") {
        return Some(sql.trim_end().chars().count() + 1);
    }
    let at = msg.rfind("Line: ")?;
    let rest = &msg[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: usize = rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    let mut pos = 0;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return Some(pos + col.min(l.chars().count() + 1));
        }
        pos += l.chars().count() + 1;
    }
    None
}

/// The first `n` words of a statement, upper-cased, skipping whitespace and comments
/// (quoted identifiers keep their text; anything else ends the list).
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return Vec::new() };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(n)
        .map_while(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

/// Splits a simple-query message into its statements' texts (`;` outside quotes, comments
/// and dollar-quoted strings); statements with only whitespace or comments are dropped.
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let tokens = tokenize(sql)?;
    let offsets = LineIndex::new(sql);
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut has_content = false;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                let end = offsets.byte(&t.span.start);
                if has_content {
                    out.push(sql[start..end].trim().to_string());
                }
                start = end + 1;
                has_content = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => has_content = true,
        }
    }
    if has_content {
        out.push(sql[start..].trim().to_string());
    }
    Ok(out)
}

/// The tokens of `sql` with their locations.
pub fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(ErrorKind::Syntax, format!("syntax error: {e}")))
}

/// A statement on one line, whitespace runs collapsed (for messages and logs).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = split_statements("SET a = 'x;y'; -- c;\nSELECT $$;$$ ; ;  /* ; */ select 1").unwrap();
        assert_eq!(s, vec!["SET a = 'x;y'", "-- c;\nSELECT $$;$$", "/* ; */ select 1"]);
        assert!(split_statements(" ; -- only a comment").unwrap().is_empty());
    }

    #[test]
    fn syntax_positions() {
        assert_eq!(position_of("SELECT\nFROM x", "Expected: x, found: FROM at Line: 2, Column: 1"), Some(8));
    }

    #[test]
    fn leading_words_skip_comments() {
        assert_eq!(leading_words("/* c */ select  Distinct \"x\" y", 3), ["SELECT", "DISTINCT"]);
    }
}
