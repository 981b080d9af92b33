//! A number written with an exponent (`1.5e3`, `1e-7`, `1e308`) is a numeric, as PostgreSQL
//! reads it, in its plain form: `1500` (as a `numeric(4,0)`), `0.0000001`. DataFusion (with decimal literals on)
//! makes `1.5e3` a decimal of negative scale and fails on exponents past ±127 ("Decimal scale
//! -200 exceeds the minimum supported scale"); so a client's `float_col < 1e308` failed. A
//! number whose plain form has more digits than a 38-digit numeric holds is read as a
//! `double precision` instead (PostgreSQL would keep it numeric; lakecube's numeric has 38
//! digits).

use datafusion::sql::sqlparser::ast::{Expr, Value};

use super::{Context, Flow, Rule, parse_expr};
use crate::error::Result;

pub const RULE: Rule = Rule { name: "number_literal", calls: &[], apply };

/// Digits of the widest numeric lakecube holds.
const MAX_DIGITS: usize = 38;

fn apply(expr: &mut Expr, _: &mut Context<'_>) -> Result<Flow> {
    let Expr::Value(v) = expr else { return Ok(Flow::Next) };
    let Value::Number(text, _) = &v.value else { return Ok(Flow::Next) };
    if !text.contains(['e', 'E']) {
        return Ok(Flow::Next);
    }
    *expr = match plain(text) {
        // A whole number stays a numeric, not an integer (`1.5e3` is numeric 1500).
        Some(p) if !p.contains('.') => parse_expr(&format!("CAST({p} AS NUMERIC({}, 0))", p.len()))?,
        Some(p) => Expr::Value(Value::Number(p, false).into()),
        // A number's text holds no quote.
        None => parse_expr(&format!("CAST('{text}' AS DOUBLE PRECISION)"))?,
    };
    Ok(Flow::Done)
}

/// `m.fe±x` without its exponent, if it has at most [`MAX_DIGITS`] digits.
fn plain(text: &str) -> Option<String> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Where the decimal point falls in `digits`.
    let point = whole.len() as i64 + exponent;
    let (int_part, frac_part) = if point <= 0 {
        (String::new(), format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    if int_part.len() + frac_part.len() > MAX_DIGITS {
        return None;
    }
    Some(if frac_part.is_empty() { int_part.to_string() } else { format!("{int_part}.{frac_part}") })
}

#[cfg(test)]
mod tests {
    use super::super::test::rewritten_by;

    #[test]
    fn exponents_are_written_out() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT 1.5e3, 1E-7, 2.5e0, 12e1, 0.5e-1"),
            "SELECT CAST(1500 AS NUMERIC(4,0)), 0.0000001, 2.5, CAST(120 AS NUMERIC(3,0)), 0.05"
        );
        assert_eq!(rewritten_by(&super::RULE, "SELECT 1, 2.5, x FROM t"), "SELECT 1, 2.5, x FROM t");
    }

    #[test]
    fn numbers_past_38_digits_are_double_precision() {
        assert_eq!(
            rewritten_by(&super::RULE, "SELECT x FROM t WHERE x < 1e308 AND x > -1e-200"),
            "SELECT x FROM t WHERE x < CAST('1e308' AS DOUBLE PRECISION) AND x > -CAST('1e-200' AS DOUBLE PRECISION)"
        );
    }
}
