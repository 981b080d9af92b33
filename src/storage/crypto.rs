//! Encryption at rest: Parquet modular encryption (AES-GCM, footer and every column) of the
//! lake's and the rollups' files (docs/security.md).
//!
//! Keys never sit in the YAML: `LAKECUBE_ENCRYPTION_KEY` (one key, in hex: 16, 24 or 32
//! bytes) or `LAKECUBE_ENCRYPTION_KEY_FILE` (a file of `id key-in-hex` lines: the first key
//! writes new files, every key listed reads; the rotation path). Each file records the id of
//! its key in its footer key metadata, so that files written before a rotation are read with
//! their own key. Without either variable, files are written and read in plain Parquet.
//!
//! Writes take [`Keys::writer_properties`]. deltalake 1.1's scans do not pass DataFusion's
//! decryption options on to their Parquet sources, so reads go through [`Decrypt`], a physical
//! optimizer rule that gives every Parquet scan of a plan the keys (as an
//! [`EncryptionFactory`]); it is registered in every session that reads the lake.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::{ConfigOptions, EncryptionFactoryOptions};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use datafusion::parquet::encryption::encrypt::FileEncryptionProperties;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{Error, Result};

/// The variable holding one key in hex.
pub const KEY_VAR: &str = "LAKECUBE_ENCRYPTION_KEY";
/// The variable naming a key file.
pub const KEY_FILE_VAR: &str = "LAKECUBE_ENCRYPTION_KEY_FILE";

/// The lake's encryption keys: the one new files are written with, and all those files may
/// have been written with, by id.
#[derive(Clone)]
pub struct Keys {
    current: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Keys").field("current", &self.current).field("ids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

fn key_error(what: impl Into<String>) -> Error {
    Error::config(what).with_hint(format!(
        "{KEY_VAR} holds one AES key in hex (32, 48 or 64 hex digits); {KEY_FILE_VAR} names a file of `id key` lines, the first used for new files"
    ))
}

/// A key in hex; `what` says where it was given (never the key itself, nor a line's id,
/// which a line written key first would make the key).
fn parse_key(hex: &str, what: &str) -> Result<Vec<u8>> {
    let hex = hex.trim();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .filter(|_| hex.len() % 2 == 0)
        .ok_or_else(|| key_error(format!("the encryption key of {what} is not hex")))?;
    if ![16, 24, 32].contains(&bytes.len()) {
        return Err(key_error(format!("the encryption key of {what} is {} bytes; AES keys are 16, 24 or 32", bytes.len())));
    }
    Ok(bytes)
}

impl Keys {
    /// The keys the environment gives, `None` when it gives none (plain Parquet).
    pub fn from_env() -> Result<Option<Arc<Keys>>> {
        if let Ok(path) = std::env::var(KEY_FILE_VAR) {
            let text = std::fs::read_to_string(&path).map_err(|e| key_error(format!("{KEY_FILE_VAR}={path}: {e}")))?;
            return Self::parse_file(&text).map(|k| Some(Arc::new(k)));
        }
        match std::env::var(KEY_VAR) {
            Ok(hex) => Ok(Some(Arc::new(Keys { current: "default".into(), keys: BTreeMap::from([("default".to_string(), parse_key(&hex, KEY_VAR)?)]) }))),
            Err(_) => Ok(None),
        }
    }

    /// A key file: `id key-in-hex` per line (`#` comments), the first key for new files.
    pub fn parse_file(text: &str) -> Result<Keys> {
        let mut current = None;
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, hex) = line.split_once(char::is_whitespace).ok_or_else(|| key_error(format!("key file line {}: expected `id key`", n + 1)))?;
            if keys.insert(id.to_string(), parse_key(hex, &format!("key file line {}", n + 1))?).is_some() {
                return Err(key_error(format!("key file line {}: its key id is listed on an earlier line too", n + 1)));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        let current = current.ok_or_else(|| key_error("the key file lists no key"))?;
        Ok(Keys { current, keys })
    }

    /// How a new file is encrypted: footer and every column under the current key, its id
    /// in the footer's key metadata.
    fn encryption(&self) -> datafusion::parquet::errors::Result<Arc<FileEncryptionProperties>> {
        FileEncryptionProperties::builder(self.keys[&self.current].clone()).with_footer_key_metadata(self.current.as_bytes().to_vec()).build()
    }

    /// The Parquet writer properties of an encrypted file ([`Keys::encryption`]); `base`'s
    /// other settings kept.
    pub fn writer_properties(&self, base: WriterProperties) -> WriterProperties {
        base.into_builder().with_file_encryption_properties(self.encryption().expect("a checked AES key")).build()
    }
}

impl KeyRetriever for Keys {
    fn retrieve_key(&self, key_metadata: &[u8]) -> datafusion::parquet::errors::Result<Vec<u8>> {
        let id = String::from_utf8_lossy(key_metadata);
        self.keys.get(id.as_ref()).cloned().ok_or_else(|| {
            datafusion::parquet::errors::ParquetError::General(format!(
                "this file is encrypted with key `{id}`, which is not among the keys given ({KEY_VAR} / {KEY_FILE_VAR})"
            ))
        })
    }
}

/// The keys as DataFusion's [`EncryptionFactory`] (what [`Decrypt`] gives the scans): every
/// file is read through the one key retriever, shared.
#[derive(Debug)]
struct Factory(Arc<Keys>);

#[async_trait::async_trait]
impl EncryptionFactory for Factory {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &datafusion::arrow::datatypes::SchemaRef,
        _file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileEncryptionProperties>>> {
        Ok(Some(self.0.encryption()?))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileDecryptionProperties>>> {
        Ok(Some(FileDecryptionProperties::with_key_retriever(self.0.clone()).build()?))
    }
}

/// Gives every Parquet scan of a plan the lake's keys (see the module documentation).
#[derive(Debug)]
pub struct Decrypt(Arc<Factory>);

impl Decrypt {
    pub fn new(keys: Arc<Keys>) -> Decrypt {
        Decrypt(Arc::new(Factory(keys)))
    }
}

impl PhysicalOptimizerRule for Decrypt {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(exec) = node.downcast_ref::<DataSourceExec>() else { return Ok(Transformed::no(node)) };
            let Some((scan, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else { return Ok(Transformed::no(node)) };
            let source = parquet.clone().with_encryption_factory(self.0.clone());
            let scan = FileScanConfigBuilder::from(scan.clone()).with_source(Arc::new(source)).build();
            Ok(Transformed::yes(DataSourceExec::from_data_source(scan) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "lakecube_decrypt"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_and_their_errors() {
        let k = Keys::parse_file("# rotated 2026-12\nk2 000102030405060708090a0b0c0d0e0f\nk1 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n").unwrap();
        assert_eq!(k.current, "k2");
        assert_eq!(k.retrieve_key(b"k1").unwrap().len(), 32);
        assert!(k.retrieve_key(b"k0").unwrap_err().to_string().contains("key `k0`"));
        assert!(format!("{k:?}").contains("k2") && !format!("{k:?}").contains("0001"), "Debug shows ids, never keys");
        for (text, says) in [("k1 00zz", "not hex"), ("k1 0011", "2 bytes"), ("", "no key"), ("k1", "expected `id key`"), ("k1 00112233445566778899aabbccddeeff\nk1 00112233445566778899aabbccddeeff", "line 2")] {
            let e = Keys::parse_file(text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
        // A line written key first: the error names the line, never the key.
        let e = Keys::parse_file("00112233445566778899aabbccddeeff k1").unwrap_err();
        assert!(e.message.contains("line 1") && !e.message.contains("0011"), "{}", e.message);
    }
}
