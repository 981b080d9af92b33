//! Cube definitions (`cube-defs/*.yaml`): loading and checking.
//!
//! This first cut checks that every file is well-formed YAML with only the top-level keys
//! `cubes` and `views`, each a list of named entries with unique names, and reports problems
//! as `file:line:column: message`. The full Cube-style model (dimensions, measures, joins,
//! views, references) is layered on top of this loader.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// One problem found in a definition file.
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

/// What a definitions folder holds.
#[derive(Debug, Default)]
pub struct Definitions {
    pub files: Vec<PathBuf>,
    pub cube_names: Vec<String>,
    pub view_names: Vec<String>,
}

/// The definition files of a folder, sorted (`*.yaml` and `*.yml`, not recursing into
/// `sources/`, which holds ingestion sources).
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads and checks every definition file of `dir`. Returns every problem found, not just
/// the first.
pub fn load_dir(dir: &Path) -> Result<Definitions, Vec<Problem>> {
    let files = definition_files(dir).map_err(|e| {
        vec![Problem { file: dir.to_path_buf(), line: 0, column: 0, message: format!("cannot read the folder: {e}") }]
    })?;
    let mut defs = Definitions { files: files.clone(), ..Default::default() };
    let mut problems = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem { file: file.clone(), line: 0, column: 0, message: format!("cannot read: {e}") });
                continue;
            }
        };
        check_file(file, &text, &mut defs, &mut problems);
    }
    if problems.is_empty() { Ok(defs) } else { Err(problems) }
}

fn check_file(file: &Path, text: &str, defs: &mut Definitions, problems: &mut Vec<Problem>) {
    let at = |line: usize, column: usize, message: String| Problem { file: file.to_path_buf(), line, column, message };
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (l, c) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            problems.push(at(l, c, format!("not valid YAML: {e}")));
            return;
        }
    };
    let Value::Mapping(top) = doc else {
        if !doc.is_null() {
            problems.push(at(1, 1, "expected a mapping with `cubes:` and/or `views:`".into()));
        }
        return;
    };
    for (k, v) in &top {
        let key = k.as_str().unwrap_or("?");
        let (line, col) = locate_key(text, key, 0);
        let names = match key {
            "cubes" => &mut defs.cube_names,
            "views" => &mut defs.view_names,
            other => {
                let hint = did_you_mean(other, &["cubes", "views"]);
                problems.push(at(line, col, format!("unknown top-level key `{other}`{hint}")));
                continue;
            }
        };
        let Value::Sequence(items) = v else {
            problems.push(at(line, col, format!("`{key}` must be a list")));
            continue;
        };
        for item in items {
            match item.get("name").and_then(Value::as_str) {
                Some(n) if names.iter().any(|x| x == n) => {
                    let (l, c) = locate_value(text, "name", n);
                    problems.push(at(l, c, format!("duplicate {} name `{n}`", &key[..key.len() - 1])));
                }
                Some(n) => names.push(n.to_string()),
                None => problems.push(at(line, col, format!("every entry of `{key}` needs a `name`"))),
            }
        }
    }
}

/// Line and column (1-based) of the first `key:` at the given indentation, or (1, 1).
fn locate_key(text: &str, key: &str, indent: usize) -> (usize, usize) {
    for (i, l) in text.lines().enumerate() {
        if l.len() > indent && l[indent..].starts_with(&format!("{key}:")) && l[..indent].trim().is_empty() {
            return (i + 1, indent + 1);
        }
    }
    (1, 1)
}

/// Line and column of the last `key: value` line (the duplicate comes after the original).
fn locate_value(text: &str, key: &str, value: &str) -> (usize, usize) {
    let mut found = (1, 1);
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start().trim_start_matches("- ");
        if let Some(rest) = t.strip_prefix(&format!("{key}:")) {
            if rest.trim().trim_matches(['"', '\'']) == value {
                found = (i + 1, l.len() - t.len() + 1);
            }
        }
    }
    found
}

/// ", did you mean `x`?" when a candidate is close, else "".
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (strsim_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(", did you mean `{c}`?"),
        None => String::new(),
    }
}

/// Levenshtein distance.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { 0 } else { 1 };
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<String> {
        let mut d = Definitions::default();
        let mut p = Vec::new();
        check_file(Path::new("x.yaml"), text, &mut d, &mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn reports_unknown_keys_with_position_and_suggestion() {
        let p = check("cubes:\n  - name: a\ncubs:\n  - name: b\n");
        assert_eq!(p, vec!["x.yaml:3:1: unknown top-level key `cubs`, did you mean `cubes`?"]);
    }

    #[test]
    fn reports_duplicates_and_bad_yaml() {
        let p = check("cubes:\n  - name: a\n  - name: a\n");
        assert_eq!(p, vec!["x.yaml:3:5: duplicate cube name `a`"]);
        let p = check("cubes: [\n");
        assert!(p[0].starts_with("x.yaml:"), "{p:?}");
        assert!(p[0].contains("not valid YAML"), "{p:?}");
    }
}
