//! Where the credentials of a `session`, `exec` or `rotate-profile` run come from: an
//! encrypted profile is decrypted in memory; anything else is the SDK's credential chain.

use crate::aws::{AwsContext, AwsOptions};
use crate::cli::{GlobalArgs, SshKeyArgs};
use crate::credentials_file::CredentialsFile;
use crate::error::Error;
use crate::profile::{self, cipher::ValueKind, LazyKey};

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
        region: global.region.clone(),
        endpoint_url: global.endpoint_url.clone(),
    }
}

/// A context signing as `profile`. The SDK cannot read credrot's encrypted values (it
/// would sign with the ciphertext), so an encrypted profile is decrypted here.
pub(super) async fn context_for(
    global: &GlobalArgs,
    profile: Option<String>,
    ssh: &SshKeyArgs,
) -> Result<AwsContext, Error> {
    let encrypted = match &profile {
        Some(name) => {
            let file = CredentialsFile::locate().map_err(profile::ProfileError::from)?;
            let document = file.read().map_err(profile::ProfileError::from)?;
            if document.has_profile(name) {
                profile::StoredProfile::read(&document, file.path(), name)
                    .ok()
                    .filter(|stored| stored.kind() != ValueKind::Plain)
            } else {
                None
            }
        }
        None => None,
    };
    let aws = AwsContext::load(&aws_options(global, profile)).await;
    let Some(stored) = encrypted else {
        return Ok(aws);
    };
    let credentials = stored.decrypt(&mut LazyKey::new(ssh.ssh_key.as_deref()))?;
    tracing::debug!(profile = %stored.name, key = %credentials.key.id, "decrypted the profile");
    Ok(aws.with_credentials(
        &credentials.key,
        credentials
            .session_token
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret),
    ))
}

/// A runtime for one command.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
