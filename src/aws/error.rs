//! One error type for every AWS call, classified so callers can decide to retry, to report
//! a permission problem, or to treat a missing object as already gone.

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
        // Auth failures of JSON-protocol services come back as an XML body the SDK cannot
        // parse (moto does this); the body still says what went wrong.
        let xml = err
            .raw_response()
            .and_then(|r| r.body().bytes())
            .filter(|_| err.code().is_none())
            .map(String::from_utf8_lossy);
        let xml_field = |tag: &str| xml.as_deref().and_then(|body| xml_text(body, tag));
        let code = err.code().map(str::to_string).or_else(|| xml_field("Code"));
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (kind, message) = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => (
                AwsErrorKind::Unreachable,
                format!(
                    "cannot reach the AWS endpoint ({}); check --endpoint-url, AWS_ENDPOINT_URL and the network",
                    DisplayErrorContext(&err)
                ),
            ),
            SdkError::ConstructionFailure(_) => (
                AwsErrorKind::Setup,
                format!(
                    "{}; check that AWS credentials and a region are configured (--profile, AWS_PROFILE, AWS_ACCESS_KEY_ID, --region)",
                    DisplayErrorContext(&err)
                ),
            ),
            _ => {
                let kind = classify(code.as_deref(), status);
                let text = err
                    .message()
                    .map(str::to_string)
                    .or_else(|| xml_field("Message"))
                    .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
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

    /// Whether the failure means the signing key was not (yet) accepted.
    pub fn is_unauthenticated(&self) -> bool {
        self.kind == AwsErrorKind::Unauthenticated
    }
}

/// The text of the first `<tag>` element of an XML error body.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..start + len].trim().to_string()).filter(|t| !t.is_empty())
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
            format!("{text}; grant the rotating identity this permission")
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
    fn xml_error_bodies_give_code_and_message() {
        let body = r#"<?xml version="1.0"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: x is not authorized to perform: ssm:PutParameter</Message></Error></Errors></ErrorResponse>"#;
        assert_eq!(xml_text(body, "Code").as_deref(), Some("AccessDenied"));
        assert!(xml_text(body, "Message")
            .unwrap()
            .ends_with("ssm:PutParameter"));
        assert_eq!(xml_text(body, "Type"), None);
        assert_eq!(xml_text("<Code></Code>", "Code"), None);
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
        assert_eq!(classify(Some("Weird"), Some(500)), AwsErrorKind::Other);
    }
}
