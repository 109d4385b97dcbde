//! What the stores behind REST APIs share (Kubernetes, Vault, GitHub, GCP Secret Manager,
//! Azure Key Vault): wiped JSON strings, one [`HttpClient`] per API base for JSON calls with
//! a bearer token, and the mapping of answers and HTTP failures to store errors. Messages
//! name the call and the service's own error text, never a path's secret part, a token or a
//! value: secrets a call carried are redacted from every message.

use super::{SecretStore, StoreError};
use crate::http::{HttpClient, HttpError, Request, Response, TlsOptions};
use crate::secret::AccessKey;
use http::{HeaderName, HeaderValue, Method, Uri};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use zeroize::Zeroizing;

/// A JSON string that may be (or encode) a secret: wiped on drop, never shown by Debug.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Wiped(pub Zeroizing<String>);

impl Wiped {
    pub(crate) fn new(text: String) -> Self {
        Wiped(Zeroizing::new(text))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Wiped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<wiped>")
    }
}

impl Serialize for Wiped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Wiped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The String is moved into the wiped box, not copied.
        Ok(Wiped::new(String::deserialize(d)?))
    }
}

/// `text` with every non-empty secret of `secrets` replaced by `[redacted]`: should a
/// service ever quote a value back, it does not reach a message.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

/// JSON of `value` in a wiped buffer, reserved up front so that growing it leaves no
/// unwiped copy behind.
pub(crate) fn to_wiped_json(value: &impl Serialize, size_hint: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(size_hint + 4096));
    serde_json::to_writer(&mut *out, value).expect("store documents always serialize");
    out
}

/// Appended to the reason of a write that got no answer: it may have been carried out.
pub(crate) const MAY_HAVE_LANDED: &str = " (no answer came back: the change may have been made)";

/// The reason for a failed call, secrets redacted, saying when it may have landed.
pub(crate) fn http_reason(err: &HttpError, secrets: &[&str], is_change: bool) -> String {
    let mut reason = redact(&err.to_string(), secrets);
    if is_change && err.may_have_landed() {
        reason.push_str(MAY_HAVE_LANDED);
    }
    reason
}

/// Why a REST call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No answer (or none in time): the request may have been carried out.
    NoAnswer(HttpError),
    /// The service answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The service's error code and message, as it wrote them.
        message: String,
    },
    /// A 2xx answer that is not what the API documents.
    Malformed(String),
    /// The credentials for the call could not be had (token endpoint, environment).
    Auth(String),
}

impl CallError {
    /// Whether the call may have changed the store although it failed: no answer, or a
    /// server error (the change may have been made before the error).
    pub(crate) fn may_have_landed(&self) -> bool {
        match self {
            CallError::NoAnswer(e) => e.may_have_landed(),
            CallError::Status { status, .. } => *status >= 500,
            // A 2xx answer means the call was carried out.
            CallError::Malformed(_) => true,
            CallError::Auth(_) => false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoAnswer(e) => write!(f, "{e}"),
            CallError::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            CallError::Malformed(what) => write!(f, "unexpected answer: {what}"),
            CallError::Auth(why) => write!(f, "{why}"),
        }
    }
}

/// The error text of an answer, from the shapes these APIs use: GitHub's `{"message"}`,
/// Google's `{"error": {"code", "message", "status"}}`, Azure's `{"error": {"code",
/// "message"}}`; the first 200 characters of anything else.
fn error_text(response: &Response) -> String {
    #[derive(Deserialize)]
    struct Inner {
        code: Option<serde_json::Value>,
        message: Option<String>,
        status: Option<String>,
    }
    #[derive(Deserialize)]
    struct Body {
        message: Option<String>,
        error: Option<Inner>,
    }
    match response.json::<Body>() {
        Some(Body {
            error: Some(inner), ..
        }) => {
            let code = inner
                .status
                .or_else(|| {
                    inner
                        .code
                        .map(|c| c.as_str().map_or(c.to_string(), str::to_string))
                })
                .unwrap_or_default();
            let message = inner.message.unwrap_or_default();
            format!("{code}: {message}")
                .trim_start_matches(": ")
                .to_string()
        }
        Some(Body {
            message: Some(message),
            ..
        }) => message,
        _ => {
            let text = String::from_utf8_lossy(&response.body);
            let text: String = text.chars().take(200).collect();
            if text.trim().is_empty() {
                "(no message)".to_string()
            } else {
                text
            }
        }
    }
}

/// A JSON API at one base URL.
pub(crate) struct Api {
    client: HttpClient,
    base: String,
}

impl Api {
    /// An API at `base` (scheme, host, optional port and path prefix, no trailing `/`).
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Api, String> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = base.parse().map_err(|_| format!("'{base}' is not a URL"))?;
        let client =
            HttpClient::new(&TlsOptions::default(), timeout, &uri).map_err(|e| e.to_string())?;
        Ok(Api { client, base })
    }

    /// The time every call of the REST stores may take: the same setting as AWS calls.
    pub(crate) fn timeout() -> Duration {
        crate::aws::Timeouts::from_env().attempt
    }

    /// `method` on `path` (from the base, starting with `/`, query included), with the
    /// bearer `token`, `headers`, and `body` as JSON when given. Any answer is returned;
    /// see [`Self::expect`].
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&'static str, &'static str)],
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Response, CallError> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|_| CallError::Malformed("a request path is not a valid URL".into()))?;
        let mut request = Request::new(method, uri)
            .bearer(token)
            .map_err(CallError::NoAnswer)?;
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.client.send(request).await.map_err(CallError::NoAnswer)
    }

    /// `response` if its status is one of `ok`, else the service's error.
    pub(crate) fn expect(response: Response, ok: &[u16]) -> Result<Response, CallError> {
        if ok.contains(&response.status) {
            Ok(response)
        } else {
            Err(CallError::Status {
                status: response.status,
                message: error_text(&response),
            })
        }
    }

    /// The answer's body as `T`, or a malformed-answer error naming `what`.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        response: &Response,
        what: &str,
    ) -> Result<T, CallError> {
        response
            .json()
            .ok_or_else(|| CallError::Malformed(format!("{what} is not the documented JSON")))
    }
}

/// A store error for `err` while doing `action`; `call` names the REST call (`PUT
/// secret AWS_SECRET_ACCESS_KEY`), `redact` the secrets the call carried.
pub(crate) fn store_error(
    location: String,
    action: &'static str,
    call: &str,
    err: &CallError,
    redact: &[&str],
) -> StoreError {
    let mut reason = self::redact(&format!("{call}: {err}"), redact);
    if let CallError::Status { status: 401, .. } = err {
        reason.push_str("; the credentials were refused: check the token");
    }
    if let CallError::Status { status: 403, .. } = err {
        reason.push_str("; the credentials lack a permission this store needs (see its docs page)");
    }
    StoreError {
        store: location,
        action,
        reason,
    }
}

/// `store`'s error for `err` while doing `action` in `call`, with `key`'s secret (when the
/// call carried one) redacted.
pub(crate) fn fail(
    store: &dyn SecretStore,
    action: &'static str,
    call: &str,
    err: &CallError,
    key: Option<&AccessKey>,
) -> StoreError {
    let redact: Vec<&str> = key.map(|k| k.expose()).into_iter().collect();
    store_error(store.location(), action, call, err, &redact)
}

/// A base URL a store may use: `https://`, or `http://` to a loopback address only (a
/// local test server). Anything else would send a token in the clear.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|_| format!("'{url}' is not a URL"))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "'{url}' is plain http to a host that is not loopback; a token would cross the network in the clear: use https"
        )),
        _ => Err(format!("'{url}' is not an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The standard base64 of `data`, in a buffer wiped on drop.
pub(crate) fn base64_wiped(data: &[u8]) -> Zeroizing<String> {
    use base64::Engine;
    let mut out = Zeroizing::new(String::with_capacity(data.len().div_ceil(3) * 4 + 4));
    base64::engine::general_purpose::STANDARD.encode_string(data, &mut out);
    out
}

/// `segment` percent-encoded for one path segment or query value (RFC 3986 unreserved
/// characters kept).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: http::HeaderMap::new(),
            body: Zeroizing::new(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn error_bodies_of_each_api_read_as_one_line() {
        let github = answer(
            403,
            r#"{"message":"Resource not accessible by integration","documentation_url":"x"}"#,
        );
        assert_eq!(
            error_text(&github),
            "Resource not accessible by integration"
        );
        let google = answer(
            403,
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(error_text(&google), "PERMISSION_DENIED: Permission denied");
        let azure = answer(
            403,
            r#"{"error":{"code":"Forbidden","message":"no access"}}"#,
        );
        assert_eq!(error_text(&azure), "Forbidden: no access");
        assert_eq!(error_text(&answer(502, "")), "(no message)");
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(check_base_url("https://api.github.com").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        let err = check_base_url("http://vault.example.com").unwrap_err();
        assert!(err.contains("in the clear"), "{err}");
        assert!(check_base_url("ftp://x").is_err());
    }

    #[test]
    fn a_secret_quoted_back_is_redacted() {
        let err = CallError::Status {
            status: 400,
            message: "bad value s3cr3t".into(),
        };
        let e = store_error(
            "github:o/r".into(),
            "write",
            "PUT secret",
            &err,
            &["s3cr3t"],
        );
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("AWS_KEY-1.x~"), "AWS_KEY-1.x~");
    }

    #[test]
    fn wiped_strings_round_trip_and_never_debug_print() {
        let w: Wiped = serde_json::from_str("\"s3cr3t\"").unwrap();
        assert_eq!(w.as_str(), "s3cr3t");
        assert_eq!(format!("{w:?}"), "<wiped>");
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"s3cr3t\"");
        assert_eq!(
            redact("value s3cr3t is bad", &["s3cr3t", ""]),
            "value [redacted] is bad"
        );
    }
}
