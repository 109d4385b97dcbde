//! The top-level error and its exit code: the one place where failures become numbers.

use crate::audit::AuditError;
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::store::StoreError;
use std::process::ExitCode;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a rotation, store or AWS step failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage and configuration errors (nothing was changed).
pub const EXIT_USAGE: u8 = 2;

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
    /// Some users were not rotated; the summary names them.
    #[error("{failed} of {total} users failed; the summary says which and why. Fix the cause and run again")]
    RunFailed {
        /// Users that failed.
        failed: usize,
        /// Users attempted.
        total: usize,
    },
    /// The audit log could not be written in full, or `audit verify` found it broken.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// stdout or stderr could not be written.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
            Error::Aws(_)
            | Error::Store(_)
            | Error::RunFailed { .. }
            | Error::Audit(_)
            | Error::Output(_) => EXIT_FAILURE,
        }
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
