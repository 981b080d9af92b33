//! Cube definitions (`cube-defs/*.yaml`): the model, loading, and validation.
//!
//! The YAML follows Cube's (cube.dev) data model keys (see docs/cube-format.md). Loading
//! parses every file (unknown keys are errors), then [`validate`] checks names, references,
//! cycles and SQL syntax. Every problem is reported as `file:line:column: message`, with a
//! did-you-mean hint where a close name exists. The model is pure: it knows nothing of the
//! lake; [`crate::semantic`] checks types against the lake when it compiles the model.

pub mod access;
pub mod refs;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};

use crate::error::did_you_mean;

pub use types::*;

/// One problem found in a definitions file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// A cube or view with the file it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub item: T,
    pub file: PathBuf,
}

/// Every cube and view of a definitions folder.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub files: Vec<PathBuf>,
    pub cubes: Vec<Sourced<Cube>>,
    pub views: Vec<Sourced<View>>,
    /// The text of each file, for locating problems.
    texts: Vec<(PathBuf, String)>,
}

impl Model {
    pub fn cube(&self, name: &str) -> Option<&Cube> {
        self.cubes.iter().map(|c| &c.item).find(|c| c.name == name)
    }

    pub fn view(&self, name: &str) -> Option<&View> {
        self.views.iter().map(|v| &v.item).find(|v| v.name == name)
    }

    /// Parses definitions from in-memory text (for tests and tools).
    pub fn from_texts(files: &[(&str, &str)]) -> Result<Model, Vec<Problem>> {
        let mut model = Model::default();
        let mut problems = Vec::new();
        for (name, text) in files {
            model.add_file(Path::new(name), text, &mut problems);
        }
        validate::validate(&model, &mut problems);
        if problems.is_empty() { Ok(model) } else { Err(problems) }
    }

    fn add_file(&mut self, file: &Path, text: &str, problems: &mut Vec<Problem>) {
        self.files.push(file.to_path_buf());
        self.texts.push((file.to_path_buf(), text.to_string()));
        if text.trim().is_empty() {
            return;
        }
        match serde_yaml::from_str::<DefinitionFile>(text) {
            Ok(f) => {
                self.cubes.extend(f.cubes.into_iter().map(|item| Sourced { item, file: file.to_path_buf() }));
                self.views.extend(f.views.into_iter().map(|item| Sourced { item, file: file.to_path_buf() }));
            }
            Err(e) => {
                let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
                problems.push(Problem { file: file.to_path_buf(), line, column, message: explain_serde(&e.to_string()) });
            }
        }
    }

    pub(crate) fn text_of(&self, file: &Path) -> &str {
        self.texts.iter().find(|(f, _)| f == file).map(|(_, t)| t.as_str()).unwrap_or("")
    }
}

/// serde_yaml's message without its own position suffix, plus a did-you-mean for unknown keys.
fn explain_serde(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    if let Some(rest) = msg.split("unknown field `").nth(1) {
        let field = rest.split('`').next().unwrap_or("");
        // serde lists the valid keys in backticks after "expected".
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let hint = did_you_mean(field, &expected);
        let place = msg.split(": unknown field").next().filter(|p| !p.starts_with("unknown")).map(|p| format!("{p}: ")).unwrap_or_default();
        return format!("{place}unknown key `{field}`{hint} (valid keys: {})", expected.join(", "));
    }
    msg.to_string()
}

/// The definition files of a folder, sorted (`*.yaml`, `*.yml`; not `sources/`).
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads and validates every definition file of `dir`; returns all problems, not just the
/// first.
pub fn load_dir(dir: &Path) -> Result<Model, Vec<Problem>> {
    let files = definition_files(dir).map_err(|e| {
        vec![Problem { file: dir.to_path_buf(), line: 0, column: 0, message: format!("cannot read the folder: {e}") }]
    })?;
    let mut model = Model::default();
    let mut problems = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => model.add_file(file, &text, &mut problems),
            Err(e) => problems.push(Problem { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}") }),
        }
    }
    validate::validate(&model, &mut problems);
    if problems.is_empty() { Ok(model) } else { Err(problems) }
}

/// The JSON Schema of a definitions file (for editors; `lakecube schema`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(DefinitionFile)).expect("schema serializes")
}
