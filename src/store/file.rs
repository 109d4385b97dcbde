//! `kind = "file"`: the key in a local file, JSON or env lines, mode 0600.
//!
//! A path that is a symlink is written through (its target gets the new key, the link
//! stays); only regular files are read, and at most [`KEY_FILE_LIMIT`] bytes of them.

use super::{KeyDocument, SecretStore, StoreError, TemplateValues, WriteContext};
use crate::config::FileFormat;
use crate::fsutil::{self, write_private_atomic, KEY_FILE_LIMIT};
use crate::secret::AccessKey;
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

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

    /// The store at `template` (under `base_dir` when relative) for `values`. A component
    /// of the path that a substitution changed must stay one plain name: a user named `..`
    /// under `secrets/{user}/key.json` must not write `key.json` outside `secrets/`.
    pub fn from_template(
        base_dir: &Path,
        template: &str,
        values: &TemplateValues<'_>,
        format: FileFormat,
    ) -> Result<Self, StoreError> {
        for component in template.split('/') {
            let expanded = values.apply(component);
            let plain_name = !(expanded.is_empty()
                || expanded == "."
                || expanded == ".."
                || expanded.contains(['/', '\0']));
            if expanded != component && !plain_name {
                return Err(StoreError {
                    store: format!("file:{template}"),
                    action: "open",
                    reason: format!(
                        "'{component}' expands to {expanded:?} here, which would leave the store's directory; no key is written for this user (rename it, or keep the placeholder inside a file name such as '{{user}}.json')"
                    ),
                });
            }
        }
        Ok(FileStore::new(
            base_dir.join(values.apply(template)),
            format,
        ))
    }

    fn render(&self, key: &AccessKey) -> Zeroizing<Vec<u8>> {
        match self.format {
            FileFormat::Json => {
                let mut out = KeyDocument::to_wiped(key, true);
                out.push(b'\n');
                out
            }
            FileFormat::Env => {
                let mut out = Zeroizing::new(Vec::with_capacity(key.expose().len() + 80));
                for (name, value) in [
                    ("AWS_ACCESS_KEY_ID", key.id.as_str()),
                    ("AWS_SECRET_ACCESS_KEY", key.expose()),
                ] {
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(value.as_bytes());
                    out.push(b'\n');
                }
                out
            }
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

    fn local_file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        fsutil::warn_if_shared_dir(&self.path);
        let bytes = match fsutil::read_regular(&self.path, KEY_FILE_LIMIT) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.error("read", e)),
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| self.parse(text))
            .map(Some)
            .ok_or_else(|| {
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
            })
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

    #[tokio::test]
    async fn a_symlinked_path_is_written_and_restored_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/k.json");
        let link = dir.path().join("k.json");
        std::os::unix::fs::symlink("real/k.json", &link).unwrap();
        let store = FileStore::new(link.clone(), FileFormat::Json);
        let old = AccessKey::new("AKIAOLD", "old");
        FileStore::new(target.clone(), FileFormat::Json)
            .write(&old, &ctx())
            .await
            .unwrap();
        assert_eq!(store.read().await.unwrap(), Some(old.clone()));

        let new = AccessKey::new("AKIANEW", "new");
        store.write(&new, &ctx()).await.unwrap();
        let is_link = |p: &Path| {
            std::fs::symlink_metadata(p)
                .unwrap()
                .file_type()
                .is_symlink()
        };
        assert!(is_link(&link), "the link is kept");
        let through_target = FileStore::new(target.clone(), FileFormat::Json);
        assert_eq!(through_target.read().await.unwrap(), Some(new));
        store.restore(Some(&old), &ctx()).await.unwrap();
        assert!(is_link(&link));
        assert_eq!(through_target.read().await.unwrap(), Some(old));
    }

    #[tokio::test]
    async fn a_dangling_link_or_a_fifo_fails_the_read_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("gone/k.json", &dangling).unwrap();
        let err = FileStore::new(dangling.clone(), FileFormat::Json)
            .read()
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("gone/k.json, which does not exist"),
            "{err}"
        );
        let fifo = dir.path().join("fifo.json");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = FileStore::new(fifo.clone(), FileFormat::Env)
            .read()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("fifo.json"), "{err}");
        assert!(err.to_string().contains("named pipe (FIFO)"), "{err}");
    }

    #[test]
    fn template_values_cannot_leave_the_directory() {
        let base = Path::new("/base");
        let open = |template: &str, user: &str, service: Option<&str>| {
            let values = TemplateValues {
                user,
                service,
                account: None,
            };
            FileStore::from_template(base, template, &values, FileFormat::Json)
        };
        for (template, user, service) in [
            ("secrets/{user}/key.json", "..", None),
            ("secrets/{user}/key.json", ".", None),
            ("{user}", "..", None),
            ("secrets/{service}/{user}.json", "u", Some("../..")),
            ("secrets/{service}.json", "u", Some("a/b")),
            ("secrets/{service}.json", "u", Some("a\0b")),
        ] {
            let err = open(template, user, service).unwrap_err();
            assert_eq!(err.store, format!("file:{template}"));
            assert!(err.reason.contains("would leave"), "{err}");
        }
        // A name inside a file name stays there; fixed `..` in the template is the
        // configuration's business.
        let ok = open("secrets/{user}.json", "..", None).unwrap();
        assert_eq!(ok.path, Path::new("/base/secrets/...json"));
        let ok = open("../shared/{user}/key.json", "app.1", None).unwrap();
        assert_eq!(ok.path, Path::new("/base/../shared/app.1/key.json"));
    }

    #[test]
    fn an_account_name_cannot_leave_the_directory_either() {
        let open = |name: &str| {
            let account = crate::accounts::Account {
                id: "222222222222".into(),
                name: name.into(),
            };
            let values = TemplateValues {
                user: "alice",
                service: None,
                account: Some(&account),
            };
            FileStore::from_template(
                Path::new("/base"),
                "keys/{account_name}/{user}.json",
                &values,
                FileFormat::Json,
            )
        };
        for name in ["..", ".", "a/b", ""] {
            let err = open(name).unwrap_err();
            assert!(err.reason.contains("would leave"), "{name:?}: {err}");
        }
        let ok = open("prod eu").unwrap();
        assert_eq!(ok.path, Path::new("/base/keys/prod eu/alice.json"));
    }
}
