//! One error type for every AWS call, classified so callers can decide to retry, to report
//! a permission problem, or to treat a missing object as already gone.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The key used to sign was not recognised or its signature was wrong (a new key that IAM
    /// has not propagated yet looks like this too).
    Unauthenticated,
    /// The identity is not allowed to make the call.
    AccessDenied,
    /// The object does not exist.
    NotFound,
    /// An IAM quota, e.g. a third access key.
    LimitExceeded,
    /// The endpoint asked us to slow down, and retries did not get through.
    Throttled,
    /// The endpoint could not be reached or timed out.
    Unreachable,
    /// The service failed (HTTP 5xx): it may or may not have done the work.
    ServerError,
    /// No credentials, no region, or another local setup problem.
    Setup,
    /// Anything else the service returned.
    Other,
}

/// A failed AWS call: which operation, the service's code and message.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct AwsError {
    /// The API operation, e.g. `iam:CreateAccessKey`.
    pub operation: &'static str,
    /// The service's error code, when it gave one.
    pub code: Option<String>,
    /// Why, including what to do where we know.
    pub message: String,
    /// The classification of the failure.
    pub kind: AwsErrorKind,
}

impl AwsError {
    /// Build from an SDK error of any service.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // Some emulators answer JSON-protocol calls with an XML error body the SDK cannot
        // parse; the code and message are still in the body.
        let body = err
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let code = err
            .code()
            .map(str::to_string)
            .or_else(|| xml_field(&body, "Code"));
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (kind, message) = match &err {
            // Credentials are resolved lazily, at the first request, so "none found"
            // surfaces as a dispatch failure: not a network problem, and no retry helps.
            SdkError::DispatchFailure(_) if credentials_error(&err).is_some() => {
                (AwsErrorKind::Setup, credentials_message(&err))
            }
            SdkError::TimeoutError(_) => (
                AwsErrorKind::Unreachable,
                format!(
                    "{}; check --endpoint-url, AWS_ENDPOINT_URL and the network ({} sets how long each attempt waits)",
                    root_cause(&err),
                    super::TIMEOUT_ENV
                ),
            ),
            SdkError::DispatchFailure(_) => (
                AwsErrorKind::Unreachable,
                format!(
                    "cannot reach the AWS endpoint ({}); check --endpoint-url, AWS_ENDPOINT_URL and the network",
                    root_cause(&err)
                ),
            ),
            SdkError::ConstructionFailure(_) => (
                AwsErrorKind::Setup,
                format!(
                    "{}; check that AWS credentials and a region are configured (--profile, AWS_PROFILE, AWS_ACCESS_KEY_ID, --region)",
                    root_cause(&err)
                ),
            ),
            _ => {
                let kind = classify(code.as_deref(), status);
                let text = err
                    .message()
                    .map(str::to_string)
                    .or_else(|| xml_field(&body, "Message"))
                    .unwrap_or_else(|| "the service gave no reason".to_string());
                let text = match (&code, status) {
                    (Some(code), _) => format!("{code}: {text}"),
                    (None, Some(status)) => format!("HTTP {status}: {text}"),
                    _ => text,
                };
                (kind, with_advice(kind, text))
            }
        };
        AwsError {
            operation,
            code,
            message,
            kind,
        }
    }

    /// Whether trying again later may succeed (throttling, an unreachable endpoint).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            AwsErrorKind::Throttled | AwsErrorKind::Unreachable | AwsErrorKind::ServerError
        )
    }

    /// Whether the call may have taken effect although it failed: no answer came, or the
    /// service failed after it may have done the work.
    pub fn may_have_landed(&self) -> bool {
        matches!(
            self.kind,
            AwsErrorKind::Unreachable | AwsErrorKind::ServerError
        )
    }

    /// Whether the failure means the signing key was not (yet) accepted.
    pub fn is_unauthenticated(&self) -> bool {
        self.kind == AwsErrorKind::Unauthenticated
    }
}

/// The credential provider's error behind `err`, if loading credentials is what failed.
fn credentials_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialsError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

impl AwsError {
    /// Credentials that could not be resolved before any call (`operation` names the step).
    pub fn credentials(operation: &'static str, err: &CredentialsError) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: credentials_message(err),
            kind: AwsErrorKind::Setup,
        }
    }
}

/// What to say when credentials could not be loaded: none at all, or a provider's failure.
fn credentials_message(err: &(dyn std::error::Error + 'static)) -> String {
    const HOW: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME (or set AWS_PROFILE) for a profile in ~/.aws/config or ~/.aws/credentials; for SSO, run 'aws sso login --profile NAME' first";
    match credentials_error(err) {
        Some(CredentialsError::CredentialsNotLoaded(_)) => {
            format!("no AWS credentials found: {HOW}")
        }
        _ => format!(
            "AWS credentials could not be loaded ({}): {HOW}",
            root_cause(err)
        ),
    }
}

/// The innermost error's message: the SDK's wrappers repeat themselves, the root says why.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The text of `<name>...</name>` in an XML error body.
fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

fn classify(code: Option<&str>, status: Option<u16>) -> AwsErrorKind {
    match code {
        Some(
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredToken"
            | "ExpiredTokenException",
        ) => AwsErrorKind::Unauthenticated,
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
            AwsErrorKind::AccessDenied
        }
        Some("NoSuchEntity" | "ResourceNotFoundException" | "ParameterNotFound" | "NotFound") => {
            AwsErrorKind::NotFound
        }
        Some("LimitExceeded" | "LimitExceededException") => AwsErrorKind::LimitExceeded,
        Some(
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded",
        ) => AwsErrorKind::Throttled,
        _ => match status {
            Some(401) => AwsErrorKind::Unauthenticated,
            // Auth failures of JSON-protocol services can come back without a code.
            Some(403) => AwsErrorKind::AccessDenied,
            Some(404) => AwsErrorKind::NotFound,
            Some(429) => AwsErrorKind::Throttled,
            Some(500..=599) => AwsErrorKind::ServerError,
            _ => AwsErrorKind::Other,
        },
    }
}

fn with_advice(kind: AwsErrorKind, text: String) -> String {
    match kind {
        AwsErrorKind::Unauthenticated => format!(
            "{text}; the credentials in use were rejected: check --profile / AWS_PROFILE / AWS_ACCESS_KEY_ID"
        ),
        AwsErrorKind::AccessDenied => {
            format!("{text}; grant the identity credrot runs as this permission")
        }
        AwsErrorKind::Throttled => {
            format!("{text}; AWS kept throttling after retries: lower --concurrency or run later")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_error_bodies_are_read() {
        let body = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_field(body, "Message").as_deref(), Some("no"));
        assert_eq!(xml_field("{}", "Code"), None);
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            classify(Some("InvalidClientTokenId"), Some(403)),
            AwsErrorKind::Unauthenticated
        );
        assert_eq!(
            classify(Some("NoSuchEntity"), Some(404)),
            AwsErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("LimitExceeded"), Some(409)),
            AwsErrorKind::LimitExceeded
        );
        assert_eq!(classify(None, Some(403)), AwsErrorKind::AccessDenied);
        assert_eq!(
            classify(Some("Weird"), Some(500)),
            AwsErrorKind::ServerError
        );
        assert_eq!(classify(Some("Weird"), Some(400)), AwsErrorKind::Other);
    }
}
