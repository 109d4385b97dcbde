//! `kind = "kubernetes"`: the key in one Secret of a cluster, as `data` keys (default
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, optionally a shared-credentials file),
//! with annotations naming the key id and the rotation time.
//!
//! Writes carry the `resourceVersion` read before (optimistic concurrency). A 409 Conflict
//! is re-read: when the other writer left credrot's keys as they were (it changed another
//! key, a label), the write is made again on the new version, a bounded number of times;
//! when it changed credrot's keys, the write fails and nothing is overwritten. Restore
//! puts credrot's keys back as they were (other keys untouched), or deletes the Secret
//! when credrot created it and it holds nothing else, again only if nobody changed it since.

use super::rest::{http_reason, redact, to_wiped_json, Wiped, MAY_HAVE_LANDED};
use super::{Holding, SecretStore, StoreError, WriteContext};
use crate::config::KubeConnection;
use crate::http::{HttpError, Response};
use crate::kube::{describe_failure, secret_path, KubeClient};
use crate::secret::AccessKey;
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use zeroize::Zeroizing;

/// How often a write (or restore) is made again after a 409 whose writer left credrot's
/// keys alone.
const MAX_ATTEMPTS: usize = 4;
/// The annotation naming the key id the data holds.
pub const KEY_ID_ANNOTATION: &str = "credrot.io/access-key-id";
const ROTATED_AT_ANNOTATION: &str = "credrot.io/rotated-at";
const USER_ANNOTATION: &str = "credrot.io/iam-user";
const PREVIOUS_ANNOTATION: &str = "credrot.io/previous-access-key-id";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const KEY_ID_LABEL: &str = "credrot.io/access-key-id";
const JSON: &str = "application/json";

/// Which `data` keys hold the key.
#[derive(Debug, Clone)]
pub struct SecretKeys {
    /// The access key id's key.
    pub id: String,
    /// The secret access key's key.
    pub secret: String,
    /// The key of a shared-credentials file, if any.
    pub credentials: Option<String>,
    /// The profile of that file.
    pub profile: String,
}

impl SecretKeys {
    fn all(&self) -> Vec<&str> {
        let mut keys = vec![self.id.as_str(), self.secret.as_str()];
        keys.extend(self.credentials.as_deref());
        keys
    }
}

/// A Secret as the API hands it out; unknown metadata is kept for the PUT.
#[derive(Serialize, Deserialize, Clone)]
struct SecretObject {
    #[serde(rename = "apiVersion", default = "v1")]
    api_version: String,
    #[serde(default = "secret_kind")]
    kind: String,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    data: BTreeMap<String, Wiped>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    secret_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    immutable: Option<bool>,
}

fn v1() -> String {
    "v1".into()
}

fn secret_kind() -> String {
    "Secret".into()
}

impl SecretObject {
    fn resource_version(&self) -> Option<&str> {
        self.metadata.get("resourceVersion").and_then(Value::as_str)
    }

    fn meta_map(&mut self, field: &str) -> &mut Map<String, Value> {
        let entry = self
            .metadata
            .entry(field.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("made an object above")
    }

    fn meta(&self, field: &str, key: &str) -> Option<String> {
        self.metadata
            .get(field)?
            .get(key)?
            .as_str()
            .map(str::to_string)
    }

    fn set_meta(&mut self, field: &str, key: &str, value: Option<String>) {
        let map = self.meta_map(field);
        match value {
            Some(v) => {
                map.insert(key.to_string(), Value::String(v));
            }
            None => {
                map.remove(key);
            }
        }
    }
}

/// What credrot manages in a Secret: its data keys (base64, as stored) and its labels and
/// annotations. Restores put exactly these back.
#[derive(Clone, PartialEq, Eq, Default)]
struct Ours {
    data: BTreeMap<String, Option<Wiped>>,
    meta: BTreeMap<(&'static str, &'static str), Option<String>>,
}

const OUR_META: [(&str, &str); 6] = [
    ("annotations", KEY_ID_ANNOTATION),
    ("annotations", ROTATED_AT_ANNOTATION),
    ("annotations", USER_ANNOTATION),
    ("annotations", PREVIOUS_ANNOTATION),
    ("labels", MANAGED_BY_LABEL),
    ("labels", KEY_ID_LABEL),
];

/// What the store last saw of the Secret.
#[derive(Clone)]
enum Seen {
    Missing,
    Found(Box<SecretObject>),
}

/// What the last write did, for restore.
struct Written {
    before: Ours,
    after: Ours,
    created: bool,
}

#[derive(Default)]
struct State {
    seen: Option<Seen>,
    written: Option<Written>,
}

/// One Secret of one namespace.
pub struct KubernetesStore {
    connection: KubeConnection,
    base_dir: PathBuf,
    timeout: Duration,
    namespace: String,
    name: String,
    keys: SecretKeys,
    client: OnceCell<KubeClient>,
    state: Mutex<State>,
}

fn b64(text: &str) -> Wiped {
    let mut out = String::with_capacity(text.len() * 4 / 3 + 4);
    STANDARD.encode_string(text.as_bytes(), &mut out);
    Wiped::new(out)
}

fn unb64(value: &Wiped) -> Option<Zeroizing<String>> {
    let bytes = Zeroizing::new(STANDARD.decode(value.as_str().as_bytes()).ok()?);
    std::str::from_utf8(&bytes)
        .ok()
        .map(|s| Zeroizing::new(s.to_string()))
}

/// The shared-credentials file of `key` under `profile`.
fn credentials_file(key: &AccessKey, profile: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(key.expose().len() + 128));
    out.push_str(&format!("[{profile}]\naws_access_key_id = {}\n", key.id));
    out.push_str("aws_secret_access_key = ");
    out.push_str(key.expose());
    out.push('\n');
    out
}

/// The key in a shared-credentials file's `profile`, if it has one.
fn parse_credentials(text: &str, profile: &str) -> Option<AccessKey> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line == format!("[{profile}]");
        } else if in_profile {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "aws_access_key_id" => id = Some(v.trim()),
                    "aws_secret_access_key" => secret = Some(v.trim()),
                    _ => {}
                }
            }
        }
    }
    Some(AccessKey::new(id?, secret?))
}

impl KubernetesStore {
    /// The Secret `namespace/name` of the cluster `connection` names; `base_dir` resolves
    /// a relative kubeconfig.
    pub fn new(
        connection: KubeConnection,
        base_dir: PathBuf,
        timeout: Duration,
        namespace: String,
        name: String,
        keys: SecretKeys,
    ) -> Self {
        KubernetesStore {
            connection,
            base_dir,
            timeout,
            namespace,
            name,
            keys,
            client: OnceCell::new(),
            state: Mutex::default(),
        }
    }

    async fn client(&self, action: &'static str) -> Result<&KubeClient, StoreError> {
        self.client
            .get_or_try_init(|| async {
                KubeClient::connect(&self.connection, &self.base_dir, self.timeout)
            })
            .await
            .map_err(|e| self.error(action, e))
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
        self.error(action, redact(&describe_failure(response), secrets))
    }

    /// GET the Secret.
    async fn get(&self, action: &'static str) -> Result<Seen, StoreError> {
        let client = self.client(action).await?;
        let path = secret_path(&self.namespace, Some(&self.name));
        let response = client
            .call(Method::GET, &path, None)
            .await
            .map_err(|e| self.http_error(action, e, &[]))?;
        match response.status {
            200 => response
                .json::<SecretObject>()
                .filter(|o| o.kind == "Secret")
                .map(|o| Seen::Found(Box::new(o)))
                .ok_or_else(|| {
                    self.error(
                        action,
                        format!(
                            "{} answered 200 with something that is not a Secret",
                            client.target()
                        ),
                    )
                }),
            404 => Ok(Seen::Missing),
            _ => Err(self.answer_error(action, &response, &[])),
        }
    }

    /// Judge what a Secret hands out.
    fn judge(&self, seen: &Seen) -> Holding {
        let Seen::Found(obj) = seen else {
            return Holding::Empty;
        };
        let decoded = |key: &str| obj.data.get(key).map(unb64);
        let broken = |key_id: Option<String>, reason: String| Holding::Broken { key_id, reason };
        let (id, secret) = (decoded(&self.keys.id), decoded(&self.keys.secret));
        let creds = self.keys.credentials.as_deref().map(|k| (k, decoded(k)));
        for (key, value) in [(&self.keys.id, &id), (&self.keys.secret, &secret)] {
            if matches!(value, Some(None)) {
                return broken(None, format!("data key {key} is not base64 of text"));
            }
        }
        let (id, secret) = (id.flatten(), secret.flatten());
        match (id, secret) {
            (None, None) => match creds {
                Some((k, Some(_))) => broken(None, format!("only the credentials key {k} exists")),
                _ => Holding::Empty,
            },
            (Some(id), Some(secret)) => {
                let key = AccessKey::new(id.as_str(), secret.as_str());
                if let Some(recorded) = obj.meta("annotations", KEY_ID_ANNOTATION) {
                    if recorded != key.id {
                        return broken(Some(key.id.clone()), format!("annotation {KEY_ID_ANNOTATION} names {recorded}, but {} holds {} (another writer changed one of them)", self.keys.id, key.id));
                    }
                }
                if let Some((k, file)) = creds {
                    match file.flatten() {
                        None => {
                            return broken(
                                Some(key.id.clone()),
                                format!("the credentials key {k} is missing or not base64 of text"),
                            )
                        }
                        Some(text) => {
                            if parse_credentials(&text, &self.keys.profile).as_ref() != Some(&key) {
                                return broken(
                                    Some(key.id.clone()),
                                    format!(
                                        "the credentials file in {k} does not hold the key of {}",
                                        self.keys.id
                                    ),
                                );
                            }
                        }
                    }
                }
                Holding::Key(key)
            }
            (Some(id), None) => broken(
                Some(id.to_string()),
                format!("{} exists without {}", self.keys.id, self.keys.secret),
            ),
            (None, Some(_)) => broken(
                None,
                format!("{} exists without {}", self.keys.secret, self.keys.id),
            ),
        }
    }

    /// What credrot manages in `obj`.
    fn ours(&self, obj: Option<&SecretObject>) -> Ours {
        Ours {
            data: self
                .keys
                .all()
                .into_iter()
                .map(|k| (k.to_string(), obj.and_then(|o| o.data.get(k).cloned())))
                .collect(),
            meta: OUR_META
                .iter()
                .map(|&(field, key)| ((field, key), obj.and_then(|o| o.meta(field, key))))
                .collect(),
        }
    }

    /// What credrot writes for `key`.
    fn ours_for(&self, key: &AccessKey, ctx: &WriteContext) -> Ours {
        let mut data = BTreeMap::new();
        data.insert(self.keys.id.clone(), Some(b64(&key.id)));
        data.insert(self.keys.secret.clone(), Some(b64(key.expose())));
        if let Some(k) = &self.keys.credentials {
            data.insert(
                k.clone(),
                Some(b64(&credentials_file(key, &self.keys.profile))),
            );
        }
        let rotated = humantime::format_rfc3339_seconds(ctx.rotated_at).to_string();
        let values = [
            Some(key.id.clone()),
            Some(rotated),
            Some(ctx.user.clone()),
            ctx.previous_key_id.clone(),
            Some("credrot".to_string()),
            Some(key.id.clone()),
        ];
        Ours {
            data,
            meta: OUR_META.iter().copied().zip(values).collect(),
        }
    }

    /// `obj` with credrot's part set to `ours` (a `None` removes the entry).
    fn apply(obj: &SecretObject, ours: &Ours) -> SecretObject {
        let mut out = obj.clone();
        for (k, v) in &ours.data {
            match v {
                Some(v) => {
                    out.data.insert(k.clone(), v.clone());
                }
                None => {
                    out.data.remove(k);
                }
            }
        }
        for ((field, key), value) in &ours.meta {
            out.set_meta(field, key, value.clone());
        }
        out
    }

    /// A new Secret holding only `ours`.
    fn new_object(&self, ours: &Ours) -> SecretObject {
        let mut metadata = Map::new();
        metadata.insert("name".into(), Value::String(self.name.clone()));
        metadata.insert("namespace".into(), Value::String(self.namespace.clone()));
        let empty = SecretObject {
            api_version: v1(),
            kind: secret_kind(),
            metadata,
            data: BTreeMap::new(),
            secret_type: Some("Opaque".into()),
            immutable: None,
        };
        Self::apply(&empty, ours)
    }

    /// Send `obj` (POST to create, PUT to replace).
    async fn send(
        &self,
        action: &'static str,
        method: Method,
        obj: &SecretObject,
        secrets: &[&str],
    ) -> Result<Response, StoreError> {
        let client = self.client(action).await?;
        let path = if method == Method::POST {
            secret_path(&self.namespace, None)
        } else {
            secret_path(&self.namespace, Some(&self.name))
        };
        let body = to_wiped_json(obj, obj.data.values().map(|v| v.as_str().len()).sum());
        client
            .call(method, &path, Some((body, JSON)))
            .await
            .map_err(|e| self.http_error(action, e, secrets))
    }

    fn conflict(&self, action: &'static str) -> StoreError {
        self.error(
            action,
            format!(
                "another writer changed the keys {} of the Secret since credrot read it; nothing was overwritten: find the other writer (kubectl get secret -n {} {} -o yaml) and run again",
                self.keys.all().join(", "),
                self.namespace,
                self.name
            ),
        )
    }

    /// The Secret after a successful write, from the answer.
    fn seen_from(response: &Response) -> Option<Seen> {
        response
            .json::<SecretObject>()
            .map(|o| Seen::Found(Box::new(o)))
    }
}

#[async_trait]
impl SecretStore for KubernetesStore {
    fn location(&self) -> String {
        match &self.connection.context {
            Some(c) => format!("kubernetes:{c}:{}/{}", self.namespace, self.name),
            None => format!("kubernetes:{}/{}", self.namespace, self.name),
        }
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
        let mut seen = match state.seen.take() {
            Some(seen) => seen,
            None => self.get("write").await?,
        };
        let after = self.ours_for(key, ctx);
        let secrets = [key.expose()];
        for _ in 0..MAX_ATTEMPTS {
            let (method, obj, created) = match &seen {
                Seen::Missing => (Method::POST, self.new_object(&after), true),
                Seen::Found(obj) => {
                    if obj.immutable == Some(true) {
                        return Err(self.error("write", "the Secret is immutable; delete it (credrot creates it again) or point the store at another Secret"));
                    }
                    (Method::PUT, Self::apply(obj, &after), false)
                }
            };
            let before = match &seen {
                Seen::Found(obj) => self.ours(Some(obj)),
                Seen::Missing => self.ours(None),
            };
            let response = match self.send("write", method, &obj, &secrets).await {
                Ok(r) => r,
                Err(e) => {
                    // No answer: the write may have been made; restore checks what is there.
                    state.written = Some(Written {
                        before,
                        after,
                        created,
                    });
                    return Err(e);
                }
            };
            if response.is_success() {
                state.seen = Self::seen_from(&response);
                state.written = Some(Written {
                    before,
                    after,
                    created,
                });
                if state.seen.is_none() {
                    // Accepted, but what came back is not the Secret: taken as a failure
                    // that may have landed, which the rollback checks and undoes.
                    return Err(self.error(
                        "write",
                        format!(
                            "the API server answered {} with something that is not a Secret{MAY_HAVE_LANDED}",
                            response.status
                        ),
                    ));
                }
                return Ok(());
            }
            if response.status != 409 {
                return Err(self.answer_error("write", &response, &secrets));
            }
            // Conflict (or AlreadyExists): another writer was first. Go on only if it left
            // credrot's keys as they were when this run read them.
            let fresh = self.get("write").await?;
            let fresh_ours = match &fresh {
                Seen::Found(obj) => self.ours(Some(obj)),
                Seen::Missing => self.ours(None),
            };
            if fresh_ours.data != before.data {
                return Err(self.conflict("write"));
            }
            tracing::info!(store = %self.location(), "the Secret changed since it was read (another writer, not credrot's keys); writing again on the new version");
            seen = fresh;
        }
        Err(self.error(
            "write",
            format!(
                "the Secret kept changing under {MAX_ATTEMPTS} attempts to write it; run again"
            ),
        ))
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
        let secrets: Vec<String> = written
            .after
            .data
            .values()
            .flatten()
            .filter_map(|v| unb64(v).map(|s| s.to_string()))
            .collect();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get("restore").await?;
            let Seen::Found(obj) = &current else {
                if written.created || written.before.data.values().all(Option::is_none) {
                    state.seen = Some(current);
                    return Ok(());
                }
                return Err(self.error("restore", "the Secret was deleted since credrot wrote it, so the previous key cannot be put back into it; recreate it by hand or run again"));
            };
            let now = self.ours(Some(obj));
            if now.data == written.before.data {
                // The write never landed.
                state.seen = Some(current);
                return Ok(());
            }
            if now.data != written.after.data {
                // Put back the key that was there? Not over another writer's change.
                state.written = Some(written);
                return Err(self.conflict("restore"));
            }
            let client = self.client("restore").await?;
            let others_empty = obj
                .data
                .keys()
                .all(|k| self.keys.all().contains(&k.as_str()));
            let response = if written.created && others_empty {
                let rv = obj.resource_version().unwrap_or_default();
                let body = serde_json::json!({
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "preconditions": {"resourceVersion": rv},
                });
                let body = Zeroizing::new(body.to_string().into_bytes());
                let path = secret_path(&self.namespace, Some(&self.name));
                client
                    .call(Method::DELETE, &path, Some((body, JSON)))
                    .await
                    .map_err(|e| self.http_error("restore", e, &secrets))?
            } else {
                let obj = Self::apply(obj, &written.before);
                self.send("restore", Method::PUT, &obj, &secrets).await?
            };
            match response.status {
                200..=299 | 404 if written.created && others_empty => {
                    state.seen = Some(Seen::Missing);
                    return Ok(());
                }
                200..=299 => {
                    state.seen = Self::seen_from(&response);
                    return Ok(());
                }
                409 => continue,
                _ => {
                    state.written = Some(written);
                    return Err(self.answer_error("restore", &response, &secrets));
                }
            }
        }
        state.written = Some(written);
        Err(self.error(
            "restore",
            format!(
                "the Secret kept changing under {MAX_ATTEMPTS} attempts to restore it; run again"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(credentials: bool) -> KubernetesStore {
        KubernetesStore::new(
            KubeConnection::default(),
            PathBuf::new(),
            Duration::from_secs(1),
            "apps".into(),
            "aws".into(),
            SecretKeys {
                id: "AWS_ACCESS_KEY_ID".into(),
                secret: "AWS_SECRET_ACCESS_KEY".into(),
                credentials: credentials.then(|| "credentials".into()),
                profile: "default".into(),
            },
        )
    }

    fn secret(data: &[(&str, &str)], annotation: Option<&str>) -> Seen {
        let mut obj: SecretObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws", "namespace": "apps", "resourceVersion": "7"},
        }))
        .unwrap();
        for (k, v) in data {
            obj.data.insert(k.to_string(), b64(v));
        }
        if let Some(a) = annotation {
            obj.set_meta("annotations", KEY_ID_ANNOTATION, Some(a.into()));
        }
        Seen::Found(Box::new(obj))
    }

    #[test]
    fn the_pair_and_its_annotation_are_judged_together() {
        let s = store(false);
        let key = AccessKey::new("AKIA1", "s1");
        assert_eq!(s.judge(&Seen::Missing), Holding::Empty);
        assert_eq!(s.judge(&secret(&[("other", "x")], None)), Holding::Empty);
        let pair = [
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s1"),
        ];
        assert_eq!(
            s.judge(&secret(&pair, Some("AKIA1"))),
            Holding::Key(key.clone())
        );
        assert_eq!(s.judge(&secret(&pair, None)), Holding::Key(key));
        assert!(
            matches!(s.judge(&secret(&pair, Some("AKIA0"))), Holding::Broken { key_id: Some(ref id), .. } if id == "AKIA1")
        );
        assert!(matches!(
            s.judge(&secret(&pair[..1], None)),
            Holding::Broken { .. }
        ));
        assert!(matches!(
            s.judge(&secret(&pair[1..], None)),
            Holding::Broken { key_id: None, .. }
        ));
        let Seen::Found(mut obj) = secret(&pair, None) else {
            unreachable!()
        };
        obj.data
            .insert("AWS_SECRET_ACCESS_KEY".into(), Wiped::new("%%%".into()));
        assert!(matches!(s.judge(&Seen::Found(obj)), Holding::Broken { .. }));
    }

    #[test]
    fn the_credentials_file_must_hold_the_same_key() {
        let s = store(true);
        let key = AccessKey::new("AKIA1", "s1");
        let file = credentials_file(&key, "default");
        let pair = [
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s1"),
        ];
        let mut with = pair.to_vec();
        with.push(("credentials", &file));
        assert_eq!(s.judge(&secret(&with, None)), Holding::Key(key));
        assert!(matches!(
            s.judge(&secret(&pair, None)),
            Holding::Broken { .. }
        ));
        let other = credentials_file(&AccessKey::new("AKIA2", "s2"), "default");
        let mut wrong = pair.to_vec();
        wrong.push(("credentials", &other));
        assert!(matches!(
            s.judge(&secret(&wrong, None)),
            Holding::Broken { .. }
        ));
        assert_eq!(parse_credentials("[x]\naws_access_key_id=A\n[default]\naws_access_key_id = B\naws_secret_access_key = C\n", "default"), Some(AccessKey::new("B", "C")));
    }

    #[test]
    fn a_write_keeps_other_keys_and_records_the_key_id() {
        let s = store(false);
        let Seen::Found(obj) = secret(
            &[("DB_PASSWORD", "pw"), ("AWS_ACCESS_KEY_ID", "AKIA0")],
            None,
        ) else {
            unreachable!()
        };
        let key = AccessKey::new("AKIA1", "s1");
        let out = KubernetesStore::apply(&obj, &s.ours_for(&key, &WriteContext::for_test("u")));
        assert_eq!(out.data["DB_PASSWORD"].as_str(), b64("pw").as_str());
        assert_eq!(
            out.meta("annotations", KEY_ID_ANNOTATION).as_deref(),
            Some("AKIA1")
        );
        assert_eq!(
            out.meta("labels", MANAGED_BY_LABEL).as_deref(),
            Some("credrot")
        );
        assert_eq!(
            out.resource_version(),
            Some("7"),
            "the PUT carries the version read"
        );
        let back = KubernetesStore::apply(&out, &s.ours(Some(&obj)));
        assert_eq!(back.data.len(), 2);
        assert_eq!(back.meta("annotations", KEY_ID_ANNOTATION), None);
        assert_eq!(
            back.data["AWS_ACCESS_KEY_ID"].as_str(),
            b64("AKIA0").as_str()
        );
    }
}
