//! `kind = "vault"`: the key in one HashiCorp Vault KV version 2 secret, as two fields
//! (default `access_key_id` / `secret_access_key`) beside `credrot_rotated_at` and
//! `credrot_iam_user`; other fields of the secret are kept.
//!
//! Every write is a check-and-set (`options.cas`) on the version read before (0 when the
//! secret does not exist): a secret another writer changed meanwhile makes the write fail,
//! and nothing is overwritten. KV v2 keeps every version, so a restore writes the data of
//! the version credrot replaced back as a new version, again with check-and-set on the
//! version credrot wrote.

use super::rest::{http_reason, redact, to_wiped_json, MAY_HAVE_LANDED};
use super::{Holding, SecretStore, StoreError, WriteContext};
use crate::config::AppRoleConfig;
use crate::http::{HttpClient, HttpError, Request, Response, TlsOptions};
use crate::secret::AccessKey;
use async_trait::async_trait;
use http::{HeaderName, HeaderValue, Method, Uri};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex as SyncMutex, OnceLock};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use zeroize::Zeroizing;

const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// How the store gets its token.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// `VAULT_TOKEN`, else this file (`token_file`, default `~/.vault-token`).
    Token {
        /// The token file to fall back on.
        file: Option<PathBuf>,
    },
    /// AppRole login.
    AppRole(AppRoleConfig),
}

/// Where the store's secret is.
#[derive(Debug, Clone)]
pub struct VaultTarget {
    /// The server, `https://host:8200`.
    pub address: String,
    /// `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// The KV v2 mount.
    pub mount: String,
    /// The secret's path under the mount.
    pub path: String,
    /// The access key id's field.
    pub id_field: String,
    /// The secret access key's field.
    pub secret_field: String,
}

/// Tokens got by AppRole login, per server, namespace and role: a run over many users
/// logs in once, not once per user.
fn token_cache() -> &'static SyncMutex<HashMap<String, Zeroizing<String>>> {
    static CACHE: OnceLock<SyncMutex<HashMap<String, Zeroizing<String>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The secret as read: its current version (0: none) and data.
#[derive(Clone)]
struct Seen {
    version: u64,
    data: Map<String, Value>,
}

/// What the last write did, for restore.
struct Written {
    before: Seen,
    /// The version written; `None` when the answer was lost.
    version: Option<u64>,
    key_id: String,
}

#[derive(Default)]
struct State {
    seen: Option<Seen>,
    written: Option<Written>,
}

/// One KV v2 secret.
pub struct VaultStore {
    target: VaultTarget,
    auth: VaultAuth,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    http: OnceCell<HttpClient>,
    token: Mutex<Option<Zeroizing<String>>>,
    state: Mutex<State>,
}

/// `segment` percent-encoded for a URL path (IAM user names may hold `+ = , @`).
fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Vault's `{"errors": [...]}`, joined.
fn errors_of(response: &Response) -> String {
    let errors: Vec<String> = response
        .json::<Value>()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(|s| s.chars().take(300).collect()))
                    .collect()
            })
        })
        .unwrap_or_default();
    errors.join("; ")
}

/// Read a file holding a credential, trimmed, wiped.
fn read_secret_file(path: &std::path::Path, what: &str) -> Result<Zeroizing<String>, String> {
    let raw = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?,
    );
    let text = std::str::from_utf8(&raw)
        .map_err(|_| format!("the {what} file {} is not text", path.display()))?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

fn env_secret(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .map(Zeroizing::new)
        .filter(|v| !v.trim().is_empty())
}

impl VaultStore {
    /// The secret `target`, reached with `auth`, trusting `ca_file` (default the system's
    /// roots), each call bounded by `timeout`.
    pub fn new(
        target: VaultTarget,
        auth: VaultAuth,
        ca_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Self {
        VaultStore {
            target,
            auth,
            ca_file,
            timeout,
            http: OnceCell::new(),
            token: Mutex::new(None),
            state: Mutex::default(),
        }
    }

    fn uri(&self, api_path: &str) -> Result<Uri, String> {
        format!(
            "{}/v1/{api_path}",
            self.target.address.trim_end_matches('/')
        )
        .parse()
        .map_err(|_| {
            format!(
                "vault address '{}' does not make a valid URL",
                self.target.address
            )
        })
    }

    fn data_path(&self) -> String {
        format!(
            "{}/data/{}",
            encode_path(&self.target.mount),
            encode_path(&self.target.path)
        )
    }

    async fn http(&self, action: &'static str) -> Result<&HttpClient, StoreError> {
        self.http
            .get_or_try_init(|| async {
                let ca_pem =
                    match &self.ca_file {
                        Some(f) => Some(std::fs::read(f).map_err(|e| {
                            format!("cannot read the Vault CA {}: {e}", f.display())
                        })?),
                        None => None,
                    };
                let uri = self.uri("sys/health")?;
                HttpClient::new(
                    &TlsOptions {
                        ca_pem,
                        client_identity: None,
                    },
                    self.timeout,
                    &uri,
                )
                .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| self.error(action, e))
    }

    fn request(
        &self,
        method: Method,
        api_path: &str,
        action: &'static str,
    ) -> Result<Request, StoreError> {
        let uri = self.uri(api_path).map_err(|e| self.error(action, e))?;
        let mut request = Request::new(method, uri).header(
            HeaderName::from_static("x-vault-request"),
            HeaderValue::from_static("true"),
        );
        if let Some(ns) = &self.target.namespace {
            let value = HeaderValue::from_str(ns)
                .map_err(|_| self.error(action, "the namespace cannot be sent as a header"))?;
            request = request.header(HeaderName::from_static("x-vault-namespace"), value);
        }
        Ok(request)
    }

    fn http_error(&self, action: &'static str, err: HttpError, secrets: &[&str]) -> StoreError {
        self.error(action, http_reason(&err, secrets, action != "read"))
    }

    fn answer_error(
        &self,
        action: &'static str,
        response: &Response,
        secrets: &[&str],
    ) -> StoreError {
        let errors = redact(&errors_of(response), secrets);
        let hint = match response.status {
            403 => format!("; the token's policy must allow read, create and update on {}/data/{} (see docs/stores/vault.md), or the token expired", self.target.mount, self.target.path),
            _ => String::new(),
        };
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!(": {errors}")
        };
        self.error(
            action,
            format!("Vault answered {}{errors}{hint}", response.status),
        )
    }

    /// The token: cached, else from where `auth` says.
    async fn token(&self, action: &'static str) -> Result<Zeroizing<String>, StoreError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            return Ok(t.clone());
        }
        let token = match &self.auth {
            VaultAuth::Token { file } => match env_secret("VAULT_TOKEN") {
                Some(t) => Zeroizing::new(t.trim().to_string()),
                None => {
                    let file = file
                        .clone()
                        .or_else(|| dirs::home_dir().map(|h| h.join(".vault-token")));
                    match file {
                        Some(f) if f.exists() => read_secret_file(&f, "token").map_err(|e| self.error(action, e))?,
                        _ => return Err(self.error(action, "no Vault token: set VAULT_TOKEN, token_file, or approle in the store (see docs/stores/vault.md)")),
                    }
                }
            },
            VaultAuth::AppRole(role) => self.login(role, action).await?,
        };
        *cached = Some(token.clone());
        Ok(token)
    }

    /// `POST auth/<mount>/login` with the role id and secret id.
    async fn login(
        &self,
        role: &AppRoleConfig,
        action: &'static str,
    ) -> Result<Zeroizing<String>, StoreError> {
        let role_id = match (
            env_secret("VAULT_ROLE_ID"),
            &role.role_id,
            &role.role_id_file,
        ) {
            (Some(r), _, _) => r,
            (None, Some(r), _) => Zeroizing::new(r.clone()),
            (None, None, Some(f)) => read_secret_file(std::path::Path::new(f), "role_id")
                .map_err(|e| self.error(action, e))?,
            (None, None, None) => return Err(self.error(
                action,
                "AppRole needs a role id: set VAULT_ROLE_ID, or role_id / role_id_file in approle",
            )),
        };
        let secret_id =
            match (env_secret("VAULT_SECRET_ID"), &role.secret_id_file) {
                (Some(s), _) => s,
                (None, Some(f)) => read_secret_file(std::path::Path::new(f), "secret_id")
                    .map_err(|e| self.error(action, e))?,
                (None, None) => return Err(self.error(
                    action,
                    "AppRole needs a secret id: set VAULT_SECRET_ID or secret_id_file in approle",
                )),
            };
        let cache_key = format!(
            "{}\0{:?}\0{}\0{}",
            self.target.address,
            self.target.namespace,
            role.mount,
            role_id.as_str()
        );
        if let Some(t) = token_cache().lock().expect("token cache").get(&cache_key) {
            return Ok(t.clone());
        }
        let body = to_wiped_json(
            &serde_json::json!({"role_id": role_id.as_str(), "secret_id": secret_id.as_str()}),
            secret_id.len() + role_id.len(),
        );
        let request = self
            .request(
                Method::POST,
                &format!("auth/{}/login", encode_path(&role.mount)),
                action,
            )?
            .json(body);
        let secrets = [secret_id.as_str()];
        let response = self
            .http(action)
            .await?
            .send(request)
            .await
            .map_err(|e| self.http_error("read", e, &secrets))?;
        if !response.is_success() {
            let mut err = self.answer_error(action, &response, &secrets);
            err.reason = format!("AppRole login failed: {}", err.reason);
            return Err(err);
        }
        let token = response
            .json::<Value>()
            .and_then(|v| {
                v.get("auth")?
                    .get("client_token")?
                    .as_str()
                    .map(|t| Zeroizing::new(t.to_string()))
            })
            .ok_or_else(|| {
                self.error(action, "AppRole login answered without auth.client_token")
            })?;
        token_cache()
            .lock()
            .expect("token cache")
            .insert(cache_key, token.clone());
        Ok(token)
    }

    /// Send an authenticated request.
    async fn send(
        &self,
        request: Request,
        action: &'static str,
        secrets: &[&str],
    ) -> Result<Response, StoreError> {
        let token = self.token(action).await?;
        let mut value = HeaderValue::from_str(&token).map_err(|_| {
            self.error(
                action,
                "the Vault token holds characters no HTTP header can carry",
            )
        })?;
        value.set_sensitive(true);
        let request = request.header(HeaderName::from_static("x-vault-token"), value);
        self.http(action)
            .await?
            .send(request)
            .await
            .map_err(|e| self.http_error(action, e, secrets))
    }

    /// GET the secret's current version.
    async fn get(&self, action: &'static str) -> Result<Seen, StoreError> {
        let request = self.request(Method::GET, &self.data_path(), action)?;
        let response = self.send(request, action, &[]).await?;
        let malformed = || {
            self.error(
                action,
                format!(
                    "Vault answered {} with a body that is not a KV v2 secret",
                    response.status
                ),
            )
        };
        match response.status {
            200 => {
                let body: Value = response.json().ok_or_else(malformed)?;
                let inner = body.get("data").ok_or_else(malformed)?;
                let version = inner
                    .get("metadata")
                    .and_then(|m| m.get("version"))
                    .and_then(Value::as_u64)
                    .ok_or_else(malformed)?;
                let data = match inner.get("data") {
                    Some(Value::Object(m)) => m.clone(),
                    Some(Value::Null) | None => Map::new(),
                    Some(_) => return Err(malformed()),
                };
                Ok(Seen { version, data })
            }
            // Missing, or its current version deleted (the 404 then still names the version,
            // which check-and-set has to match).
            404 => {
                let version = response
                    .json::<Value>()
                    .and_then(|b| b.get("data")?.get("metadata")?.get("version")?.as_u64())
                    .unwrap_or(0);
                Ok(Seen {
                    version,
                    data: Map::new(),
                })
            }
            _ => Err(self.answer_error(action, &response, &[])),
        }
    }

    fn judge(&self, seen: &Seen) -> Holding {
        fn text(v: Option<&Value>) -> Option<&str> {
            v.and_then(Value::as_str)
        }
        let field = |name: &str| seen.data.get(name);
        let (id, secret) = (
            field(&self.target.id_field),
            field(&self.target.secret_field),
        );
        match (id, secret) {
            (None, None) => Holding::Empty,
            (Some(_), Some(_)) => match (text(id), text(secret)) {
                (Some(id), Some(secret)) => Holding::Key(AccessKey::new(id, secret)),
                (id, _) => Holding::Broken {
                    key_id: id.map(str::to_string),
                    reason: format!(
                        "{} or {} is not a string",
                        self.target.id_field, self.target.secret_field
                    ),
                },
            },
            (Some(id), None) => Holding::Broken {
                key_id: text(Some(id)).map(str::to_string),
                reason: format!(
                    "{} exists without {}",
                    self.target.id_field, self.target.secret_field
                ),
            },
            (None, Some(_)) => Holding::Broken {
                key_id: None,
                reason: format!(
                    "{} exists without {}",
                    self.target.secret_field, self.target.id_field
                ),
            },
        }
    }

    /// POST `data` as a new version with check-and-set `cas`; the version written.
    async fn put(
        &self,
        data: &Map<String, Value>,
        cas: u64,
        action: &'static str,
        secrets: &[&str],
    ) -> Result<u64, StoreError> {
        let body = serde_json::json!({"options": {"cas": cas}, "data": data});
        let size = secrets.iter().map(|s| s.len()).sum();
        let request = self
            .request(Method::POST, &self.data_path(), action)?
            .json(to_wiped_json(&body, size));
        let response = self.send(request, action, secrets).await?;
        if response.is_success() {
            return response
                .json::<Value>()
                .and_then(|v| v.get("data")?.get("version")?.as_u64())
                .ok_or_else(|| {
                    self.error(
                        action,
                        format!(
                            "Vault answered {} with a body that names no version{MAY_HAVE_LANDED}",
                            response.status
                        ),
                    )
                });
        }
        if response.status == 400 && errors_of(&response).contains(CAS_MISMATCH) {
            return Err(self.error(
                action,
                format!("another writer changed the secret since credrot read version {cas} (check-and-set did not match); nothing was overwritten: find the other writer (vault kv metadata get -mount={} {}) and run again", self.target.mount, self.target.path),
            ));
        }
        Err(self.answer_error(action, &response, secrets))
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    fn location(&self) -> String {
        format!("vault:{}/{}", self.target.mount, self.target.path)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.observe().await?.key().cloned())
    }

    async fn observe(&self) -> Result<Holding, StoreError> {
        let seen = self.get("read").await?;
        let holding = self.judge(&seen);
        self.state.lock().await.seen = Some(seen);
        Ok(holding)
    }

    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.written = None;
        let before = match state.seen.take() {
            Some(seen) => seen,
            None => self.get("write").await?,
        };
        let mut data = before.data.clone();
        data.insert(self.target.id_field.clone(), Value::String(key.id.clone()));
        data.insert(
            self.target.secret_field.clone(),
            Value::String(key.expose().to_string()),
        );
        data.insert(
            "credrot_rotated_at".into(),
            Value::String(humantime::format_rfc3339_seconds(ctx.rotated_at).to_string()),
        );
        data.insert("credrot_iam_user".into(), Value::String(ctx.user.clone()));
        match self
            .put(&data, before.version, "write", &[key.expose()])
            .await
        {
            Ok(version) => {
                tracing::info!(store = %self.location(), version, replaced = before.version, "wrote key {}", key.id);
                state.seen = Some(Seen { version, data });
                state.written = Some(Written {
                    before,
                    version: Some(version),
                    key_id: key.id.clone(),
                });
                Ok(())
            }
            Err(e) => {
                if e.reason.ends_with(MAY_HAVE_LANDED) {
                    state.written = Some(Written {
                        before,
                        version: None,
                        key_id: key.id.clone(),
                    });
                }
                Err(e)
            }
        }
    }

    async fn restore(
        &self,
        _previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let Some(written) = state.written.take() else {
            return Ok(());
        };
        let current = self.get("restore").await?;
        if current.version == written.before.version {
            // The write never landed.
            state.seen = Some(current);
            return Ok(());
        }
        let ours = current
            .data
            .get(&self.target.id_field)
            .and_then(Value::as_str)
            == Some(written.key_id.as_str());
        let expected = written.version.unwrap_or(written.before.version + 1);
        if current.version != expected || !ours {
            let version = current.version;
            state.written = Some(written);
            return Err(self.error(
                "restore",
                format!("another writer wrote version {version} after credrot's version {expected}; it was left as it is: put the previous key back by hand (vault kv rollback) or run again"),
            ));
        }
        let secret = current
            .data
            .get(&self.target.secret_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let secret = Zeroizing::new(secret);
        match self
            .put(
                &written.before.data,
                current.version,
                "restore",
                &[secret.as_str()],
            )
            .await
        {
            Ok(version) => {
                tracing::info!(store = %self.location(), version, undone = current.version, "wrote back the data of version {}", written.before.version);
                state.seen = Some(Seen {
                    version,
                    data: written.before.data.clone(),
                });
                Ok(())
            }
            Err(e) => {
                state.written = Some(written);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> VaultStore {
        VaultStore::new(
            VaultTarget {
                address: "http://127.0.0.1:1".into(),
                namespace: None,
                mount: "secret".into(),
                path: "aws/svc+1".into(),
                id_field: "access_key_id".into(),
                secret_field: "secret_access_key".into(),
            },
            VaultAuth::Token { file: None },
            None,
            Duration::from_secs(1),
        )
    }

    fn seen(data: Value) -> Seen {
        Seen {
            version: 3,
            data: data.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn the_fields_are_judged_as_a_pair() {
        let s = store();
        assert_eq!(
            s.judge(&seen(serde_json::json!({"other": "x"}))),
            Holding::Empty
        );
        assert_eq!(
            s.judge(&seen(
                serde_json::json!({"access_key_id": "AKIA1", "secret_access_key": "s"})
            )),
            Holding::Key(AccessKey::new("AKIA1", "s"))
        );
        assert!(matches!(
            s.judge(&seen(serde_json::json!({"access_key_id": "AKIA1"}))),
            Holding::Broken {
                key_id: Some(_),
                ..
            }
        ));
        assert!(matches!(
            s.judge(&seen(
                serde_json::json!({"access_key_id": 1, "secret_access_key": "s"})
            )),
            Holding::Broken { .. }
        ));
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(store().data_path(), "secret/data/aws/svc%2B1");
    }
}
