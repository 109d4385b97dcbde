//! `services.toml`: what credrot rotates and where each new key goes.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file, the line and
//! the column, and says what to write instead. Nothing in here talks to AWS, so a broken
//! configuration is always reported before any API call.
//!
//! [`raw`] holds the file as written, [`store`] the store specifications, [`validate`] the
//! checks of single values, [`conflicts`] the checks across sections, and [`error`] the
//! errors; this module turns the raw file into a [`Config`].

mod accounts;
mod break_glass;
mod conflicts;
mod error;
mod hooks;
mod kubernetes;
mod policies;
mod raw;
mod store;
#[cfg(test)]
mod tests;
mod validate;
mod vault;

pub use crate::duration::DurationSetting;
pub use accounts::{is_account_id, AccountsConfig, OrganizationFilter};
pub use break_glass::{Approver, BreakGlassConfig};
pub use error::ConfigError;
pub use hooks::{CommandHook, Hook, RestartHook, SignalHook, WorkloadKind, DEFAULT_HOOK_TIMEOUT};
pub use kubernetes::{is_dns_subdomain, store_timeout, KubeConnection, KubernetesConfig};
pub use policies::NamedPolicy;
pub use store::{
    default_title, AzureKeyVaultConfig, FileFormat, FileStoreConfig, GcpSecretManagerConfig,
    GithubConfig, GithubVisibility, OldVersions, OnePasswordConfig, SecretsManagerConfig,
    SsmConfig, StoreConfig,
};
pub use validate::{
    github_name_problem, is_valid_iam_path, is_valid_iam_user_name, is_valid_service_name,
    normalize_iam_path, parse_iam_path, SERVICE_NAME_RULE,
};
pub use vault::{AppRoleConfig, VaultConfig};

use crate::notify::Webhook;
use crate::policy::{PolicySettings, RotationPolicy};
use conflicts::Claims;
use error::{Locator, Problem};
use raw::{RawConfig, RawNotify, RawPath, RawService};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Settings that apply where a service or path does not say otherwise.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Defaults {
    /// AWS region used when neither `--region` nor the service names one.
    pub region: Option<String>,
    /// The policy keys of `[defaults]` as written, which sections fall back on.
    #[serde(skip)]
    pub settings: PolicySettings,
    /// `[defaults]` resolved on its own: the policy of users under an IAM path that has
    /// no `[paths]` section. Checked at load time, so an inconsistent `[defaults]` is a
    /// configuration error even when no section uses it.
    #[serde(skip)]
    pub policy: RotationPolicy,
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
    /// The `aws_iam_access_key` resource's address, which `update --terraform-apply`
    /// makes Terraform create anew (`terraform_resource`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
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
    /// What runs once a new key is stored, verified and promoted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_rotate: Vec<Hook>,
    /// The accounts of `[accounts]` it runs in; empty: every one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
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
    /// What runs once a user's new key is stored, verified and promoted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_rotate: Vec<Hook>,
    /// The accounts of `[accounts]` it runs in; empty: every one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
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
    /// `[policies.NAME]`, by name.
    pub policies: BTreeMap<String, NamedPolicy>,
    /// `[audit]`, when present.
    pub audit: Option<AuditConfig>,
    /// `[notify]`, when present.
    pub notify: Option<NotifyConfig>,
    /// `[break_glass]`, when present.
    pub break_glass: Option<BreakGlassConfig>,
    /// `[accounts]`, when present: runs then go to these accounts.
    pub accounts: Option<AccountsConfig>,
}

/// The longest `[notify] timeout`: a notice must not hold up the end of a run for long.
const MAX_NOTIFY_TIMEOUT: Duration = Duration::from_secs(300);

/// Policy errors that combine keys are reported at the section's first line: the keys may
/// come from `[defaults]` or the section itself.
fn policy_problem(offset: usize, message: String) -> Problem {
    Problem::new(
        offset,
        message,
        "see 'Rotation policy and schedule' in docs/guide/rotation-and-staged-retirement.md",
    )
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
        let locator = Locator { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| locator.parse_error(&e))?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Config::build(raw, path, base_dir, &locator).map_err(|p| locator.error(p))
    }

    fn build(
        raw: RawConfig,
        path: &Path,
        base_dir: PathBuf,
        locator: &Locator<'_>,
    ) -> Result<Config, Problem> {
        let defaults = match raw.defaults {
            Some(section) => {
                let offset = section.span().start;
                let section = section.into_inner();
                let settings = section.policy()?;
                let policy = settings
                    .resolve(&PolicySettings::default())
                    .map_err(|m| policy_problem(offset, format!("[defaults]: {m}")))?;
                Defaults {
                    region: section.region,
                    settings,
                    policy,
                }
            }
            None => Defaults::default(),
        };
        let policies = policies::check_policies(raw.policies, &defaults)?;
        let accounts = raw.accounts.map(accounts::check).transpose()?;
        let sections = Sections {
            defaults: &defaults,
            named: &policies,
            accounts: accounts.as_ref(),
            base_dir: &base_dir,
        };
        let mut claims = Claims::new(locator);
        let mut services = BTreeMap::new();
        for (name, svc) in raw.services {
            let service = check_service(&name, svc, &sections, &mut claims)?;
            services.insert(service.name.clone(), service);
        }
        let mut paths = BTreeMap::new();
        for (key, section) in raw.paths {
            let policy = check_path(&key, section, &sections, &claims)?;
            if paths.contains_key(&policy.path) {
                return Err(Problem::new(
                    key.span().start,
                    format!("IAM path {} is configured twice", policy.path),
                    "keep one [paths.NAME] section per IAM path",
                ));
            }
            paths.insert(policy.path.clone(), policy);
        }
        let audit = raw
            .audit
            .map(|a| validate::check_audit(a, &base_dir))
            .transpose()?;
        let notify = raw.notify.map(check_notify).transpose()?;
        let break_glass = raw.break_glass.map(break_glass::check).transpose()?;
        Ok(Config {
            file: path.to_path_buf(),
            base_dir,
            defaults,
            services,
            paths,
            policies,
            audit,
            notify,
            break_glass,
            accounts,
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

/// What every section is checked against.
struct Sections<'a> {
    defaults: &'a Defaults,
    named: &'a BTreeMap<String, NamedPolicy>,
    accounts: Option<&'a AccountsConfig>,
    base_dir: &'a Path,
}

impl Sections<'_> {
    /// The placeholders a store template may use: `base`, and the account's with
    /// `[accounts]`.
    fn placeholders(&self, base: &[&'static str]) -> Vec<&'static str> {
        let mut allowed = base.to_vec();
        if self.accounts.is_some() {
            allowed.extend(["account", "account_name"]);
        }
        allowed
    }
}

/// Validate `[services.NAME]`: its name, user, policy, source and stores, and that neither
/// its user nor any of its store locations is another service's.
fn check_service(
    name: &Spanned<String>,
    svc: RawService,
    sections: &Sections<'_>,
    claims: &mut Claims<'_>,
) -> Result<Service, Problem> {
    let (defaults, named, base_dir) = (sections.defaults, sections.named, sections.base_dir);
    let name_span = name.span();
    let name = name.get_ref().clone();
    if !is_valid_service_name(&name) {
        return Err(Problem::new(
            name_span.start,
            format!("{:?} is not a usable service name", name),
            SERVICE_NAME_RULE,
        ));
    }
    let user_offset = svc.iam_user.span().start;
    let policy = policies::resolve_section(
        &svc.policy()?,
        svc.policy.as_ref(),
        named,
        defaults,
        user_offset,
    )?;
    let iam_user = svc.iam_user.get_ref().clone();
    if !is_valid_iam_user_name(&iam_user) {
        return Err(Problem::new(
            user_offset,
            format!("iam_user '{iam_user}' of service '{name}' is not a valid IAM user name"),
            "use 1 to 64 letters, digits or any of + = , . @ _ -",
        ));
    }
    claims.user(&iam_user, &name, user_offset)?;
    let owner = format!("[services.{name}]");
    let scope = accounts::check_scope(&owner, &svc.accounts, sections.accounts)?;
    let resource = match svc.terraform_resource {
        Some(address) if svc.source != KeySource::Terraform => {
            return Err(Problem::new(
                address.span().start,
                format!("service '{name}' sets terraform_resource without source = \"terraform\""),
                "add source = \"terraform\" (with terraform_dir and output_prefix), or remove terraform_resource",
            ))
        }
        Some(address) => {
            let offset = address.span().start;
            let address = address.into_inner();
            if !validate::is_access_key_address(&address) {
                return Err(Problem::new(
                    offset,
                    format!("terraform_resource {address:?} of service '{name}' is not the address of an aws_iam_access_key resource"),
                    "use the address `terraform state list` shows, e.g. \"aws_iam_access_key.redis\" or \"module.redis.aws_iam_access_key.this[0]\"",
                ));
            }
            Some(address)
        }
        None => None,
    };
    let terraform = match (svc.source, svc.terraform_dir, svc.output_prefix) {
        (KeySource::Terraform, Some(dir), Some(prefix)) if !dir.is_empty() && !prefix.is_empty() => {
            Some(TerraformSource {
                dir: base_dir.join(dir),
                output_prefix: prefix,
                resource,
            })
        }
        (KeySource::Terraform, _, _) => {
            return Err(Problem::new(
                user_offset,
                format!("service '{name}' has source = \"terraform\" but no terraform_dir or output_prefix"),
                "set terraform_dir (where `terraform output` runs) and output_prefix (outputs <prefix>_access_key_id and <prefix>_secret_access_key)",
            ))
        }
        (KeySource::Iam, None, None) => None,
        (KeySource::Iam, _, _) => {
            return Err(Problem::new(
                user_offset,
                format!("service '{name}' sets terraform_dir or output_prefix without source = \"terraform\""),
                "add source = \"terraform\", or remove those keys",
            ))
        }
    };
    if let (Some(_), Some(accounts)) = (&terraform, sections.accounts) {
        if accounts.spans_several(&scope) {
            return Err(Problem::new(
                user_offset,
                format!("service '{name}' takes its key from Terraform, which holds one key, but would run in several accounts of [accounts]"),
                "scope it to the account of its Terraform state: accounts = [\"ID\"]",
            ));
        }
    }
    let region = svc.region.or_else(|| defaults.region.clone());
    let after_rotate = hooks::check_hooks(svc.after_rotate, base_dir)?;
    let stores = check_service_stores(
        svc.stores,
        &name,
        &iam_user,
        region.as_deref(),
        (sections, &scope),
        claims,
    )?;
    Ok(Service {
        name,
        description: svc.description,
        iam_user,
        tags: svc.tags,
        policy,
        region,
        stores,
        terraform,
        after_rotate,
        accounts: scope,
    })
}

/// Validate a service's stores. Its templates are fully known at load time (`{user}` and
/// `{service}`), so what they expand to is checked, and claimed against every other store.
fn check_service_stores(
    raw: Vec<Spanned<StoreConfig>>,
    name: &str,
    iam_user: &str,
    region: Option<&str>,
    (sections, scope): (&Sections<'_>, &[String]),
    claims: &mut Claims<'_>,
) -> Result<Vec<StoreConfig>, Problem> {
    let base_dir = sections.base_dir;
    let allowed = sections.placeholders(&["user", "service"]);
    let values = service_values(iam_user, name);
    let expand = |template: &str| validate::expand(template, &values);
    let owner = format!("service '{name}'");
    let mut stores = Vec::with_capacity(raw.len());
    for store in raw {
        let offset = store.span().start;
        let store = store.into_inner();
        validate::check_templates(&store, offset, &allowed, false)?;
        accounts::check_store_scope(&owner, &store, offset, sections.accounts, scope)?;
        if let StoreConfig::File(c) = &store {
            validate::check_path_stays(&c.path, &expand).map_err(|m| {
                Problem::new(
                    offset,
                    m,
                    "put the placeholder inside a file name, e.g. \"secrets/{user}.json\"",
                )
            })?;
        }
        validate::check_store_names(&store.expanded(&expand))
            .map_err(|(message, hint)| Problem::new(offset, message, hint))?;
        let location = store.location(&expand, true, base_dir, region);
        claims.location(location, &owner, &store.summary(), offset)?;
        stores.push(store);
    }
    Ok(stores)
}

/// The values of a service's placeholders.
fn service_values<'a>(user: &'a str, service: &'a str) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| match name {
        "user" => Some(user.to_string()),
        "service" => Some(service.to_string()),
        _ => None,
    }
}

/// Validate `[paths.NAME]`: its IAM path, policy and store templates, and that no store
/// location is used twice. Path users are only known at run time, so path stores are
/// compared by their templates; IAM user names are unique, so two paths with the same
/// `{user}` template never meet. A path store that lands on a service's store is the same
/// store when the service's user is under the path (a run writes it once), and another
/// user's store otherwise, which only a run can tell: `update` and `rotate` check it.
fn check_path(
    key: &Spanned<String>,
    section: RawPath,
    sections: &Sections<'_>,
    claims: &Claims<'_>,
) -> Result<PathPolicy, Problem> {
    let (defaults, named, base_dir) = (sections.defaults, sections.named, sections.base_dir);
    let offset = key.span().start;
    let path = parse_iam_path(key.get_ref()).map_err(|m| {
        Problem::new(
            offset,
            m,
            "use printable ASCII without spaces, e.g. [paths.PSKServiceAccounts]",
        )
    })?;
    let policy = policies::resolve_section(
        &section.policy()?,
        section.policy.as_ref(),
        named,
        defaults,
        offset,
    )?;
    let owner = format!("[paths.{}]", key.get_ref());
    let scope = accounts::check_scope(&owner, &section.accounts, sections.accounts)?;
    let allowed = sections.placeholders(&["user"]);
    let region = defaults.region.as_deref();
    let mut templates = Claims::new(claims.locator());
    let mut stores = Vec::with_capacity(section.stores.len());
    for store in section.stores {
        let store_offset = store.span().start;
        let store = store.into_inner();
        validate::check_templates(&store, store_offset, &allowed, true)?;
        accounts::check_store_scope(&owner, &store, store_offset, sections.accounts, &scope)?;
        validate::check_store_names(&store)
            .map_err(|(message, hint)| Problem::new(store_offset, message, hint))?;
        let summary = store.summary();
        let literal = store.location(&|t: &str| t.to_string(), false, base_dir, region);
        templates.location(literal, &owner, &summary, store_offset)?;
        stores.push(store);
    }
    let after_rotate = hooks::check_hooks(section.after_rotate, base_dir)?;
    Ok(PathPolicy {
        path,
        stores,
        policy,
        after_rotate,
        accounts: scope,
    })
}

/// Validate `[notify]`: an http(s) webhook and a timeout of at most five minutes.
fn check_notify(raw: RawNotify) -> Result<NotifyConfig, Problem> {
    let span = raw.webhook.span();
    let webhook = Webhook::parse(raw.webhook.get_ref()).map_err(|message| {
        Problem::new(span.start, message, "write webhook = \"https://host/path\"")
    })?;
    let timeout =
        match raw::duration("timeout", &raw.timeout)? {
            Some(t) if t.value > MAX_NOTIFY_TIMEOUT => return Err(Problem::new(
                raw.timeout.map_or(span.start, |t| t.span().start),
                format!(
                    "timeout: duration '{}' is out of range: allowed is at most 5m",
                    t.text
                ),
                "a notice that takes longer holds up the end of every run; e.g. timeout = \"10s\"",
            )),
            Some(t) => t.value,
            None => crate::notify::DEFAULT_TIMEOUT,
        };
    Ok(NotifyConfig { webhook, timeout })
}
