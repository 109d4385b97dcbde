//! `kind = "vault"`: a HashiCorp Vault KV version 2 secret, as written in services.toml.

use super::kubernetes::check_timeout;
use serde::{Deserialize, Serialize};

/// `kind = "vault"`: one KV v2 secret holding the key, written with check-and-set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The server, e.g. `https://vault.example:8200`; default `$VAULT_ADDR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The KV v2 mount; default `secret`.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// The secret's path under the mount (template: `{user}`, `{service}`).
    pub path: String,
    /// Vault Enterprise namespace (`X-Vault-Namespace`); default `$VAULT_NAMESPACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The field of the access key id.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The field of the secret access key.
    #[serde(default = "default_secret_field")]
    pub secret_field: String,
    /// A file holding the token, when `VAULT_TOKEN` is not set; default `~/.vault-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Log in with AppRole instead of a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approle: Option<AppRoleConfig>,
    /// PEM CA bundle to trust; default `$VAULT_CACERT`, else the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// How long one API call may take; default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// AppRole login: the role id from `$VAULT_ROLE_ID`, `role_id` or `role_id_file`; the
/// secret id from `$VAULT_SECRET_ID` or `secret_id_file` (never from services.toml).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AppRoleConfig {
    /// Where the AppRole auth method is mounted; default `approle`.
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    /// The role id (not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    /// A file holding the role id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id_file: Option<String>,
    /// A file holding the secret id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_file: Option<String>,
}

fn default_mount() -> String {
    "secret".to_string()
}

fn default_approle_mount() -> String {
    "approle".to_string()
}

fn default_id_field() -> String {
    "access_key_id".to_string()
}

fn default_secret_field() -> String {
    "secret_access_key".to_string()
}

/// Whether `part` is usable as a Vault path segment list: no empty, `.` or `..` segment,
/// no leading or trailing `/`, no characters that need escaping in a URL.
fn is_vault_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+=,{}/".contains(c))
}

impl VaultConfig {
    /// What is wrong with these settings; `path` has its placeholders left as `{..}`.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if let Some(address) = &self.address {
            let ok = address
                .parse::<http::Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
                .is_some_and(|u| u.host().is_some());
            if !ok {
                return Err((
                    format!("vault address '{address}' is not an http(s) URL"),
                    "write address = \"https://vault.example:8200\", or leave it out for $VAULT_ADDR".into(),
                ));
            }
        }
        if !is_vault_path(&self.mount) || self.mount.contains(['{', '}']) {
            return Err((
                format!("vault mount '{}' is not a mount path", self.mount),
                "write the KV v2 mount without slashes at either end, e.g. \"secret\"".into(),
            ));
        }
        if !is_vault_path(&self.path) {
            return Err((
                format!("vault path '{}' is not a usable secret path", self.path),
                "use letters, digits, - _ . @ and single '/' between segments, without a '/' at either end, e.g. \"aws/{service}\"".into(),
            ));
        }
        if self.id_field == self.secret_field
            || self.id_field.is_empty()
            || self.secret_field.is_empty()
        {
            return Err((
                "vault id_field and secret_field must be two different, non-empty names".into(),
                "e.g. id_field = \"access_key_id\", secret_field = \"secret_access_key\"".into(),
            ));
        }
        if let Some(role) = &self.approle {
            if role.role_id.is_some() && role.role_id_file.is_some() {
                return Err((
                    "vault approle sets both role_id and role_id_file".into(),
                    "keep one of the two".into(),
                ));
            }
            if !is_vault_path(&role.mount) {
                return Err((
                    format!("vault approle mount '{}' is not a mount path", role.mount),
                    "e.g. mount = \"approle\"".into(),
                ));
            }
            if self.token_file.is_some() {
                return Err((
                    "vault store sets both token_file and approle".into(),
                    "keep the one credrot should log in with".into(),
                ));
            }
        }
        check_timeout(self.timeout.as_deref())
    }

    /// The address as compared for identity (case and a trailing `/` ignored).
    pub(super) fn address_key(&self) -> Option<String> {
        self.address
            .as_deref()
            .map(|a| a.trim_end_matches('/').to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_paths_have_no_empty_or_dot_segments() {
        assert!(is_vault_path("aws/{service}"));
        assert!(is_vault_path("a/b.c"));
        assert!(!is_vault_path("/a"));
        assert!(!is_vault_path("a//b"));
        assert!(!is_vault_path("a/../b"));
        assert!(!is_vault_path("a b"));
    }
}
