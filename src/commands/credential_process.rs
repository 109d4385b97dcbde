//! `credrot credential-process --profile P`: the profile's key, decrypted in memory, as the
//! JSON an AWS `credential_process` prints.

use crate::cli::{GlobalArgs, SshKeyArgs};
use crate::credentials_file::CredentialsFile;
use crate::error::Error;
use crate::profile::{self, LazyKey, ProfileError};
use crate::session::credential_process_json;
use secrecy::ExposeSecret;
use std::io::Write;

/// Print the credential_process document of the profile named by `--profile`.
pub(super) fn run(global: &GlobalArgs, ssh: &SshKeyArgs) -> Result<(), Error> {
    // Explicit only: AWS_PROFILE may name the config profile that runs this very command.
    let name = global.profile.as_deref().ok_or_else(|| {
        Error::Usage(
            "credential-process needs --profile NAME: the profile of the credentials file that holds the key".into(),
        )
    })?;
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    let credentials =
        profile::load(&file, name)?.decrypt(&mut LazyKey::new(ssh.ssh_key.as_deref()))?;
    let json = credential_process_json(
        &credentials.key,
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret()),
        None,
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()?;
    Ok(())
}
