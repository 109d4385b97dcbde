//! `services.toml`: what credrot rotates and where each new key goes.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file, the line and
//! the column, and says what to write instead. Nothing in here talks to AWS, so a broken
//! configuration is always reported before any API call.

use crate::notify::Webhook;
use crate::policy::{Mode, PolicySettings, RotationPolicy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("configuration file {} not found; create it (see README, 'services.toml') or point --config / CREDROT_CONFIG at it", path.display())]
    Missing { path: PathBuf },
    /// The file exists but could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or not a valid credrot configuration.
    #[error("{}:{line}:{column}: {message}\n  hint: {hint}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: String,
    },
    /// A service name given on the command line is not configured.
    #[error("service '{name}' is not in {}; run 'credrot list' to see the configured services", path.display())]
    UnknownService { name: String, path: PathBuf },
}

/// A duration as written in the file (`30d`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSetting {
    /// The text the user wrote, shown back unchanged.
    pub text: String,
    /// Its value.
    pub value: Duration,
}

impl DurationSetting {
    /// Parse `30d`, `12h`, `90m`, `1d 12h`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = humantime::parse_duration(text.trim()).map_err(|_| {
            format!("invalid duration '{text}': write a number and a unit, e.g. \"30d\", \"12h\" or \"90m\"")
        })?;
        if value.is_zero() {
            return Err(format!(
                "duration '{text}' is zero; give a positive duration such as \"30d\""
            ));
        }
        Ok(DurationSetting {
            text: text.to_string(),
            value,
        })
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DurationSetting::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

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
}

impl StoreConfig {
    /// The store's kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::File(_) => "file",
            StoreConfig::OnePassword(_) => "1password",
            StoreConfig::SecretsManager(_) => "secrets-manager",
            StoreConfig::Ssm(_) => "ssm",
        }
    }

    /// The templated strings of this store, with the name of the field that holds each.
    fn templates(&self) -> Vec<(&'static str, &str)> {
        match self {
            StoreConfig::File(c) => vec![("path", c.path.as_str())],
            StoreConfig::OnePassword(c) => c
                .title
                .as_deref()
                .map(|t| vec![("title", t)])
                .unwrap_or_default(),
            StoreConfig::SecretsManager(c) => vec![("name", c.name.as_str())],
            StoreConfig::Ssm(c) => vec![("prefix", c.prefix.as_str())],
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
        }
    }
}

/// Declares a raw section struct that, besides its own fields, accepts the policy keys that
/// every section shares, so that each section rejects unknown keys without repeating them.
macro_rules! section_with_policy {
    ($(#[$meta:meta])* $name:ident { $($(#[$attr:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($(#[$attr])* $field: $ty,)*
            max_age: Option<DurationSetting>,
            rotate_after: Option<DurationSetting>,
            mode: Option<Mode>,
            quiet_period: Option<DurationSetting>,
            grace: Option<DurationSetting>,
            max_wait: Option<DurationSetting>,
        }

        impl $name {
            fn policy(&self) -> PolicySettings {
                PolicySettings {
                    max_age: self.max_age.clone(),
                    rotate_after: self.rotate_after.clone(),
                    mode: self.mode,
                    quiet_period: self.quiet_period.clone(),
                    grace: self.grace.clone(),
                    max_wait: self.max_wait.clone(),
                }
            }
        }
    };
}

section_with_policy!(#[derive(Default)] RawDefaults {
    region: Option<String>,
});

section_with_policy!(RawService {
    description: Option<String>,
    iam_user: Spanned<String>,
    #[serde(default)]
    source: KeySource,
    terraform_dir: Option<String>,
    output_prefix: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    region: Option<String>,
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
});

section_with_policy!(RawPath {
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
});

/// `[audit]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<Spanned<String>>,
    cloudwatch_log_group: Option<Spanned<String>>,
    cloudwatch_log_stream: Option<Spanned<String>>,
}

/// `[notify]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook: Spanned<String>,
    timeout: Option<DurationSetting>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
    #[serde(default)]
    paths: BTreeMap<Spanned<String>, RawPath>,
    audit: Option<Spanned<RawAudit>>,
    notify: Option<RawNotify>,
}

/// Settings that apply where a service or path does not say otherwise.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Defaults {
    /// AWS region used when neither `--region` nor the service names one.
    pub region: Option<String>,
    /// The policy keys of `[defaults]`.
    #[serde(skip)]
    pub policy: PolicySettings,
}

/// Where a service's new keys come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// credrot creates them in IAM (CURRENT/LAST or staged).
    #[default]
    Iam,
    /// Terraform/OpenTofu creates them; credrot only verifies and hands them on.
    Terraform,
}

/// Where Terraform keeps a service's key (`source = "terraform"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerraformSource {
    /// The directory to run `terraform output -json` in (relative to the config file).
    pub dir: std::path::PathBuf,
    /// Outputs `<prefix>_access_key_id` and `<prefix>_secret_access_key` hold the key.
    pub output_prefix: String,
}

/// One configured service: an IAM user and the stores that hand its key out.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// The name used on the command line.
    pub name: String,
    /// What the key is for.
    pub description: Option<String>,
    /// The IAM user whose keys are rotated.
    pub iam_user: String,
    /// Free-form tags, also given to stores that support tags.
    pub tags: Vec<String>,
    /// When and how its keys are rotated.
    #[serde(flatten)]
    pub policy: RotationPolicy,
    /// AWS region for this service's regional stores.
    pub region: Option<String>,
    /// Where the new key goes.
    pub stores: Vec<StoreConfig>,
    /// Set when Terraform, not credrot, creates the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terraform: Option<TerraformSource>,
}

/// Stores for every user under one IAM path (`rotate --path`).
#[derive(Debug, Clone, Serialize)]
pub struct PathPolicy {
    /// The normalized IAM path, `/Name/`.
    pub path: String,
    /// Store templates; `{user}` is replaced by the IAM user name.
    pub stores: Vec<StoreConfig>,
    /// When and how its users' keys are rotated.
    #[serde(flatten)]
    pub policy: RotationPolicy,
}

/// Where a CloudWatch Logs copy of the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudWatchTarget {
    /// The log group, created if missing.
    pub group: String,
    /// The log stream, created if missing; default: one stream per run, named by its run id.
    pub stream: Option<String>,
}

/// `[audit]`: where each action of a run is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The audit file, resolved against the configuration's directory.
    pub path: Option<PathBuf>,
    /// The CloudWatch Logs copy.
    pub cloudwatch: Option<CloudWatchTarget>,
}

/// `[notify]`: who hears about each run.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The URL the run's notice is POSTed to.
    pub webhook: Webhook,
    /// How long the POST may take.
    pub timeout: Duration,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it came from (for messages).
    pub file: PathBuf,
    /// Directory that relative store paths are resolved against.
    pub base_dir: PathBuf,
    /// `[defaults]`
    pub defaults: Defaults,
    /// `[services.NAME]`, by name.
    pub services: BTreeMap<String, Service>,
    /// `[paths.NAME]`, by normalized IAM path.
    pub paths: BTreeMap<String, PathPolicy>,
    /// `[audit]`, when present.
    pub audit: Option<AuditConfig>,
    /// `[notify]`, when present.
    pub notify: Option<NotifyConfig>,
}

/// Turn `PSKServiceAccounts`, `/PSKServiceAccounts` or `/PSKServiceAccounts/` into the IAM
/// form `/PSKServiceAccounts/`.
pub fn normalize_iam_path(path: &str) -> String {
    let inner = path.trim().trim_matches('/');
    if inner.is_empty() {
        "/".to_string()
    } else {
        format!("/{inner}/")
    }
}

/// Whether `name` is a valid IAM user name (1-64 of `A-Za-z0-9+=,.@_-`).
pub fn is_valid_iam_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Whether `path` (normalized) is a valid IAM path.
fn is_valid_iam_path(path: &str) -> bool {
    path.len() <= 512 && path.chars().all(|c| ('!'..='~').contains(&c))
}

/// The `{name}` placeholders of a template, or the text of a malformed one.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("'{template}' has a '{{' without a closing '}}'"))?;
        found.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(found)
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Config::parse(&text, path)
    }

    /// Validate `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let invalid = |offset: usize, message: String, hint: String| {
            let (line, column) = line_column(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
                hint,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let offset = err.span().map(|s| s.start).unwrap_or(0);
            let message = err.message().trim().to_string();
            let hint = hint_for(&message);
            invalid(offset, message, hint)
        })?;

        let defaults = Defaults {
            policy: raw.defaults.policy(),
            region: raw.defaults.region,
        };
        // Policy errors are reported at the section's first line: the keys may come from
        // [defaults] or the section itself.
        let policy_error = |offset: usize, message: String| {
            invalid(
                offset,
                message,
                "see 'Rotation policy' in README.md".to_string(),
            )
        };
        let mut services = BTreeMap::new();
        for (name, svc) in raw.services {
            let user_span = svc.iam_user.span();
            let policy = svc
                .policy()
                .resolve(&defaults.policy)
                .map_err(|m| policy_error(user_span.start, m))?;
            let iam_user = svc.iam_user.into_inner();
            if !is_valid_iam_user_name(&iam_user) {
                return Err(invalid(
                    user_span.start,
                    format!(
                        "iam_user '{iam_user}' of service '{name}' is not a valid IAM user name"
                    ),
                    "use 1 to 64 letters, digits or any of + = , . @ _ -".to_string(),
                ));
            }
            let terraform = match (svc.source, svc.terraform_dir, svc.output_prefix) {
                (KeySource::Terraform, Some(dir), Some(prefix)) if !dir.is_empty() && !prefix.is_empty() => {
                    Some(TerraformSource {
                        dir: base_dir.join(dir),
                        output_prefix: prefix,
                    })
                }
                (KeySource::Terraform, _, _) => {
                    return Err(invalid(
                        user_span.start,
                        format!("service '{name}' has source = \"terraform\" but no terraform_dir or output_prefix"),
                        "set terraform_dir (where `terraform output` runs) and output_prefix (outputs <prefix>_access_key_id and <prefix>_secret_access_key)".to_string(),
                    ))
                }
                (KeySource::Iam, None, None) => None,
                (KeySource::Iam, _, _) => {
                    return Err(invalid(
                        user_span.start,
                        format!("service '{name}' sets terraform_dir or output_prefix without source = \"terraform\""),
                        "add source = \"terraform\", or remove those keys".to_string(),
                    ))
                }
            };
            let stores = check_stores(svc.stores, &["user", "service"], false, &invalid)?;
            services.insert(
                name.clone(),
                Service {
                    name,
                    description: svc.description,
                    iam_user,
                    tags: svc.tags,
                    policy,
                    region: svc.region.or_else(|| defaults.region.clone()),
                    stores,
                    terraform,
                },
            );
        }
        let mut paths = BTreeMap::new();
        for (key, policy) in raw.paths {
            let key_span = key.span();
            let normalized = normalize_iam_path(key.get_ref());
            if !is_valid_iam_path(&normalized) {
                return Err(invalid(
                    key_span.start,
                    format!("'{}' is not a valid IAM path", key.get_ref()),
                    "use printable ASCII without spaces, e.g. [paths.PSKServiceAccounts]"
                        .to_string(),
                ));
            }
            if paths.contains_key(&normalized) {
                return Err(invalid(
                    key_span.start,
                    format!("IAM path {normalized} is configured twice"),
                    "keep one [paths.NAME] section per IAM path".to_string(),
                ));
            }
            let resolved = policy
                .policy()
                .resolve(&defaults.policy)
                .map_err(|m| policy_error(key_span.start, m))?;
            let stores = check_stores(policy.stores, &["user"], true, &invalid)?;
            paths.insert(
                normalized.clone(),
                PathPolicy {
                    path: normalized,
                    stores,
                    policy: resolved,
                },
            );
        }
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let audit = raw
            .audit
            .map(|a| check_audit(a, &base_dir, &invalid))
            .transpose()?;
        let notify = raw
            .notify
            .map(|n| {
                let span = n.webhook.span();
                Webhook::parse(n.webhook.get_ref())
                    .map(|webhook| NotifyConfig {
                        webhook,
                        timeout: n
                            .timeout
                            .map(|t| t.value)
                            .unwrap_or(crate::notify::DEFAULT_TIMEOUT),
                    })
                    .map_err(|message| {
                        invalid(
                            span.start,
                            message,
                            "write webhook = \"https://host/path\"".to_string(),
                        )
                    })
            })
            .transpose()?;
        Ok(Config {
            file: path.to_path_buf(),
            base_dir,
            defaults,
            services,
            paths,
            audit,
            notify,
        })
    }

    /// An empty configuration, for `rotate --path` runs without a services.toml.
    pub fn empty(file: &Path) -> Config {
        Config {
            file: file.to_path_buf(),
            ..Config::default()
        }
    }

    /// The service called `name`, or an error that says how to find the right one.
    pub fn service(&self, name: &str) -> Result<&Service, ConfigError> {
        self.services
            .get(name)
            .ok_or_else(|| ConfigError::UnknownService {
                name: name.to_string(),
                path: self.file.clone(),
            })
    }

    /// The policy for IAM path `path` (any spelling), if configured.
    pub fn path_policy(&self, path: &str) -> Option<&PathPolicy> {
        self.paths.get(&normalize_iam_path(path))
    }
}

/// Check the placeholders of each store; path stores must name `{user}` so that users do not
/// overwrite each other's entries.
fn check_stores(
    stores: Vec<Spanned<StoreConfig>>,
    allowed: &[&str],
    needs_user: bool,
    invalid: &impl Fn(usize, String, String) -> ConfigError,
) -> Result<Vec<StoreConfig>, ConfigError> {
    let allowed_list = allowed
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut checked = Vec::with_capacity(stores.len());
    for store in stores {
        let offset = store.span().start;
        let store = store.into_inner();
        for (field, template) in store.templates() {
            if template.trim().is_empty() {
                return Err(invalid(
                    offset,
                    format!("{} store has an empty {field}", store.kind()),
                    format!("set {field} to where the key should go"),
                ));
            }
            let found = placeholders(template).map_err(|msg| {
                invalid(
                    offset,
                    msg,
                    "close the placeholder, e.g. {user}".to_string(),
                )
            })?;
            if let Some(bad) = found.iter().find(|p| !allowed.contains(p)) {
                return Err(invalid(
                    offset,
                    format!("unknown placeholder {{{bad}}} in {field} '{template}'"),
                    format!("placeholders allowed here: {allowed_list}"),
                ));
            }
            // An explicit 1Password title is no exception: without {user} every user of the
            // path would edit the same item. (The default title names the user.)
            if needs_user && !found.contains(&"user") {
                return Err(invalid(
                    offset,
                    format!("{field} '{template}' of a path store has no {{user}}; every user would overwrite the same entry"),
                    format!("put {{user}} in the {field}, e.g. \"secrets/{{user}}.json\""),
                ));
            }
        }
        if let Err((message, hint)) = check_store_names(&store) {
            return Err(invalid(offset, message, hint));
        }
        checked.push(store);
    }
    Ok(checked)
}

/// `template` without its `{placeholder}`s (already checked to be well formed).
fn literal_part(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = rest[open..]
            .find('}')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    out.push_str(rest);
    out
}

/// The names AWS would refuse, caught here so a bad name is a configuration error (exit 2)
/// and not a failed rotation.
fn check_store_names(store: &StoreConfig) -> Result<(), (String, String)> {
    match store {
        StoreConfig::Ssm(c) => {
            let prefix = &c.prefix;
            let literal = literal_part(prefix);
            if !prefix.starts_with('/') || prefix.ends_with('/') {
                return Err((
                    format!("ssm prefix '{prefix}' must start with '/' and not end with one"),
                    "write it like \"/home-ops/postgresql-backup\"; credrot adds /access_key_id and /secret_access_key".to_string(),
                ));
            }
            if let Some(bad) = literal
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
            {
                return Err((
                    format!(
                        "ssm prefix '{prefix}' contains '{bad}', which SSM parameter names cannot"
                    ),
                    "use letters, digits and _ . - /".to_string(),
                ));
            }
            let lower = prefix.to_ascii_lowercase();
            if lower.starts_with("/aws") || lower.starts_with("/ssm") {
                return Err((
                    format!("ssm prefix '{prefix}' starts with a name AWS reserves"),
                    "SSM refuses parameter names that begin with aws or ssm; choose another prefix"
                        .to_string(),
                ));
            }
        }
        StoreConfig::SecretsManager(c) => {
            if let Some(bad) = literal_part(&c.name)
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
            {
                return Err((
                    format!(
                        "secrets-manager name '{}' contains '{bad}', which secret names cannot",
                        c.name
                    ),
                    "use letters, digits and / _ + = . @ -".to_string(),
                ));
            }
        }
        StoreConfig::OnePassword(c) if c.vault.trim().is_empty() => {
            return Err((
                "1password store has an empty vault".to_string(),
                "set vault to the vault's name, or leave it out for \"Automation\"".to_string(),
            ));
        }
        StoreConfig::OnePassword(_) | StoreConfig::File(_) => {}
    }
    Ok(())
}

/// Validate `[audit]`: it must name a destination, and CloudWatch names must be valid.
fn check_audit(
    raw: Spanned<RawAudit>,
    base_dir: &Path,
    invalid: &impl Fn(usize, String, String) -> ConfigError,
) -> Result<AuditConfig, ConfigError> {
    let section = raw.span().start;
    let raw = raw.into_inner();
    let path = match raw.path {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(invalid(
                p.span().start,
                "[audit] path is empty".to_string(),
                "set path to the audit file, e.g. \"audit/credrot.log\"".to_string(),
            ))
        }
        Some(p) => Some(base_dir.join(p.into_inner())),
        None => None,
    };
    let group = raw
        .cloudwatch_log_group
        .map(|g| {
            let ok = (1..=512).contains(&g.get_ref().len())
                && g.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c));
            if ok {
                Ok(g.into_inner())
            } else {
                Err(invalid(
                    g.span().start,
                    format!(
                        "'{}' is not a valid CloudWatch Logs group name",
                        g.get_ref()
                    ),
                    "use 1 to 512 letters, digits or any of . _ - / #".to_string(),
                ))
            }
        })
        .transpose()?;
    let stream = raw
        .cloudwatch_log_stream
        .map(|s| {
            let ok = (1..=512).contains(&s.get_ref().len()) && !s.get_ref().contains([':', '*']);
            if group.is_none() {
                Err(invalid(
                    s.span().start,
                    "cloudwatch_log_stream is set without cloudwatch_log_group".to_string(),
                    "add cloudwatch_log_group = \"NAME\" or remove the stream".to_string(),
                ))
            } else if ok {
                Ok(s.into_inner())
            } else {
                Err(invalid(
                    s.span().start,
                    format!(
                        "'{}' is not a valid CloudWatch Logs stream name",
                        s.get_ref()
                    ),
                    "use 1 to 512 characters, without ':' or '*'".to_string(),
                ))
            }
        })
        .transpose()?;
    if path.is_none() && group.is_none() {
        return Err(invalid(
            section,
            "[audit] names no destination".to_string(),
            "set path = \"FILE\", cloudwatch_log_group = \"NAME\", or both".to_string(),
        ));
    }
    Ok(AuditConfig {
        path,
        cloudwatch: group.map(|group| CloudWatchTarget { group, stream }),
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// What to do about a parse error, from its message.
fn hint_for(message: &str) -> String {
    let hint = if message.starts_with("unknown field") {
        "remove that key or fix its spelling; the keys allowed there are listed above"
    } else if message.contains("missing field `iam_user`") {
        "add iam_user = \"NAME\": the IAM user whose keys this service rotates"
    } else if message.starts_with("missing field") {
        "add the missing key shown above"
    } else if message.contains("unknown variant") {
        "set kind to one of: file, 1password, secrets-manager, ssm"
    } else if message.contains("missing field `kind`") || message.contains("`kind`") {
        "every store needs kind = \"file\" | \"1password\" | \"secrets-manager\" | \"ssm\""
    } else if message.contains("missing field `webhook`") {
        "add webhook = \"https://host/path\" to [notify], or remove the section"
    } else if message.contains("duration") {
        "durations look like \"30d\", \"12h\" or \"90m\""
    } else if message.starts_with("invalid type") {
        "check the value's type: strings need quotes, lists use [ ]"
    } else {
        "see the services.toml reference in README.md"
    };
    hint.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("services.toml"))
    }

    fn error_of(text: &str) -> (usize, usize, String) {
        match parse(text).unwrap_err() {
            ConfigError::Invalid {
                line,
                column,
                message,
                ..
            } => (line, column, message),
            other => panic!("unexpected error {other}"),
        }
    }

    const GOOD: &str = r#"
[defaults]
region = "us-west-2"
max_age = "30d"

[services.postgresql]
description = "backups"
iam_user = "postgresql-backup"
tags = ["aws"]

[[services.postgresql.stores]]
kind = "file"
path = "secrets/postgresql.json"

[paths.PSKServiceAccounts]
stores = [{ kind = "file", path = "secrets/{user}.json", format = "env" }]
"#;

    #[test]
    fn parses_the_documented_shape() {
        let config = parse(GOOD).unwrap();
        let svc = config.service("postgresql").unwrap();
        assert_eq!(svc.iam_user, "postgresql-backup");
        assert_eq!(
            svc.policy.max_age.as_ref().unwrap().value,
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(svc.region.as_deref(), Some("us-west-2"));
        let policy = config.path_policy("/PSKServiceAccounts/").unwrap();
        assert_eq!(policy.path, "/PSKServiceAccounts/");
        assert!(config.path_policy("PSKServiceAccounts").is_some());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let (line, column, message) =
            error_of("[services.a]\niam_user = \"u\"\ncolour = \"red\"\n");
        assert_eq!((line, column), (3, 1));
        assert!(message.contains("unknown field `colour`"), "{message}");
    }

    #[test]
    fn missing_iam_user_is_reported() {
        let (line, _, message) = error_of("[services.a]\ndescription = \"x\"\n");
        assert_eq!(line, 1);
        assert!(message.contains("iam_user"), "{message}");
    }

    #[test]
    fn bad_duration_is_reported_where_it_is() {
        let (line, _, message) = error_of("[defaults]\nmax_age = \"thirty days\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("invalid duration"), "{message}");
    }

    #[test]
    fn unknown_store_kind_is_reported() {
        let (_, _, message) = error_of(
            "[services.a]\niam_user = \"u\"\n[[services.a.stores]]\nkind = \"vault\"\npath = \"x\"\n",
        );
        assert!(message.contains("unknown variant `vault`"), "{message}");
    }

    #[test]
    fn path_store_without_user_placeholder_is_refused() {
        let (line, _, message) =
            error_of("[paths.X]\nstores = [{ kind = \"file\", path = \"all.json\" }]\n");
        assert_eq!(line, 2);
        assert!(message.contains("{user}"), "{message}");
    }

    #[test]
    fn unknown_placeholder_is_refused() {
        let (_, _, message) = error_of(
            "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"{usr}.json\" }]\n",
        );
        assert!(message.contains("{usr}"), "{message}");
    }

    #[test]
    fn the_new_store_kinds_parse_with_their_defaults() {
        let config = parse(
            r#"
[services.pg]
iam_user = "pg"
tags = ["aws"]
stores = [
  { kind = "1password" },
  { kind = "secrets-manager", name = "home-ops/pg/aws", kms_key_id = "alias/home-ops", region = "us-west-2" },
  { kind = "ssm", prefix = "/home-ops/pg", kms_key_id = "alias/aws/ssm" },
]
[paths.PSK]
stores = [{ kind = "1password", title = "AWS Access Key - {user}" }, { kind = "ssm", prefix = "/psk/{user}" }]
"#,
        )
        .unwrap();
        let stores = &config.service("pg").unwrap().stores;
        match &stores[0] {
            StoreConfig::OnePassword(c) => {
                assert_eq!(c.vault, "Automation");
                assert!(c.title.is_none() && c.tags.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stores[1].summary(), "secrets-manager:home-ops/pg/aws");
        assert_eq!(stores[2].summary(), "ssm:/home-ops/pg");
    }

    #[test]
    fn store_names_aws_would_refuse_are_configuration_errors() {
        for (store, expect) in [
            (
                r#"{ kind = "ssm", prefix = "home-ops/pg" }"#,
                "must start with '/'",
            ),
            (
                r#"{ kind = "ssm", prefix = "/home-ops/pg/" }"#,
                "not end with one",
            ),
            (r#"{ kind = "ssm", prefix = "/home ops" }"#, "contains ' '"),
            (r#"{ kind = "ssm", prefix = "/aws/pg" }"#, "reserves"),
            (
                r#"{ kind = "secrets-manager", name = "pg#aws" }"#,
                "contains '#'",
            ),
            (r#"{ kind = "1password", vault = " " }"#, "empty vault"),
        ] {
            let (line, _, message) = error_of(&format!(
                "[services.a]\niam_user = \"u\"\nstores = [{store}]\n"
            ));
            assert_eq!(line, 3, "{store}");
            assert!(message.contains(expect), "{store}: {message}");
        }
    }

    #[test]
    fn a_path_1password_title_without_user_is_refused() {
        let (_, _, message) =
            error_of("[paths.X]\nstores = [{ kind = \"1password\", title = \"shared\" }]\n");
        assert!(message.contains("{user}"), "{message}");
    }

    #[test]
    fn invalid_user_name_is_refused() {
        let (line, _, _) = error_of("[services.a]\niam_user = \"has space\"\n");
        assert_eq!(line, 2);
    }

    #[test]
    fn audit_and_notify_sections_parse() {
        let config = Config::parse(
            "[audit]\npath = \"logs/audit.log\"\ncloudwatch_log_group = \"/credrot/audit\"\n\n[notify]\nwebhook = \"https://hooks.example.com/x\"\ntimeout = \"3s\"\n",
            Path::new("/etc/credrot/services.toml"),
        )
        .unwrap();
        let audit = config.audit.unwrap();
        assert_eq!(
            audit.path.as_deref(),
            Some(Path::new("/etc/credrot/logs/audit.log")),
            "relative to the configuration's directory"
        );
        assert_eq!(
            audit.cloudwatch,
            Some(CloudWatchTarget {
                group: "/credrot/audit".to_string(),
                stream: None
            })
        );
        let notify = config.notify.unwrap();
        assert_eq!(notify.webhook.target(), "https://hooks.example.com");
        assert_eq!(notify.timeout, Duration::from_secs(3));
        assert!(parse("").unwrap().audit.is_none());
    }

    #[test]
    fn an_audit_section_without_destination_is_refused() {
        let (line, _, message) = error_of("\n[audit]\n");
        assert_eq!(line, 2);
        assert!(message.contains("no destination"), "{message}");
    }

    #[test]
    fn audit_mistakes_are_reported_where_they_are() {
        let (line, _, message) = error_of("[audit]\npath = \"a.log\"\ncolour = 1\n");
        assert_eq!(line, 3);
        assert!(message.contains("unknown field `colour`"), "{message}");
        let (line, _, message) =
            error_of("[audit]\npath = \"a.log\"\ncloudwatch_log_stream = \"s\"\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("without cloudwatch_log_group"),
            "{message}"
        );
        let (line, _, message) = error_of("[audit]\ncloudwatch_log_group = \"bad name!\"\n");
        assert_eq!(line, 2);
        assert!(
            message.contains("not a valid CloudWatch Logs group"),
            "{message}"
        );
        let (line, _, _) = error_of("[audit]\npath = \"\"\n");
        assert_eq!(line, 2);
    }

    #[test]
    fn a_webhook_must_be_an_http_url() {
        let (line, column, message) = error_of("[notify]\nwebhook = \"ftp://x/y\"\n");
        assert_eq!((line, column), (2, 11));
        assert!(message.contains("http:// or https://"), "{message}");
        let (_, _, message) = error_of("[notify]\n");
        assert!(message.contains("webhook"), "{message}");
        let (line, _, _) = error_of("[notify]\nwebhook = \"https://x/y\"\nretries = 3\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn iam_paths_are_normalized() {
        assert_eq!(normalize_iam_path("PSK"), "/PSK/");
        assert_eq!(normalize_iam_path("/PSK/"), "/PSK/");
        assert_eq!(normalize_iam_path("/a/b"), "/a/b/");
        assert_eq!(normalize_iam_path("/"), "/");
    }
}
