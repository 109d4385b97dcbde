//! Human diagnostics go to stderr through `tracing`; stdout is for data only.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Install the stderr subscriber. `RUST_LOG` wins; otherwise -v/-q pick the level of
/// credrot's own events. The SDK's events stay at warn unless RUST_LOG asks for them, so
/// `-vvv` never dumps request traffic.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        // aws-config warns about missing optional config files and IMDS; credrot falls back
        // on its own and says so when it matters.
        .unwrap_or_else(|_| {
            EnvFilter::new(format!(
                "warn,aws_config=error,aws_runtime=error,credrot={level}"
            ))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
