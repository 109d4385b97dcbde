//! `[notify] webhook`: one JSON POST per run with the summary and the failures.
//!
//! The notice never holds a secret (user reports serialize without the new key), and the
//! webhook URL itself is treated as one: chat webhooks carry their token in the path, so
//! messages only ever name the scheme, host and port ([`Webhook::target`]).
//!
//! A webhook that fails is a warning, never a failed run: the rotation is done by then and
//! its result is on stdout and in the audit log.

use crate::audit::AuditSummary;
use crate::http::{HttpClient, HttpError, Request, TlsOptions};
use crate::rotation::{Outcome, UserReport};
use http::uri::Scheme;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long the POST may take when `[notify] timeout` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the notice did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No answer: TLS set-up, the connection, or the time limit.
    #[error("webhook {0}")]
    Http(#[from] HttpError),
    /// The server answered with a status other than 2xx.
    #[error("webhook {target} answered HTTP {status}")]
    Status {
        /// Scheme, host and port of the webhook.
        target: String,
        /// The HTTP status.
        status: u16,
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
        crate::http::target(&self.uri)
    }

    /// POST `body` as JSON; any answer other than 2xx within `timeout` is an error.
    pub async fn post(&self, body: Vec<u8>, timeout: Duration) -> Result<(), NotifyError> {
        let target = self.target();
        let client = HttpClient::new(&TlsOptions::default(), timeout, &self.uri)?;
        let request = Request::new(http::Method::POST, self.uri.clone()).json(Zeroizing::new(body));
        let response = client.send(request).await?;
        if !response.is_success() {
            return Err(NotifyError::Status {
                target,
                status: response.status,
            });
        }
        Ok(())
    }
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
        assert!(
            matches!(err, NotifyError::Http(HttpError::Request { .. })),
            "{err}"
        );
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
            matches!(
                err,
                NotifyError::Http(HttpError::Request { .. } | HttpError::Tls { .. })
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("TOKEN"), "{err}");
        server.join().unwrap();
    }
}
