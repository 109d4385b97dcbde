//! `credrot rotate-profile P`: rotate the key of a credentials-file profile with itself.

use super::source::{aws_options, runtime};
use crate::aws::AwsContext;
use crate::cli::{GlobalArgs, OutputFormat, SshKeyArgs};
use crate::credentials_file::CredentialsFile;
use crate::error::Error;
use crate::output;
use crate::profile::rotate::{RotateOptions, SdkSelfRotation, SelfRotation};
use crate::profile::{self, cipher::ValueKind, LazyKey, ProfileError};
use crate::session::cache::SessionCache;
use std::io::Write;
use std::time::Duration;

/// Rotate profile `name`.
pub(super) fn run(
    global: &GlobalArgs,
    name: &str,
    verify_timeout: Duration,
    ssh: &SshKeyArgs,
) -> Result<(), Error> {
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    let stored = profile::load(&file, name)?;
    let mut keys = LazyKey::new(ssh.ssh_key.as_deref());
    let credentials = stored.decrypt(&mut keys)?;
    let encryption = match stored.kind() {
        ValueKind::Credrot => Some(keys.get().map_err(ProfileError::from)?),
        _ => None,
    };
    let rotated = runtime()?.block_on(async {
        let aws = AwsContext::load(&aws_options(global, Some(name.to_string()))).await;
        let api = SdkSelfRotation::new(aws);
        SelfRotation {
            api: &api,
            slot: &file,
            encryption,
            options: RotateOptions {
                propagation_timeout: verify_timeout,
                retry_interval: Duration::from_secs(2).min(verify_timeout / 4),
            },
        }
        .run(&stored, &credentials.key)
        .await
    })?;
    // Sessions made from the deleted key are of no use for the next `exec`.
    if let Some(cache) = SessionCache::locate() {
        if let Err(e) = cache.forget_profile(name) {
            tracing::warn!("cannot clear the cached sessions of [{name}]: {e}");
        }
    }
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        output::write_json(&mut out, &rotated)?;
    } else {
        writeln!(
            out,
            "profile [{}]: rotated {} -> {} (IAM user {}){}",
            rotated.profile,
            rotated.old_key_id,
            rotated.new_key_id,
            rotated.user,
            if rotated.encrypted {
                ", stored encrypted"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
