//! `kind = "azure-key-vault"`: an Azure Key Vault secret holding the key document
//! (`{"AccessKeyId", "SecretAccessKey"}`, content type `application/json`, tagged with the
//! key id); every write (PUT) adds a version.
//!
//! A GET without a version returns the newest version, and when that version is disabled
//! it answers 403 `SecretDisabled` rather than falling back to an older one. A rollback
//! therefore PUTs the previous key again (a new version) and disables the version credrot
//! wrote; with no previous key it only disables that version (deleting would put the name
//! into soft-deleted state, where the next PUT is refused until it is purged). A secret
//! whose newest version is disabled reads as holding nothing.
//!
//! Credentials: `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (client
//! credentials at `AZURE_AUTHORITY_HOST`, default `https://login.microsoftonline.com`), else
//! managed identity: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service, Functions) or the
//! instance metadata service (`CREDROT_AZURE_IMDS_ENDPOINT` overrides its address).

use super::oauth::{self, Token, TokenCache};
use super::rest::{self, Api, CallError};
use super::{Holding, KeyDocument, SecretStore, StoreError, WriteContext};
use crate::config::AzureKeyVaultConfig;
use crate::secret::AccessKey;
use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tracing::warn;
use zeroize::Zeroizing;

/// The Key Vault REST API version credrot speaks.
const API_VERSION: &str = "7.4";
/// The resource (and scope) tokens are asked for.
const RESOURCE: &str = "https://vault.azure.net";
/// The instance metadata service's token endpoint.
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Azure credentials from the environment, shared by the run's stores.
#[derive(Default)]
pub struct AzureAuth {
    cache: TokenCache,
}

fn env(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(Zeroizing::new)
}

impl AzureAuth {
    async fn token(&self) -> Result<Zeroizing<String>, CallError> {
        self.cache.get(Self::fetch()).await
    }

    async fn fetch() -> Result<Token, CallError> {
        let client_id = env("AZURE_CLIENT_ID");
        if let (Some(tenant), Some(id), Some(secret)) = (
            env("AZURE_TENANT_ID"),
            &client_id,
            env("AZURE_CLIENT_SECRET"),
        ) {
            let authority = env("AZURE_AUTHORITY_HOST")
                .map(|a| a.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://login.microsoftonline.com".to_string());
            let url = format!("{authority}/{}/oauth2/v2.0/token", rest::encode(&tenant));
            let scope = format!("{RESOURCE}/.default");
            let body = oauth::form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", &secret),
                ("scope", &scope),
            ]);
            return oauth::fetch(
                Method::POST,
                &url,
                Some(body),
                &[],
                "the Azure AD token endpoint",
            )
            .await;
        }
        // User-assigned identities are picked by client id.
        let client = client_id
            .as_deref()
            .map(|id| format!("&client_id={}", rest::encode(id)))
            .unwrap_or_default();
        if let (Some(endpoint), Some(header)) = (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            let url = format!(
                "{}?api-version=2019-08-01&resource={}{client}",
                endpoint.as_str(),
                rest::encode(RESOURCE)
            );
            return oauth::fetch(
                Method::GET,
                &url,
                None,
                &[("x-identity-header", header)],
                "the managed identity endpoint (IDENTITY_ENDPOINT)",
            )
            .await;
        }
        let base = env("CREDROT_AZURE_IMDS_ENDPOINT")
            .map(|e| e.to_string())
            .unwrap_or_else(|| IMDS.to_string());
        let url = format!(
            "{base}?api-version=2018-02-01&resource={}{client}",
            rest::encode(RESOURCE)
        );
        oauth::fetch(
            Method::GET,
            &url,
            None,
            &[("metadata", Zeroizing::new("true".to_string()))],
            "the Azure instance metadata service (no AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET set, so managed identity was tried)",
        )
        .await
    }
}

/// One Key Vault secret holding one key.
pub struct AzureStore {
    api: Api,
    auth: Arc<AzureAuth>,
    vault: String,
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The version the last write made, when its answer came back.
    written: Option<String>,
    /// The key id the last write put in (to find its version when the answer was lost).
    written_id: Option<String>,
    /// Whether the last write changed (or may have changed) the secret.
    touched: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    id: String,
    value: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl AzureStore {
    /// The store `config` describes (its name expanded), sharing `auth`.
    pub fn new(config: &AzureKeyVaultConfig, auth: Arc<AzureAuth>) -> Result<AzureStore, String> {
        rest::check_base_url(&config.vault_url)?;
        if config.name.is_empty()
            || config.name.len() > 127
            || !config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "secret name '{}' may hold only letters, digits and - (at most 127)",
                config.name
            ));
        }
        let vault = config.vault_url.trim_end_matches('/').to_string();
        Ok(AzureStore {
            api: Api::new(&vault, Api::timeout())?,
            auth,
            vault,
            name: config.name.clone(),
            state: Mutex::default(),
        })
    }

    async fn call(
        &self,
        method: Method,
        version: Option<&str>,
        body: Option<Zeroizing<Vec<u8>>>,
        ok: &[u16],
    ) -> Result<crate::http::Response, CallError> {
        let token = self.auth.token().await?;
        let path = match version {
            Some(v) => format!(
                "/secrets/{}/{}?api-version={API_VERSION}",
                self.name,
                rest::encode(v)
            ),
            None => format!("/secrets/{}?api-version={API_VERSION}", self.name),
        };
        let response = self.api.call(method, &path, &token, &[], body).await?;
        Api::expect(response, ok)
    }

    /// The newest version: `Ok(None)` when there is none or it is disabled.
    async fn current(&self) -> Result<Option<Bundle>, CallError> {
        let response = self.call(Method::GET, None, None, &[200, 403, 404]).await?;
        match response.status {
            200 => Ok(Some(Api::parse(&response, "the secret")?)),
            404 => Ok(None),
            _ => {
                // 403 is a disabled newest version (innererror SecretDisabled), or a refusal.
                let disabled = response
                    .json::<serde_json::Value>()
                    .is_some_and(|v| v["error"]["innererror"]["code"] == "SecretDisabled");
                if disabled {
                    Ok(None)
                } else {
                    Api::expect(response, &[]).map(|_| None)
                }
            }
        }
    }

    /// PUT `key` as a new version; the version's id.
    async fn put(&self, key: &AccessKey) -> Result<String, CallError> {
        let document = KeyDocument::to_wiped(key, false);
        let value = std::str::from_utf8(&document).expect("JSON is UTF-8");
        let mut body = Zeroizing::new(Vec::with_capacity(document.len() * 2 + 160));
        serde_json::to_writer(
            &mut *body,
            &serde_json::json!({
                "value": value,
                "contentType": "application/json",
                "tags": {"AccessKeyId": key.id, "managed-by": "credrot"},
            }),
        )
        .expect("JSON serializes");
        let response = self.call(Method::PUT, None, Some(body), &[200]).await?;
        let bundle: Bundle = Api::parse(&response, "the written secret")?;
        version_of(&bundle.id)
            .ok_or_else(|| CallError::Malformed("the written secret's id names no version".into()))
    }

    async fn disable(&self, version: &str) -> Result<(), CallError> {
        let body = Zeroizing::new(br#"{"attributes":{"enabled":false}}"#.to_vec());
        self.call(Method::PATCH, Some(version), Some(body), &[200])
            .await
            .map(|_| ())
    }
}

/// The version at the end of `https://VAULT/secrets/NAME/VERSION`.
fn version_of(id: &str) -> Option<String> {
    let mut parts = id.rsplit('/');
    let version = parts.next()?;
    let _name = parts.next()?;
    (parts.next()? == "secrets" && !version.is_empty()).then(|| version.to_string())
}

#[async_trait]
impl SecretStore for AzureStore {
    fn location(&self) -> String {
        format!("azure-key-vault:{}/secrets/{}", self.vault, self.name)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.observe().await?.key().cloned())
    }

    async fn observe(&self) -> Result<Holding, StoreError> {
        let current = self
            .current()
            .await
            .map_err(|e| rest::fail(self, "read", "GET secret", &e, None))?;
        let Some(bundle) = current else {
            return Ok(Holding::Empty);
        };
        let value = Zeroizing::new(bundle.value.unwrap_or_default());
        Ok(match KeyDocument::parse(&value) {
            Some(key) => Holding::Key(key),
            None => Holding::Broken {
                key_id: bundle.tags.get("AccessKeyId").cloned(),
                reason: "the current version is not a key document {\"AccessKeyId\", \"SecretAccessKey\"}".into(),
            },
        })
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.written = None;
        state.written_id = Some(key.id.clone());
        state.touched = false;
        match self.put(key).await {
            Ok(version) => {
                state.written = Some(version);
                state.touched = true;
                Ok(())
            }
            Err(e) => {
                state.touched = e.may_have_landed();
                Err(rest::fail(self, "write", "PUT secret", &e, Some(key)))
            }
        }
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if !state.touched {
            return Ok(());
        }
        // The version this run wrote: from its answer, or (answer lost) the newest one if
        // it is tagged with the written key's id.
        let written = match state.written.clone() {
            Some(v) => Some(v),
            None => match self.current().await {
                Ok(Some(bundle)) if bundle.tags.get("AccessKeyId") == state.written_id.as_ref() => {
                    version_of(&bundle.id)
                }
                Ok(_) => None,
                Err(e) => return Err(rest::fail(self, "restore", "GET secret", &e, None)),
            },
        };
        let Some(written) = written else {
            state.touched = false;
            return Ok(());
        };
        match previous {
            Some(key) => {
                self.put(key)
                    .await
                    .map_err(|e| rest::fail(self, "restore", "PUT secret", &e, Some(key)))?;
                if let Err(e) = self.disable(&written).await {
                    warn!(store = %self.location(), "the version of the undone key was not disabled: {e}");
                }
            }
            None => self
                .disable(&written)
                .await
                .map_err(|e| rest::fail(self, "restore", "PATCH version (disable)", &e, None))?,
        }
        state.touched = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_secret_ids() {
        assert_eq!(
            version_of("https://v.vault.azure.net/secrets/pg-aws/4387e9f3d6e14c459867679a90fd0f79"),
            Some("4387e9f3d6e14c459867679a90fd0f79".into())
        );
        assert_eq!(version_of("https://v.vault.azure.net/secrets/pg-aws"), None);
    }
}
