//! Secret stores: the places a new key is handed to. Every store implements [`SecretStore`];
//! [`open`] turns a configured store into one.

mod file;
mod outfile;

pub use file::FileStore;
pub use outfile::{Outfile, OutfileStore};

use crate::config::StoreConfig;
use crate::secret::AccessKey;
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// A store step that failed: which store, what it was doing, why.
#[derive(Debug, thiserror::Error)]
#[error("{store}: cannot {action}: {reason}")]
pub struct StoreError {
    /// The store's location, e.g. `file:secrets/x.json`.
    pub store: String,
    /// What it was doing: `read`, `write`, `restore`, ...
    pub action: &'static str,
    /// Why, and what to do about it.
    pub reason: String,
}

/// Facts a store may record next to the key.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The IAM user the key belongs to.
    pub user: String,
    /// The service, for `update` runs.
    pub service: Option<String>,
    /// The key this one replaces as CURRENT.
    pub previous_key_id: Option<String>,
    /// When the rotation happened.
    pub rotated_at: SystemTime,
}

/// A place that hands an access key out to the services that use it.
///
/// A rotation reads every store first (which doubles as a preflight), writes the new key to
/// each, verifies the key, promotes it, and on any failure restores what each store held.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Where the store is, for messages and summaries (never a secret).
    fn location(&self) -> String;

    /// The key the store hands out now, `None` when it holds none yet.
    async fn read(&self) -> Result<Option<AccessKey>, StoreError>;

    /// Hand out `key` (or stage it, for stores with a staging protocol).
    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError>;

    /// Make a staged `key` the one handed out, once it is verified.
    async fn promote(&self, _key: &AccessKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Put back what the store held before (`None`: it held nothing).
    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        ctx: &WriteContext,
    ) -> Result<(), StoreError>;
}

/// Values substituted into store templates.
#[derive(Debug, Clone)]
pub struct TemplateValues<'a> {
    /// `{user}`
    pub user: &'a str,
    /// `{service}`; path stores have none.
    pub service: Option<&'a str>,
}

impl TemplateValues<'_> {
    /// Replace the placeholders of `template`.
    pub fn apply(&self, template: &str) -> String {
        let out = template.replace("{user}", self.user);
        match self.service {
            Some(service) => out.replace("{service}", service),
            None => out,
        }
    }
}

/// A store kind that this build cannot open.
#[derive(Debug, thiserror::Error)]
#[error("store kind '{kind}' is not available in this build of credrot")]
pub struct UnsupportedStore {
    /// The kind as configured.
    pub kind: &'static str,
}

/// Make the store described by `config` for one user.
pub fn open(
    config: &StoreConfig,
    values: &TemplateValues<'_>,
    base_dir: &Path,
) -> Result<Arc<dyn SecretStore>, UnsupportedStore> {
    match config {
        StoreConfig::File(c) => Ok(Arc::new(FileStore::new(
            base_dir.join(values.apply(&c.path)),
            c.format,
        ))),
        other => Err(UnsupportedStore { kind: other.kind() }),
    }
}
