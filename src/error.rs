//! The top-level error and its exit code: the one place where failures become numbers.

use crate::audit::AuditError;
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::credentials_file::FileError;
use crate::profile::rotate::SelfRotateError;
use crate::profile::ProfileError;
use crate::session::SessionError;
use crate::store::{PrintError, StoreError};
use std::process::ExitCode;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a rotation, store or AWS step failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage and configuration errors (nothing was changed).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when `status --fail-on` found a user at or past the verdict.
pub const EXIT_GATE: u8 = 3;

/// What failed in a run: users, and accounts when a run over `[accounts]` lost some.
fn run_failure(failed: usize, total: usize, accounts: usize) -> String {
    let users = format!(
        "{failed} of {} failed",
        crate::duration::count(total, "user")
    );
    match accounts {
        0 => users,
        n => format!(
            "{users}, and {} could not be worked in",
            crate::duration::count(n, "account")
        ),
    }
}

/// Everything that can end a credrot command early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// services.toml is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line asks for something that cannot work.
    #[error("{0}")]
    Usage(String),
    /// An AWS call outside a single user's rotation failed (e.g. listing users).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A store or outfile could not be opened before the run.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Terraform could not give the key.
    #[error(transparent)]
    Terraform(#[from] crate::terraform::TerraformError),
    /// Some users (or accounts) were not rotated; the summary names them.
    #[error("{}; the summary says which and why. Fix the cause and run again", run_failure(*.failed, *.total, *.accounts))]
    RunFailed {
        /// Users that failed.
        failed: usize,
        /// Users attempted.
        total: usize,
        /// Accounts of `[accounts]` the run could not work in.
        accounts: usize,
    },
    /// A run over `[accounts]` could not start, or one account could not be worked in.
    #[error(transparent)]
    Accounts(Box<crate::accounts::AccountsError>),
    /// `--time-limit` ran out before an account's turn: nothing was done there.
    #[error("not started: the run's --time-limit ran out before this account's turn; nothing was changed there, and the next run takes it")]
    TimeLimit,
    /// Every user rotated, but some `after_rotate` hooks failed; the rotations stand.
    #[error("{hooks} after_rotate hooks failed for {users} users; their rotations stand (new keys stored and verified): the summary says which hook and why; fix it and run the hook by hand")]
    HooksFailed {
        /// Hooks that failed.
        hooks: usize,
        /// Users they belong to.
        users: usize,
    },
    /// `status` could not read some users.
    #[error("the status of {} could not be read; the report says why", crate::duration::count(*.users, "user"))]
    StatusIncomplete {
        /// Users whose status is `error`.
        users: usize,
    },
    /// `status --fail-on` or `update`/`rotate --fail-on` tripped.
    #[error("{} {} {verdict} or worse (--fail-on {verdict})", crate::duration::count(*.users, "user"), if *.users == 1 { "is" } else { "are" })]
    GateTripped {
        /// The gate.
        verdict: String,
        /// Users at or past it.
        users: usize,
    },
    /// A profile of the credentials file could not be read, decrypted or written.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Temporary credentials could not be had.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// `rotate-profile` stopped; the message says which key the profile holds.
    #[error(transparent)]
    SelfRotation(Box<SelfRotateError>),
    /// `exec` could not start its command.
    #[error("cannot run {program}: {source}")]
    Exec {
        /// The command.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// `status --alert` could not deliver its alert.
    #[error("could not send the status alert: {0}; the findings are on stdout")]
    Alert(crate::notify::NotifyError),
    /// A break-glass step was refused or failed.
    #[error(transparent)]
    BreakGlass(#[from] crate::break_glass::BreakGlassError),
    /// The audit log could not be written in full, or `audit verify` found it broken.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// stdout or stderr could not be written. A closed pipe (`credrot list | head -1`) is
    /// no failure here: this output carries no secret, and its reader has what it wanted.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The `--print-secrets` document could not be finished after keys were printed in
    /// it. Always a failure, a closed pipe too: the keys may never have reached a reader.
    #[error("the keys of {} users were printed to stdout, but the document could not be closed ({}): whether its reader got them is unknown; they are in the users' stores (if any), and --print-secrets output should go to a file or a reader that reads to the end", .0.printed, .0.source)]
    SecretOutput(PrintError),
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        Error::Profile(ProfileError::File(e))
    }
}

impl From<SelfRotateError> for Error {
    fn from(e: SelfRotateError) -> Self {
        // Boxed: its messages carry several names, and every Result<_, Error> pays for the
        // largest variant.
        Error::SelfRotation(Box::new(e))
    }
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
            Error::GateTripped { .. } => EXIT_GATE,
            Error::Profile(e) if e.is_usage() => EXIT_USAGE,
            Error::Session(e) if e.is_usage() => EXIT_USAGE,
            Error::SelfRotation(e) if e.is_usage() => EXIT_USAGE,
            Error::BreakGlass(e) if e.is_usage() => EXIT_USAGE,
            Error::Accounts(e) if e.is_usage() => EXIT_USAGE,
            // A command that does not exist is a mistake on the command line.
            Error::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                EXIT_USAGE
            }
            Error::Aws(_)
            | Error::Store(_)
            | Error::RunFailed { .. }
            | Error::HooksFailed { .. }
            | Error::Terraform(_)
            | Error::StatusIncomplete { .. }
            | Error::Profile(_)
            | Error::Session(_)
            | Error::SelfRotation(_)
            | Error::Exec { .. }
            | Error::Audit(_)
            | Error::Alert(_)
            | Error::BreakGlass(_)
            | Error::Accounts(_)
            | Error::TimeLimit
            | Error::SecretOutput(_)
            | Error::Output(_) => EXIT_FAILURE,
        }
    }
}

impl From<crate::accounts::AccountsError> for Error {
    fn from(e: crate::accounts::AccountsError) -> Self {
        Error::Accounts(Box::new(e))
    }
}

/// Report `result` on stderr and turn it into the process exit code.
pub fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            let code = err.exit_code();
            if code != EXIT_OK {
                eprintln!("credrot: error: {err}");
            }
            ExitCode::from(code)
        }
    }
}
