//! OAuth 2.0 access tokens for the cloud stores (GCP, Azure): fetched from a token
//! endpoint, kept until shortly before they expire, shared by every user of a run. Tokens
//! and the credentials that buy them live in wiped buffers and are never in a message.

use super::rest::{self, Api, CallError};
use crate::http::{HttpClient, Request, TlsOptions};
use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// A string read from JSON straight into a buffer wiped on drop (a credential field).
pub(crate) struct Wiped(pub(crate) Zeroizing<String>);

impl<'de> Deserialize<'de> for Wiped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Wiped(Zeroizing::new(s)))
    }
}

impl std::ops::Deref for Wiped {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A token is renewed this long before it expires.
const MARGIN: Duration = Duration::from_secs(120);

/// An access token and when to stop using it.
struct Cached {
    token: Zeroizing<String>,
    until: Instant,
}

/// A token kept for the whole run.
#[derive(Default)]
pub(crate) struct TokenCache {
    cached: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The cached token, or a new one from `fetch` (one fetch at a time).
    pub(crate) async fn get<F>(&self, fetch: F) -> Result<Zeroizing<String>, CallError>
    where
        F: std::future::Future<Output = Result<Token, CallError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.until) {
            return Ok(c.token.clone());
        }
        let token = fetch.await?;
        let until = Instant::now() + token.expires_in.saturating_sub(MARGIN);
        *cached = Some(Cached {
            token: token.access_token.clone(),
            until,
        });
        Ok(token.access_token)
    }
}

/// A token endpoint's answer.
pub(crate) struct Token {
    /// The bearer token.
    pub(crate) access_token: Zeroizing<String>,
    /// How long it is valid.
    pub(crate) expires_in: Duration,
}

/// `{"access_token", "expires_in"}`; `expires_in` is a number (OAuth) or a string (Azure's
/// managed identity endpoint).
fn parse_token(body: &[u8], what: &str) -> Result<Token, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| CallError::Malformed(format!("the answer of {what} holds no access_token")))?;
    let access_token = Zeroizing::new(answer.access_token);
    let seconds = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(300);
    if access_token.is_empty() {
        return Err(CallError::Malformed(format!(
            "{what} answered an empty access_token"
        )));
    }
    Ok(Token {
        access_token,
        expires_in: Duration::from_secs(seconds),
    })
}

/// `name=value&...`, each part percent-encoded, in a wiped buffer.
pub(crate) fn form(fields: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let capacity = fields
        .iter()
        .map(|(k, v)| 3 * (k.len() + v.len()) + 2)
        .sum();
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(rest::encode(name).as_bytes());
        out.push(b'=');
        out.extend_from_slice(Zeroizing::new(rest::encode(value)).as_bytes());
    }
    out
}

/// The token endpoint's answer to `method` on `url` with a form body (when given) and
/// `headers`; `what` names the endpoint in messages.
pub(crate) async fn fetch(
    method: Method,
    url: &str,
    body: Option<Zeroizing<Vec<u8>>>,
    headers: &[(&'static str, Zeroizing<String>)],
    what: &str,
) -> Result<Token, CallError> {
    // The instance metadata service is plain http on a link-local address, by design.
    if !url.starts_with("http://169.254.169.254/") {
        rest::check_base_url(url).map_err(|m| CallError::Auth(format!("{what}: {m}")))?;
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| CallError::Auth(format!("{what}: '{url}' is not a URL")))?;
    let client = HttpClient::new(&TlsOptions::default(), Api::timeout(), &uri)
        .map_err(|e| CallError::Auth(format!("{what}: {e}")))?;
    let mut request = Request::new(method, uri).header(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            CallError::Auth(format!(
                "{what}: a header value holds characters HTTP cannot carry"
            ))
        })?;
        value.set_sensitive(true);
        request = request.header(HeaderName::from_static(name), value);
    }
    if let Some(body) = body {
        request = request.body_with_type(body, "application/x-www-form-urlencoded");
    }
    let response = client.send(request).await.map_err(CallError::NoAnswer)?;
    let response = Api::expect(response, &[200]).map_err(|e| match e {
        CallError::Status { status, message } => CallError::Auth(format!(
            "{what} refused the credentials: HTTP {status}: {message}"
        )),
        other => other,
    })?;
    parse_token(&response.body, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_of_both_shapes_parse() {
        let oauth = parse_token(
            br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
            "t",
        )
        .unwrap();
        assert_eq!(oauth.access_token.as_str(), "ya29.x");
        assert_eq!(oauth.expires_in, Duration::from_secs(3599));
        let imds = parse_token(
            br#"{"access_token":"eyJ0","expires_in":"86399","resource":"r"}"#,
            "t",
        )
        .unwrap();
        assert_eq!(imds.expires_in, Duration::from_secs(86399));
        assert!(parse_token(b"<html>", "t").is_err());
        assert!(parse_token(br#"{"access_token":""}"#, "t").is_err());
    }

    #[test]
    fn forms_are_percent_encoded() {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "1//a b&c"),
        ]);
        assert_eq!(
            &body[..],
            b"grant_type=refresh_token&refresh_token=1%2F%2Fa%20b%26c"
        );
    }
}
