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
    #[serde(default)]
    tags: Vec<String>,
    region: Option<String>,
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
    #[serde(default)]
    after_rotate: Vec<Spanned<RawHook>>,
});

section_with_policy!(RawPath {
    #[serde(default)]
    stores: Vec<Spanned<StoreConfig>>,
    #[serde(default)]
    after_rotate: Vec<Spanned<RawHook>>,
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
    pub audit: Option<Spanned<RawAudit>>,
    pub notify: Option<RawNotify>,
}
