//! `[policies.NAME]`: named rotation policies that services and paths select with
//! `policy = "NAME"`. A section's own keys win over its named policy, which wins over
//! `[defaults]`.

use super::error::Problem;
use super::raw::RawPolicy;
use super::validate::{is_valid_service_name, SERVICE_NAME_RULE};
use super::Defaults;
use crate::policy::{PolicySettings, RotationPolicy};
use serde::Serialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One `[policies.NAME]` section.
#[derive(Debug, Clone, Serialize)]
pub struct NamedPolicy {
    /// What the policy is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The keys as written, which selecting sections fall back on.
    #[serde(skip)]
    pub settings: PolicySettings,
    /// The policy resolved over `[defaults]` (what a section that sets nothing gets).
    #[serde(flatten)]
    pub policy: RotationPolicy,
}

/// Where policy errors point for help.
pub(super) const POLICY_HINT: &str =
    "see 'Rotation policy' in README.md and docs/guide/policies.md";

/// Validate every `[policies.NAME]`: a usable name, and its keys consistent over
/// `[defaults]` even when no section selects it.
pub(super) fn check_policies(
    raw: BTreeMap<Spanned<String>, RawPolicy>,
    defaults: &Defaults,
) -> Result<BTreeMap<String, NamedPolicy>, Problem> {
    let mut policies = BTreeMap::new();
    for (name, section) in raw {
        let offset = name.span().start;
        let name = name.into_inner();
        if !is_valid_service_name(&name) {
            return Err(Problem::new(
                offset,
                format!("{name:?} is not a usable policy name"),
                SERVICE_NAME_RULE,
            ));
        }
        let settings = section.policy()?;
        let mut policy = settings
            .resolve(&defaults.settings)
            .map_err(|m| Problem::new(offset, format!("[policies.{name}]: {m}"), POLICY_HINT))?;
        policy.name = Some(name.clone());
        policies.insert(
            name,
            NamedPolicy {
                description: section.description,
                settings,
                policy,
            },
        );
    }
    Ok(policies)
}

/// The policy of a section with keys `own` that selects `selector` (if any); `offset` is
/// where combined-key errors are reported.
pub(super) fn resolve_section(
    own: &PolicySettings,
    selector: Option<&Spanned<String>>,
    policies: &BTreeMap<String, NamedPolicy>,
    defaults: &Defaults,
    offset: usize,
) -> Result<RotationPolicy, Problem> {
    let Some(selector) = selector else {
        return own
            .resolve(&defaults.settings)
            .map_err(|m| Problem::new(offset, m, POLICY_HINT));
    };
    let name = selector.get_ref();
    let named = policies.get(name).ok_or_else(|| {
        let known = if policies.is_empty() {
            "none is defined".to_string()
        } else {
            format!(
                "known: {}",
                policies.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        Problem::new(
            selector.span().start,
            format!("policy '{name}' is not defined ({known})"),
            "add a [policies.NAME] section or select one of the known policies",
        )
    })?;
    let mut policy = own
        .or(&named.settings)
        .resolve(&defaults.settings)
        .map_err(|m| Problem::new(offset, format!("{m} (with policy '{name}')"), POLICY_HINT))?;
    policy.name = Some(name.clone());
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("services.toml"))
    }

    const CONFIG: &str = r#"
[defaults]
max_age = "60d"
grace = "3d"

[policies.api-keys]
max_age = "30d"
unused_after = "20d"
expect_regions = ["eu-west-1"]

[services.web]
iam_user = "web"
policy = "api-keys"
unused_after = "10d"

[services.plain]
iam_user = "plain"

[paths.Batch]
policy = "api-keys"
stores = [{ kind = "file", path = "{user}.json" }]
"#;

    #[test]
    fn a_section_wins_over_its_policy_which_wins_over_the_defaults() {
        let config = parse(CONFIG).unwrap();
        let web = &config.service("web").unwrap().policy;
        assert_eq!(web.name.as_deref(), Some("api-keys"));
        assert_eq!(web.max_age.as_ref().unwrap().text, "30d");
        assert_eq!(web.unused_after.text, "10d");
        assert_eq!(web.grace.text, "3d");
        assert_eq!(web.expect_regions, vec!["eu-west-1".to_string()]);
        let plain = &config.service("plain").unwrap().policy;
        assert_eq!(plain.name, None);
        assert_eq!(plain.max_age.as_ref().unwrap().text, "60d");
        let batch = &config.path_policy("Batch").unwrap().policy;
        assert_eq!(batch.name.as_deref(), Some("api-keys"));
        assert_eq!(batch.unused_after.text, "20d");
        let json = serde_json::to_value(config.service("web").unwrap()).unwrap();
        assert_eq!(json["policy"], "api-keys");
    }

    #[test]
    fn an_unknown_policy_names_the_line_and_the_known_policies() {
        let text = CONFIG.replace(
            "policy = \"api-keys\"\nunused",
            "policy = \"api-key\"\nunused",
        );
        match parse(&text).unwrap_err() {
            ConfigError::Invalid {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((line, column), (13, 10), "{message}");
                assert!(
                    message.contains("policy 'api-key' is not defined (known: api-keys)"),
                    "{message}"
                );
            }
            other => panic!("{other}"),
        }
        let none = "[services.a]\niam_user = \"a\"\npolicy = \"x\"\n";
        let err = parse(none).unwrap_err().to_string();
        assert!(
            err.contains("services.toml:3:10") && err.contains("none is defined"),
            "{err}"
        );
    }

    #[test]
    fn an_inconsistent_policy_is_refused_even_when_unused() {
        let text = "[policies.odd]\nmax_age = \"10d\"\nrotate_after = \"20d\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("services.toml:1:") && err.contains("[policies.odd]"),
            "{err}"
        );
        let text = "[policies.short]\nmax_age = \"10d\"\n[services.a]\niam_user = \"a\"\npolicy = \"short\"\nrotate_after = \"20d\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("with policy 'short'"), "{err}");
        let text = "[policies.bad]\nexpect_regions = []\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("expect_regions is empty"), "{err}");
        let text = "[policies.bad]\nexpect_services = [\"S3 \"]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("'S3 ' is not a usable name"), "{err}");
        let text = "[policies.\"a b\"]\nmax_age = \"1d\"\n";
        assert!(parse(text)
            .unwrap_err()
            .to_string()
            .contains("not a usable policy name"));
    }

    #[test]
    fn the_sample_services_toml_carries_the_credential_classes() {
        let text = include_str!("../../services.toml");
        let config = parse(text).unwrap();
        let ages: Vec<(&str, &str)> = config
            .policies
            .iter()
            .map(|(n, p)| (n.as_str(), p.policy.max_age.as_ref().unwrap().text.as_str()))
            .collect();
        assert_eq!(
            ages,
            vec![
                ("api-keys", "30d"),
                ("backups", "90d"),
                ("service-accounts", "180d")
            ]
        );
        let pg = &config.service("postgresql").unwrap().policy;
        assert_eq!(pg.name.as_deref(), Some("backups"));
        assert_eq!(pg.max_age.as_ref().unwrap().text, "30d");
        let psk = &config.path_policy("PSKServiceAccounts").unwrap().policy;
        assert_eq!(psk.name.as_deref(), Some("service-accounts"));
    }
}
