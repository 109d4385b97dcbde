//! `kind = "kubernetes"` and the cluster connection it shares with the `kubernetes_restart`
//! hook: the settings as written in services.toml, and their checks.

use serde::{Deserialize, Serialize};

/// Which cluster to talk to: a kubeconfig file and context, else `$KUBECONFIG`, else the
/// in-cluster service account, else `~/.kube/config` (see docs/stores/kubernetes.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct KubeConnection {
    /// The kubeconfig file; relative paths are relative to services.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context; default its `current-context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// `kind = "kubernetes"`: one Secret holding the key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name (template: `{user}`, `{service}`).
    pub name: String,
    /// The data key of the access key id.
    #[serde(default = "default_id_key")]
    pub id_key: String,
    /// The data key of the secret access key.
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
    /// A data key that also holds the key as an AWS shared-credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_key: Option<String>,
    /// The profile of that file; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_profile: Option<String>,
    /// How long one API call may take; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The kubeconfig file; relative paths are relative to services.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context; default its `current-context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

fn default_id_key() -> String {
    "AWS_ACCESS_KEY_ID".to_string()
}

fn default_secret_key() -> String {
    "AWS_SECRET_ACCESS_KEY".to_string()
}

/// Whether `name` is a DNS-1123 subdomain, as Secret names must be (lower-case letters,
/// digits, `-` and `.`, at most 253, alphanumeric at both ends).
pub fn is_dns_subdomain(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether `name` is a DNS-1123 label, as namespaces must be (at most 63, no `.`).
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

/// Whether `key` can be a key of a Secret's `data` (letters, digits, `-`, `_`, `.`).
pub fn is_data_key(key: &str) -> bool {
    (1..=253).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && key != "."
        && key != ".."
}

impl KubernetesConfig {
    /// The cluster this store talks to (the kubeconfig as written).
    pub fn connection(&self) -> KubeConnection {
        KubeConnection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// What is wrong with these settings (templates already expanded in `name`, or left as
    /// written, in which case only the literal part is checked), with what to do.
    pub(super) fn check(&self, name_literal: &str) -> Result<(), (String, String)> {
        if !is_dns_label(&self.namespace) {
            return Err((
                format!("kubernetes namespace '{}' is not a valid namespace name", self.namespace),
                "use at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit".into(),
            ));
        }
        if !name_literal
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            || name_literal.len() > 253
            || (!self.name.contains('{') && !is_dns_subdomain(&self.name))
        {
            return Err((
                format!("kubernetes Secret name '{}' is not a valid Secret name", self.name),
                "use lower-case letters, digits, '-' and '.' (a DNS subdomain), e.g. \"aws-{service}\"".into(),
            ));
        }
        let mut keys = vec![("id_key", &self.id_key), ("secret_key", &self.secret_key)];
        if let Some(k) = &self.credentials_key {
            keys.push(("credentials_key", k));
        }
        for (field, key) in &keys {
            if !is_data_key(key) {
                return Err((
                    format!("kubernetes {field} '{key}' is not a valid Secret data key"),
                    "use letters, digits, '-', '_' and '.'".into(),
                ));
            }
        }
        for (i, (a, ka)) in keys.iter().enumerate() {
            if let Some((b, _)) = keys[i + 1..].iter().find(|(_, kb)| kb == ka) {
                return Err((
                    format!("kubernetes {a} and {b} are both '{ka}'"),
                    "give each part of the key its own data key".into(),
                ));
            }
        }
        if let Some(profile) = &self.credentials_profile {
            if self.credentials_key.is_none() {
                return Err((
                    "kubernetes credentials_profile is set without credentials_key".into(),
                    "add credentials_key = \"credentials\" or remove credentials_profile".into(),
                ));
            }
            if profile.is_empty() || profile.contains([']', '[', '\n', '\r']) {
                return Err((
                    format!("kubernetes credentials_profile '{profile}' cannot be a profile name"),
                    "use a plain name such as \"default\"".into(),
                ));
            }
        }
        check_connection(&self.connection())?;
        check_timeout(self.timeout.as_deref())
    }
}

/// A kubeconfig or context that is set must not be empty.
pub(super) fn check_connection(c: &KubeConnection) -> Result<(), (String, String)> {
    for (field, value) in [("kubeconfig", &c.kubeconfig), ("context", &c.context)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err((
                format!("kubernetes {field} is empty"),
                format!("set {field} or leave it out"),
            ));
        }
    }
    Ok(())
}

/// The longest `timeout` of a REST store: one call must not hold a rotation for long.
pub const MAX_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A store `timeout` parses and is at most five minutes.
pub(super) fn check_timeout(timeout: Option<&str>) -> Result<(), (String, String)> {
    let Some(text) = timeout else { return Ok(()) };
    match crate::duration::DurationSetting::parse(text) {
        Ok(d) if d.value > MAX_STORE_TIMEOUT || d.value.is_zero() => Err((
            format!("timeout '{text}' is out of range: allowed is 1s to 5m"),
            "e.g. timeout = \"30s\"".into(),
        )),
        Ok(_) => Ok(()),
        Err(message) => Err((
            format!("timeout: {message}"),
            "durations look like \"30s\" or \"2m\"".into(),
        )),
    }
}

/// The timeout of a REST store as configured (checked at load time), default 30s.
pub fn store_timeout(timeout: Option<&str>) -> std::time::Duration {
    timeout
        .and_then(|t| crate::duration::DurationSetting::parse(t).ok())
        .map(|d| d.value)
        .unwrap_or(std::time::Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_follow_the_api_rules() {
        assert!(is_dns_subdomain("aws-pg.backup"));
        assert!(!is_dns_subdomain("AWS"));
        assert!(!is_dns_subdomain("-a"));
        assert!(is_dns_label("team-a"));
        assert!(!is_dns_label("a.b"));
        assert!(is_data_key("AWS_ACCESS_KEY_ID"));
        assert!(is_data_key("credentials"));
        assert!(!is_data_key("a/b"));
    }
}
