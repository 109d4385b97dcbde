//! Store specifications: where a service's or path's new key is handed to, as written in
//! services.toml (templates not yet expanded), and the location each one names.

use super::kubernetes::KubernetesConfig;
use super::vault::VaultConfig;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// How the `file` store lays out the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// `{"AccessKeyId": "...", "SecretAccessKey": "..."}`
    #[default]
    Json,
    /// `AWS_ACCESS_KEY_ID=...` / `AWS_SECRET_ACCESS_KEY=...` lines.
    Env,
}

/// `kind = "file"`: a local file, written atomically with mode 0600.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileStoreConfig {
    /// Where the key is written; relative paths are relative to the configuration file.
    pub path: String,
    /// `json` (default) or `env`.
    #[serde(default)]
    pub format: FileFormat,
}

/// `kind = "1password"`: an API Credential item, written through the `op` CLI.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnePasswordConfig {
    /// The vault holding the item.
    #[serde(default = "default_vault")]
    pub vault: String,
    /// The item's title; default `AWS Access Key - {service}` (`{user}` for paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The item's tags; default the service's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

fn default_vault() -> String {
    "Automation".to_string()
}

/// `kind = "secrets-manager"`: one secret, rotated with the AWSPENDING/AWSCURRENT labels.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerConfig {
    /// The secret's name.
    pub name: String,
    /// KMS key used when the secret is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Region of the secret; default the service's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `kind = "ssm"`: two SecureString parameters under a prefix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SsmConfig {
    /// `{prefix}/access_key_id` and `{prefix}/secret_access_key` are written.
    pub prefix: String,
    /// KMS key for the SecureString parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Region of the parameters; default the service's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Who may use an organization secret (GitHub's `visibility`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GithubVisibility {
    /// Every repository of the organization.
    All,
    /// The organization's private (and internal) repositories.
    #[default]
    Private,
    /// Only `selected_repository_ids`.
    Selected,
}

impl GithubVisibility {
    /// The value GitHub's API takes.
    pub fn as_str(self) -> &'static str {
        match self {
            GithubVisibility::All => "all",
            GithubVisibility::Private => "private",
            GithubVisibility::Selected => "selected",
        }
    }
}

/// `kind = "github"`: GitHub Actions secrets of a repository, an environment or an
/// organization, sealed with its public key; the key id is kept in an Actions variable,
/// since GitHub never hands a secret back.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/repo` (repository and environment secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The environment of `repository` whose secrets are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The organization (organization secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Which repositories may use an organization secret; default `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<GithubVisibility>,
    /// The repositories of `visibility = "selected"`, by numeric id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_repository_ids: Option<Vec<u64>>,
    /// The secret holding the access key id.
    #[serde(default = "default_github_id_secret")]
    pub access_key_id_secret: String,
    /// The secret holding the secret access key.
    #[serde(default = "default_github_secret_secret")]
    pub secret_access_key_secret: String,
    /// The Actions variable in which credrot records the key id the secrets hold.
    #[serde(default = "default_github_variable")]
    pub key_id_variable: String,
    /// The environment variable holding the API token; default `GITHUB_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The API base; default `https://api.github.com` (GitHub Enterprise:
    /// `https://HOST/api/v3`).
    #[serde(default = "default_github_api")]
    pub api_url: String,
}

fn default_github_id_secret() -> String {
    "AWS_ACCESS_KEY_ID".to_string()
}

fn default_github_secret_secret() -> String {
    "AWS_SECRET_ACCESS_KEY".to_string()
}

fn default_github_variable() -> String {
    "CREDROT_KEY_ID".to_string()
}

fn default_github_api() -> String {
    "https://api.github.com".to_string()
}

/// What happens to the versions a GCP secret no longer hands out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OldVersions {
    /// Left enabled.
    Keep,
    /// Disabled (can be enabled again).
    #[default]
    Disable,
    /// Destroyed (the payload is gone for good).
    Destroy,
}

/// `kind = "gcp-secret-manager"`: a Google Cloud Secret Manager secret; each rotation adds
/// a version.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSecretManagerConfig {
    /// The project id (or number).
    pub project: String,
    /// The secret id.
    pub secret: String,
    /// What to do with versions older than the previous one: `keep`, `disable` (default),
    /// `destroy`.
    #[serde(default)]
    pub old_versions: OldVersions,
    /// The API base; default `https://secretmanager.googleapis.com`.
    #[serde(default = "default_gcp_endpoint")]
    pub endpoint: String,
}

fn default_gcp_endpoint() -> String {
    "https://secretmanager.googleapis.com".to_string()
}

/// `kind = "azure-key-vault"`: an Azure Key Vault secret; each rotation adds a version.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureKeyVaultConfig {
    /// The vault, e.g. `https://my-vault.vault.azure.net`.
    pub vault_url: String,
    /// The secret's name (letters, digits and dashes).
    pub name: String,
}

/// One place a new key is handed to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind")]
pub enum StoreConfig {
    /// A local file.
    #[serde(rename = "file")]
    File(FileStoreConfig),
    /// 1Password through `op`.
    #[serde(rename = "1password")]
    OnePassword(OnePasswordConfig),
    /// AWS Secrets Manager.
    #[serde(rename = "secrets-manager")]
    SecretsManager(SecretsManagerConfig),
    /// AWS SSM Parameter Store.
    #[serde(rename = "ssm")]
    Ssm(SsmConfig),
    /// A Kubernetes Secret.
    #[serde(rename = "kubernetes")]
    Kubernetes(KubernetesConfig),
    /// A HashiCorp Vault KV v2 secret.
    #[serde(rename = "vault")]
    Vault(VaultConfig),
    /// GitHub Actions secrets.
    #[serde(rename = "github")]
    Github(GithubConfig),
    /// Google Cloud Secret Manager.
    #[serde(rename = "gcp-secret-manager")]
    GcpSecretManager(GcpSecretManagerConfig),
    /// Azure Key Vault.
    #[serde(rename = "azure-key-vault")]
    AzureKeyVault(AzureKeyVaultConfig),
}

impl GithubConfig {
    /// Where the secrets are: `org/NAME`, `OWNER/REPO` or `OWNER/REPO/environments/ENV`.
    pub fn scope(&self) -> String {
        match (&self.org, &self.repository, &self.environment) {
            (Some(org), _, _) => format!("org/{org}"),
            (None, Some(repo), Some(env)) => format!("{repo}/environments/{env}"),
            (None, Some(repo), None) => repo.clone(),
            (None, None, _) => String::new(),
        }
    }
}

impl StoreConfig {
    /// The store's kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::File(_) => "file",
            StoreConfig::OnePassword(_) => "1password",
            StoreConfig::SecretsManager(_) => "secrets-manager",
            StoreConfig::Ssm(_) => "ssm",
            StoreConfig::Kubernetes(_) => "kubernetes",
            StoreConfig::Vault(_) => "vault",
            StoreConfig::Github(_) => "github",
            StoreConfig::GcpSecretManager(_) => "gcp-secret-manager",
            StoreConfig::AzureKeyVault(_) => "azure-key-vault",
        }
    }

    /// The templated strings of this store, with the name of the field that holds each.
    pub(super) fn templates(&self) -> Vec<(&'static str, &str)> {
        match self {
            StoreConfig::File(c) => vec![("path", c.path.as_str())],
            StoreConfig::OnePassword(c) => c
                .title
                .as_deref()
                .map(|t| vec![("title", t)])
                .unwrap_or_default(),
            StoreConfig::SecretsManager(c) => vec![("name", c.name.as_str())],
            StoreConfig::Ssm(c) => vec![("prefix", c.prefix.as_str())],
            StoreConfig::Kubernetes(c) => vec![("name", c.name.as_str())],
            StoreConfig::Vault(c) => vec![("path", c.path.as_str())],
            StoreConfig::Github(c) => vec![
                ("access_key_id_secret", c.access_key_id_secret.as_str()),
                (
                    "secret_access_key_secret",
                    c.secret_access_key_secret.as_str(),
                ),
                ("key_id_variable", c.key_id_variable.as_str()),
            ],
            StoreConfig::GcpSecretManager(c) => vec![("secret", c.secret.as_str())],
            StoreConfig::AzureKeyVault(c) => vec![("name", c.name.as_str())],
        }
    }

    /// One line for tables: `file secrets/x.json`.
    pub fn summary(&self) -> String {
        match self {
            StoreConfig::File(c) => format!("file:{}", c.path),
            StoreConfig::OnePassword(c) => format!(
                "1password:{}/{}",
                c.vault,
                c.title.as_deref().unwrap_or("(default title)")
            ),
            StoreConfig::SecretsManager(c) => format!("secrets-manager:{}", c.name),
            StoreConfig::Ssm(c) => format!("ssm:{}", c.prefix),
            StoreConfig::Kubernetes(c) => format!("kubernetes:{}/{}", c.namespace, c.name),
            StoreConfig::Vault(c) => format!("vault:{}/{}", c.mount, c.path),
            StoreConfig::Github(c) => format!("github:{}", c.scope()),
            StoreConfig::GcpSecretManager(c) => {
                format!(
                    "gcp-secret-manager:projects/{}/secrets/{}",
                    c.project, c.secret
                )
            }
            StoreConfig::AzureKeyVault(c) => {
                format!(
                    "azure-key-vault:{}/secrets/{}",
                    c.vault_url.trim_end_matches('/'),
                    c.name
                )
            }
        }
    }
}

/// The title of a 1Password item whose store sets none. Path runs have no service, so
/// their default title names the user.
pub fn default_title(has_service: bool) -> &'static str {
    if has_service {
        "AWS Access Key - {service}"
    } else {
        "AWS Access Key - {user}"
    }
}

/// The one place a store keeps a key: two stores with the same location overwrite each
/// other's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Location {
    /// The file, resolved against the configuration's directory.
    File(PathBuf),
    /// The item of a vault.
    OnePassword { vault: String, title: String },
    /// The secret of a region (`None`: the run's region).
    SecretsManager {
        name: String,
        region: Option<String>,
    },
    /// The parameter prefix of a region (`None`: the run's region).
    Ssm {
        prefix: String,
        region: Option<String>,
    },
    /// The Secret of a namespace of a cluster (as named by kubeconfig and context).
    Kubernetes {
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        namespace: String,
        name: String,
    },
    /// The secret of a KV mount of a Vault server (`None`: `$VAULT_ADDR`) and namespace.
    Vault {
        address: Option<String>,
        namespace: Option<String>,
        mount: String,
        path: String,
    },
    /// The Actions variable recording the key id, at one API and scope: the secrets beside
    /// it are named by the same store.
    Github {
        api: String,
        scope: String,
        variable: String,
    },
    /// The secret of a project.
    Gcp { project: String, secret: String },
    /// The secret of a vault.
    Azure { vault: String, name: String },
}

impl StoreConfig {
    /// This store with `expand` applied to each of its templates.
    pub(super) fn expanded(&self, expand: &dyn Fn(&str) -> String) -> StoreConfig {
        let mut store = self.clone();
        match &mut store {
            StoreConfig::File(c) => c.path = expand(&c.path),
            StoreConfig::OnePassword(c) => c.title = c.title.as_deref().map(expand),
            StoreConfig::SecretsManager(c) => c.name = expand(&c.name),
            StoreConfig::Ssm(c) => c.prefix = expand(&c.prefix),
            StoreConfig::Kubernetes(c) => c.name = expand(&c.name),
            StoreConfig::Vault(c) => c.path = expand(&c.path),
            StoreConfig::Github(c) => {
                c.access_key_id_secret = expand(&c.access_key_id_secret);
                c.secret_access_key_secret = expand(&c.secret_access_key_secret);
                c.key_id_variable = expand(&c.key_id_variable);
            }
            StoreConfig::GcpSecretManager(c) => c.secret = expand(&c.secret),
            StoreConfig::AzureKeyVault(c) => c.name = expand(&c.name),
        }
        store
    }

    /// Where this store keeps the key: its templates passed through `expand`, relative
    /// files resolved against `base_dir`, regions defaulting to `region` (its owner's).
    pub(super) fn location(
        &self,
        expand: &dyn Fn(&str) -> String,
        has_service: bool,
        base_dir: &Path,
        region: Option<&str>,
    ) -> Location {
        let region = |own: &Option<String>| own.clone().or_else(|| region.map(str::to_string));
        match self {
            StoreConfig::File(c) => Location::File(lexical(&base_dir.join(expand(&c.path)))),
            StoreConfig::OnePassword(c) => Location::OnePassword {
                vault: c.vault.clone(),
                title: expand(c.title.as_deref().unwrap_or(default_title(has_service))),
            },
            StoreConfig::SecretsManager(c) => Location::SecretsManager {
                name: expand(&c.name),
                region: region(&c.region),
            },
            StoreConfig::Ssm(c) => Location::Ssm {
                prefix: expand(&c.prefix),
                region: region(&c.region),
            },
            StoreConfig::Kubernetes(c) => Location::Kubernetes {
                kubeconfig: c.kubeconfig.as_ref().map(|k| lexical(&base_dir.join(k))),
                context: c.context.clone(),
                namespace: c.namespace.clone(),
                name: expand(&c.name),
            },
            StoreConfig::Vault(c) => Location::Vault {
                address: c.address_key(),
                namespace: c.namespace.clone(),
                mount: c.mount.clone(),
                path: expand(&c.path),
            },
            // GitHub and Azure names are case-insensitive.
            StoreConfig::Github(c) => Location::Github {
                api: c.api_url.trim_end_matches('/').to_ascii_lowercase(),
                scope: c.scope().to_ascii_lowercase(),
                variable: expand(&c.key_id_variable).to_ascii_uppercase(),
            },
            StoreConfig::GcpSecretManager(c) => Location::Gcp {
                project: c.project.clone(),
                secret: expand(&c.secret),
            },
            StoreConfig::AzureKeyVault(c) => Location::Azure {
                vault: c.vault_url.trim_end_matches('/').to_ascii_lowercase(),
                name: expand(&c.name).to_ascii_lowercase(),
            },
        }
    }
}

/// `path` with `.` dropped and `..` applied to the part before it, without asking the file
/// system: `secrets/../a.json` and `a.json` are one file.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_resolve_dots_without_the_file_system() {
        assert_eq!(lexical(Path::new("a/./b/../c.json")), Path::new("a/c.json"));
        assert_eq!(lexical(Path::new("../x/../y")), Path::new("../y"));
        assert_eq!(lexical(Path::new("/../etc")), Path::new("/etc"));
    }
}
