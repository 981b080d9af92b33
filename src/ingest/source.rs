//! Source definitions (`cube-defs/sources/*.yaml`): what a source's files are and how their
//! columns map to lakecube's fields. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

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
    /// Per target field: extra accepted headers and parse formats.
    #[serde(default)]
    pub mapping: BTreeMap<String, FieldMapping>,
    /// The share of rows that may be rejected before the whole batch fails (0.01 = 1 %).
    #[serde(default = "default_reject_share")]
    pub max_reject_share: f64,
}

fn default_reject_share() -> f64 {
    0.01
}

/// What the rows are, and so where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Door-sensor counts per store, zone and interval: summed into hourly `footfall`.
    SensorCounts,
    /// Point-of-sale ticket lines: hourly `transactions` (distinct tickets), `revenue`, `units`.
    PosTickets,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SensorCounts => "sensor_counts",
            Kind::PosTickets => "pos_tickets",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A file or a glob (`incoming/sensors/*.csv`), relative to the current folder.
    pub path: Option<String>,
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
}

impl Source {
    /// Parses a source definition; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Source> {
        let s: Source = serde_yaml::from_str(text).map_err(|e| {
            let at = e.location().map(|l| format!("{origin}:{}:{}", l.line(), l.column())).unwrap_or_else(|| origin.to_string());
            Error::config(format!("{at}: {e}")).with_hint("see docs/ingest.md for the keys of a source definition")
        })?;
        let fields = super::fields::fields_of(s.kind);
        for name in s.mapping.keys() {
            if !fields.iter().any(|f| f.name == name) {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                return Err(Error::config(format!(
                    "{origin}: `mapping` names `{name}`, which is no field of a {} source{}",
                    s.kind.name(),
                    crate::model::did_you_mean(name, &names)
                ))
                .with_hint(format!("the fields are: {}", names.join(", "))));
            }
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
