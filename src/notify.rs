//! `[notify] webhook`: one JSON POST per run with the summary and the failures.
//!
//! The notice never holds a secret (user reports serialize without the new key), and the
//! webhook URL itself is treated as one: chat webhooks carry their token in the path, so
//! messages only ever name the scheme, host and port ([`Webhook::target`]).
//!
//! A webhook that fails is a warning, never a failed run: the rotation is done by then and
//! its result is on stdout and in the audit log.

use crate::audit::AuditSummary;
use crate::rotation::{Outcome, UserReport};
use http::uri::Scheme;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long the POST may take when `[notify] timeout` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the notice did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// HTTPS needs the system's root certificates and none could be loaded.
    #[error("webhook {target}: cannot load the system's root certificates: {source}")]
    Tls {
        /// Scheme, host and port of the webhook.
        target: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request could not be sent or the answer not read.
    #[error("webhook {target}: {message}")]
    Request {
        /// Scheme, host and port of the webhook.
        target: String,
        /// What went wrong (from the HTTP client, without the URL).
        message: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("webhook {target} answered HTTP {status}")]
    Status {
        /// Scheme, host and port of the webhook.
        target: String,
        /// The HTTP status.
        status: u16,
    },
    /// No answer in time.
    #[error("webhook {target} did not answer within {timeout}")]
    Timeout {
        /// Scheme, host and port of the webhook.
        target: String,
        /// The limit, e.g. `10s`.
        timeout: String,
    },
}

/// A validated webhook URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    uri: http::Uri,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path may hold the webhook's token.
        write!(f, "Webhook({}/...)", self.target())
    }
}

impl Webhook {
    /// Accept an absolute `http://` or `https://` URL with a host; the error says why not.
    pub fn parse(text: &str) -> Result<Webhook, String> {
        let uri: http::Uri = text
            .parse()
            .map_err(|_| "the webhook is not a valid http:// or https:// URL".to_string())?;
        let scheme_ok = uri.scheme() == Some(&Scheme::HTTP) || uri.scheme() == Some(&Scheme::HTTPS);
        if !scheme_ok {
            return Err("the webhook must be an http:// or https:// URL".to_string());
        }
        let Some(authority) = uri.authority() else {
            return Err("the webhook URL has no host".to_string());
        };
        if authority.host().is_empty() {
            return Err("the webhook URL has no host".to_string());
        }
        if authority.as_str().contains('@') {
            return Err(
                "user:password@ in the webhook URL is not supported; use a URL with a token"
                    .to_string(),
            );
        }
        Ok(Webhook { uri })
    }

    /// `scheme://host[:port]`: what messages show of the URL.
    pub fn target(&self) -> String {
        format!(
            "{}://{}",
            self.uri.scheme_str().unwrap_or("http"),
            self.uri.authority().map(|a| a.as_str()).unwrap_or("")
        )
    }

    /// POST `body` as JSON; any answer other than 2xx within `timeout` is an error.
    pub async fn post(&self, body: Vec<u8>, timeout: Duration) -> Result<(), NotifyError> {
        let target = self.target();
        let request_error = |message: String| NotifyError::Request {
            target: target.clone(),
            message,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| request_error(e.to_string()))?;
        // Plain http needs no roots; loading them anyway would fail on a machine without
        // a CA bundle for no reason.
        let tls = if self.uri.scheme() == Some(&Scheme::HTTPS) {
            tls.with_native_roots().map_err(|source| NotifyError::Tls {
                target: target.clone(),
                source,
            })?
        } else {
            tls.with_root_certificates(rustls::RootCertStore::empty())
        }
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("credrot/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| request_error(e.to_string()))?;
        let response = tokio::time::timeout(timeout, client.request(request))
            .await
            .map_err(|_| NotifyError::Timeout {
                target: target.clone(),
                timeout: humantime::format_duration(timeout).to_string(),
            })?
            .map_err(|e| request_error(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(NotifyError::Status {
                target,
                status: status.as_u16(),
            });
        }
        Ok(())
    }
}

/// An error and its causes on one line (`client error (Connect): tcp connect error: ...`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One failed user, for the notice.
#[derive(Debug, Serialize)]
pub struct Failure<'a> {
    /// The IAM user.
    pub user: &'a str,
    /// The service, for `update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    /// What failed and what was undone.
    pub error: &'a str,
}

/// The body of the POST.
#[derive(Debug, Serialize)]
pub struct RunNotice<'a> {
    /// The run id (also in the audit log and the IAM lock tags).
    pub run_id: &'a str,
    /// What ran, e.g. `update postgresql` or `rotate --path /PSK/`.
    pub command: &'a str,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// When the run started, RFC 3339.
    pub started_at: String,
    /// When the notice was made, RFC 3339.
    pub finished_at: String,
    /// Users per outcome (`rotated`, `failed`, ...), every outcome present.
    pub counts: BTreeMap<&'static str, usize>,
    /// The users that failed.
    pub failures: Vec<Failure<'a>>,
    /// Problems of the run itself: it stopped before rotating, or its audit log failed.
    pub errors: Vec<String>,
    /// The audit log's head after the run, when there is an audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<&'a AuditSummary>,
    /// Every user's report (no secrets).
    pub users: &'a [UserReport],
}

impl<'a> RunNotice<'a> {
    /// A notice for a run that produced `reports`.
    pub fn new(
        run_id: &'a str,
        command: &'a str,
        dry_run: bool,
        started_at: std::time::SystemTime,
        reports: &'a [UserReport],
    ) -> Self {
        let counts = Outcome::ALL
            .iter()
            .map(|&o| {
                (
                    o.as_str(),
                    reports.iter().filter(|r| r.outcome == o).count(),
                )
            })
            .collect();
        let failures = reports
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .map(|r| Failure {
                user: &r.user,
                service: r.service.as_deref(),
                error: r.error.as_deref().unwrap_or("failed"),
            })
            .collect();
        RunNotice {
            run_id,
            command,
            dry_run,
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            finished_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string(),
            counts,
            failures,
            errors: Vec::new(),
            audit: None,
            users: reports,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the notice always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessKey;

    #[test]
    fn only_absolute_http_urls_are_webhooks() {
        assert!(Webhook::parse("https://hooks.example.com/T/B/secret").is_ok());
        assert!(Webhook::parse("http://127.0.0.1:8080/hook").is_ok());
        for bad in [
            "hooks.example.com/x",
            "ftp://example.com/x",
            "https://",
            "/relative",
            "https://user:pw@example.com/x",
            "not a url",
        ] {
            assert!(Webhook::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn messages_never_show_the_path_or_query() {
        let hook = Webhook::parse("https://hooks.example.com:8443/services/T/B/TOKEN?k=v").unwrap();
        assert_eq!(hook.target(), "https://hooks.example.com:8443");
        assert!(!format!("{hook:?}").contains("TOKEN"));
    }

    #[test]
    fn the_notice_counts_outcomes_and_holds_no_secret() {
        let mut ok = UserReport::new("alice", Some("svc"));
        ok.outcome = Outcome::Rotated;
        ok.new_key = Some(AccessKey::new("AKIANEW", "super-secret-value"));
        let mut bad = UserReport::new("bob", None);
        bad.outcome = Outcome::Failed;
        bad.error = Some("iam:CreateAccessKey failed".to_string());
        let reports = vec![ok, bad];
        let notice = RunNotice::new(
            "run",
            "update svc",
            false,
            std::time::SystemTime::now(),
            &reports,
        );
        let json: serde_json::Value = serde_json::from_slice(&notice.to_json()).unwrap();
        assert_eq!(json["counts"]["rotated"], 1);
        assert_eq!(json["counts"]["failed"], 1);
        assert_eq!(json["counts"]["fresh"], 0);
        assert_eq!(json["failures"][0]["user"], "bob");
        assert_eq!(json["users"].as_array().unwrap().len(), 2);
        assert!(!String::from_utf8(notice.to_json())
            .unwrap()
            .contains("super-secret-value"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_request_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook::parse(&format!("http://127.0.0.1:{port}/hook/TOKEN")).unwrap();
        let err = hook
            .post(b"{}".to_vec(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, NotifyError::Request { .. }), "{err}");
        assert!(!err.to_string().contains("TOKEN"), "{err}");
    }

    #[tokio::test]
    async fn https_to_a_server_that_speaks_no_tls_fails_cleanly() {
        // Exercises the TLS set-up (provider, system roots) without a network: the server
        // answers the ClientHello with plain HTTP.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\n\r\n");
            }
        });
        let hook = Webhook::parse(&format!("https://127.0.0.1:{port}/hook/TOKEN")).unwrap();
        let err = hook
            .post(b"{}".to_vec(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, NotifyError::Request { .. } | NotifyError::Tls { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("TOKEN"), "{err}");
        server.join().unwrap();
    }
}
