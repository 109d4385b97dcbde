//! `kind = "github"`: GitHub Actions secrets of a repository, an environment or an
//! organization. Two secrets hold the key (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` by
//! default), each sealed (libsodium sealed box) with the scope's public key; an Actions
//! variable (`CREDROT_KEY_ID` by default) records which key they hold.
//!
//! GitHub never hands a secret back, so the store reads as [`Holding::KeyId`]: the id the
//! variable names. The variable is written first as `pending:ID` and set to `ID` only once
//! both secrets are written: a run killed in between leaves a variable that reads as a
//! broken store, repaired from a verified key, instead of naming a key the secrets may not
//! hold. A rollback re-seals the previous key, which credrot has only when another store
//! holds it whole; the planner refuses a rotation where it would not have it.

use super::rest::{self, Api, CallError};
use super::{Holding, SecretStore, StoreError, WriteContext};
use crate::config::{GithubConfig, GithubVisibility};
use crate::secret::AccessKey;
use async_trait::async_trait;
use base64::Engine;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// The variable's value while the secrets are being written.
const PENDING: &str = "pending:";
/// Headers GitHub's REST API asks for.
const HEADERS: &[(&str, &str)] = &[
    ("accept", "application/vnd.github+json"),
    ("x-github-api-version", "2022-11-28"),
];

/// Who may use an organization's secrets and variables.
#[derive(Clone)]
struct OrgAccess {
    visibility: GithubVisibility,
    selected: Option<Vec<u64>>,
}

/// GitHub Actions secrets holding one key, and the variable naming it.
pub struct GithubStore {
    api: Api,
    token_env: String,
    /// `/repos/O/R/actions`, `/repos/O/R/environments/E` or `/orgs/O/actions`.
    base: String,
    org: Option<OrgAccess>,
    /// The secrets' names: the access key id's, then the secret's.
    secrets: [String; 2],
    variable: String,
    location: String,
    state: Mutex<State>,
}

/// What the store knows of its variable and secrets.
#[derive(Default)]
struct State {
    /// Whether the variable exists, as last read or written (POST creates, PATCH updates).
    variable_exists: bool,
    /// Whether the last write changed (or may have changed) anything: what restore undoes.
    touched: bool,
}

#[derive(Deserialize)]
struct PublicKey {
    key_id: String,
    key: String,
}

#[derive(Deserialize)]
struct Variable {
    value: String,
}

impl GithubStore {
    /// The store `config` describes, with its names already expanded; an error names what
    /// cannot be used.
    pub fn new(config: &GithubConfig) -> Result<GithubStore, String> {
        for name in [
            &config.access_key_id_secret,
            &config.secret_access_key_secret,
            &config.key_id_variable,
        ] {
            if let Some(problem) = crate::config::github_name_problem(name) {
                return Err(format!(
                    "'{name}' {problem}: GitHub names take letters, digits and _"
                ));
            }
        }
        rest::check_base_url(&config.api_url)?;
        let api = Api::new(&config.api_url, Api::timeout())?;
        let (base, org) = match (&config.org, &config.repository, &config.environment) {
            (Some(org), _, _) => (
                format!("/orgs/{}/actions", rest::encode(org)),
                Some(OrgAccess {
                    visibility: config.visibility.unwrap_or_default(),
                    selected: config.selected_repository_ids.clone(),
                }),
            ),
            (None, Some(repo), env) => {
                let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
                let repo = format!("/repos/{}/{}", rest::encode(owner), rest::encode(name));
                match env {
                    Some(env) => (format!("{repo}/environments/{}", rest::encode(env)), None),
                    None => (format!("{repo}/actions"), None),
                }
            }
            (None, None, _) => return Err("no repository or org is set".to_string()),
        };
        Ok(GithubStore {
            api,
            token_env: config
                .token_env
                .clone()
                .unwrap_or_else(|| "GITHUB_TOKEN".to_string()),
            base,
            org,
            secrets: [
                config.access_key_id_secret.clone(),
                config.secret_access_key_secret.clone(),
            ],
            variable: config.key_id_variable.clone(),
            location: format!("github:{}", config.scope()),
            state: Mutex::default(),
        })
    }

    fn token(&self) -> Result<Zeroizing<String>, CallError> {
        match std::env::var(&self.token_env) {
            Ok(token) if !token.trim().is_empty() => Ok(Zeroizing::new(token.trim().to_string())),
            _ => Err(CallError::Auth(format!(
                "{} is not set; set it to a token that may write Actions secrets and variables",
                self.token_env
            ))),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        ok: &[u16],
    ) -> Result<crate::http::Response, CallError> {
        let token = self.token()?;
        let response = self
            .api
            .call(
                method,
                &format!("{}{path}", self.base),
                &token,
                HEADERS,
                body,
            )
            .await?;
        Api::expect(response, ok)
    }

    /// The variable's value; `None` when it does not exist.
    async fn get_variable(&self) -> Result<Option<String>, CallError> {
        let path = format!("/variables/{}", rest::encode(&self.variable));
        let response = self.call(Method::GET, &path, None, &[200, 404]).await?;
        if response.status == 404 {
            return Ok(None);
        }
        let variable: Variable = Api::parse(&response, "the variable")?;
        Ok(Some(variable.value))
    }

    /// Whether secret `name` exists (its metadata; GitHub never returns a value).
    async fn secret_exists(&self, name: &str) -> Result<bool, CallError> {
        let path = format!("/secrets/{}", rest::encode(name));
        let response = self.call(Method::GET, &path, None, &[200, 404]).await?;
        Ok(response.status == 200)
    }

    /// The scope's public key: its id and the 32-byte X25519 key.
    async fn public_key(&self) -> Result<(String, crypto_box::PublicKey), CallError> {
        let response = self
            .call(Method::GET, "/secrets/public-key", None, &[200])
            .await?;
        let key: PublicKey = Api::parse(&response, "the public key")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                CallError::Malformed("the public key is not 32 bytes of base64".to_string())
            })?;
        Ok((key.key_id, crypto_box::PublicKey::from(bytes)))
    }

    /// The org fields of a secret's or variable's body.
    fn access_fields(&self, body: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(org) = &self.org {
            body.insert("visibility".into(), json!(org.visibility.as_str()));
            if let Some(ids) = &org.selected {
                body.insert("selected_repository_ids".into(), json!(ids));
            }
        }
    }

    /// Set the variable to `value`: POST creates it, PATCH updates it. A create that
    /// finds it existing (another writer) and an update that finds it gone switch over.
    async fn set_variable(&self, state: &mut State, value: &str) -> Result<(), CallError> {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!(self.variable));
        body.insert("value".into(), json!(value));
        self.access_fields(&mut body);
        let body = serde_json::to_vec(&body).expect("a map serializes");
        let patch = format!("/variables/{}", rest::encode(&self.variable));
        let (first, second) = if state.variable_exists {
            (
                (Method::PATCH, patch.as_str()),
                (Method::POST, "/variables"),
            )
        } else {
            (
                (Method::POST, "/variables"),
                (Method::PATCH, patch.as_str()),
            )
        };
        let result = self
            .call(
                first.0,
                first.1,
                Some(Zeroizing::new(body.clone())),
                &[201, 204],
            )
            .await;
        let result = match result {
            // POST of an existing variable: 409; PATCH of a missing one: 404.
            Err(CallError::Status {
                status: 404 | 409, ..
            }) => {
                self.call(second.0, second.1, Some(Zeroizing::new(body)), &[201, 204])
                    .await
            }
            other => other,
        };
        result.map(|_| state.variable_exists = true)
    }

    /// Seal `value` for the scope and PUT it as secret `name`.
    async fn put_secret(
        &self,
        name: &str,
        value: &str,
        public: &(String, crypto_box::PublicKey),
    ) -> Result<(), CallError> {
        let sealed = public
            .1
            .seal(&mut crypto_box::aead::OsRng, value.as_bytes())
            .map_err(|_| CallError::Malformed("sealing failed".to_string()))?;
        let mut body = serde_json::Map::new();
        body.insert(
            "encrypted_value".into(),
            json!(rest::base64_wiped(&sealed).as_str()),
        );
        body.insert("key_id".into(), json!(public.0));
        self.access_fields(&mut body);
        let body = Zeroizing::new(serde_json::to_vec(&body).expect("a map serializes"));
        let path = format!("/secrets/{}", rest::encode(name));
        self.call(Method::PUT, &path, Some(body), &[201, 204])
            .await
            .map(|_| ())
    }

    /// Hand out `key`: variable `pending:ID`, both secrets, variable `ID`. Every call that
    /// may have landed marks the store touched.
    async fn put_key(
        &self,
        state: &mut State,
        key: &AccessKey,
        action: &'static str,
    ) -> Result<(), StoreError> {
        let fail = |call: &str, err: CallError, state: &mut State| {
            if err.may_have_landed() {
                state.touched = true;
            }
            rest::fail(self, action, call, &err, Some(key))
        };
        let public = match self.public_key().await {
            Ok(public) => public,
            Err(e) => return Err(fail("GET the secrets' public key", e, state)),
        };
        if let Err(e) = self
            .set_variable(state, &format!("{PENDING}{}", key.id))
            .await
        {
            return Err(fail(&format!("set variable {}", self.variable), e, state));
        }
        state.touched = true;
        let values = [key.id.as_str(), key.expose()];
        for (name, value) in self.secrets.iter().zip(values) {
            if let Err(e) = self.put_secret(name, value, &public).await {
                return Err(fail(&format!("PUT secret {name}"), e, state));
            }
        }
        if let Err(e) = self.set_variable(state, &key.id).await {
            return Err(fail(&format!("set variable {}", self.variable), e, state));
        }
        Ok(())
    }
}

/// Judge what the variable and the secrets say.
fn judge(variable: Option<&str>, secrets: [(&str, bool); 2], name: &str) -> Holding {
    let missing: Vec<&str> = secrets
        .iter()
        .filter(|(_, exists)| !exists)
        .map(|(n, _)| *n)
        .collect();
    match variable {
        None if missing.len() == 2 => Holding::Empty,
        None => Holding::Broken {
            key_id: None,
            reason: format!(
                "the secrets exist but variable {name}, which names the key they hold, does not"
            ),
        },
        Some(value) if value.starts_with(PENDING) => Holding::Broken {
            key_id: None,
            reason: format!("variable {name} is '{value}': a write of the secrets was interrupted"),
        },
        Some(id) if id.trim().is_empty() => Holding::Broken {
            key_id: None,
            reason: format!("variable {name} is empty"),
        },
        Some(id) if missing.is_empty() => Holding::KeyId(id.to_string()),
        Some(id) => Holding::Broken {
            key_id: Some(id.to_string()),
            reason: format!("secret {} is missing", missing.join(" and ")),
        },
    }
}

#[async_trait]
impl SecretStore for GithubStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    /// GitHub never hands a secret back: the store holds no whole key to read.
    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.observe().await?.key().cloned())
    }

    async fn observe(&self) -> Result<Holding, StoreError> {
        let variable = self.get_variable().await.map_err(|e| {
            rest::fail(
                self,
                "read",
                &format!("GET variable {}", self.variable),
                &e,
                None,
            )
        })?;
        let mut exists = [false; 2];
        for (i, name) in self.secrets.iter().enumerate() {
            exists[i] = self
                .secret_exists(name)
                .await
                .map_err(|e| rest::fail(self, "read", &format!("GET secret {name}"), &e, None))?;
        }
        // Written to, later: the public key must be readable too (the preflight).
        self.public_key()
            .await
            .map_err(|e| rest::fail(self, "read", "GET the secrets' public key", &e, None))?;
        self.state.lock().await.variable_exists = variable.is_some();
        Ok(judge(
            variable.as_deref(),
            [
                (self.secrets[0].as_str(), exists[0]),
                (self.secrets[1].as_str(), exists[1]),
            ],
            &self.variable,
        ))
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.touched = false;
        self.put_key(&mut state, key, "write").await
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
        match previous {
            Some(key) => self.put_key(&mut state, key, "restore").await?,
            None => {
                for name in &self.secrets {
                    let path = format!("/secrets/{}", rest::encode(name));
                    self.call(Method::DELETE, &path, None, &[204, 404])
                        .await
                        .map_err(|e| {
                            rest::fail(self, "restore", &format!("DELETE secret {name}"), &e, None)
                        })?;
                }
                let path = format!("/variables/{}", rest::encode(&self.variable));
                self.call(Method::DELETE, &path, None, &[204, 404])
                    .await
                    .map_err(|e| {
                        rest::fail(
                            self,
                            "restore",
                            &format!("DELETE variable {}", self.variable),
                            &e,
                            None,
                        )
                    })?;
                state.variable_exists = false;
            }
        }
        state.touched = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_and_the_secrets_are_judged_together() {
        let both = [("A", true), ("B", true)];
        assert_eq!(
            judge(None, [("A", false), ("B", false)], "V"),
            Holding::Empty
        );
        assert_eq!(
            judge(Some("AKIA1"), both, "V"),
            Holding::KeyId("AKIA1".into())
        );
        assert!(matches!(
            judge(Some("pending:AKIA2"), both, "V"),
            Holding::Broken { key_id: None, .. }
        ));
        assert!(matches!(
            judge(None, [("A", true), ("B", false)], "V"),
            Holding::Broken { key_id: None, .. }
        ));
        assert!(matches!(
            judge(Some("AKIA1"), [("A", true), ("B", false)], "V"),
            Holding::Broken { key_id: Some(ref id), ref reason } if id == "AKIA1" && reason.contains('B')
        ));
    }

    #[test]
    fn a_sealed_value_opens_with_the_scope_key_only() {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let sealed = secret
            .public_key()
            .seal(&mut crypto_box::aead::OsRng, b"wJalr")
            .unwrap();
        assert_eq!(secret.unseal(&sealed).unwrap(), b"wJalr");
        let other = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        assert!(other.unseal(&sealed).is_err());
    }
}
