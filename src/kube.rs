//! A small Kubernetes API client on [`crate::http`]: where the cluster is and how to
//! authenticate (kubeconfig or the in-cluster service account), one call, and the API's
//! `Status` error bodies. The Kubernetes store and the `kubernetes_restart` hook use it.
//!
//! Supported credentials: a bearer `token` (or `tokenFile`), a client certificate
//! (`client-certificate[-data]` / `client-key[-data]`), and the cluster CA
//! (`certificate-authority[-data]`). `exec` and `auth-provider` plugins are refused with a
//! message, since running them is out of scope: use a service-account token instead.
//! Nothing read here (tokens, keys) ever reaches a message.

use crate::config::KubeConnection;
use crate::http::{ClientIdentity, HttpClient, HttpError, Request, Response, TlsOptions};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderValue, Method, Uri};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The service account's directory in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A connection to one API server.
pub struct KubeClient {
    server: String,
    http: HttpClient,
    token: Option<Zeroizing<String>>,
    /// Where the settings came from, for messages: `kubeconfig FILE (context C)` or
    /// `in-cluster service account`.
    pub source: String,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("server", &self.server)
            .field("source", &self.source)
            .finish()
    }
}

/// The settings of one cluster and user, before a client is made.
pub(crate) struct ClusterSettings {
    server: String,
    ca_pem: Option<Vec<u8>>,
    token: Option<Zeroizing<String>>,
    identity: Option<ClientIdentity>,
    source: String,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(default, deserialize_with = "wiped")]
    token: Option<Zeroizing<String>>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
    #[serde(rename = "client-key-data", default, deserialize_with = "wiped")]
    key_data: Option<Zeroizing<String>>,
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
    username: Option<String>,
}

fn wiped<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Zeroizing::new))
}

/// Read a file whose content may be a credential, into a wiped buffer.
fn read_wiped(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

fn decode(data: &str, what: &str, source: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(cleaned.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| format!("{source}: {what} is not valid base64"))
}

/// Where the cluster settings come from, in this order: the store's `kubeconfig`,
/// `$KUBECONFIG` (its first file), the in-cluster service account (when
/// `KUBERNETES_SERVICE_HOST` is set and no context is asked for), `~/.kube/config`.
pub(crate) fn settings(conn: &KubeConnection, base_dir: &Path) -> Result<ClusterSettings, String> {
    if let Some(file) = &conn.kubeconfig {
        return from_kubeconfig(&base_dir.join(file), conn.context.as_deref());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let first = std::env::split_paths(&list)
            .find(|p| p.exists())
            .or_else(|| std::env::split_paths(&list).next())
            .unwrap_or_default();
        return from_kubeconfig(&first, conn.context.as_deref());
    }
    if conn.context.is_none() {
        if let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") {
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            return in_cluster(Path::new(SERVICE_ACCOUNT_DIR), &host, &port);
        }
    }
    let home = dirs::home_dir().ok_or("no kubeconfig: set kubeconfig in the store, or KUBECONFIG, and there is no home directory for ~/.kube/config")?;
    from_kubeconfig(&home.join(".kube/config"), conn.context.as_deref())
}

/// The in-cluster settings: the API server at `host:port`, the service account's token
/// and CA in `dir`.
pub(crate) fn in_cluster(dir: &Path, host: &str, port: &str) -> Result<ClusterSettings, String> {
    let source = "in-cluster service account".to_string();
    let token = read_wiped(&dir.join("token"), "service account token")?;
    let token = String::from_utf8(token.to_vec())
        .map(|t| Zeroizing::new(t.trim().to_string()))
        .map_err(|_| format!("{source}: the token is not text"))?;
    let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| {
        format!(
            "cannot read the cluster CA {}: {e}",
            dir.join("ca.crt").display()
        )
    })?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(ClusterSettings {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        token: Some(token),
        identity: None,
        source,
    })
}

/// The settings of `context` (default: the current one) of the kubeconfig at `path`.
pub(crate) fn from_kubeconfig(
    path: &Path,
    context: Option<&str>,
) -> Result<ClusterSettings, String> {
    let text = read_wiped(path, "kubeconfig")?;
    let config: Kubeconfig = serde_yaml_ng::from_slice(&text).map_err(|e| {
        // The YAML error names a line and column, never the content.
        let at = e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        format!(
            "kubeconfig {} is not a valid kubeconfig{at}",
            path.display()
        )
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let context_name = context
        .map(str::to_string)
        .or(config.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            format!(
                "kubeconfig {} has no current-context; set context in the store",
                path.display()
            )
        })?;
    let source = format!("kubeconfig {} (context {context_name})", path.display());
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| format!("{source}: there is no such context"))?;
    let cluster = &config
        .clusters
        .iter()
        .find(|c| c.name == ctx.context.cluster)
        .ok_or_else(|| {
            format!(
                "{source}: cluster '{}' is not in the file",
                ctx.context.cluster
            )
        })?
        .cluster;
    if cluster.insecure {
        return Err(format!("{source}: insecure-skip-tls-verify is set; credrot always verifies the API server: give the cluster's certificate-authority instead"));
    }
    let resolve = |p: &str| -> PathBuf { dir.join(p) };
    let ca_pem = match (&cluster.ca_data, &cluster.ca_file) {
        (Some(data), _) => Some(decode(data, "certificate-authority-data", &source)?.to_vec()),
        (None, Some(file)) => Some(std::fs::read(resolve(file)).map_err(|e| {
            format!(
                "{source}: cannot read certificate-authority {}: {e}",
                resolve(file).display()
            )
        })?),
        (None, None) => None,
    };
    let user = match &ctx.context.user {
        Some(name) => Some(
            &config
                .users
                .iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| format!("{source}: user '{name}' is not in the file"))?
                .user,
        ),
        None => None,
    };
    let mut token = None;
    let mut identity = None;
    if let Some(user) = user {
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(format!("{source}: the user authenticates through an exec or auth-provider plugin, which credrot does not run; use a service account token (token or tokenFile) or a client certificate"));
        }
        if user.username.is_some() {
            return Err(format!("{source}: basic authentication (username/password) is not supported; use a token or a client certificate"));
        }
        token = match (&user.token, &user.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(file)) => {
                let raw = read_wiped(&resolve(file), "tokenFile")?;
                Some(Zeroizing::new(
                    String::from_utf8_lossy(&raw).trim().to_string(),
                ))
            }
            (None, None) => None,
        };
        let cert = match (&user.cert_data, &user.cert_file) {
            (Some(d), _) => Some(decode(d, "client-certificate-data", &source)?.to_vec()),
            (None, Some(f)) => Some(std::fs::read(resolve(f)).map_err(|e| {
                format!(
                    "{source}: cannot read client-certificate {}: {e}",
                    resolve(f).display()
                )
            })?),
            (None, None) => None,
        };
        let key = match (&user.key_data, &user.key_file) {
            (Some(d), _) => Some(decode(d, "client-key-data", &source)?),
            (None, Some(f)) => Some(read_wiped(&resolve(f), "client-key")?),
            (None, None) => None,
        };
        identity = match (cert, key) {
            (Some(cert_pem), Some(key_pem)) => Some(ClientIdentity { cert_pem, key_pem }),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "{source}: a client certificate needs both the certificate and its key"
                ))
            }
        };
    }
    Ok(ClusterSettings {
        server: cluster.server.trim_end_matches('/').to_string(),
        ca_pem,
        token,
        identity,
        source,
    })
}

impl KubeClient {
    /// A client for the cluster `conn` names, each call bounded by `timeout`.
    pub fn connect(
        conn: &KubeConnection,
        base_dir: &Path,
        timeout: Duration,
    ) -> Result<KubeClient, String> {
        Self::from_settings(settings(conn, base_dir)?, timeout)
    }

    pub(crate) fn from_settings(
        s: ClusterSettings,
        timeout: Duration,
    ) -> Result<KubeClient, String> {
        let uri: Uri = s
            .server
            .parse()
            .ok()
            .filter(|u: &Uri| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            })
            .ok_or_else(|| format!("{}: server '{}' is not an http(s) URL", s.source, s.server))?;
        let tls = TlsOptions {
            ca_pem: s.ca_pem,
            client_identity: s.identity,
        };
        let http =
            HttpClient::new(&tls, timeout, &uri).map_err(|e| format!("{}: {e}", s.source))?;
        Ok(KubeClient {
            server: s.server,
            http,
            token: s.token,
            source: s.source,
        })
    }

    /// `scheme://host:port` of the API server, for messages.
    pub fn target(&self) -> String {
        self.server.clone()
    }

    /// One call: `path` (from `/api/...`), with a body of `content_type` if any.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(Zeroizing<Vec<u8>>, &'static str)>,
    ) -> Result<Response, HttpError> {
        let uri: Uri =
            format!("{}{path}", self.server)
                .parse()
                .map_err(|_| HttpError::Request {
                    target: self.server.clone(),
                    message: "the request path is not a valid URL".into(),
                })?;
        let mut request = Request::new(method, uri).header(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(token) = &self.token {
            request = request.bearer(token)?;
        }
        if let Some((body, content_type)) = body {
            request = request.body_with_type(body, content_type);
        }
        self.http.send(request).await
    }
}

/// The API's error body (`kind: Status`).
#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
}

/// An answer that is not 2xx, in words: `403 Forbidden: secrets "x" is forbidden: ...`.
/// The Status message names objects and permissions, never Secret data.
pub fn describe_failure(response: &Response) -> String {
    let status: Status = response.json().unwrap_or_default();
    let reason = if status.reason.is_empty() {
        http::StatusCode::from_u16(response.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string()
    } else {
        status.reason
    };
    let hint = match response.status {
        401 => "; the token or client certificate was not accepted (expired or wrong cluster?)",
        403 => "; the identity lacks a permission: see the RBAC rules in docs/stores/kubernetes.md",
        _ => "",
    };
    let message: String = status.message.chars().take(300).collect();
    if message.is_empty() {
        format!("the API server answered {} {reason}{hint}", response.status)
    } else {
        format!(
            "the API server answered {} {reason}: {message}{hint}",
            response.status
        )
    }
}

/// `/api/v1/namespaces/NS/secrets[/NAME]`, `/apis/apps/v1/...`: names are checked to be
/// DNS names, so they need no escaping.
pub fn secret_path(namespace: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        None => format!("/api/v1/namespaces/{namespace}/secrets"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.pem
contexts:
- name: dev
  context:
    cluster: c1
    user: robot
    namespace: apps
- name: other
  context:
    cluster: c1
    user: plugin
users:
- name: robot
  user:
    token: sekrit-token
- name: plugin
  user:
    exec:
      command: aws
"#;

    #[test]
    fn a_kubeconfig_gives_server_ca_and_token_of_its_context() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ca.pem", "PEM");
        let path = write(dir.path(), "config", CONFIG);
        let s = from_kubeconfig(&path, None).unwrap();
        assert_eq!(s.server, "https://127.0.0.1:6443");
        assert_eq!(
            s.ca_pem.as_deref(),
            Some(&b"PEM"[..]),
            "relative to the kubeconfig"
        );
        assert_eq!(s.token.as_deref().map(String::as_str), Some("sekrit-token"));
        assert!(s.source.contains("context dev"));
        let err = from_kubeconfig(&path, Some("other")).err().unwrap();
        assert!(err.contains("exec"), "{err}");
        let err = from_kubeconfig(&path, Some("nope")).err().unwrap();
        assert!(err.contains("no such context"), "{err}");
    }

    #[test]
    fn kubeconfig_errors_never_quote_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config", "users: [token: sekrit-token\n");
        let err = from_kubeconfig(&path, None).err().unwrap();
        assert!(
            err.contains("not a valid kubeconfig") && !err.contains("sekrit"),
            "{err}"
        );
        let path = write(
            dir.path(),
            "config2",
            "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {client-certificate-data: eA==}}]\n",
        );
        let err = from_kubeconfig(&path, None).err().unwrap();
        assert!(err.contains("insecure-skip-tls-verify"), "{err}");
    }

    #[test]
    fn client_certificates_need_both_halves() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "config",
            "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {client-certificate-data: eA==}}]\n",
        );
        let err = from_kubeconfig(&path, None).err().unwrap();
        assert!(err.contains("both the certificate and its key"), "{err}");
    }

    #[test]
    fn in_cluster_reads_the_service_account() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "token", "sa-token\n");
        write(dir.path(), "ca.crt", "CA");
        let s = in_cluster(dir.path(), "10.0.0.1", "443").unwrap();
        assert_eq!(s.server, "https://10.0.0.1:443");
        assert_eq!(s.token.as_deref().map(String::as_str), Some("sa-token"));
        assert_eq!(
            in_cluster(dir.path(), "fd00::1", "443").unwrap().server,
            "https://[fd00::1]:443"
        );
        assert!(in_cluster(&dir.path().join("none"), "h", "1").is_err());
    }
}
