//! `rotate -o FILE`: every rotated user's new key in one JSON document, in the format
//! iam-credential-rotation prints (`{"user": {"AccessKeyId": .., "SecretAccessKey": ..}}`).
//!
//! The file is rewritten atomically as each user completes (not only at the end), so a crash
//! after user k keeps the keys of users 1..k. Writers that arrive while a rewrite is under way
//! are folded into the next one (group commit), so a wide run does not fsync once per user
//! in sequence. An existing file is merged, not truncated, so a re-run after a crash keeps
//! what the first run wrote.
//!
//! The path must be a regular file (or not exist yet) in a directory that exists: `-o` is
//! checked before any AWS call, creates no directory (a typo must not make one), and is
//! written through a symlink to its target.

use super::{SecretStore, StoreError, WriteContext};
use crate::fsutil::{self, FsError, OUTFILE_LIMIT};
use crate::secret::AccessKey;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// One user's entry as the file holds it.
#[derive(Serialize)]
struct EntryOut<'a> {
    #[serde(rename = "AccessKeyId")]
    id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret: &'a str,
}

#[derive(Default)]
struct Entries {
    keys: BTreeMap<String, AccessKey>,
    version: u64,
}

/// The shared outfile of one run.
pub struct Outfile {
    path: PathBuf,
    entries: Mutex<Entries>,
    /// The entries version last written to disk; held while writing.
    persisted: tokio::sync::Mutex<u64>,
}

impl Outfile {
    /// Open `path`, keeping the entries it already holds. Fails when it is not a regular
    /// file, is too large, or its directory does not exist.
    pub fn open(path: &Path) -> Result<Arc<Outfile>, StoreError> {
        let error = |reason: String| StoreError {
            store: format!("outfile:{}", path.display()),
            action: "read",
            reason,
        };
        let bytes = match fsutil::read_regular(path, OUTFILE_LIMIT) {
            Ok(Some(bytes)) => Some(bytes),
            Ok(None) => {
                fsutil::existing_dir_target(path).map_err(|e| error(hint(e)))?;
                None
            }
            Err(e) => return Err(error(hint(e))),
        };
        fsutil::warn_if_shared_dir(path);
        let not_a_document =
            || error("it exists and is not a credrot key document; choose another -o path".into());
        let mut keys = BTreeMap::new();
        let text = match &bytes {
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| not_a_document())?,
            None => "",
        };
        if !text.trim().is_empty() {
            let doc: Map<String, Value> =
                serde_json::from_str(text).map_err(|_| not_a_document())?;
            for (user, entry) in doc {
                let field = |name| entry.get(name).and_then(Value::as_str);
                match (field("AccessKeyId"), field("SecretAccessKey")) {
                    (Some(id), Some(secret)) => {
                        keys.insert(user, AccessKey::new(id, secret));
                    }
                    _ => {
                        return Err(error(format!(
                            "the entry for '{user}' has no AccessKeyId/SecretAccessKey"
                        )))
                    }
                }
            }
        }
        Ok(Arc::new(Outfile {
            path: path.to_path_buf(),
            entries: Mutex::new(Entries { keys, version: 0 }),
            persisted: tokio::sync::Mutex::new(0),
        }))
    }

    /// The store view of this file for one user.
    pub fn store_for(self: &Arc<Self>, user: &str) -> OutfileStore {
        OutfileStore {
            file: Arc::clone(self),
            user: user.to_string(),
        }
    }

    fn location(&self) -> String {
        format!("outfile:{}", self.path.display())
    }

    fn get(&self, user: &str) -> Option<AccessKey> {
        self.entries
            .lock()
            .expect("outfile lock")
            .keys
            .get(user)
            .cloned()
    }

    /// The document, serialized straight from the entries: no copy of a secret besides the
    /// output, which is wiped when dropped (sized up front so that growing it leaves no
    /// stray copies behind).
    fn render(entries: &Entries) -> Zeroizing<Vec<u8>> {
        let doc: BTreeMap<&str, EntryOut> = entries
            .keys
            .iter()
            .map(|(user, key)| {
                let entry = EntryOut {
                    id: &key.id,
                    secret: key.expose(),
                };
                (user.as_str(), entry)
            })
            .collect();
        let estimate = entries
            .keys
            .iter()
            .map(|(user, key)| user.len() + key.id.len() + key.expose().len() + 80)
            .sum::<usize>()
            + 4;
        let mut bytes = Zeroizing::new(Vec::with_capacity(estimate));
        serde_json::to_writer_pretty(&mut *bytes, &doc).expect("strings always serialize");
        bytes.push(b'\n');
        bytes
    }

    /// Set (or remove) one user's entry and return once it is on disk.
    async fn set(
        &self,
        user: &str,
        key: Option<&AccessKey>,
        action: &'static str,
    ) -> Result<(), StoreError> {
        let wanted = {
            let mut entries = self.entries.lock().expect("outfile lock");
            match key {
                Some(key) => entries.keys.insert(user.to_string(), key.clone()),
                None => entries.keys.remove(user),
            };
            entries.version += 1;
            entries.version
        };
        self.persist_at_least(wanted, action).await
    }

    async fn persist_at_least(&self, wanted: u64, action: &'static str) -> Result<(), StoreError> {
        let mut persisted = self.persisted.lock().await;
        if *persisted >= wanted {
            return Ok(());
        }
        self.write_snapshot(&mut persisted, action).await
    }

    /// Write every entry as it is now; the caller holds the `persisted` lock.
    async fn write_snapshot(
        &self,
        persisted: &mut u64,
        action: &'static str,
    ) -> Result<(), StoreError> {
        let (bytes, version) = {
            let entries = self.entries.lock().expect("outfile lock");
            (Self::render(&entries), entries.version)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || fsutil::replace_private(&path, &bytes))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| StoreError {
                store: self.location(),
                action,
                reason,
            })?;
        *persisted = version;
        Ok(())
    }

    /// Create the (empty) document if the file does not exist yet. Done before any AWS call,
    /// it proves the path writable, and pipelines that read the file always find a document
    /// even when no user gets rotated.
    pub fn create_if_missing(&self) -> Result<(), StoreError> {
        if self.path.exists() {
            return Ok(());
        }
        let bytes = Self::render(&self.entries.lock().expect("outfile lock"));
        fsutil::replace_private(&self.path, &bytes).map_err(|e| StoreError {
            store: self.location(),
            action: "create",
            reason: hint(e),
        })
    }
}

/// `e` with what to do about it for `-o`.
fn hint(e: FsError) -> String {
    match e {
        FsError::MissingDir { dir } => format!(
            "its directory {} does not exist, and -o creates no directory; create it, or choose a writable -o path",
            dir.display()
        ),
        e => e.to_string(),
    }
}

/// One user's entry in the outfile.
pub struct OutfileStore {
    file: Arc<Outfile>,
    user: String,
}

#[async_trait]
impl SecretStore for OutfileStore {
    fn location(&self) -> String {
        self.file.location()
    }

    fn local_file(&self) -> Option<&Path> {
        Some(&self.file.path)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.file.get(&self.user))
    }

    fn is_copy(&self) -> bool {
        true
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        self.file.set(&self.user, Some(key), "write").await
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        self.file.set(&self.user, previous, "restore").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ctx() -> WriteContext {
        WriteContext::for_test("u")
    }

    #[tokio::test]
    async fn concurrent_writes_all_land_and_existing_entries_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(
            &path,
            r#"{"old": {"AccessKeyId": "A0", "SecretAccessKey": "s0"}}"#,
        )
        .unwrap();
        let file = Outfile::open(&path).unwrap();
        let writes = (0..20).map(|i| {
            let store = file.store_for(&format!("user{i}"));
            async move {
                store
                    .write(&AccessKey::new(format!("A{i}"), "s"), &ctx())
                    .await
            }
        });
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        let doc: Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc.len(), 21);
        assert_eq!(doc["user7"]["AccessKeyId"], "A7");
        assert_eq!(doc["old"]["AccessKeyId"], "A0");
    }

    #[tokio::test]
    async fn create_if_missing_writes_an_empty_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        Outfile::open(&path).unwrap().create_if_missing().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), "{}");
    }

    #[tokio::test]
    async fn a_symlinked_outfile_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, "{}").unwrap();
        let link = dir.path().join("keys.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let file = Outfile::open(&link).unwrap();
        file.store_for("u")
            .write(&AccessKey::new("A1", "s"), &ctx())
            .await
            .unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let doc: Map<String, Value> =
            serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
        assert_eq!(doc["u"]["AccessKeyId"], "A1");
    }

    #[test]
    fn devices_and_missing_directories_are_refused_and_nothing_is_created() {
        let err = Outfile::open(Path::new("/dev/full")).err().unwrap();
        assert!(err.to_string().contains("a character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo/keys.json");
        let err = Outfile::open(&path).err().unwrap();
        assert!(
            err.to_string().contains("typo does not exist")
                && err.to_string().contains("choose a writable -o path"),
            "{err}"
        );
        assert!(!dir.path().join("typo").exists());
    }
}
