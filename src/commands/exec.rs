//! `credrot exec -- COMMAND`: COMMAND runs with temporary credentials in its environment.

use super::session::obtain;
use crate::cli::{GlobalArgs, SessionArgs};
use crate::error::Error;
use crate::session;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// Replace credrot by COMMAND. `exec` (not spawn) makes COMMAND's exit status and signals
/// credrot's own, and leaves no credrot process holding the credentials in memory.
pub(super) fn run(
    global: &GlobalArgs,
    args: &SessionArgs,
    command: &[OsString],
) -> Result<(), Error> {
    let (program, arguments) = command
        .split_first()
        .ok_or_else(|| Error::Usage("exec needs a COMMAND to run".into()))?;
    let credentials = obtain(global, args)?;
    exec_with(program, arguments, &credentials)
}

/// Replace credrot by `program` with `credentials` in its environment.
pub(super) fn exec_with(
    program: &std::ffi::OsStr,
    arguments: &[OsString],
    credentials: &session::TemporaryCredentials,
) -> Result<(), Error> {
    let mut child = std::process::Command::new(program);
    child.args(arguments);
    // A profile variable next to the credentials would make some tools pick the profile,
    // and the SSH key's passphrase is credrot's alone.
    child
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .env_remove(crate::profile::PASSPHRASE_ENV);
    child.envs(session::env_vars(credentials));
    let source = child.exec();
    Err(Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    })
}
