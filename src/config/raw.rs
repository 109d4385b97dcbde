//! services.toml as written: the serde types the file is parsed into, before any check
//! that needs more than one key. Spans are kept so that later checks name the line.

use super::error::Problem;
use super::hooks::RawHook;
use super::store::StoreConfig;
use super::KeySource;
use crate::duration::DurationSetting;
use crate::policy::{Mode, PolicySettings};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// Parse the duration setting `name`, if set; the error names the setting and its range.
pub(super) fn duration(
    name: &str,
    value: &Option<Spanned<String>>,
) -> Result<Option<DurationSetting>, Problem> {
    value
        .as_ref()
        .map(|v| {
            DurationSetting::parse(v.get_ref()).map_err(|message| {
                Problem::new(
                    v.span().start,
                    format!("{name}: {message}"),
                    "durations look like \"30d\", \"12h\" or \"90m\", at most \"3650d\"",
                )
            })
        })
        .transpose()
}

/// Parse a list of region or service names: lower-case letters, digits and `-`, at least
/// one name; the error points at the list.
pub(super) fn names(
    name: &str,
    value: &Option<Spanned<Vec<String>>>,
    example: &str,
) -> Result<Option<Vec<String>>, Problem> {
    let Some(list) = value else {
        return Ok(None);
    };
    let problem = |message: String| {
        Problem::new(
            list.span().start,
            message,
            format!("each entry is {example}"),
        )
    };
    if list.get_ref().is_empty() {
        return Err(problem(format!(
            "{name} is empty, which no use could match; leave it out to allow any"
        )));
    }
    for entry in list.get_ref() {
        let ok = !entry.is_empty()
            && entry
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(problem(format!("{name}: '{entry}' is not a usable name")));
        }
    }
    Ok(Some(list.get_ref().clone()))
}

/// Declares a raw section struct that, besides its own fields, accepts the policy keys that
/// every section shares, so that each section rejects unknown keys without repeating them.
macro_rules! section_with_policy {
    ($(#[$meta:meta])* $name:ident { $($(#[$attr:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $name {
            $($(#[$attr])* pub $field: $ty,)*
            pub max_age: Option<Spanned<String>>,
            pub rotate_after: Option<Spanned<String>>,
            pub mode: Option<Mode>,
            pub quiet_period: Option<Spanned<String>>,
            pub grace: Option<Spanned<String>>,
            pub max_wait: Option<Spanned<String>>,
            pub unused_after: Option<Spanned<String>>,
            pub pickup_within: Option<Spanned<String>>,
            pub expect_regions: Option<Spanned<Vec<String>>>,
            pub expect_services: Option<Spanned<Vec<String>>>,
        }

        impl $name {
            /// The policy keys of this section, each duration parsed and range-checked.
            pub fn policy(&self) -> Result<PolicySettings, Problem> {
                Ok(PolicySettings {
                    max_age: duration("max_age", &self.max_age)?,
                    rotate_after: duration("rotate_after", &self.rotate_after)?,
                    mode: self.mode,
                    quiet_period: duration("quiet_period", &self.quiet_period)?,
                    grace: duration("grace", &self.grace)?,
                    max_wait: duration("max_wait", &self.max_wait)?,
                    unused_after: duration("unused_after", &self.unused_after)?,
                    pickup_within: duration("pickup_within", &self.pickup_within)?,
                    expect_regions: names("expect_regions", &self.expect_regions, "a region such as \"eu-west-1\"")?,
                    expect_services: names("expect_services", &self.expect_services, "a service name as IAM reports it, such as \"s3\" or \"sts\"")?,
                })
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
    terraform_resource: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    region: Option<String>,
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
    #[serde(default)]
    after_rotate: Vec<Spanned<RawHook>>,
    policy: Option<Spanned<String>>,
    accounts: Option<Spanned<Vec<String>>>,
});

section_with_policy!(RawPath {
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
    #[serde(default)]
    after_rotate: Vec<Spanned<RawHook>>,
    policy: Option<Spanned<String>>,
    accounts: Option<Spanned<Vec<String>>>,
});

section_with_policy!(RawPolicy {
    description: Option<String>,
});

/// `[audit]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub path: Option<Spanned<String>>,
    pub cloudwatch_log_group: Option<Spanned<String>>,
    pub cloudwatch_log_stream: Option<Spanned<String>>,
}

/// `[notify]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub webhook: Spanned<String>,
    pub timeout: Option<Spanned<String>>,
}

/// The whole file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, RawService>,
    #[serde(default)]
    pub paths: BTreeMap<Spanned<String>, RawPath>,
    #[serde(default)]
    pub policies: BTreeMap<Spanned<String>, RawPolicy>,
    pub audit: Option<Spanned<RawAudit>>,
    pub notify: Option<RawNotify>,
    pub break_glass: Option<Spanned<super::break_glass::RawBreakGlass>>,
    pub accounts: Option<Spanned<super::accounts::RawAccounts>>,
}
