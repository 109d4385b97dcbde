//! `kind = "file"`: the key in a local file, JSON or env lines, mode 0600.

use super::{KeyDocument, SecretStore, StoreError, WriteContext};
use crate::config::FileFormat;
use crate::fsutil::write_private_atomic;
use crate::secret::AccessKey;
use async_trait::async_trait;
use std::path::PathBuf;

/// A local file holding one key.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    format: FileFormat,
}

impl FileStore {
    /// A store writing `path` in `format`.
    pub fn new(path: PathBuf, format: FileFormat) -> Self {
        FileStore { path, format }
    }

    fn render(&self, key: &AccessKey) -> Vec<u8> {
        match self.format {
            FileFormat::Json => {
                let mut out = serde_json::to_vec_pretty(&KeyDocument::of(key))
                    .expect("two strings always serialize");
                out.push(b'\n');
                out
            }
            FileFormat::Env => format!(
                "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
                key.id,
                key.expose()
            )
            .into_bytes(),
        }
    }

    fn parse(&self, text: &str) -> Option<AccessKey> {
        match self.format {
            FileFormat::Json => KeyDocument::parse(text),
            FileFormat::Env => {
                let value = |name: &str| {
                    text.lines().find_map(|line| {
                        let line = line.trim().trim_start_matches("export ");
                        line.strip_prefix(name)?.strip_prefix('=').map(str::trim)
                    })
                };
                Some(AccessKey::new(
                    value("AWS_ACCESS_KEY_ID")?,
                    value("AWS_SECRET_ACCESS_KEY")?,
                ))
            }
        }
    }

    fn write_key(&self, key: &AccessKey, action: &'static str) -> Result<(), StoreError> {
        write_private_atomic(&self.path, &self.render(key)).map_err(|e| self.error(action, e))
    }
}

#[async_trait]
impl SecretStore for FileStore {
    fn location(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => self.parse(&text).map(Some).ok_or_else(|| {
                self.error(
                    "read",
                    format!(
                        "the file is not a key file in {} format written by credrot; move it away or fix the store's path",
                        match self.format {
                            FileFormat::Json => "JSON",
                            FileFormat::Env => "env",
                        }
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("read", e)),
        }
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        self.write_key(key, "write")
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        match previous {
            Some(key) => self.write_key(key, "restore"),
            None => match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.error("restore", e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ctx() -> WriteContext {
        WriteContext::for_test("u")
    }

    #[tokio::test]
    async fn round_trips_both_formats_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        for format in [FileFormat::Json, FileFormat::Env] {
            let store = FileStore::new(dir.path().join(format!("{format:?}")), format);
            assert!(store.read().await.unwrap().is_none());
            let key = AccessKey::new("AKIA1", "s3cret");
            store.write(&key, &ctx()).await.unwrap();
            assert_eq!(store.read().await.unwrap(), Some(key.clone()));
            store.restore(None, &ctx()).await.unwrap();
            assert!(store.read().await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn a_foreign_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        std::fs::write(&path, "not json").unwrap();
        let err = FileStore::new(path, FileFormat::Json)
            .read()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not a key file in JSON format"),
            "{err}"
        );
    }
}
