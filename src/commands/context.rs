//! What `update`, `rotate` and `status` share: the runtime, the AWS context, and the
//! targets (a user, its stores and policy) built from the configuration.

use crate::aws::{AwsContext, AwsOptions};
use crate::cli::GlobalArgs;
use crate::config::{Config, StoreConfig};
use crate::credentials_file::CredentialsFile;
use crate::error::Error;
use crate::policy::RotationPolicy;
use crate::profile::{cipher::ValueKind, LazyKey, ProfileError, StoredProfile};
use crate::rotation::Target;
use crate::store::{self, SecretStore, StoreEnv, TemplateValues};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The async runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Load the AWS context: `--region`, else the service's, else `[defaults]`, else the SDK's.
pub async fn load_aws(
    config: &Config,
    global: &GlobalArgs,
    service_region: Option<&str>,
) -> Result<AwsContext, Error> {
    let region = global
        .region
        .clone()
        .or_else(|| service_region.map(str::to_string))
        .or_else(|| config.defaults.region.clone());
    // update/rotate/status have no --ssh-key flag; CREDROT_SSH_KEY (or ~/.ssh/id_ed25519)
    // names the key of an encrypted profile, as for `credential-process`.
    let ssh_key = std::env::var_os("CREDROT_SSH_KEY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    aws_context(global, region, ssh_key.as_deref()).await
}

/// Where a command's AWS credentials come from, decided once from `--profile` and the
/// environment, by the AWS CLI's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSource {
    /// The profile in effect: `--profile`, else `AWS_PROFILE`.
    pub profile: Option<String>,
    /// Whether the profile's credentials sign: an explicit `--profile` always; AWS_PROFILE
    /// only when no AWS_ACCESS_KEY_ID is in the environment (which the SDK reads first).
    pub profile_signs: bool,
    /// Whether the flag named the profile (else AWS_PROFILE did).
    explicit: bool,
}

impl CredentialSource {
    /// The source for these flags and this process's environment.
    pub fn of(global: &GlobalArgs) -> CredentialSource {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let env_keys = var("AWS_ACCESS_KEY_ID").is_some();
        match (&global.profile, var("AWS_PROFILE")) {
            (Some(name), _) => CredentialSource {
                profile: Some(name.clone()),
                profile_signs: true,
                explicit: true,
            },
            (None, Some(name)) => CredentialSource {
                profile: Some(name),
                profile_signs: !env_keys,
                explicit: false,
            },
            (None, None) => CredentialSource {
                profile: None,
                profile_signs: false,
                explicit: false,
            },
        }
    }

    /// What `-v` says about the credentials (never a key id or secret).
    fn describe(&self, encrypted: bool) -> String {
        let flag = if self.explicit {
            "--profile"
        } else {
            "AWS_PROFILE"
        };
        match (&self.profile, self.profile_signs) {
            (Some(name), true) if encrypted => format!(
                "profile [{name}] ({flag}), encrypted, decrypted in memory"
            ),
            (Some(name), true) => format!("profile [{name}] ({flag}) of the shared config files"),
            (Some(name), false) => format!(
                "AWS_ACCESS_KEY_ID in the environment (it wins over AWS_PROFILE={name}; pass --profile {name} to use the profile)"
            ),
            (None, _) if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() => {
                "AWS_ACCESS_KEY_ID in the environment".to_string()
            }
            (None, _) => "the SDK's default chain (no --profile, AWS_PROFILE or AWS_ACCESS_KEY_ID: the [default] profile, SSO, container or instance credentials)".to_string(),
        }
    }

    /// Refuse, before any AWS call, a profile that neither shared file has, with the AWS
    /// CLI's message.
    pub fn check_exists(&self) -> Result<(), Error> {
        let Some(name) = &self.profile else {
            return Ok(());
        };
        let credentials = CredentialsFile::locate().map_err(ProfileError::from)?;
        let config = CredentialsFile::locate_config().map_err(ProfileError::from)?;
        let in_credentials = credentials
            .read()
            .map_err(ProfileError::from)?
            .has_profile(name);
        let in_config = config
            .read()
            .map_err(ProfileError::from)?
            .has_config_profile(name);
        if in_credentials || in_config {
            return Ok(());
        }
        let via = if self.explicit {
            format!("--profile {name}")
        } else {
            format!("AWS_PROFILE={name}")
        };
        Err(Error::Usage(format!(
            "The config profile ({name}) could not be found: {via} names no [{name}] in {} nor [profile {name}] in {}; `credrot profile list` shows the profiles",
            credentials.path().display(),
            config.path().display()
        )))
    }
}

/// THE AWS context of every command that takes `--profile`: the profile must exist; an
/// explicit `--profile` wins over keys in the environment; an encrypted profile (credrot
/// profile encrypt) is decrypted in memory with `ssh_key` (else ~/.ssh/id_ed25519), through
/// ssh-agent or the passphrase, since the SDK would sign with the ciphertext.
pub async fn aws_context(
    global: &GlobalArgs,
    region: Option<String>,
    ssh_key: Option<&Path>,
) -> Result<AwsContext, Error> {
    aws_context_with(global, region, &mut LazyKey::new(ssh_key)).await
}

/// [`aws_context`] with a profile key the caller shares (e.g. with the session cache), so
/// the SSH key is asked at most once per command.
pub async fn aws_context_with(
    global: &GlobalArgs,
    region: Option<String>,
    keys: &mut LazyKey,
) -> Result<AwsContext, Error> {
    let source = CredentialSource::of(global);
    source.check_exists()?;
    let encrypted = match (&source.profile, source.profile_signs) {
        (Some(name), true) => encrypted_profile(name)?,
        _ => None,
    };
    tracing::info!("AWS credentials: {}", source.describe(encrypted.is_some()));
    let aws = AwsContext::load(&AwsOptions {
        profile: source.profile.clone(),
        profile_credentials: source.profile_signs && encrypted.is_none(),
        region,
        endpoint_url: global.endpoint_url.clone(),
    })
    .await;
    let Some(stored) = encrypted else {
        aws.check_credentials().await?;
        return Ok(aws);
    };
    let credentials = stored
        .decrypt(keys)
        .map_err(|e| encrypted_error(&stored.name, e))?;
    tracing::debug!(profile = %stored.name, key = %credentials.key.id, "decrypted the profile");
    Ok(aws.with_credentials(
        &credentials.key,
        credentials
            .session_token
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret),
    ))
}

/// The profile that signs for `global`, as stored, when credrot (or another tool) encrypted
/// it; None for a plain profile or none at all.
pub fn encrypted_source(global: &GlobalArgs) -> Result<Option<StoredProfile>, Error> {
    match CredentialSource::of(global) {
        CredentialSource {
            profile: Some(name),
            profile_signs: true,
            ..
        } => encrypted_profile(&name),
        _ => Ok(None),
    }
}

/// The profile as stored in the credentials file, when credrot (or another tool) encrypted it.
fn encrypted_profile(name: &str) -> Result<Option<StoredProfile>, Error> {
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    let document = file.read().map_err(ProfileError::from)?;
    if !document.has_profile(name) {
        return Ok(None);
    }
    Ok(StoredProfile::read(&document, file.path(), name)
        .ok()
        .filter(|stored| stored.kind() != ValueKind::Plain))
}

/// A profile that could not be decrypted, saying plainly that it is encrypted and what to do.
pub fn encrypted_error(name: &str, e: ProfileError) -> Error {
    match e {
        // Already names the fix (import-iam-sorry).
        ProfileError::Foreign { .. } => e.into(),
        e => Error::Usage(format!(
            "profile [{name}] is encrypted (credrot profile encrypt) and could not be decrypted: {e}; load its SSH key into ssh-agent or set CREDROT_SSH_PASSPHRASE (the key: --ssh-key or CREDROT_SSH_KEY, default ~/.ssh/id_ed25519), or run `credrot profile decrypt {name}` to store it in plain text"
        )),
    }
}

/// An IAM path that holds no user: a typo, most likely. `rotate` and `status` refuse it
/// alike (exit 2): a gate must never pass because it looked at nothing.
pub fn no_users_at(iam_path: &str) -> Error {
    Error::Usage(format!(
        "no IAM user has the path {iam_path}; IAM paths are case-sensitive: check it with 'aws iam list-users --path-prefix {iam_path}'"
    ))
}

/// The stores and policy for users under `iam_path`: its `[paths]` section, else none and
/// the `[defaults]` policy (resolved, and so checked, when the configuration was loaded).
pub fn path_settings(config: &Config, iam_path: &str) -> (Vec<StoreConfig>, RotationPolicy) {
    match config.path_policy(iam_path) {
        Some(p) => (p.stores.clone(), p.policy.clone()),
        None => (Vec::new(), config.defaults.policy.clone()),
    }
}

/// One user with its stores opened (plus `extra`, e.g. the outfile) and its policy.
pub fn open_target(
    env: &StoreEnv,
    user: &str,
    service: Option<&str>,
    stores: &[StoreConfig],
    policy: &RotationPolicy,
    extra: Option<Arc<dyn SecretStore>>,
) -> Target {
    let values = TemplateValues {
        user,
        service,
        account: env.account(),
    };
    let mut opened: Vec<Arc<dyn SecretStore>> = stores
        .iter()
        .map(|c| store::open(c, &values, env))
        .collect();
    opened.extend(extra);
    Target {
        user: user.to_string(),
        service: service.map(str::to_string),
        stores: opened,
        policy: policy.clone(),
    }
}
