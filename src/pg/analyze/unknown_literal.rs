//! A quoted literal takes the type its context needs. In PostgreSQL `'t'` has type *unknown*
//! until an operator resolves it, so `indisprimary = 't'` compares booleans (psqlODBC's
//! SQLPrimaryKeys, Excel and Tableau through it), `1 + '2'` adds integers and `'5' > amount`
//! compares numbers. DataFusion types every quoted literal as text and finds no comparison of
//! a boolean with text, nor any arithmetic on text. Before DataFusion's type coercion, this
//! rule gives a text literal compared with (or, in arithmetic, added to) an expression of
//! another type that expression's type, read the way a cast reads it; text that does not read
//! as that type is PostgreSQL's 22P02 at planning, as there.
//!
//! Comparisons (`= <> < <= > >=`, `IS [NOT] DISTINCT FROM`, `IN (…)`, `BETWEEN`) resolve a
//! literal against booleans, numbers, dates, times, timestamps, intervals and arrays (read in
//! PostgreSQL's array text form, `'{0}'`); arithmetic only
//! against numbers (PostgreSQL's `timestamp - '1 day'` is ambiguous, and refused there too).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, ExprSchemable, Operator};
use datafusion::sql::sqlparser::ast::BinaryOperator as SqlOperator;

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_unknown_literal", rewrite: resolve };

fn resolve(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (left, right, changed) = resolve_operands(*left, kind(&op), *right, schema)?;
            let e = Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right)));
            Ok(if changed { Transformed::yes(e) } else { Transformed::no(e) })
        }
        Expr::InList(InList { expr, list, negated }) => match target(&expr, schema, comparable) {
            Some(t) if list.iter().any(|item| text(item).is_some()) => {
                let list = list.into_iter().map(|item| typed_if_text(item, &t)).collect::<Result<Vec<_>>>()?;
                Ok(Transformed::yes(Expr::InList(InList { expr, list, negated })))
            }
            _ => Ok(Transformed::no(Expr::InList(InList { expr, list, negated }))),
        },
        Expr::Between(Between { expr, negated, low, high }) => match target(&expr, schema, comparable) {
            Some(t) if text(&low).is_some() || text(&high).is_some() => {
                let (low, high) = (Box::new(typed_if_text(*low, &t)?), Box::new(typed_if_text(*high, &t)?));
                Ok(Transformed::yes(Expr::Between(Between { expr, negated, low, high })))
            }
            _ => Ok(Transformed::no(Expr::Between(Between { expr, negated, low, high }))),
        },
        other => Ok(Transformed::no(other)),
    }
}

/// What a binary operator does with a quoted literal operand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OperatorKind {
    Comparison,
    Arithmetic,
    Other,
}

fn kind(op: &Operator) -> OperatorKind {
    match op {
        Operator::Eq
        | Operator::NotEq
        | Operator::Lt
        | Operator::LtEq
        | Operator::Gt
        | Operator::GtEq
        | Operator::IsDistinctFrom
        | Operator::IsNotDistinctFrom => OperatorKind::Comparison,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo => OperatorKind::Arithmetic,
        _ => OperatorKind::Other,
    }
}

fn sql_kind(op: &SqlOperator) -> OperatorKind {
    match op {
        SqlOperator::Eq | SqlOperator::NotEq | SqlOperator::Lt | SqlOperator::LtEq | SqlOperator::Gt | SqlOperator::GtEq => {
            OperatorKind::Comparison
        }
        SqlOperator::Plus | SqlOperator::Minus | SqlOperator::Multiply | SqlOperator::Divide | SqlOperator::Modulo => {
            OperatorKind::Arithmetic
        }
        _ => OperatorKind::Other,
    }
}

/// The operands of a binary operator, a quoted literal among them typed after the other.
fn resolve_operands(left: Expr, kind: OperatorKind, right: Expr, schema: &DFSchema) -> Result<(Expr, Expr, bool)> {
    let wants: fn(&DataType) -> bool = match kind {
        OperatorKind::Comparison => comparable,
        OperatorKind::Arithmetic => DataType::is_numeric,
        OperatorKind::Other => return Ok((left, right, false)),
    };
    Ok(match (text(&left), text(&right)) {
        (None, Some(s)) => match target(&left, schema, wants) {
            Some(t) => {
                let right = typed(s, &t)?;
                (left, right, true)
            }
            None => (left, right, false),
        },
        (Some(s), None) => match target(&right, schema, wants) {
            Some(t) => (typed(s, &t)?, right, true),
            None => (left, right, false),
        },
        _ => (left, right, false),
    })
}

/// The same typing while DataFusion plans SQL: an operator whose operand types do not match
/// (a boolean and text) fails there already, before any analyzer rule could see it.
#[derive(Debug, Default)]
pub struct UnknownLiteralPlanner;

impl ExprPlanner for UnknownLiteralPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let RawBinaryExpr { op, left, right } = expr;
        let (left, right, _) = resolve_operands(left, sql_kind(&op), right, schema)?;
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

/// Types a quoted literal resolves to in a comparison.
fn comparable(t: &DataType) -> bool {
    t.is_numeric()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Timestamp(..)
                | DataType::Interval(_)
                | DataType::List(_)
                | DataType::LargeList(_)
        )
}

/// The text of a quoted literal.
fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Some(s)
        }
        _ => None,
    }
}

/// The type of `other` when a literal beside it should take it.
fn target(other: &Expr, schema: &DFSchema, wants: fn(&DataType) -> bool) -> Option<DataType> {
    if text(other).is_some() {
        return None;
    }
    other.get_type(schema).ok().filter(wants)
}

/// `e` typed `t` if it is a quoted literal, else `e`.
fn typed_if_text(e: Expr, t: &DataType) -> Result<Expr> {
    match text(&e) {
        Some(s) => typed(s, t),
        None => Ok(e),
    }
}

/// `s` read as a value of type `t`, as PostgreSQL reads an unknown literal.
fn typed(s: &str, t: &DataType) -> Result<Expr> {
    if let DataType::List(item) | DataType::LargeList(item) = t {
        // An array in PostgreSQL's text form (`polroles <> '{0}'`, psql's `\dp`); Arrow's
        // cast of text to a list would make a list of the one string.
        let list = crate::pg::array::list_value(s, item.data_type()).map_err(super::external)?;
        return Ok(Expr::Cast(datafusion::logical_expr::expr::Cast::new(Box::new(Expr::Literal(list, None)), t.clone())));
    }
    let read = |s: &str| ScalarValue::try_from_string(s.to_string(), t).ok().filter(|v| !v.is_null());
    let mut s = s.trim().to_string();
    let value = match t {
        DataType::Boolean => pg_bool(&s).map(|b| ScalarValue::Boolean(Some(b))),
        // PostgreSQL's other date and timestamp forms (`'03/05/2025'`), in ISO form.
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) if read(&s).is_none() => {
            super::datetime_literal::iso_form(&s).and_then(|iso| {
                let v = read(&iso);
                s = iso;
                v
            })
        }
        _ => read(&s),
    };
    let s = s.as_str();
    match value {
        // Checked now (22P02 at planning); left as a cast of the text, which the optimizer
        // folds, so that the expression keeps a name of its own: `'42' = 42, 42 = '42'` are
        // two columns, not one name twice (nor `b = 'yes', b = 'on'`: Arrow's cast reads
        // every boolean text that `pg_bool` reads, as written).
        Some(_) => {
            let text = ScalarValue::Utf8(Some(s.to_string()));
            Ok(Expr::Cast(datafusion::logical_expr::expr::Cast::new(Box::new(Expr::Literal(text, None)), t.clone())))
        }
        None => Err(super::external(crate::error::text_error(s, crate::error::pg_type_name(t)))),
    }
}

/// PostgreSQL's boolean input: `t`, `true`, `yes`, `on`, `1` and their opposites, any case,
/// any unique prefix of the words (`tr`, `of` is not one: `o` is ambiguous).
pub fn pg_bool(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    let prefix = |word: &str| word.starts_with(&s);
    match s.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        "o" => None,
        _ if prefix("true") || prefix("yes") || s == "on" => Some(true),
        _ if prefix("false") || prefix("no") || prefix("off") && s.len() >= 2 => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test::answer;

    #[tokio::test]
    async fn quoted_literals_take_their_context_type() {
        assert_eq!(answer("SELECT true = 't'").await, "true");
        assert_eq!(answer("SELECT 'f' <> false").await, "false");
        assert_eq!(answer("SELECT 1 + '2'").await, "3");
        assert_eq!(answer("SELECT '2.5' * 2.0").await, "5.00");
        assert_eq!(answer("SELECT true IN ('t', 'f')").await, "true");
        assert_eq!(answer("SELECT 5 BETWEEN '1' AND '9'").await, "true");
        assert_eq!(answer("SELECT DATE '2025-02-01' > '2025-01-01'").await, "true");
        // Text compared with text stays text.
        assert_eq!(answer("SELECT 'b' > 'a'").await, "true");
    }

    #[tokio::test]
    async fn an_array_literal_takes_the_array_type_beside_it() {
        // psql's \dp: `polroles <> '{0}'`, an oid[] column against an array literal.
        assert_eq!(answer("SELECT make_array(0) <> '{0}'").await, "false");
        assert_eq!(answer("SELECT make_array(1, 2) = '{1,2}'").await, "true");
        assert_eq!(answer("SELECT make_array('a b', 'c') = '{\"a b\",c}'").await, "true");
        let bad = answer("SELECT make_array(1) = '{x}'").await;
        assert!(bad.starts_with("[22P02] malformed array literal: \"{x}\""), "{bad}");
    }

    #[tokio::test]
    async fn text_that_does_not_read_as_the_type_is_22p02() {
        assert_eq!(answer("SELECT true = 'maybe'").await, "[22P02] invalid input syntax for type boolean: \"maybe\"");
        assert_eq!(answer("SELECT 1 = 'x1'").await, "[22P02] invalid input syntax for type bigint: \"x1\"");
    }

    #[test]
    fn booleans_read_as_postgresql_reads_them() {
        for t in ["t", "TRUE", "yes", "y", "on", "1", " tr "] {
            assert_eq!(super::pg_bool(t), Some(true), "{t}");
        }
        for f in ["f", "false", "NO", "n", "off", "of", "0"] {
            assert_eq!(super::pg_bool(f), Some(false), "{f}");
        }
        for bad in ["", "o", "maybe", "2", "tx"] {
            assert_eq!(super::pg_bool(bad), None, "{bad}");
        }
    }
}
