//! `[accounts]`: the AWS accounts one run covers, and the role credrot assumes in each.
//! See `crate::accounts` and docs/guide/accounts.md.

use super::error::Problem;
use crate::duration::DurationRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// `[accounts]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccounts {
    pub ids: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    #[serde(default)]
    pub organization: bool,
    pub include: Option<Spanned<Vec<String>>>,
    pub exclude: Option<Spanned<Vec<String>>>,
    pub include_ous: Option<Spanned<Vec<String>>>,
    pub exclude_ous: Option<Spanned<Vec<String>>>,
    pub include_tags: Option<Spanned<BTreeMap<String, String>>>,
    pub exclude_tags: Option<Spanned<BTreeMap<String, String>>>,
    pub role_name: Option<Spanned<String>>,
    pub external_id: Option<Spanned<String>>,
    pub session_duration: Option<Spanned<String>>,
    pub region: Option<String>,
    pub concurrency: Option<Spanned<u16>>,
    pub max_in_flight: Option<Spanned<u16>>,
    pub source_identity: Option<bool>,
}

/// Which accounts of the Organization are taken, beyond being ACTIVE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrganizationFilter {
    /// Only these account ids (empty: all).
    pub include: Vec<String>,
    /// Never these account ids.
    pub exclude: Vec<String>,
    /// Only accounts in these OUs or their child OUs (empty: all).
    pub include_ous: Vec<String>,
    /// Never accounts in these OUs or their child OUs.
    pub exclude_ous: Vec<String>,
    /// Only accounts that carry all of these tags.
    pub include_tags: BTreeMap<String, String>,
    /// Never accounts that carry any of these tags.
    pub exclude_tags: BTreeMap<String, String>,
}

/// A validated `[accounts]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountsConfig {
    /// Accounts named one by one.
    pub ids: Vec<String>,
    /// Names for `{account_name}` of accounts named one by one (else the id).
    pub names: BTreeMap<String, String>,
    /// Also every ACTIVE account of the caller's Organization that passes `filter`.
    pub organization: Option<OrganizationFilter>,
    /// The role assumed in each account: `arn:PARTITION:iam::ACCOUNT:role/ROLE_NAME`.
    pub role_name: String,
    /// `ExternalId` of each AssumeRole, when the roles' trust policies require one.
    #[serde(skip_serializing)]
    pub external_id: Option<String>,
    /// How long each assumed session lasts (the SDK renews it when it runs out).
    pub session_duration: Duration,
    /// The region of each account's clients (else the run's).
    pub region: Option<String>,
    /// Accounts rotated at once.
    pub concurrency: usize,
    /// Users in flight across all accounts at once: each has at most one IAM request
    /// outstanding, so this caps the requests in flight.
    pub max_in_flight: usize,
    /// Whether AssumeRole carries `SourceIdentity` (the caller's name).
    pub source_identity: bool,
}

impl AccountsConfig {
    /// Whether a section scoped to `scope` (empty: every account) can run in more than one
    /// account, so that a store of it outside AWS must tell the accounts apart.
    pub fn spans_several(&self, scope: &[String]) -> bool {
        match scope.len() {
            0 => self.organization.is_some() || self.ids.len() > 1,
            n => n > 1,
        }
    }
}

/// `session_duration`: what AssumeRole allows at all (a role may allow less).
pub const SESSION_RANGE: DurationRange = DurationRange::secs(15 * 60, 12 * 3600);

/// Whether `text` is an AWS account id: twelve digits.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

fn ids(name: &str, list: &Spanned<Vec<String>>) -> Result<Vec<String>, Problem> {
    for id in list.get_ref() {
        if !is_account_id(id) {
            return Err(Problem::new(
                list.span().start,
                format!("[accounts] {name}: '{id}' is not an AWS account id"),
                "an account id is 12 digits, written as a string: \"222222222222\"",
            ));
        }
    }
    Ok(list.get_ref().clone())
}

fn opt_ids(name: &str, list: &Option<Spanned<Vec<String>>>) -> Result<Vec<String>, Problem> {
    list.as_ref().map_or(Ok(Vec::new()), |l| ids(name, l))
}

fn ous(name: &str, list: &Option<Spanned<Vec<String>>>) -> Result<Vec<String>, Problem> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    for ou in list.get_ref() {
        let ok = ou.starts_with("ou-") || ou.starts_with("r-");
        if !ok || ou.len() < 4 || !ou.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Problem::new(
                list.span().start,
                format!("[accounts] {name}: '{ou}' is not an organizational unit or root id"),
                "write OU ids as Organizations shows them: \"ou-ab12-34cd56ef\" (or a root, \"r-ab12\")",
            ));
        }
    }
    Ok(list.get_ref().clone())
}

fn bounded(
    name: &str,
    value: &Option<Spanned<u16>>,
    max: u16,
    default: usize,
    offset: usize,
) -> Result<usize, Problem> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(v.get_ref()) => Ok(usize::from(*v.get_ref())),
        Some(v) => Err(Problem::new(
            v.span().start.max(offset),
            format!(
                "[accounts] {name} = {} is out of range: allowed are 1 to {max}",
                v.get_ref()
            ),
            format!("e.g. {name} = {default}"),
        )),
    }
}

/// Validate `[accounts]`.
pub(super) fn check(raw: Spanned<RawAccounts>) -> Result<AccountsConfig, Problem> {
    let offset = raw.span().start;
    let raw = raw.into_inner();
    let listed = opt_ids("ids", &raw.ids)?;
    let filter = OrganizationFilter {
        include: opt_ids("include", &raw.include)?,
        exclude: opt_ids("exclude", &raw.exclude)?,
        include_ous: ous("include_ous", &raw.include_ous)?,
        exclude_ous: ous("exclude_ous", &raw.exclude_ous)?,
        include_tags: raw
            .include_tags
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default(),
        exclude_tags: raw
            .exclude_tags
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default(),
    };
    if !raw.organization && filter != OrganizationFilter::default() {
        return Err(Problem::new(
            offset,
            "[accounts] include/exclude filters choose among the Organization's accounts, but organization is not true".to_string(),
            "set organization = true, or list the accounts in ids and leave the filters out",
        ));
    }
    if listed.is_empty() && !raw.organization {
        return Err(Problem::new(
            offset,
            "[accounts] names no account: ids is empty and organization is not true".to_string(),
            "list the account ids (ids = [\"222222222222\"]) or set organization = true",
        ));
    }
    for id in raw.names.keys() {
        if !listed.contains(id) {
            return Err(Problem::new(
                offset,
                format!("[accounts] names gives a name to '{id}', which is not in ids"),
                "name only accounts listed in ids; Organization accounts are named by Organizations",
            ));
        }
    }
    let role_name = match &raw.role_name {
        None => {
            return Err(Problem::new(
                offset,
                "[accounts] has no role_name: the role credrot assumes in each account".to_string(),
                "create a role with the permissions of docs/reference/iam-permissions.md in every account and name it, e.g. role_name = \"credrot-rotation\" (not OrganizationAccountAccessRole, which can do anything)",
            ))
        }
        Some(name) => {
            let text = name.get_ref();
            let ok = !text.is_empty()
                && text.len() <= 64
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
            if !ok {
                return Err(Problem::new(
                    name.span().start,
                    format!("[accounts] role_name '{text}' is not an IAM role name"),
                    "use 1 to 64 letters, digits or any of + = , . @ _ - (no path, no ARN)",
                ));
            }
            if text == "OrganizationAccountAccessRole" {
                tracing::warn!("[accounts] role_name = \"OrganizationAccountAccessRole\" can do anything in every account; a role with only credrot's permissions (docs/reference/iam-permissions.md) limits what a leaked session could do");
            }
            text.clone()
        }
    };
    let session_duration = match &raw.session_duration {
        None => Duration::from_secs(3600),
        Some(v) => SESSION_RANGE.parse(v.get_ref()).map_err(|m| {
            Problem::new(
                v.span().start,
                format!("[accounts] session_duration: {m}"),
                "the SDK renews a session that runs out, so the default 1h suits long runs too",
            )
        })?,
    };
    if let Some(id) = &raw.external_id {
        let len = id.get_ref().len();
        if !(2..=1224).contains(&len) {
            return Err(Problem::new(
                id.span().start,
                "[accounts] external_id must be 2 to 1224 characters".to_string(),
                "use the ExternalId that the roles' trust policies require",
            ));
        }
    }
    Ok(AccountsConfig {
        ids: listed,
        names: raw.names,
        organization: raw.organization.then_some(filter),
        role_name,
        external_id: raw.external_id.map(Spanned::into_inner),
        session_duration,
        region: raw.region,
        concurrency: bounded("concurrency", &raw.concurrency, 64, 4, offset)?,
        max_in_flight: bounded("max_in_flight", &raw.max_in_flight, 1024, 64, offset)?,
        source_identity: raw.source_identity.unwrap_or(true),
    })
}

/// Check a section's `accounts = [...]` scope against `[accounts]`.
pub(super) fn check_scope(
    owner: &str,
    scope: &Option<Spanned<Vec<String>>>,
    accounts: Option<&AccountsConfig>,
) -> Result<Vec<String>, Problem> {
    let Some(list) = scope else {
        return Ok(Vec::new());
    };
    let offset = list.span().start;
    let Some(accounts) = accounts else {
        return Err(Problem::new(
            offset,
            format!("{owner} names accounts, but services.toml has no [accounts] section"),
            "add [accounts] with role_name and ids (or organization = true), or remove accounts here",
        ));
    };
    if list.get_ref().is_empty() {
        return Err(Problem::new(
            offset,
            format!("{owner}: accounts is empty, so it would run nowhere"),
            "list the account ids it runs in, or leave accounts out to run in every account",
        ));
    }
    let scope = ids("accounts", list)?;
    if accounts.organization.is_none() {
        if let Some(id) = scope.iter().find(|id| !accounts.ids.contains(id)) {
            return Err(Problem::new(
                offset,
                format!("{owner}: account '{id}' is not in [accounts] ids"),
                "add it to [accounts] ids, or remove it here",
            ));
        }
    }
    Ok(scope)
}

/// A store outside AWS of a section that runs in several accounts must tell the accounts
/// apart: the same user name in two accounts would otherwise overwrite the other's key.
/// SSM and Secrets Manager stores are written in each account with its own clients.
pub(super) fn check_store_scope(
    owner: &str,
    store: &super::StoreConfig,
    offset: usize,
    accounts: Option<&AccountsConfig>,
    scope: &[String],
) -> Result<(), Problem> {
    let Some(accounts) = accounts else {
        return Ok(());
    };
    if !accounts.spans_several(scope) || matches!(store.kind(), "ssm" | "secrets-manager") {
        return Ok(());
    }
    let templates = store.templates();
    let tells_apart = templates
        .iter()
        .any(|(_, t)| t.contains("{account}") || t.contains("{account_name}"));
    if tells_apart {
        return Ok(());
    }
    let (field, example) = match templates.first() {
        Some((field, template)) => (*field, format!("{field} = \"{{account}}/{template}\"")),
        None => (
            "title",
            "title = \"AWS Access Key - {account} - {user}\"".to_string(),
        ),
    };
    Err(Problem::new(
        offset,
        format!(
            "{} store of {owner} runs in several accounts of [accounts], but its {field} has no {{account}}: the same IAM user name in two accounts would overwrite the other's key",
            store.kind()
        ),
        format!("put {{account}} (or {{account_name}}) in it, e.g. {example}; or scope the section with accounts = [\"ID\"]"),
    ))
}
