//! Human diagnostics go to stderr through `tracing`; stdout is for data only.
//!
//! What each `-v` adds (`RUST_LOG`, when set, replaces all of it):
//!
//! | flag | credrot | the AWS SDK |
//! | --- | --- | --- |
//! | none | warnings and errors | errors (aws-config and aws-runtime), warnings (the rest) |
//! | `-v` | what it does per user (plan, keys created and deleted, stores written, outcome) | as above |
//! | `-vv` | also one line per AWS request: action, HTTP status, duration, attempt, endpoint | as above |
//! | `-vvv` | also its own trace detail | `debug` of the SDK crates (`aws_smithy_*`, `aws_config`, `aws_runtime`, `aws_sdk_*`, `aws_types`, `aws_credential_types`) |
//!
//! Never `trace` for the SDK: at trace, aws-sigv4 and the orchestrator print requests and
//! responses, and a `CreateAccessKey` response carries the new secret. The SDK's `debug`
//! events name operations, endpoints, retries, timeouts and connection reuse only.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The SDK crates that `-vvv` opens up, at `debug` and no further. Filter targets match by
/// prefix, so `aws_smithy` covers `aws_smithy_runtime`, `aws_smithy_http_client`, ... and
/// `aws_sdk` every service crate. `aws_sigv4` (which logs only at trace, canonical requests
/// included) is left out on purpose.
const SDK_DEBUG: &str =
    "aws_smithy=debug,aws_config=debug,aws_runtime=debug,aws_sdk=debug,aws_types=debug,aws_credential_types=debug";

/// The filter for `-v` count `verbose` (or `--quiet`) when `RUST_LOG` is not set.
pub fn default_filter(verbose: u8, quiet: bool) -> String {
    // aws-config warns about missing optional config files and IMDS; credrot falls back
    // on its own and says so when it matters.
    let quiet_sdk = "warn,aws_config=error,aws_runtime=error";
    match (quiet, verbose) {
        (true, _) => format!("{quiet_sdk},credrot=error"),
        (false, 0) => format!("{quiet_sdk},credrot=warn"),
        (false, 1) => format!("{quiet_sdk},credrot=info"),
        (false, 2) => format!("{quiet_sdk},credrot=debug"),
        (false, _) => format!("warn,{SDK_DEBUG},credrot=trace"),
    }
}

/// Install the stderr subscriber. `RUST_LOG` wins; otherwise -v/-q pick the levels (see
/// the module documentation).
pub fn init(verbose: u8, quiet: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stderr, drawn around the progress bar when one is shown
        .with_writer(|| crate::progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verbosity_opens_one_more_layer_and_the_sdk_never_reaches_trace() {
        assert!(default_filter(0, false).ends_with("credrot=warn"));
        assert!(default_filter(1, false).ends_with("credrot=info"));
        assert!(default_filter(2, false).ends_with("credrot=debug"));
        assert!(default_filter(0, true).ends_with("credrot=error"));
        for v in 0..3 {
            assert!(!default_filter(v, false).contains("aws_smithy"), "-v x{v}");
        }
        for v in 3..6 {
            let filter = default_filter(v, false);
            assert!(filter.contains("aws_smithy=debug"), "{filter}");
            assert!(filter.ends_with("credrot=trace"), "{filter}");
            for directive in filter.split(',') {
                if directive.starts_with("aws") {
                    assert!(directive.ends_with("=debug"), "{directive}");
                }
            }
            assert!(!filter.contains("sigv4"), "{filter}");
        }
        for v in 0..6 {
            for q in [false, true] {
                EnvFilter::try_new(default_filter(v, q)).expect("a valid filter");
            }
        }
    }
}
