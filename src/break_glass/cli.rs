//! `credrot break-glass ...`: the clap definitions (kept here so src/cli.rs only names them).

use crate::cli::CredentialFormat;
use clap::Subcommand;
use std::time::Duration;

/// `credrot break-glass ...`
#[derive(Debug, Subcommand)]
pub enum BreakGlassCommand {
    /// Ask for emergency access to the [break_glass] role; prints the request id
    Request {
        /// Why (1 to 256 characters; it becomes a session tag and is sent to the webhook)
        #[arg(long)]
        reason: String,
        /// How long the access lasts once approved: 15m to [break_glass] max_duration [default: max_duration]
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        duration: Option<Duration>,
    },
    /// Approve a request (you must be an approver, and not its requester)
    Approve {
        /// The request id
        id: String,
    },
    /// Deny a request (final)
    Deny {
        /// The request id
        id: String,
        /// Why
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the requests: id, requester, status, approvals, window
    List,
    /// Assume the role for an approved request (the requester only) and print the credentials
    Credentials {
        /// The request id
        id: String,
        /// How to print them
        #[arg(long, value_enum, default_value_t = CredentialFormat::Env)]
        format: CredentialFormat,
    },
    /// Run COMMAND with the credentials of an approved request in its environment
    Exec {
        /// The request id
        id: String,
        /// The command and its arguments (after --)
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// End a request's access now: every session of the role issued before now is refused
    Revoke {
        /// The request id
        id: String,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::duration::DurationRange::secs(60, 12 * 3600).parse(text)
}
