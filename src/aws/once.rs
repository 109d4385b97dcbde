//! Calls that must not be sent twice. `CreateAccessKey` is not idempotent: an attempt whose
//! answer was lost (a reset connection, a timeout) or that failed on the server may still
//! have created a key, and a retry would create another, whose secret the caller never gets
//! either. Such an attempt is final; only a refusal the service answered in full (throttling,
//! a 4xx) may be sent again. The caller keeps this host's in-flight record of the user open,
//! so that the next run deletes a key the lost attempt may have made.

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};

/// Forbids retrying an attempt that may have taken effect.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRetryIfItMayHaveLanded;

impl ClassifyRetry for NoRetryIfItMayHaveLanded {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let failed = matches!(ctx.output_or_error(), Some(Err(_)));
        if !failed {
            return RetryAction::NoActionIndicated;
        }
        match ctx.response() {
            // No answer at all: the request may have been carried out.
            None => RetryAction::RetryForbidden,
            // A server error: the service may have done the work before failing.
            Some(response) if response.status().is_server_error() => RetryAction::RetryForbidden,
            Some(_) => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "NoRetryIfItMayHaveLanded"
    }
}
