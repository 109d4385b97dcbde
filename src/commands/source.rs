//! What `session`, `exec` and `rotate-profile` share besides the AWS context (which every
//! command gets from `context::aws_context`).

use crate::aws::AwsOptions;
use crate::cli::GlobalArgs;
use crate::error::Error;

/// The profile in effect: `--profile`, else `AWS_PROFILE`.
pub(super) fn effective_profile(global: &GlobalArgs) -> Option<String> {
    global
        .profile
        .clone()
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
}

/// The AWS options of the global flags, for `profile`.
pub(super) fn aws_options(global: &GlobalArgs, profile: Option<String>) -> AwsOptions {
    AwsOptions {
        profile,
        // The caller signs with credentials it read itself (with_credentials).
        profile_credentials: false,
        region: global.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
    }
}

/// A runtime for one command.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
