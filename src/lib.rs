//! credrot: rotate AWS IAM access keys with the CURRENT/LAST two-key pattern and hand the new
//! keys to the secret stores that services read them from.
//!
//! The binary is a thin shell over [`main`]; the rotation engine ([`rotation`]) knows nothing
//! of the command line, and stores ([`store`]) implement one trait.

pub mod accounts;
pub mod audit;
pub mod aws;
pub mod break_glass;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod credentials_file;
pub mod duration;
pub mod error;
#[cfg(feature = "failpoints")]
mod failpoints;
pub mod fsutil;
pub mod generate;
pub mod gitcheck;
pub mod hooks;
pub mod http;
pub mod kube;
pub mod lambda;
mod logging;
pub mod monitor;
pub mod notify;
pub mod output;
pub mod policy;
pub mod profile;
mod progress;
pub mod rotation;
pub mod secret;
pub mod session;
pub mod status;
pub mod store;
pub mod terraform;

use clap::Parser;

/// Parse the command line, run the command, and return its exit code.
pub fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    // A `bootstrap` started by the Lambda runtime gets no arguments: it is `credrot lambda`.
    let cli = if lambda::started_by_runtime() {
        cli::Cli::parse_from(["credrot", "lambda"])
    } else {
        cli::Cli::parse()
    };
    logging::init(cli.global.verbose, cli.global.quiet);
    // Settings from the environment are checked before any command runs (exit 2).
    if let Err(message) = clock::init().and_then(|()| aws::Timeouts::check_env()) {
        return error::exit_code(Err(error::Error::Usage(message)));
    }
    error::exit_code(commands::run(cli))
}
