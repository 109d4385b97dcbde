//! `kind = "gcp-secret-manager"`: a Google Cloud Secret Manager secret holding the key
//! document (`{"AccessKeyId", "SecretAccessKey"}`); every write adds a version.
//!
//! Consumers read `versions/latest`, which the API documents as the most recently
//! *created* version, whatever its state: a disabled newest version does not make the
//! previous one current again (reading `latest` then fails with FAILED_PRECONDITION). A
//! rollback therefore adds the previous key back as a new version and disables the one
//! credrot added; a secret credrot created is deleted. Once a new key is promoted, versions
//! older than the previous one (which holds the LAST key, still in use) are disabled or
//! destroyed, as `old_versions` says.
//!
//! Credentials are Application Default Credentials: the JSON file named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's
//! `~/.config/gcloud/application_default_credentials.json`, of type `authorized_user`
//! (a refresh token) or `service_account` (an RS256-signed JWT assertion).

use super::oauth::{self, Token, TokenCache, Wiped};
use super::rest::{self, Api, CallError};
use super::{Holding, KeyDocument, SecretStore, StoreError, WriteContext};
use crate::config::{GcpSecretManagerConfig, OldVersions};
use crate::secret::AccessKey;
use async_trait::async_trait;
use base64::Engine;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;
use tracing::warn;
use zeroize::Zeroizing;

/// The OAuth scope of Secret Manager calls.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint, when the credentials file names none.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// CRC32C (Castagnoli) of `data`: Secret Manager checks `dataCrc32c` against the payload.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Application Default Credentials, loaded on first use and shared by the run's stores.
#[derive(Default)]
pub struct GcpAuth {
    cache: TokenCache,
}

/// The credentials file, as far as credrot reads it. Secret fields are wiped on drop.
#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: String,
    client_id: Option<String>,
    client_secret: Option<Wiped>,
    refresh_token: Option<Wiped>,
    client_email: Option<String>,
    private_key: Option<Wiped>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl GcpAuth {
    /// Where the credentials are: `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's file.
    fn path() -> Result<PathBuf, CallError> {
        if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            return Ok(PathBuf::from(path));
        }
        dirs::home_dir()
            .map(|home| home.join(".config/gcloud/application_default_credentials.json"))
            .ok_or_else(|| {
                CallError::Auth(
                    "no GCP credentials: set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`".into(),
                )
            })
    }

    /// An access token for Secret Manager.
    async fn token(&self) -> Result<Zeroizing<String>, CallError> {
        self.cache.get(Self::fetch()).await
    }

    async fn fetch() -> Result<Token, CallError> {
        let path = Self::path()?;
        let shown = path.display().to_string();
        let text = Zeroizing::new(std::fs::read(&path).map_err(|e| {
            CallError::Auth(format!(
                "cannot read GCP credentials {shown}: {e}; set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
            ))
        })?);
        let file: CredentialsFile = serde_json::from_slice(&text).map_err(|_| {
            CallError::Auth(format!(
                "GCP credentials {shown} are not an application default credentials JSON file"
            ))
        })?;
        let token_uri = file.token_uri.clone().unwrap_or_else(|| TOKEN_URI.into());
        let what = format!("the GCP token endpoint of {shown}");
        let missing = |field: &str| {
            CallError::Auth(format!(
                "GCP credentials {shown} ({}) have no {field}",
                file.kind
            ))
        };
        match file.kind.as_str() {
            "authorized_user" => {
                let client_id = file.client_id.as_deref().ok_or_else(|| missing("client_id"))?;
                let secret = file
                    .client_secret
                    .as_deref()
                    .ok_or_else(|| missing("client_secret"))?;
                let refresh = file
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| missing("refresh_token"))?;
                let body = oauth::form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("refresh_token", refresh),
                ]);
                oauth::fetch(Method::POST, &token_uri, Some(body), &[], &what).await
            }
            "service_account" => {
                let email = file
                    .client_email
                    .as_deref()
                    .ok_or_else(|| missing("client_email"))?;
                let pem = file
                    .private_key
                    .as_deref()
                    .ok_or_else(|| missing("private_key"))?;
                let assertion =
                    jwt_assertion(email, file.private_key_id.as_deref(), pem, &token_uri)
                        .map_err(|m| CallError::Auth(format!("GCP credentials {shown}: {m}")))?;
                let body = oauth::form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ]);
                oauth::fetch(Method::POST, &token_uri, Some(body), &[], &what).await
            }
            other => Err(CallError::Auth(format!(
                "GCP credentials {shown} are of type '{other}'; credrot reads authorized_user and service_account"
            ))),
        }
    }
}

/// The signed JWT a service account trades for a token (RFC 7523): RS256 over
/// `{iss, scope, aud, iat, exp}`.
fn jwt_assertion(
    email: &str,
    key_id: Option<&str>,
    pem: &str,
    audience: &str,
) -> Result<Zeroizing<String>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "private_key is not a PEM PKCS#8 key".to_string())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| "private_key is not a usable RSA key".to_string())?;
    let now = crate::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": email, "scope": SCOPE, "aud": audience, "iat": now, "exp": now + 3600,
    });
    let signed = format!("{}.{}", b64(&header), b64(&claims));
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the assertion failed".to_string())?;
    Ok(Zeroizing::new(format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
    )))
}

/// One Secret Manager secret holding one key.
pub struct GcpStore {
    api: Api,
    auth: Arc<GcpAuth>,
    /// `projects/P/secrets/S`
    name: String,
    project: String,
    secret: String,
    old_versions: OldVersions,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether the secret exists, as last read or written.
    exists: bool,
    /// The version `latest` was when last read: the one holding the previous key.
    latest: Option<u64>,
    /// Whether the last write created the secret.
    created: bool,
    /// The version the last write added, when its answer came back.
    added: Option<u64>,
    /// The key id the last write put in (to find its version when the answer was lost).
    written: Option<String>,
    /// Whether the last write changed (or may have changed) the secret.
    touched: bool,
}

#[derive(Deserialize)]
struct Access {
    name: String,
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    data: String,
    data_crc32c: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    name: String,
    state: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionList {
    #[serde(default)]
    versions: Vec<Version>,
    next_page_token: Option<String>,
}

/// The number at the end of `projects/P/secrets/S/versions/N`.
fn version_number(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.parse().ok()
}

impl GcpStore {
    /// The store `config` describes (its secret id expanded), sharing `auth`.
    pub fn new(config: &GcpSecretManagerConfig, auth: Arc<GcpAuth>) -> Result<GcpStore, String> {
        rest::check_base_url(&config.endpoint)?;
        if config.secret.is_empty()
            || config.secret.len() > 255
            || !config
                .secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(format!(
                "secret id '{}' may hold only letters, digits, - and _ (at most 255)",
                config.secret
            ));
        }
        Ok(GcpStore {
            api: Api::new(
                &format!("{}/v1", config.endpoint.trim_end_matches('/')),
                Api::timeout(),
            )?,
            auth,
            name: format!("projects/{}/secrets/{}", config.project, config.secret),
            project: config.project.clone(),
            secret: config.secret.clone(),
            old_versions: config.old_versions,
            state: Mutex::default(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        ok: &[u16],
    ) -> Result<crate::http::Response, CallError> {
        let token = self.auth.token().await?;
        let response = self.api.call(method, path, &token, &[], body).await?;
        Api::expect(response, ok)
    }

    /// `latest`'s key and version number; `Ok(None)` when the secret or its versions do not
    /// exist; a `Holding::Broken` reason when `latest` cannot be read as a key.
    async fn access_latest(&self) -> Result<Result<Option<(AccessKey, u64)>, String>, CallError> {
        let path = format!("/{}/versions/latest:access", self.name);
        let response = self
            .call(Method::GET, &path, None, &[200, 404, 400])
            .await?;
        match response.status {
            404 => return Ok(Ok(None)),
            400 => {
                // FAILED_PRECONDITION: the newest version is disabled or destroyed.
                let reason = match Api::expect(response, &[]) {
                    Err(err) => format!("versions/latest cannot be read ({err})"),
                    Ok(_) => "versions/latest cannot be read".to_string(),
                };
                return Ok(Err(reason));
            }
            _ => {}
        }
        let access: Access = Api::parse(&response, "the accessed version")?;
        let data = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(access.payload.data.as_bytes())
                .map_err(|_| CallError::Malformed("the payload is not base64".into()))?,
        );
        if let Some(crc) = &access.payload.data_crc32c {
            if crc.parse::<u32>().ok() != Some(crc32c(&data)) {
                return Err(CallError::Malformed(
                    "the payload does not match its dataCrc32c".into(),
                ));
            }
        }
        let version = version_number(&access.name)
            .ok_or_else(|| CallError::Malformed("the version has no number".into()))?;
        let text = std::str::from_utf8(&data).unwrap_or("");
        Ok(match KeyDocument::parse(text) {
            Some(key) => Ok(Some((key, version))),
            None => Err(format!(
                "version {version} (latest) is not a key document {{\"AccessKeyId\", \"SecretAccessKey\"}}"
            )),
        })
    }

    async fn secret_exists(&self) -> Result<bool, CallError> {
        let path = format!("/{}", self.name);
        let response = self.call(Method::GET, &path, None, &[200, 404]).await?;
        Ok(response.status == 200)
    }

    /// Add `key` as a new version; its number.
    async fn add_version(&self, key: &AccessKey) -> Result<u64, CallError> {
        let document = KeyDocument::to_wiped(key, false);
        let data = rest::base64_wiped(&document);
        let mut body = Zeroizing::new(Vec::with_capacity(data.len() + 96));
        serde_json::to_writer(
            &mut *body,
            &json!({"payload": {"data": data.as_str(), "dataCrc32c": crc32c(&document).to_string()}}),
        )
        .expect("JSON serializes");
        let path = format!("/{}:addVersion", self.name);
        let response = self.call(Method::POST, &path, Some(body), &[200]).await?;
        let version: Version = Api::parse(&response, "the added version")?;
        version_number(&version.name)
            .ok_or_else(|| CallError::Malformed("the added version has no number".into()))
    }

    async fn create_secret(&self) -> Result<(), CallError> {
        let body = json!({
            "replication": {"automatic": {}},
            "labels": {"managed-by": "credrot"},
        });
        let path = format!(
            "/projects/{}/secrets?secretId={}",
            rest::encode(&self.project),
            rest::encode(&self.secret)
        );
        let body = Zeroizing::new(body.to_string().into_bytes());
        match self.call(Method::POST, &path, Some(body), &[200]).await {
            // Created meanwhile by someone else: write into it.
            Err(CallError::Status { status: 409, .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `verb` (`disable`, `destroy`) version `n`.
    async fn version_action(&self, n: u64, verb: &str) -> Result<(), CallError> {
        let path = format!("/{}/versions/{n}:{verb}", self.name);
        let body = Zeroizing::new(b"{}".to_vec());
        self.call(Method::POST, &path, Some(body), &[200])
            .await
            .map(|_| ())
    }

    async fn list_versions(&self) -> Result<Vec<(u64, String)>, CallError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("/{}/versions?pageSize=100", self.name);
            if let Some(token) = &page {
                path.push_str(&format!("&pageToken={}", rest::encode(token)));
            }
            let response = self.call(Method::GET, &path, None, &[200]).await?;
            let list: VersionList = Api::parse(&response, "the version list")?;
            out.extend(
                list.versions
                    .into_iter()
                    .filter_map(|v| version_number(&v.name).map(|n| (n, v.state))),
            );
            match list.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page = Some(token),
                None => return Ok(out),
            }
        }
    }

    /// Disable or destroy the versions older than `previous` (which holds the LAST key).
    async fn retire_old(&self, previous: u64) -> Result<usize, CallError> {
        let (verb, done): (&str, &[&str]) = match self.old_versions {
            OldVersions::Keep => return Ok(0),
            OldVersions::Disable => ("disable", &["DISABLED", "DESTROYED"]),
            OldVersions::Destroy => ("destroy", &["DESTROYED"]),
        };
        let mut count = 0;
        for (n, state) in self.list_versions().await? {
            if n < previous && !done.contains(&state.as_str()) {
                self.version_action(n, verb).await?;
                count += 1;
            }
        }
        Ok(count)
    }
}

#[async_trait]
impl SecretStore for GcpStore {
    fn location(&self) -> String {
        format!("gcp-secret-manager:{}", self.name)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.observe().await?.key().cloned())
    }

    async fn observe(&self) -> Result<Holding, StoreError> {
        let latest = self
            .access_latest()
            .await
            .map_err(|e| rest::fail(self, "read", "GET versions/latest:access", &e, None))?;
        let mut state = self.state.lock().await;
        Ok(match latest {
            Ok(Some((key, version))) => {
                state.exists = true;
                state.latest = Some(version);
                Holding::Key(key)
            }
            Ok(None) => {
                state.exists = self
                    .secret_exists()
                    .await
                    .map_err(|e| rest::fail(self, "read", "GET secret", &e, None))?;
                state.latest = None;
                Holding::Empty
            }
            Err(reason) => {
                state.exists = true;
                state.latest = None;
                Holding::Broken {
                    key_id: None,
                    reason,
                }
            }
        })
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.touched = false;
        state.created = false;
        state.added = None;
        state.written = Some(key.id.clone());
        if !state.exists {
            match self.create_secret().await {
                Ok(()) => {
                    state.exists = true;
                    state.created = true;
                    state.touched = true;
                }
                Err(e) => {
                    if e.may_have_landed() {
                        state.created = true;
                        state.touched = true;
                    }
                    return Err(rest::fail(
                        self,
                        "write",
                        "POST secrets (create)",
                        &e,
                        Some(key),
                    ));
                }
            }
        }
        match self.add_version(key).await {
            Ok(n) => {
                state.added = Some(n);
                state.touched = true;
                Ok(())
            }
            Err(e) => {
                if e.may_have_landed() {
                    state.touched = true;
                }
                Err(rest::fail(self, "write", "POST :addVersion", &e, Some(key)))
            }
        }
    }

    /// The new key is verified: versions older than the previous one are retired. A
    /// failure here is only warned about: the rotation is done, the next one retires them.
    async fn promote(&self, _key: &AccessKey) -> Result<(), StoreError> {
        let previous = self.state.lock().await.latest;
        if let Some(previous) = previous {
            if let Err(e) = self.retire_old(previous).await {
                warn!(store = %self.location(), "old versions were not retired: {e}");
            }
        }
        Ok(())
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
        // The version this run added: from its answer, or (answer lost) `latest` if it
        // holds the written key.
        let added = match state.added {
            Some(n) => Some(n),
            None => match self.access_latest().await {
                Ok(Ok(Some((key, n)))) if state.written.as_deref() == Some(key.id.as_str()) => {
                    Some(n)
                }
                Ok(_) => None,
                Err(e) => {
                    return Err(rest::fail(
                        self,
                        "restore",
                        "GET versions/latest:access",
                        &e,
                        None,
                    ))
                }
            },
        };
        match previous {
            // `latest` is the newest version whatever its state: the old key goes back as a
            // new version, and the one this run added is disabled.
            Some(key) if added.is_some() || state.created => {
                let n = self
                    .add_version(key)
                    .await
                    .map_err(|e| rest::fail(self, "restore", "POST :addVersion", &e, Some(key)))?;
                state.latest = Some(n);
            }
            Some(_) => {}
            None if state.created => {
                let path = format!("/{}", self.name);
                self.call(Method::DELETE, &path, None, &[200, 404])
                    .await
                    .map_err(|e| rest::fail(self, "restore", "DELETE secret", &e, None))?;
                state.exists = false;
                state.touched = false;
                return Ok(());
            }
            None => {}
        }
        if let Some(n) = added {
            // With no previous key this makes `latest` unreadable again, as it was.
            match self.version_action(n, "disable").await {
                Ok(()) => {}
                Err(e) if previous.is_some() => {
                    warn!(store = %self.location(), "version {n} of the undone key was not disabled: {e}")
                }
                Err(e) => return Err(rest::fail(self, "restore", "POST :disable", &e, None)),
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
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn version_numbers_come_from_names() {
        assert_eq!(version_number("projects/1/secrets/s/versions/12"), Some(12));
        assert_eq!(version_number("projects/1/secrets/s/versions/latest"), None);
    }
}
