//! `{…}` references inside `sql:` strings: `{CUBE}`, `{member}`, `{cube}`, `{cube.member}`.

/// One reference found in a SQL string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// `{CUBE}`: the cube the SQL belongs to.
    ThisCube,
    /// `{name}`: a member of this cube, or a cube (in join conditions).
    Name(String),
    /// `{cube.member}` (also `{CUBE.member}`, with `cube` = "CUBE").
    Qualified(String, String),
}

/// Splits SQL text into literal pieces and references, in order.
pub fn parse(sql: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('{') {
        out.push(Piece::Text(rest[..start].to_string()));
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| format!("unclosed `{{` in `{sql}`"))?;
        let inner = after[..end].trim();
        let r = match inner.split_once('.') {
            None if inner == "CUBE" => Ref::ThisCube,
            None => Ref::Name(inner.to_string()),
            Some((c, m)) => Ref::Qualified(c.trim().to_string(), m.trim().to_string()),
        };
        if inner.is_empty() || !inner.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("`{{{inner}}}` is not a reference: write {{member}}, {{cube.member}} or {{CUBE}}"));
        }
        out.push(Piece::Ref(r));
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest.to_string()));
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(Ref),
}

/// The references of a SQL string.
pub fn refs(sql: &str) -> Result<Vec<Ref>, String> {
    Ok(parse(sql)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Rebuilds SQL text, replacing each reference with what `f` returns.
pub fn substitute(sql: &str, mut f: impl FnMut(&Ref) -> Result<String, String>) -> Result<String, String> {
    let mut s = String::new();
    for p in parse(sql)? {
        match p {
            Piece::Text(t) => s.push_str(&t),
            Piece::Ref(r) => s.push_str(&f(&r)?),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        assert_eq!(
            refs("{CUBE}.store_id = {stores.store_id} AND {x} > 1").unwrap(),
            vec![Ref::ThisCube, Ref::Qualified("stores".into(), "store_id".into()), Ref::Name("x".into())]
        );
        assert!(refs("{a").is_err());
        assert_eq!(substitute("{a} + 1", |_| Ok("z".into())).unwrap(), "z + 1");
    }
}
