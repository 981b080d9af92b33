//! Inputs read once per run rather than found as files: a PostgreSQL query and an HTTP JSON
//! endpoint. Each answer is spooled to a temporary file (CSV from `COPY (query) TO STDOUT`,
//! the HTTP body as it came) which is then read like any file: one path for hashing (exactly
//! once: the same answer twice is skipped), parsing and rejects, with bounded memory.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::source::{HttpInput, PostgresInput};
use crate::error::{Error, Result};

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::config(format!("cannot write {}: {e}", path.display()))
}

/// Runs the source's query on PostgreSQL and spools its rows as CSV with a header row.
/// Returns the spool file and how reports name the input.
pub async fn postgres(pg: &PostgresInput, dir: &Path, source: &str) -> Result<(PathBuf, String)> {
    let mut config: tokio_postgres::Config = pg.url.parse().map_err(|e| {
        Error::config(format!("source `{source}`: input.postgres.url: {e}")).with_hint("e.g. postgresql://reader@db.example:5432/pos")
    })?;
    if config.get_password().is_none()
        && let Ok(p) = std::env::var("PGPASSWORD")
    {
        config.password(p);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        Error::config(format!("source `{source}`: cannot connect to PostgreSQL: {}", pg_message(&e)))
            .with_hint("check input.postgres.url (host, port, user, database) and $PGPASSWORD")
    })?;
    let connection = tokio::spawn(connection);
    let copy = format!("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)", pg.query.trim().trim_end_matches(';'));
    let stream = client.copy_out(copy.as_str()).await.map_err(|e| {
        Error::config(format!("source `{source}`: the query failed: {}", pg_message(&e))).with_hint("input.postgres.query must be one SELECT")
    })?;
    let path = dir.join(format!("{source}.csv"));
    let mut out = tokio::fs::File::create(&path).await.map_err(|e| write_error(&path, e))?;
    futures::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::config(format!("source `{source}`: reading the query's rows failed: {}", pg_message(&e))))?;
        out.write_all(&chunk).await.map_err(|e| write_error(&path, e))?;
    }
    out.flush().await.map_err(|e| write_error(&path, e))?;
    drop(client);
    let _ = connection.await;
    Ok((path, format!("postgres: {}", pg.query.trim())))
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// GETs the source's endpoint and spools the answer; with `items`, the list at that JSON
/// pointer is spooled instead of the whole answer.
pub async fn http(h: &HttpInput, dir: &Path, source: &str) -> Result<(PathBuf, String)> {
    // reqwest is built without a TLS provider of its own: use the one the server's TLS uses.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| Error::config(format!("source `{source}`: cannot make an HTTP client: {e}")))?;
    let mut request = client.get(&h.url).header(reqwest::header::ACCEPT, "application/json, application/x-ndjson");
    for (k, v) in &h.headers {
        let value = match v.strip_prefix('$') {
            Some(var) => std::env::var(var).map_err(|_| {
                Error::config(format!("source `{source}`: header `{k}` reads ${var}, which is not set")).with_hint(format!("export {var}=… before the run"))
            })?,
            None => v.clone(),
        };
        request = request.header(k.as_str(), value);
    }
    let response = request.send().await.map_err(|e| {
        Error::config(format!("source `{source}`: GET {} failed: {e}", h.url)).with_hint("check input.http.url and that the service is up")
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let excerpt: String = body.chars().take(300).collect();
        return Err(Error::config(format!("source `{source}`: GET {} answered {status}: {excerpt}", h.url))
            .with_hint("check the URL and the headers (an API key?) in input.http"));
    }
    let ndjson = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("ndjson") || t.contains("jsonl"));
    let path = dir.join(format!("{source}.{}", if ndjson { "ndjson" } else { "json" }));
    let mut out = tokio::fs::File::create(&path).await.map_err(|e| write_error(&path, e))?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::config(format!("source `{source}`: reading the answer of {} failed: {e}", h.url)))?;
        out.write_all(&chunk).await.map_err(|e| write_error(&path, e))?;
    }
    out.flush().await.map_err(|e| write_error(&path, e))?;
    drop(out);
    let shown = format!("http: {}", h.url);
    let Some(pointer) = &h.items else { return Ok((path, shown)) };
    let bytes = std::fs::read(&path).map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(crate::error::ErrorKind::DataException, format!("source `{source}`: the answer of {} is not JSON: {e}", h.url)))?;
    let list = answer.pointer(pointer).filter(|v| v.is_array()).ok_or_else(|| {
        let keys = answer.as_object().map(|o| o.keys().map(|k| format!("/{k}")).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        Error::config(format!("source `{source}`: the answer has no list at `{pointer}`")).with_hint(format!("its top-level keys: {keys}"))
    })?;
    let items = dir.join(format!("{source}-items.json"));
    std::fs::write(&items, serde_json::to_vec(list).expect("JSON value serializes")).map_err(|e| write_error(&items, e))?;
    Ok((items, shown))
}
