//! How DataFusion looks like PostgreSQL 15: the dialect, result names, settings, catalogs and
//! functions that BI tools and drivers expect. This wing knows no cube and no lake; it
//! depends only on [`crate::error`]. Its modules, bottom to top:
//!
//! - [`parse`]: statement text — splitting a simple query, tokens, the leading words, one
//!   statement parsed with PostgreSQL's syntax and error positions.
//! - [`array`]: PostgreSQL's text form of arrays (`{r,v}`), for parameters and casts.
//! - [`type_names`]: PostgreSQL type names as cast targets (`'x'::name`, `"char"`).
//! - [`names`]: result column names as PostgreSQL gives them; identifier folding.
//! - [`settings`]: the session's settings (GUCs) with PostgreSQL's defaults, and what a
//!   statement may read of its session ([`settings::SessionInfo`]).
//! - [`rewrite`]: the client-compatibility rules, one named rule per file.
//! - [`analyze`]: PostgreSQL's literal typing and arithmetic as DataFusion analyzer rules on
//!   the logical plan (unknown-type literals, integer overflow, numeric division).
//! - [`catalog`]: `pg_catalog` and `information_schema` as PostgreSQL clients read them.
//! - [`functions`]: PostgreSQL functions DataFusion lacks; [`template`]: PostgreSQL's
//!   formatting templates (pure), which [`formatting`] applies in `to_char`, `to_date`,
//!   `to_timestamp` and `to_number`; [`calendar`]: `age`; [`math`]: `div` and checked
//!   logarithms; [`bounded`]: PostgreSQL's 1 GB limit on what a function may allocate.
//!
//! [`parse_statement`] is the way in: text rules, parsing, then the statement and expression
//! rules.

pub mod analyze;
pub mod array;
pub mod bounded;
pub mod calendar;
pub mod catalog;
pub mod copy;
pub mod formatting;
pub mod functions;
pub mod math;
pub mod names;
pub mod parse;
pub mod rewrite;
pub mod settings;
pub mod template;
pub mod type_names;

use datafusion::sql::sqlparser::ast::Statement;

use crate::error::Result;

/// One statement of `sql` parsed with PostgreSQL's syntax after the text rules
/// ([`rewrite::fragments`]); `None` for an empty statement. With it, the same statement
/// keeping the subqueries of its select lists, when the compatibility parser dropped them
/// ([`parse::with_select_list_subqueries`]): to be planned first.
pub fn parse_statement(
    parser: &datafusion_pg_catalog::sql::PostgresCompatibilityParser,
    sql: &str,
) -> Result<Option<(Statement, Option<Statement>)>> {
    let substituted = rewrite::fragments::substitute(sql);
    Ok(parse::parse_one(parser, &substituted, sql)?.map(|parsed| {
        let kept = parse::with_select_list_subqueries(&substituted, &parsed);
        (parsed, kept)
    }))
}
