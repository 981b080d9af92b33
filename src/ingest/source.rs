//! Source definitions (`cube-defs/sources/*.yaml`): what a source's files are and how their
//! columns map to lakecube's fields. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::kinds::{Kind, fields_of};
use crate::error::{Error, Result};

/// One source of raw exports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub input: Input,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub csv: CsvOptions,
    #[serde(default)]
    pub xlsx: XlsxOptions,
    /// Per target field: extra accepted headers and parse formats.
    #[serde(default)]
    pub mapping: BTreeMap<String, FieldMapping>,
    /// The share of rows that may be rejected before the whole batch fails (0.01 = 1 %).
    #[serde(default = "default_reject_share")]
    pub max_reject_share: f64,
    /// For `sensor_counts` and `pos_tickets`: a store or department code the lake does not know
    /// becomes a new member (named by its code, other columns `Unknown`) instead of a reject.
    #[serde(default)]
    pub create_missing: bool,
    /// The salt of `pii: hash`, read from `$LAKECUBE_PII_SALT` when the definition is loaded.
    #[serde(skip)]
    pub pii_salt: Option<String>,
}

fn default_reject_share() -> f64 {
    0.01
}

/// Where the rows come from: files, or one query or request per run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A file or a glob (`incoming/sensors/*.csv`), relative to the current folder.
    pub path: Option<String>,
    /// A PostgreSQL query, read with `COPY (query) TO STDOUT`.
    pub postgres: Option<PostgresInput>,
    /// An HTTP(S) endpoint answering a JSON list (or NDJSON).
    pub http: Option<HttpInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresInput {
    /// A libpq-style connection string or URL: `postgresql://user@host:5432/db`. A password
    /// is best given by `$PGPASSWORD`, which is read when the URL has none.
    pub url: String,
    /// One SELECT; its column names are the headers matched against the kind's fields.
    pub query: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpInput {
    pub url: String,
    /// Request headers (an API key…). A value `$NAME` is read from the environment variable
    /// NAME, so secrets stay out of the file.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON pointer to the list inside the answer (`/data/items`); by default the answer is
    /// the list.
    pub items: Option<String>,
}

/// The files' format; by default told by the extension (`.json`, `.ndjson`, `.jsonl`, else
/// CSV).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Auto,
    Csv,
    /// One JSON object per line.
    #[serde(alias = "jsonl")]
    Ndjson,
    /// A JSON array of objects (or one object per line).
    Json,
    Parquet,
    /// A spreadsheet: `.xlsx`, `.xlsm`, `.xls` or `.ods` (the first sheet, or `xlsx.sheet`).
    Xlsx,
}

impl Format {
    /// The format of a file: the source's, or told by the extension.
    pub fn of(self, file: &str) -> Format {
        if self != Format::Auto {
            return self;
        }
        let lower = file.to_lowercase();
        let ext = lower.rsplit('.').next().unwrap_or("");
        match ext {
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "parquet" | "parq" => Format::Parquet,
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Format::Xlsx,
            _ => Format::Csv,
        }
    }

    /// Whether files of this format are text (encoding and delimiter to detect).
    pub fn is_text(self) -> bool {
        !matches!(self, Format::Parquet | Format::Xlsx)
    }
}

/// Spreadsheet options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XlsxOptions {
    /// The sheet to read; by default the first.
    pub sheet: Option<String>,
}

/// CSV dialect; every option is detected when absent or `auto`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// `auto`, or an encoding label: `utf-8`, `windows-1252`, `latin1`, `utf-16le`, `utf-16be`, …
    pub encoding: Option<String>,
    /// `auto`, or one character: `,` `;` `|` or `\t` (written `"\t"` in YAML).
    pub delimiter: Option<String>,
}

/// How one target field is found and read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// Source headers accepted for this field, besides the built-in ones (matched ignoring
    /// case, accents, spaces and punctuation).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// For time fields: a chrono format (`%d/%m/%Y %H:%M`); by default common forms and Excel
    /// serial numbers are recognised.
    pub format: Option<String>,
    /// A fixed value for every row, instead of a column (an export of one store has no store
    /// column).
    pub constant: Option<String>,
    /// DataFusion SQL over the file's columns (`CAST(prix AS DECIMAL(12,2)) * CAST(qte AS INT)`),
    /// computed per batch of rows; see docs/ingest.md.
    pub expression: Option<String>,
    /// `hash`: the column holds personal data (a loyalty card, an e-mail used as the ticket
    /// id); its values are replaced by a salted SHA-256 before anything else sees them.
    pub pii: Option<PiiMode>,
}

/// How a mapped column of personal data is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    Hash,
}

/// The environment variable that holds the secret salt of `pii: hash`.
pub const PII_SALT_VAR: &str = "LAKECUBE_PII_SALT";

impl Source {
    /// Parses a source definition; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Source> {
        let mut s: Source = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!("{origin}:{}:{}", l.line(), l.column())).unwrap_or_else(|| origin.to_string());
            Error::config(format!("{at}: {e}")).with_hint("see docs/ingest.md for the keys of a source definition")
        })?;
        let fields = fields_of(s.kind);
        for name in s.mapping.keys() {
            if !fields.iter().any(|f| f.name == name) {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                return Err(Error::config(format!(
                    "{origin}: `mapping` names `{name}`, which is no field of a {} source{}",
                    s.kind.name(),
                    crate::error::did_you_mean(name, &names)
                ))
                .with_hint(format!("the fields are: {}", names.join(", "))));
            }
        }
        for (name, m) in &s.mapping {
            let Some(sql) = &m.expression else { continue };
            if m.constant.is_some() || !m.aliases.is_empty() || m.pii.is_some() {
                return Err(Error::config(format!("{origin}: `mapping.{name}` has an `expression` and also `constant`, `aliases` or `pii`"))
                    .with_hint("an expression names the columns it reads itself; keep one way of finding the field"));
            }
            check_syntax(sql).map_err(|e| {
                Error::config(format!("{origin}: `mapping.{name}.expression` is not valid SQL: {e}"))
                    .with_hint("an expression is DataFusion SQL over the file's columns, e.g. `CAST(prix AS DECIMAL(12,2)) * CAST(qte AS INT)`")
            })?;
        }
        if s.create_missing && s.kind.target() != crate::storage::schema::TRAFFIC {
            return Err(Error::config(format!("{origin}: `create_missing` is for sensor_counts and pos_tickets sources; a {} source upserts its rows anyway", s.kind.name())));
        }
        let inputs = [s.input.path.is_some(), s.input.postgres.is_some(), s.input.http.is_some()].iter().filter(|b| **b).count();
        if inputs > 1 {
            return Err(Error::config(format!("{origin}: `input` names more than one of `path`, `postgres` and `http`"))
                .with_hint("a source reads one kind of input; write one source per input"));
        }
        if s.mapping.values().any(|m| m.pii.is_some()) {
            let salt = std::env::var(PII_SALT_VAR).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::config(format!("{origin}: a mapping says `pii: hash` but ${PII_SALT_VAR} is not set"))
                    .with_hint(format!("set {PII_SALT_VAR} to a secret (e.g. `openssl rand -hex 32`), the same for every run, so hashes stay comparable"))
            })?;
            s.pii_salt = Some(salt);
        }
        if !(0.0..=1.0).contains(&s.max_reject_share) {
            return Err(Error::config(format!("{origin}: max_reject_share must be between 0 and 1, not {}", s.max_reject_share)));
        }
        Ok(s)
    }

    /// Loads `path`, or `<cube_defs>/sources/<name>.yaml` when given a name.
    pub fn load(name_or_path: &str, cube_defs: &Path) -> Result<Source> {
        let path = if name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml") || name_or_path.contains('/') {
            std::path::PathBuf::from(name_or_path)
        } else {
            cube_defs.join("sources").join(format!("{name_or_path}.yaml"))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::config(format!("cannot read source definition {}: {e}", path.display()))
                .with_hint("pass a source name (cube-defs/sources/<name>.yaml) or the path of a .yaml file")
        })?;
        Source::parse(&text, &path.display().to_string())
    }
}

/// Checks an expression's syntax when a source definition is loaded.
fn check_syntax(sql: &str) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map(|_| ())
        .map_err(|e| e.to_string().trim_start_matches("sql parser error: ").to_string())
}
