//! PostgreSQL behaviour for functions whose DataFusion namesakes differ.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

/// `to_char(timestamp, 'YYYY-MM')` with PostgreSQL's template patterns. DataFusion's `to_char`
/// takes chrono patterns (`%Y-%m`) and would print `YYYY-MM` literally, which is what BI tools
/// and analysts send. This wraps it, translating the template first.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgToChar {
    inner: Arc<ScalarUDF>,
}

impl PgToChar {
    pub fn new() -> Self {
        PgToChar { inner: datafusion::functions::datetime::to_char() }
    }
}

impl Default for PgToChar {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(format) = args.args.get_mut(1) {
            let translated = match &*format {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))) => ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_template_to_chrono(s)))),
                ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s))) => ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_template_to_chrono(s)))),
                ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s))) => ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_template_to_chrono(s)))),
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                    let strings = a.as_any().downcast_ref::<StringArray>().expect("cast to utf8");
                    let out: StringArray = strings.iter().map(|v| v.map(pg_template_to_chrono)).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
                other => other.clone(),
            };
            *format = translated;
        }
        self.inner.invoke_with_args(args)
    }
}

/// Translates a PostgreSQL datetime template (`YYYY-MM-DD HH24:MI:SS`) to chrono's strftime
/// form. `FM` (no padding) maps to chrono's `-` flag; text in double quotes is literal.
pub fn pg_template_to_chrono(t: &str) -> String {
    // Longest patterns first.
    const PATTERNS: &[(&str, &str, &str)] = &[
        // (PostgreSQL, chrono, chrono without padding)
        ("HH24", "%H", "%-H"),
        ("HH12", "%I", "%-I"),
        ("IYYY", "%G", "%G"),
        ("YYYY", "%Y", "%Y"),
        ("MONTH", "%B", "%B"),
        ("Month", "%B", "%B"),
        ("month", "%B", "%B"),
        ("DAY", "%A", "%A"),
        ("Day", "%A", "%A"),
        ("day", "%A", "%A"),
        ("DDD", "%j", "%-j"),
        ("YY", "%y", "%y"),
        ("MM", "%m", "%-m"),
        ("DD", "%d", "%-d"),
        ("HH", "%I", "%-I"),
        ("MI", "%M", "%-M"),
        ("SS", "%S", "%-S"),
        ("MS", "%3f", "%3f"),
        ("US", "%6f", "%6f"),
        ("AM", "%p", "%p"),
        ("PM", "%p", "%p"),
        ("am", "%P", "%P"),
        ("pm", "%P", "%P"),
        ("Mon", "%b", "%b"),
        ("MON", "%b", "%b"),
        ("mon", "%b", "%b"),
        ("Dy", "%a", "%a"),
        ("DY", "%a", "%a"),
        ("dy", "%a", "%a"),
        ("IW", "%V", "%-V"),
        ("TZ", "%Z", "%Z"),
    ];
    let mut out = String::new();
    let mut rest = t;
    let mut fill_mode = false;
    'outer: while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("FM") {
            fill_mode = true;
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            out.push_str(&r[..end].replace('%', "%%"));
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        for (pg, chrono, unpadded) in PATTERNS {
            if let Some(r) = rest.strip_prefix(pg) {
                out.push_str(if fill_mode { unpadded } else { chrono });
                fill_mode = false;
                rest = r;
                continue 'outer;
            }
        }
        let ch = rest.chars().next().expect("non-empty");
        if ch == '%' {
            out.push_str("%%");
        } else {
            out.push(ch);
        }
        rest = &rest[ch.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pg_template_to_chrono as t;

    #[test]
    fn translates_postgres_templates() {
        assert_eq!(t("YYYY-MM"), "%Y-%m");
        assert_eq!(t("YYYY-MM-DD HH24:MI:SS"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(t("FMMonth YYYY"), "%B %Y");
        assert_eq!(t("FMDD/FMMM"), "%-d/%-m");
        assert_eq!(t("\"Week\" IW"), "Week %V");
        assert_eq!(t("100%"), "100%%");
    }
}

/// Registers lakecube's PostgreSQL functions (after datafusion-pg-catalog's, so that ours win
/// where both define one).
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::logical_expr::{Volatility, create_udf};
    ctx.register_udf(ScalarUDF::from(PgToChar::new()));
    // version(): SQLAlchemy and Npgsql parse "PostgreSQL <major>.<minor>" from it.
    let version = format!(
        "PostgreSQL {} (lakecube {}) on {}-linux, compiled by rustc, 64-bit",
        super::settings::SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
    // pg_advisory_unlock_all(): asyncpg's pool reset; lakecube takes no advisory locks, so
    // there is never one to release. PostgreSQL returns void, shown as an empty value.
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(String::new()))))),
    ));
}
