//! A quoted date or timestamp is read in PostgreSQL's other input forms too, not only the ISO
//! form Arrow's cast reads: `TIMESTAMP '2025-03-01 10:00'` (no seconds), `'March 5, 2025'::date`,
//! `'5 Mar 2025'`, `'03/05/2025'` (PostgreSQL's default DateStyle, month first), `'20250305'`.
//! Arrow failed on them ("error parsing time"), so a dashboard filter
//! `period >= '2025-03-01 10:00'` was an error.
//!
//! After type coercion, a cast of a text *literal* to a date or timestamp whose text Arrow
//! cannot read, but PostgreSQL can, gets the literal rewritten in ISO form; the cast stays, so
//! it still folds into a constant and prunes files as before. Text read from a column is
//! left to Arrow's cast.

use datafusion::arrow::array::StringArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::Expr;

pub const RULE: super::ExprRule = super::ExprRule { name: "pg_datetime_literal", rewrite };

fn rewrite(e: Expr, _: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, target) = match &e {
        Expr::Cast(Cast { expr, field }) => (expr, field.data_type()),
        Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type()),
        _ => return Ok(Transformed::no(e)),
    };
    if !matches!(target, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) {
        return Ok(Transformed::no(e));
    }
    let Expr::Literal(ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) | ScalarValue::LargeUtf8(Some(text)), meta) =
        inner.as_ref()
    else {
        return Ok(Transformed::no(e));
    };
    let reads = |t: &str| cast(&StringArray::from(vec![t]), target).is_ok_and(|a| a.null_count() == 0);
    if reads(text) {
        return Ok(Transformed::no(e));
    }
    let Some(iso) = iso_form(text).filter(|iso| reads(iso)) else { return Ok(Transformed::no(e)) };
    let literal = Box::new(Expr::Literal(ScalarValue::Utf8(Some(iso)), meta.clone()));
    Ok(Transformed::yes(match e {
        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast::new_from_field(literal, field)),
        Expr::TryCast(TryCast { field, .. }) => Expr::TryCast(TryCast { expr: literal, field }),
        _ => unreachable!("matched above"),
    }))
}

/// Date forms PostgreSQL reads (DateStyle ISO, MDY), as chrono patterns; `%B` reads full and
/// abbreviated month names in any case.
const DATES: &[&str] = &[
    "%Y-%m-%d", "%B %d, %Y", "%B %d %Y", "%d %B %Y", "%d %B, %Y", "%Y-%B-%d", "%d-%B-%Y", "%m/%d/%Y", "%m-%d-%Y", "%Y/%m/%d",
    "%Y%m%d", "%Y.%m.%d",
];

/// Times after the date (seconds optional), with an optional zone.
const TIMES: &[&str] = &["%H:%M:%S%.f", "%H:%M"];

/// `text` in the ISO form Arrow reads (`2025-03-05` or `2025-03-05 14:07:00[.f][+zone]`), when
/// it is one of PostgreSQL's other date or timestamp forms.
pub fn iso_form(text: &str) -> Option<String> {
    let text = text.trim();
    // The time, if any, starts at the first `HH:` after a blank or a `T`.
    let (date_text, time_text) = match text.find(':') {
        Some(colon) => {
            let start = text[..colon].rfind([' ', 'T']).map_or(0, |i| i + 1);
            (text[..start].trim_end_matches(['T', ' ']), Some(&text[start..]))
        }
        None => (text, None),
    };
    let date = DATES.iter().find_map(|f| chrono::NaiveDate::parse_from_str(date_text, f).ok())?;
    let Some(time_text) = time_text else { return Some(date.format("%Y-%m-%d").to_string()) };
    // A zone at the end (`+02`, `-05:30`, `Z`, ` UTC`) is kept as Arrow reads it.
    let (clock, zone) = match time_text.find(['+', '-', 'Z', ' ']) {
        Some(i) => (&time_text[..i], time_text[i..].trim()),
        None => (time_text, ""),
    };
    let time = TIMES.iter().find_map(|f| chrono::NaiveTime::parse_from_str(clock, f).ok())?;
    let zone = match zone {
        "" => String::new(),
        "UTC" | "Z" | "GMT" => "+00:00".to_string(),
        z if z.len() == 3 && z.starts_with(['+', '-']) && z.as_bytes()[1..].iter().all(u8::is_ascii_digit) => format!("{z}:00"),
        z => z.to_string(),
    };
    Some(format!("{} {}{zone}", date.format("%Y-%m-%d"), time.format("%H:%M:%S%.f")))
}

#[cfg(test)]
mod tests {
    use super::iso_form;
    use crate::pg::analyze::test::answer;

    #[test]
    fn postgresql_forms_in_iso_form() {
        assert_eq!(iso_form("2025-03-05 14:07").as_deref(), Some("2025-03-05 14:07:00"));
        assert_eq!(iso_form("2025-03-05T14:07").as_deref(), Some("2025-03-05 14:07:00"));
        assert_eq!(iso_form("March 5, 2025").as_deref(), Some("2025-03-05"));
        assert_eq!(iso_form("5 mar 2025 09:30").as_deref(), Some("2025-03-05 09:30:00"));
        assert_eq!(iso_form("03/05/2025").as_deref(), Some("2025-03-05"));
        assert_eq!(iso_form("20250305").as_deref(), Some("2025-03-05"));
        assert_eq!(iso_form("2025-03-05 14:07+02").as_deref(), Some("2025-03-05 14:07:00+02:00"));
        assert_eq!(iso_form("nope"), None);
        assert_eq!(iso_form("2025-02-30"), None);
    }

    #[tokio::test]
    async fn literals_in_other_forms_are_read() {
        assert_eq!(answer("SELECT TIMESTAMP '2025-03-01 10:00'").await, "2025-03-01T10:00:00");
        assert_eq!(answer("SELECT CAST('March 5, 2025' AS DATE)").await, "2025-03-05");
        assert_eq!(answer("SELECT d FROM (VALUES (DATE '2025-03-05')) AS t(d) WHERE d = '03/05/2025'").await, "2025-03-05");
        // A zone that starts with a character of several bytes is no zone: an error, no panic.
        assert!(answer("SELECT TIMESTAMP '2025-03-05 10:00 €'").await.starts_with("[22007]"), "{}", answer("SELECT TIMESTAMP '2025-03-05 10:00 €'").await);
        // What PostgreSQL cannot read either stays an error.
        assert!(answer("SELECT CAST('nope' AS DATE)").await.starts_with("[22007]"), "{}", answer("SELECT CAST('nope' AS DATE)").await);
    }
}
