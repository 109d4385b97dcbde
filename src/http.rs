//! A small HTTP(S) client for the APIs credrot talks to besides AWS: the webhook, and the
//! REST APIs of secret stores on other systems.
//!
//! It is hyper 1 on rustls with ring, the stack the AWS SDK clients use (src/aws/http.rs),
//! so no second TLS stack is compiled. Every request is bounded in time and every answer in
//! size, and request and answer bodies live in buffers wiped on drop: store APIs carry
//! secrets both ways. Messages name only `scheme://host:port` ([`target`]); paths and query
//! strings can hold tokens (chat webhooks) and are never shown.

use http::uri::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// The largest answer read: every API credrot calls answers with a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TLS settings could not be used (roots, CA file, client certificate).
    #[error("{target}: TLS set-up failed: {message}")]
    Tls {
        /// Scheme, host and port.
        target: String,
        /// What is wrong with the TLS material (never the material itself).
        message: String,
    },
    /// The request could not be sent or the answer not read.
    #[error("{target}: {message}")]
    Request {
        /// Scheme, host and port.
        target: String,
        /// What went wrong (from the HTTP client, without the URL).
        message: String,
    },
    /// No answer in time.
    #[error("{target} did not answer within {timeout}")]
    Timeout {
        /// Scheme, host and port.
        target: String,
        /// The limit, e.g. `10s`.
        timeout: String,
    },
}

impl HttpError {
    /// Whether the request may have reached the server and been carried out although no
    /// answer came back: a timeout, or a connection lost after sending.
    pub fn may_have_landed(&self) -> bool {
        matches!(self, HttpError::Timeout { .. } | HttpError::Request { .. })
    }
}

/// `scheme://host[:port]` of `uri`: all that messages show of a URL.
pub fn target(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or("")
    )
}

/// Which servers to trust and how to identify to them.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM certificates to trust instead of the system's roots (a cluster CA, a private
    /// Vault CA). `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its private key, PEM (Kubernetes client certificates).
    pub client_identity: Option<ClientIdentity>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<pem>"),
            )
            .finish()
    }
}

/// A client certificate and its key, PEM. The key is wiped on drop.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM.
    pub key_pem: Zeroizing<Vec<u8>>,
}

/// One request. The body is wiped on drop.
pub struct Request {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Zeroizing<Vec<u8>>,
}

impl Request {
    /// A request without a body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Vec::new(),
            body: Zeroizing::new(Vec::new()),
        }
    }

    /// Add a header. A value that is a credential should be marked sensitive by the caller
    /// ([`HeaderValue::set_sensitive`]) so hyper never shows it.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Request {
        self.headers.push((name, value));
        self
    }

    /// `Authorization: Bearer <token>`, marked sensitive. A token that is not a valid
    /// header value is an error naming only that fact.
    pub fn bearer(self, token: &str) -> Result<Request, HttpError> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| HttpError::Request {
                target: target(&self.uri),
                message: "the token holds characters no HTTP header can carry".to_string(),
            })?;
        value.set_sensitive(true);
        Ok(self.header(http::header::AUTHORIZATION, value))
    }

    /// A JSON body (sets `Content-Type`).
    pub fn json(self, body: Zeroizing<Vec<u8>>) -> Request {
        self.body_with_type(body, "application/json")
    }

    /// A body of the given content type.
    pub fn body_with_type(
        mut self,
        body: Zeroizing<Vec<u8>>,
        content_type: &'static str,
    ) -> Request {
        self.body = body;
        self.header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        )
    }

    /// The request's URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }
}

/// An answer: status, headers and the whole body (wiped on drop).
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Zeroizing<Vec<u8>>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON of type `T`; `None` when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A client for one TLS configuration; cheap to clone, connections are pooled.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpClient {
    /// A client trusting what `tls` says, each request bounded by `timeout`. `for_uri` is
    /// only named in errors (TLS set-up fails before any request).
    pub fn new(
        tls: &TlsOptions,
        timeout: Duration,
        for_uri: &Uri,
    ) -> Result<HttpClient, HttpError> {
        let tls_error = |message: String| HttpError::Tls {
            target: target(for_uri),
            message,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?;
        let builder = match &tls.ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| tls_error(format!("the CA is not PEM: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(format!("the CA certificate is unusable: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(tls_error("the CA holds no certificate".to_string()));
                }
                builder.with_root_certificates(roots)
            }
            // Plain http needs no roots; loading them anyway would fail on a machine
            // without a CA bundle for no reason.
            None if for_uri.scheme() != Some(&Scheme::HTTPS) => {
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
            None => builder.with_native_roots().map_err(|e| {
                tls_error(format!("cannot load the system's root certificates: {e}"))
            })?,
        };
        let config = match &tls.client_identity {
            Some(identity) => {
                let chain = CertificateDer::pem_slice_iter(&identity.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| tls_error(format!("the client certificate is not PEM: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&identity.key_pem).map_err(|_| {
                    tls_error("the client key is not a PEM private key".to_string())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(format!("the client certificate is unusable: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Send `request` and read the whole answer, whatever its status.
    pub async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let target = target(&request.uri);
        let request_error = |message: String| HttpError::Request {
            target: target.clone(),
            message,
        };
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(request.uri)
            .header(
                http::header::USER_AGENT,
                concat!("credrot/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        // hyper takes the body by value; the copy it sends is freed, not wiped, which is
        // the same as every TLS library's buffers. The request's own buffer is wiped.
        let http_request = builder
            .body(Full::new(Bytes::copy_from_slice(&request.body)))
            .map_err(|e| request_error(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(http_request)
                .await
                .map_err(|e| request_error(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| request_error(format!("reading the answer: {e}")))?;
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Zeroizing::new(collected.to_bytes().to_vec()),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                target: target.clone(),
                timeout: crate::duration::human(self.timeout),
            })?
    }
}

/// An error and its causes on one line (`client error (Connect): tcp connect error: ...`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_shows_no_path_or_query() {
        let uri: Uri = "https://hooks.example.com:8443/services/T000/SECRET?token=x"
            .parse()
            .unwrap();
        assert_eq!(target(&uri), "https://hooks.example.com:8443");
    }

    #[test]
    fn a_ca_that_is_not_pem_is_a_tls_error_without_its_content() {
        let uri: Uri = "https://vault.example:8200".parse().unwrap();
        let tls = TlsOptions {
            ca_pem: Some(b"not a certificate".to_vec()),
            client_identity: None,
        };
        let err = HttpClient::new(&tls, Duration::from_secs(1), &uri).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("https://vault.example:8200: TLS set-up failed"),
            "{text}"
        );
        assert!(!text.contains("not a certificate"), "{text}");
    }

    #[test]
    fn a_bearer_token_is_a_sensitive_header() {
        let uri: Uri = "http://127.0.0.1:1/v1/secret".parse().unwrap();
        let request = Request::new(Method::GET, uri).bearer("s.token").unwrap();
        let (_, value) = &request.headers[0];
        assert!(value.is_sensitive());
        assert!(Request::new(Method::GET, "http://h/".parse().unwrap())
            .bearer("bad\ntoken")
            .is_err());
    }
}
