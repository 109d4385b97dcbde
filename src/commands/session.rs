//! `credrot session`: temporary credentials from STS, printed or written to a profile; and
//! [`obtain`], shared with `exec`.

use super::context::{aws_context_with, encrypted_error, encrypted_source, CredentialSource};
use super::source::{effective_profile, runtime};
use crate::cli::{CredentialFormat, GlobalArgs, SessionArgs};
use crate::credentials_file::{CredentialsFile, Document};
use crate::error::Error;
use crate::profile::{
    self, LazyKey, ProfileError, ProfileKey, ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN,
};
use crate::session::cache::{CacheKey, SessionCache};
use crate::session::user::{FileLedger, KeyLedger, Propagating, SdkUserSession};
use crate::session::{
    self, Format, Mfa, SdkSts, SessionKind, SessionRequest, TemporaryCredentials,
};
use secrecy::ExposeSecret;
use std::io::Write;
use std::time::Duration;

/// Run `credrot session`.
pub(super) fn run(
    global: &GlobalArgs,
    args: &SessionArgs,
    format: Option<CredentialFormat>,
    write_profile: Option<&str>,
) -> Result<(), Error> {
    if let Some(target) = write_profile {
        check_target(global, target)?;
    }
    let credentials = obtain(global, args)?;
    if let Some(target) = write_profile {
        write_to_profile(target, &credentials)?;
        eprintln!(
            "credrot: wrote temporary credentials {} to profile [{target}]; they expire at {}",
            credentials.key.id,
            session::rfc3339(credentials.expiration)
        );
    }
    if format.is_some() || write_profile.is_none() {
        let format = match format.unwrap_or(CredentialFormat::Env) {
            CredentialFormat::Env => Format::Env,
            CredentialFormat::Json => Format::Json,
            CredentialFormat::CredentialProcess => Format::CredentialProcess,
        };
        let mut out = std::io::stdout().lock();
        out.write_all(session::render(&credentials, format).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// Temporary credentials for the request in `args`: from the cache when a fresh session is
/// there, else from STS (and then cached; sealed with the profile key when the profile that
/// signs is encrypted).
pub(super) fn obtain(
    global: &GlobalArgs,
    args: &SessionArgs,
) -> Result<TemporaryCredentials, Error> {
    let mfa = match (&args.mfa_serial, &args.token_code) {
        (Some(serial), Some(code)) => Some(Mfa {
            serial: serial.clone(),
            code: code.clone(),
        }),
        _ => None,
    };
    let request = match (&args.role_arn, &args.user) {
        (_, Some(_)) => SessionRequest::for_other_user(args.duration, mfa)?,
        (Some(role_arn), None) => SessionRequest::new(
            SessionKind::AssumeRole {
                role_arn: role_arn.clone(),
                session_name: args.role_session_name.clone(),
            },
            args.duration,
            mfa,
        )?,
        (None, None) => SessionRequest::new(SessionKind::SessionToken, args.duration, mfa)?,
    };
    if let Some(user) = &args.user {
        check_user_name(user)?;
    }
    // The cache is keyed by the profile that signs; environment keys that win over
    // AWS_PROFILE are part of the fingerprint instead.
    let source = CredentialSource::of(global);
    let profile = source.profile.clone().filter(|_| source.profile_signs);
    let cache = if args.no_cache {
        None
    } else {
        SessionCache::locate()
    };
    let key = CacheKey::new(
        profile.as_deref().unwrap_or_default(),
        &fingerprint(global, args, &request, profile.is_none()),
    );
    let mut keys = LazyKey::new(args.ssh.ssh_key.as_deref());
    // An encrypted profile's sessions are sealed with its key; deriving it here is no extra
    // prompt, since a miss needs it to decrypt the profile anyway (the key is shared).
    let encrypted = match &cache {
        Some(_) => encrypted_source(global)?,
        None => None,
    };
    if let Some(stored) = &encrypted {
        keys.get()
            .map_err(|e| encrypted_error(&stored.name, ProfileError::Key(e)))?;
    }
    let sealed = encrypted.is_some();
    if let Some(hit) = cache
        .as_ref()
        .and_then(|c| c.load(&key, seal(sealed, &keys)))
    {
        tracing::info!(key = %hit.key.id, "using cached session credentials");
        return Ok(hit);
    }
    let credentials = runtime()?.block_on(async {
        let aws = aws_context_with(global, global.region.clone(), &mut keys).await?;
        match &args.user {
            Some(user) => session::user::session_for_user(
                &SdkUserSession::new(aws),
                ledger(profile.as_deref().unwrap_or_default()).as_ref(),
                user,
                &request,
                Propagating {
                    timeout: args.verify_timeout,
                    interval: Duration::from_secs(1),
                },
            )
            .await
            .map_err(Error::from),
            None => session::request(&SdkSts::new(&aws), &request)
                .await
                .map_err(Error::from),
        }
    })?;
    if let Some(cache) = &cache {
        // A cache that cannot be written only costs the next run an STS call.
        if let Err(e) = cache.store(&key, &credentials, seal(sealed, &keys)) {
            tracing::warn!("cannot cache the session in {}: {e}", cache.dir().display());
        }
    }
    Ok(credentials)
}

/// Where `--user` records the short-lived keys `manager` creates until they are deleted.
fn ledger(manager: &str) -> Box<dyn KeyLedger> {
    match FileLedger::default_location(manager) {
        Some(ledger) => Box::new(ledger),
        None => Box::new(NoLedger),
    }
}

/// No state directory: nothing is recorded (a crash then leaves the key for the user to
/// delete; the warning of the failed record says so).
struct NoLedger;

impl KeyLedger for NoLedger {
    fn pending(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn add(&self, _: &str, key_id: &str) {
        tracing::warn!(
            "no state directory to record the short-lived key {key_id} in; set CREDROT_STATE_DIR"
        );
    }
    fn remove(&self, _: &str, _: &str) {}
}

/// The key that seals cache entries: the profile key when the profile is encrypted.
fn seal(sealed: bool, keys: &LazyKey) -> Option<&ProfileKey> {
    keys.ready_key().filter(|_| sealed)
}

/// Refuse, before any AWS call, a `--user` that no IAM user can be called.
fn check_user_name(user: &str) -> Result<(), Error> {
    // IAM: 1 to 64 characters of letters, digits and +=,.@_-.
    let valid = (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--user {user:?} is not an IAM user name: 1 to 64 letters, digits or +=,.@_-"
        )))
    }
}

/// Everything besides the profile that makes another session: the request, where it goes,
/// and, without a profile, which key from the environment asks.
fn fingerprint(
    global: &GlobalArgs,
    args: &SessionArgs,
    request: &SessionRequest,
    from_environment: bool,
) -> String {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let mut parts = vec![
        format!("{:?}", request.kind),
        request.duration.as_secs().to_string(),
        request
            .mfa
            .as_ref()
            .map(|m| m.serial.clone())
            .unwrap_or_default(),
        global.endpoint_url.clone().unwrap_or_default(),
        env("AWS_ENDPOINT_URL"),
        env("AWS_ENDPOINT_URL_STS"),
        global.region.clone().unwrap_or_default(),
    ];
    if let Some(user) = &args.user {
        // Another user's session is another entry, never the manager's own.
        parts.push(format!("user={user}"));
    }
    if from_environment {
        parts.push(env("AWS_ACCESS_KEY_ID"));
    }
    parts.join("|")
}

/// Refuse, before STS is called, a target profile that holds a long-lived or encrypted key:
/// temporary credentials must never overwrite a key that would then be lost.
fn check_target(global: &GlobalArgs, target: &str) -> Result<(), Error> {
    if effective_profile(global).as_deref() == Some(target) {
        return Err(Error::Usage(format!(
            "--write-profile {target} would overwrite the key the session is made from; write to another profile, e.g. --write-profile {target}-session"
        )));
    }
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    let document = file.read().map_err(ProfileError::from)?;
    match overwrite_refusal(&document, &file, target) {
        Some(message) => Err(Error::Usage(message)),
        None => Ok(()),
    }
}

/// Why `target` must not receive temporary credentials, if it must not.
fn overwrite_refusal(document: &Document, file: &CredentialsFile, target: &str) -> Option<String> {
    let stored = profile::StoredProfile::read(document, file.path(), target).ok()?;
    (!stored.has_session_token() || stored.kind() != profile::cipher::ValueKind::Plain).then(|| {
        format!(
            "profile [{target}] in {} holds a long-lived or encrypted key, which --write-profile would overwrite; choose another profile name",
            file.path().display()
        )
    })
}

fn write_to_profile(target: &str, credentials: &TemporaryCredentials) -> Result<(), Error> {
    let file = CredentialsFile::locate().map_err(ProfileError::from)?;
    file.edit(|document| {
        // Checked again under the lock: the file may have changed during the STS call.
        if let Some(message) = overwrite_refusal(document, &file, target) {
            return Err(Error::Usage(message));
        }
        document.set(target, ACCESS_KEY_ID, &credentials.key.id)?;
        document.set(target, SECRET_ACCESS_KEY, credentials.key.expose())?;
        document.set(target, SESSION_TOKEN, credentials.token.expose_secret())?;
        Ok(())
    })
}
