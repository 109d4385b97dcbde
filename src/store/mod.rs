//! Secret stores: the places a new key is handed to. Every store implements [`SecretStore`];
//! [`open`] turns a configured store into one, with what the run shares ([`StoreEnv`]).

mod aws_shared;
mod azure;
mod file;
mod gcp;
mod github;
mod kubernetes;
mod oauth;
mod onepassword;
mod outfile;
mod rest;
mod secrets_manager;
pub(crate) use rest::redact;
mod ssm;
mod stdout;
mod vault;

pub use azure::{AzureAuth, AzureStore};
pub use file::FileStore;
pub use gcp::{GcpAuth, GcpStore};
pub use github::GithubStore;
pub use kubernetes::{KubernetesStore, SecretKeys};
pub use onepassword::{OnePasswordStore, OpCli};
pub use outfile::{Outfile, OutfileStore};
pub use rest::check_base_url;
pub use secrets_manager::SecretsManagerStore;
pub use ssm::SsmStore;
pub use stdout::{PrintError, SecretPrinter, StdoutStore};
pub use vault::{VaultAuth, VaultStore, VaultTarget};

use crate::aws::AwsContext;
use crate::config::StoreConfig;
use crate::secret::AccessKey;
use async_trait::async_trait;
use aws_shared::AwsClients;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;
use zeroize::Zeroizing;

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

/// `{"AccessKeyId": "...", "SecretAccessKey": "..."}`: the key document of the file and
/// Secrets Manager stores.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyDocument<'a> {
    #[serde(rename = "AccessKeyId")]
    id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret: &'a str,
}

impl<'a> KeyDocument<'a> {
    /// The document of `key`, borrowing the secret (serialize it, do not keep it).
    pub(crate) fn of(key: &'a AccessKey) -> Self {
        KeyDocument {
            id: &key.id,
            secret: key.expose(),
        }
    }

    /// The document of `key` as JSON, appended to `out`, a buffer wiped when dropped: the
    /// one way credrot serializes a key, so no unwiped copy of a secret is left behind.
    /// `pretty` indents it, as files are written.
    pub(crate) fn write_wiped(key: &AccessKey, out: &mut Zeroizing<Vec<u8>>, pretty: bool) {
        // Reserved up front: a buffer that grows while it is written leaves the bytes of its
        // old allocation unwiped.
        out.reserve(key.id.len() + key.expose().len() + 64);
        let doc = KeyDocument::of(key);
        let written = if pretty {
            serde_json::to_writer_pretty(&mut **out, &doc)
        } else {
            serde_json::to_writer(&mut **out, &doc)
        };
        written.expect("two strings always serialize");
    }

    /// [`Self::write_wiped`] into a buffer of its own.
    pub(crate) fn to_wiped(key: &AccessKey, pretty: bool) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        Self::write_wiped(key, &mut out, pretty);
        out
    }

    /// The key in a document, `None` when `text` is not one.
    pub(crate) fn parse(text: &str) -> Option<AccessKey> {
        let doc: KeyDocument = serde_json::from_str(text).ok()?;
        Some(AccessKey::new(doc.id, doc.secret))
    }
}

/// What a store hands out, as [`SecretStore::observe`] judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Nothing yet.
    Empty,
    /// A whole key.
    Key(AccessKey),
    /// A key the store hands out but cannot give back: only its id is known (GitHub
    /// Actions secrets are write-only; the id is kept beside them). It protects that key
    /// like a whole one, but is never a source to repair other stores from, and a rollback
    /// can put it back only from another store that holds the same key whole.
    KeyId(String),
    /// Something no consumer can use: the parts belong to different keys, or one is
    /// missing. `key_id` is the id it hands out, if any; `reason` says what is wrong.
    Broken {
        /// The access key id the store hands out, if it has one.
        key_id: Option<String>,
        /// What is wrong, for messages (never a secret).
        reason: String,
    },
}

impl Holding {
    /// The whole key, if the store holds one.
    pub fn key(&self) -> Option<&AccessKey> {
        match self {
            Holding::Key(key) => Some(key),
            _ => None,
        }
    }

    /// The key id the store hands out, whole or not.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Holding::Key(key) => Some(&key.id),
            Holding::KeyId(id) => Some(id),
            Holding::Broken { key_id, .. } => key_id.as_deref(),
            Holding::Empty => None,
        }
    }
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

#[cfg(test)]
impl WriteContext {
    /// A context for store unit tests.
    pub(crate) fn for_test(user: &str) -> Self {
        WriteContext {
            user: user.to_string(),
            service: None,
            previous_key_id: None,
            rotated_at: SystemTime::now(),
        }
    }
}

/// A place that hands an access key out to the services that use it.
///
/// A rotation reads every store first (which doubles as a preflight), writes the new key to
/// each, verifies the key, promotes it, and on any failure restores what each store held.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Where the store is, for messages and summaries (never a secret).
    fn location(&self) -> String;

    /// The local file the store writes the key to, if it is one (for the git check).
    fn local_file(&self) -> Option<&std::path::Path> {
        None
    }

    /// This store's error doing `action`, for `reason`.
    fn error(&self, action: &'static str, reason: impl std::fmt::Display) -> StoreError
    where
        Self: Sized,
    {
        StoreError {
            store: self.location(),
            action,
            reason: reason.to_string(),
        }
    }

    /// A check shared by every user of a run (e.g. that a CLI is installed and signed in),
    /// made once before the engine starts and before any IAM change.
    async fn check_run(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The key the store hands out now, `None` when it holds none yet. A rotation reads
    /// every store before any IAM change, so this is also the per-user preflight: it fails
    /// when the store cannot be reached, read, or written later.
    async fn read(&self) -> Result<Option<AccessKey>, StoreError>;

    /// What the store hands out, judged as a pair: a store written in several calls (SSM)
    /// can hold the id of one key and the secret of another after an interrupted write.
    /// Stores whose writes are atomic take the default, which is [`Self::read`].
    async fn observe(&self) -> Result<Holding, StoreError> {
        Ok(match self.read().await? {
            Some(key) => Holding::Key(key),
            None => Holding::Empty,
        })
    }

    /// A key staged but not promoted yet (Secrets Manager's AWSPENDING), which a run that
    /// died after writing it left behind; the next run finishes the promotion.
    async fn pending(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(None)
    }

    /// Whether this is a copy for the user (the `-o` file) rather than a place services
    /// read the key from: copies are never brought up to date with an older key.
    fn is_copy(&self) -> bool {
        false
    }

    /// Hand out `key` (or stage it, for stores with a staging protocol).
    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError>;

    /// Make a staged `key` the one handed out, once it is verified.
    async fn promote(&self, _key: &AccessKey) -> Result<(), StoreError> {
        Ok(())
    }

    /// Put back what the store held before (`None`: it held nothing). Only what the last
    /// `write`/`promote` changed is undone, so restoring a store whose write failed
    /// without effect succeeds without calls that would fail the same way.
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
    /// `{account}` and `{account_name}`: the account of a run over `[accounts]`.
    pub account: Option<&'a crate::accounts::Account>,
}

impl TemplateValues<'_> {
    /// Replace the placeholders of `template`.
    pub fn apply(&self, template: &str) -> String {
        let mut out = template.replace("{user}", self.user);
        if let Some(service) = self.service {
            out = out.replace("{service}", service);
        }
        if let Some(account) = self.account {
            out = out
                .replace("{account_name}", &account.name)
                .replace("{account}", &account.id);
        }
        out
    }
}

/// What the stores of one run share: the base directory of relative paths, the service's
/// tags, AWS clients per region (made once per run, not per user) and the `op` CLI.
pub struct StoreEnv {
    base_dir: PathBuf,
    tags: Vec<String>,
    aws: AwsClients,
    op: Arc<OpCli>,
    gcp: Arc<GcpAuth>,
    azure: Arc<AzureAuth>,
    /// The account of a run over `[accounts]`, whose clients `aws` holds.
    account: Option<crate::accounts::Account>,
}

impl StoreEnv {
    /// The same environment for the stores of `account` (`{account}` in templates).
    pub fn for_account(mut self, account: Option<crate::accounts::Account>) -> Self {
        self.account = account;
        self
    }

    /// The account of this run, if it runs over `[accounts]`.
    pub fn account(&self) -> Option<&crate::accounts::Account> {
        self.account.as_ref()
    }

    /// The environment of a run against `aws`; relative file paths resolve against
    /// `base_dir`, and stores that take tags default to `tags` (the service's).
    pub fn new(aws: AwsContext, base_dir: PathBuf, tags: Vec<String>) -> Self {
        StoreEnv {
            base_dir,
            tags,
            aws: AwsClients::new(aws),
            op: Arc::new(OpCli::from_env()),
            gcp: Arc::default(),
            azure: Arc::default(),
            account: None,
        }
    }
}

/// Make the store described by `config` for one user. When the user's values would make
/// the store leave its place (a file path escaping its directory), the store is
/// [`Unopened`]: the user fails at its first read, before any IAM change.
pub fn open(
    config: &StoreConfig,
    values: &TemplateValues<'_>,
    env: &StoreEnv,
) -> Arc<dyn SecretStore> {
    match config {
        StoreConfig::File(c) => {
            match FileStore::from_template(&env.base_dir, &c.path, values, c.format) {
                Ok(store) => Arc::new(store),
                Err(e) => Arc::new(Unopened(e)),
            }
        }
        StoreConfig::OnePassword(c) => {
            // Path runs have no service, so their default title names the user.
            let default_title = crate::config::default_title(values.service.is_some());
            Arc::new(OnePasswordStore::new(
                Arc::clone(&env.op),
                c.vault.clone(),
                values.apply(c.title.as_deref().unwrap_or(default_title)),
                c.tags.clone().unwrap_or_else(|| env.tags.clone()),
            ))
        }
        StoreConfig::SecretsManager(c) => Arc::new(SecretsManagerStore::new(
            env.aws.secrets_manager(c.region.as_deref()),
            values.apply(&c.name),
            c.kms_key_id.clone(),
            env.tags.clone(),
        )),
        StoreConfig::Ssm(c) => Arc::new(SsmStore::new(
            env.aws.ssm(c.region.as_deref()),
            values.apply(&c.prefix),
            c.kms_key_id.clone(),
            env.tags.clone(),
        )),
        StoreConfig::Kubernetes(c) => open_kubernetes(c, values, env),
        StoreConfig::Vault(c) => open_vault(c, values, env),
        StoreConfig::Github(c) => {
            let mut c = c.clone();
            for name in [
                &mut c.access_key_id_secret,
                &mut c.secret_access_key_secret,
                &mut c.key_id_variable,
            ] {
                *name = values.apply(name);
            }
            opened(format!("github:{}", c.scope()), GithubStore::new(&c))
        }
        StoreConfig::GcpSecretManager(c) => {
            let mut c = c.clone();
            c.secret = values.apply(&c.secret);
            opened(
                format!(
                    "gcp-secret-manager:projects/{}/secrets/{}",
                    c.project, c.secret
                ),
                GcpStore::new(&c, Arc::clone(&env.gcp)),
            )
        }
        StoreConfig::AzureKeyVault(c) => {
            let mut c = c.clone();
            c.name = values.apply(&c.name);
            opened(
                format!(
                    "azure-key-vault:{}/secrets/{}",
                    c.vault_url.trim_end_matches('/'),
                    c.name
                ),
                AzureStore::new(&c, Arc::clone(&env.azure)),
            )
        }
    }
}

/// `store`, or an [`Unopened`] store at `location` that fails with the reason.
fn opened<S: SecretStore + 'static>(
    location: String,
    store: Result<S, String>,
) -> Arc<dyn SecretStore> {
    match store {
        Ok(store) => Arc::new(store),
        Err(reason) => Arc::new(Unopened(StoreError {
            store: location,
            action: "open",
            reason,
        })),
    }
}

/// The Kubernetes store of one user; a name the user's values make invalid is [`Unopened`].
fn open_kubernetes(
    c: &crate::config::KubernetesConfig,
    values: &TemplateValues<'_>,
    env: &StoreEnv,
) -> Arc<dyn SecretStore> {
    let name = values.apply(&c.name);
    if !crate::config::is_dns_subdomain(&name) {
        return Arc::new(Unopened(StoreError {
            store: format!("kubernetes:{}/{name}", c.namespace),
            action: "read",
            reason: format!("'{name}' is not a valid Secret name (lower-case letters, digits, '-' and '.'); change the name template in services.toml"),
        }));
    }
    Arc::new(KubernetesStore::new(
        c.connection(),
        env.base_dir.clone(),
        crate::config::store_timeout(c.timeout.as_deref()),
        c.namespace.clone(),
        name,
        SecretKeys {
            id: c.id_key.clone(),
            secret: c.secret_key.clone(),
            credentials: c.credentials_key.clone(),
            profile: c
                .credentials_profile
                .clone()
                .unwrap_or_else(|| "default".into()),
        },
    ))
}

/// The Vault store of one user; without an address (nor `VAULT_ADDR`) it is [`Unopened`].
fn open_vault(
    c: &crate::config::VaultConfig,
    values: &TemplateValues<'_>,
    env: &StoreEnv,
) -> Arc<dyn SecretStore> {
    let path = values.apply(&c.path);
    let location = format!("vault:{}/{path}", c.mount);
    let address = c
        .address
        .clone()
        .or_else(|| std::env::var("VAULT_ADDR").ok().filter(|a| !a.is_empty()));
    let Some(address) = address else {
        return Arc::new(Unopened(StoreError {
            store: location,
            action: "read",
            reason: "no Vault address: set address in the store or VAULT_ADDR".into(),
        }));
    };
    let file = |f: &String| env.base_dir.join(f);
    let auth = match &c.approle {
        Some(role) => {
            let mut role = role.clone();
            role.role_id_file = role
                .role_id_file
                .as_ref()
                .map(|f| file(f).display().to_string());
            role.secret_id_file = role
                .secret_id_file
                .as_ref()
                .map(|f| file(f).display().to_string());
            VaultAuth::AppRole(role)
        }
        None => VaultAuth::Token {
            file: c.token_file.as_ref().map(file),
        },
    };
    let ca_file = c.ca_cert.as_ref().map(file).or_else(|| {
        std::env::var_os("VAULT_CACERT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    Arc::new(VaultStore::new(
        VaultTarget {
            address,
            namespace: c.namespace.clone().or_else(|| {
                std::env::var("VAULT_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            }),
            mount: c.mount.clone(),
            path,
            id_field: c.id_field.clone(),
            secret_field: c.secret_field.clone(),
        },
        auth,
        ca_file,
        crate::config::store_timeout(c.timeout.as_deref()),
    ))
}

/// A store that [`open`] could not make for one user. Every step fails with the reason, so
/// that user fails at its first store read, before any IAM change, and the others go on.
struct Unopened(StoreError);

impl Unopened {
    fn fail(&self) -> StoreError {
        StoreError {
            store: self.0.store.clone(),
            action: self.0.action,
            reason: self.0.reason.clone(),
        }
    }
}

#[async_trait]
impl SecretStore for Unopened {
    fn location(&self) -> String {
        self.0.store.clone()
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Err(self.fail())
    }

    async fn write(&self, _key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        Err(self.fail())
    }

    async fn restore(
        &self,
        _previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        Err(self.fail())
    }
}
