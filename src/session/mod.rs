//! Temporary credentials from STS (`GetSessionToken`, or `AssumeRole`), their output formats,
//! and a per-profile cache ([`cache`]) so repeated runs do not call STS every time.

pub mod cache;
pub mod user;

use crate::aws::{AwsContext, AwsError, AwsErrorKind};
use crate::secret::AccessKey;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The shortest session STS grants.
pub const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
/// The longest `GetSessionToken` session of an IAM user.
pub const MAX_SESSION_TOKEN_DURATION: Duration = Duration::from_secs(36 * 3600);
/// The longest `AssumeRole` session (a role's own maximum may be lower; STS then says so).
pub const MAX_ASSUME_ROLE_DURATION: Duration = Duration::from_secs(12 * 3600);
/// STS's default `GetSessionToken` duration.
pub const DEFAULT_SESSION_TOKEN_DURATION: Duration = Duration::from_secs(12 * 3600);
/// STS's default `AssumeRole` duration.
pub const DEFAULT_ASSUME_ROLE_DURATION: Duration = Duration::from_secs(3600);
/// The default of a session for another user (`--user`): iam-sorry's, the longest STS grants.
pub const DEFAULT_USER_SESSION_DURATION: Duration = MAX_SESSION_TOKEN_DURATION;

/// Why temporary credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The duration is outside what STS allows.
    #[error(
        "--duration {asked} is outside what STS {api} allows: give a duration from {min} to {max}"
    )]
    Duration {
        /// What was asked, as text.
        asked: String,
        /// The STS operation.
        api: &'static str,
        /// The shortest allowed.
        min: String,
        /// The longest allowed.
        max: String,
    },
    /// The MFA code is not six digits.
    #[error("--token-code must be the 6 digits your MFA device shows")]
    TokenCode,
    /// STS refused or failed.
    #[error(transparent)]
    Sts(#[from] AwsError),
    /// `--user` names no IAM user.
    #[error("IAM user {user} does not exist (ListAccessKeys said NoSuchEntity); nothing was changed; user names are case-sensitive: check with 'aws iam get-user --user-name {user}'")]
    NoSuchUser {
        /// The user.
        user: String,
    },
    /// `--user` names a user with two access keys, so no short-lived one can be created.
    #[error("IAM user {user} already has two access keys ({keys}), so credrot cannot create the short-lived key that makes its session; nothing was changed and none of its keys is touched. Delete a key it no longer uses, or run `credrot session` with that user's own profile")]
    UserKeyLimit {
        /// The user.
        user: String,
        /// Its key ids.
        keys: String,
    },
    /// The short-lived key authenticated as someone else.
    #[error(
        "the short-lived key created for {user} authenticates as {arn}, not as IAM user {user}"
    )]
    NotTheUser {
        /// The user.
        user: String,
        /// Who it is.
        arn: String,
    },
    /// A step after the short-lived key was created failed; the key was deleted again.
    #[error("{source}; the short-lived key {key_id} was deleted again")]
    UserKeyDeleted {
        /// The short-lived key.
        key_id: String,
        /// What failed.
        source: Box<SessionError>,
    },
    /// The short-lived key could not be deleted: it must be deleted by hand.
    #[error("the short-lived access key {key_id} of {user} could not be deleted ({error}){}; no session was printed. Delete the key: aws iam delete-access-key --user-name {user} --access-key-id {key_id}", earlier.as_ref().map(|e| format!(", after: {e}")).unwrap_or_default())]
    UserKeyLeft {
        /// The user.
        user: String,
        /// The key left in IAM.
        key_id: String,
        /// Why deleting failed.
        error: String,
        /// What failed before, if anything did.
        earlier: Option<String>,
    },
}

impl SessionError {
    /// Whether the user must fix the command line or the user's keys (exit 2): nothing was
    /// created then.
    pub fn is_usage(&self) -> bool {
        match self {
            SessionError::Duration { .. }
            | SessionError::TokenCode
            | SessionError::NoSuchUser { .. }
            | SessionError::UserKeyLimit { .. } => true,
            SessionError::Sts(_)
            | SessionError::NotTheUser { .. }
            | SessionError::UserKeyDeleted { .. }
            | SessionError::UserKeyLeft { .. } => false,
        }
    }
}

/// Temporary credentials. Debug never shows the secret or the token.
#[derive(Clone)]
pub struct TemporaryCredentials {
    /// The temporary access key.
    pub key: AccessKey,
    /// The session token.
    pub token: SecretString,
    /// When STS stops accepting them.
    pub expiration: SystemTime,
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("key", &self.key)
            .field("token", &"[redacted]")
            .field("expiration", &rfc3339(self.expiration))
            .finish()
    }
}

/// An MFA device and its current code.
#[derive(Clone)]
pub struct Mfa {
    /// The device's serial number or ARN.
    pub serial: String,
    /// The six-digit code.
    pub code: String,
}

impl fmt::Debug for Mfa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mfa")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Which STS call makes the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    /// `GetSessionToken`: the caller's own identity, for a while.
    SessionToken,
    /// `AssumeRole`.
    AssumeRole {
        /// The role.
        role_arn: String,
        /// The session name CloudTrail shows.
        session_name: String,
    },
}

/// A checked request for temporary credentials.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// The call.
    pub kind: SessionKind,
    /// How long the credentials last.
    pub duration: Duration,
    /// MFA, when the caller's policies require it.
    pub mfa: Option<Mfa>,
}

impl SessionRequest {
    /// Check the request against what STS allows; `duration` None takes STS's default.
    pub fn new(
        kind: SessionKind,
        duration: Option<Duration>,
        mfa: Option<Mfa>,
    ) -> Result<SessionRequest, SessionError> {
        let default = match kind {
            SessionKind::SessionToken => DEFAULT_SESSION_TOKEN_DURATION,
            SessionKind::AssumeRole { .. } => DEFAULT_ASSUME_ROLE_DURATION,
        };
        SessionRequest::checked(kind, duration.unwrap_or(default), mfa)
    }

    /// A `GetSessionToken` request signed by another user's short-lived key (`--user`): 36h
    /// unless `duration` says otherwise, as iam-sorry does. Own sessions keep STS's 12h
    /// default, so existing scripts do not get longer-lived credentials unasked.
    pub fn for_other_user(
        duration: Option<Duration>,
        mfa: Option<Mfa>,
    ) -> Result<SessionRequest, SessionError> {
        SessionRequest::checked(
            SessionKind::SessionToken,
            duration.unwrap_or(DEFAULT_USER_SESSION_DURATION),
            mfa,
        )
    }

    fn checked(
        kind: SessionKind,
        duration: Duration,
        mfa: Option<Mfa>,
    ) -> Result<SessionRequest, SessionError> {
        let (api, max) = match kind {
            SessionKind::SessionToken => ("GetSessionToken", MAX_SESSION_TOKEN_DURATION),
            SessionKind::AssumeRole { .. } => ("AssumeRole", MAX_ASSUME_ROLE_DURATION),
        };
        // STS counts whole seconds; a sub-second remainder is dropped, not an error.
        let duration = Duration::from_secs(duration.as_secs());
        if duration < MIN_DURATION || duration > max {
            return Err(SessionError::Duration {
                asked: crate::duration::human(duration),
                api,
                min: crate::duration::human(MIN_DURATION),
                max: crate::duration::human(max),
            });
        }
        if let Some(mfa) = &mfa {
            if mfa.code.len() != 6 || !mfa.code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SessionError::TokenCode);
            }
        }
        Ok(SessionRequest {
            kind,
            duration,
            mfa,
        })
    }
}

/// The STS calls that make sessions.
#[async_trait]
pub trait StsApi: Send + Sync {
    /// `GetSessionToken`.
    async fn get_session_token(
        &self,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError>;
    /// `AssumeRole`.
    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError>;
}

/// STS through the SDK.
#[derive(Debug, Clone)]
pub struct SdkSts {
    client: aws_sdk_sts::Client,
}

impl SdkSts {
    /// STS signed with the context's credentials.
    pub fn new(aws: &AwsContext) -> SdkSts {
        SdkSts {
            client: aws_sdk_sts::Client::new(aws.sdk_config()),
        }
    }
}

fn from_sts(
    operation: &'static str,
    credentials: Option<&aws_sdk_sts::types::Credentials>,
) -> Result<TemporaryCredentials, AwsError> {
    let c = credentials.ok_or_else(|| AwsError {
        operation,
        code: None,
        message: "the response held no credentials".into(),
        kind: AwsErrorKind::Other,
    })?;
    Ok(TemporaryCredentials {
        key: AccessKey::new(c.access_key_id(), c.secret_access_key()),
        token: SecretString::from(c.session_token().to_string()),
        expiration: SystemTime::try_from(*c.expiration()).unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

#[async_trait]
impl StsApi for SdkSts {
    async fn get_session_token(
        &self,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError> {
        let out = self
            .client
            .get_session_token()
            .duration_seconds(seconds)
            .set_serial_number(mfa.map(|m| m.serial.clone()))
            .set_token_code(mfa.map(|m| m.code.clone()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:GetSessionToken", e))?;
        from_sts("sts:GetSessionToken", out.credentials())
    }

    async fn assume_role(
        &self,
        role_arn: &str,
        session_name: &str,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError> {
        let out = self
            .client
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .duration_seconds(seconds)
            .set_serial_number(mfa.map(|m| m.serial.clone()))
            .set_token_code(mfa.map(|m| m.code.clone()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:AssumeRole", e))?;
        from_sts("sts:AssumeRole", out.credentials())
    }
}

/// Ask STS for the session `request` describes.
pub async fn request(
    sts: &dyn StsApi,
    request: &SessionRequest,
) -> Result<TemporaryCredentials, SessionError> {
    let seconds = i32::try_from(request.duration.as_secs()).unwrap_or(i32::MAX);
    let mfa = request.mfa.as_ref();
    Ok(match &request.kind {
        SessionKind::SessionToken => sts.get_session_token(seconds, mfa).await?,
        SessionKind::AssumeRole {
            role_arn,
            session_name,
        } => {
            sts.assume_role(role_arn, session_name, seconds, mfa)
                .await?
        }
    })
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// How temporary credentials are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `export NAME='value'` lines for `eval $(credrot session)`.
    Env,
    /// A JSON object.
    Json,
    /// The JSON a `credential_process` prints.
    CredentialProcess,
}

/// The environment variables the AWS SDKs and CLI read credentials from.
pub fn env_vars(credentials: &TemporaryCredentials) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", credentials.key.id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.key.expose().to_string(),
        ),
        (
            "AWS_SESSION_TOKEN",
            credentials.token.expose_secret().to_string(),
        ),
        ("AWS_CREDENTIAL_EXPIRATION", rfc3339(credentials.expiration)),
    ]
}

/// The AWS `credential_process` document (Version 1). `Expiration` is left out for long-lived
/// keys, which tells the SDKs never to refresh them.
pub fn credential_process_json(
    key: &AccessKey,
    token: Option<&str>,
    expiration: Option<SystemTime>,
) -> String {
    let mut document = serde_json::Map::new();
    document.insert("Version".into(), 1.into());
    document.insert("AccessKeyId".into(), key.id.clone().into());
    document.insert("SecretAccessKey".into(), key.expose().into());
    if let Some(token) = token {
        document.insert("SessionToken".into(), token.into());
    }
    if let Some(expiration) = expiration {
        document.insert("Expiration".into(), rfc3339(expiration).into());
    }
    serde_json::Value::Object(document).to_string()
}

/// Render `credentials` in `format`, ending with a newline.
pub fn render(credentials: &TemporaryCredentials, format: Format) -> String {
    match format {
        Format::Env => env_vars(credentials)
            .into_iter()
            .map(|(name, value)| format!("export {name}={}\n", shell_quote(&value)))
            .collect(),
        Format::Json => {
            let document = serde_json::json!({
                "AccessKeyId": credentials.key.id,
                "SecretAccessKey": credentials.key.expose(),
                "SessionToken": credentials.token.expose_secret(),
                "Expiration": rfc3339(credentials.expiration),
            });
            format!("{document}\n")
        }
        Format::CredentialProcess => format!(
            "{}\n",
            credential_process_json(
                &credentials.key,
                Some(credentials.token.expose_secret()),
                Some(credentials.expiration)
            )
        ),
    }
}

/// Single-quote for POSIX shells: tokens hold `/`, `+` and `=`, which are safe today, but
/// `eval` must never see an unquoted value.
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> TemporaryCredentials {
        TemporaryCredentials {
            key: AccessKey::new("ASIATEMP", "temp/secret+="),
            token: SecretString::from("tok'en".to_string()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn durations_outside_sts_limits_are_refused() {
        let ok = |d: u64| {
            SessionRequest::new(
                SessionKind::SessionToken,
                Some(Duration::from_secs(d)),
                None,
            )
            .map(|r| r.duration.as_secs())
        };
        assert_eq!(ok(900).unwrap(), 900);
        assert_eq!(ok(36 * 3600).unwrap(), 129_600);
        let err = ok(899).unwrap_err().to_string();
        assert!(err.contains("15m") && err.contains("1d 12h"), "{err}");
        assert!(ok(36 * 3600 + 1).is_err());
        let role = SessionKind::AssumeRole {
            role_arn: "arn".into(),
            session_name: "s".into(),
        };
        assert!(
            SessionRequest::new(role.clone(), Some(Duration::from_secs(13 * 3600)), None).is_err()
        );
        assert_eq!(
            SessionRequest::new(role, None, None).unwrap().duration,
            DEFAULT_ASSUME_ROLE_DURATION
        );
        let mfa = |code: &str| {
            SessionRequest::new(
                SessionKind::SessionToken,
                None,
                Some(Mfa {
                    serial: "arn:aws:iam::1:mfa/me".into(),
                    code: code.into(),
                }),
            )
        };
        assert!(mfa("123456").is_ok());
        assert!(matches!(mfa("12345"), Err(SessionError::TokenCode)));
        assert!(matches!(mfa("12345a"), Err(SessionError::TokenCode)));
    }

    #[test]
    fn formats_carry_every_field() {
        let env = render(&creds(), Format::Env);
        assert_eq!(
            env,
            "export AWS_ACCESS_KEY_ID='ASIATEMP'\n\
             export AWS_SECRET_ACCESS_KEY='temp/secret+='\n\
             export AWS_SESSION_TOKEN='tok'\\''en'\n\
             export AWS_CREDENTIAL_EXPIRATION='2023-11-14T22:13:20Z'\n"
        );
        let process: serde_json::Value =
            serde_json::from_str(&render(&creds(), Format::CredentialProcess)).unwrap();
        assert_eq!(process["Version"], 1);
        assert_eq!(process["SessionToken"], "tok'en");
        assert_eq!(process["Expiration"], "2023-11-14T22:13:20Z");
        let json: serde_json::Value =
            serde_json::from_str(&render(&creds(), Format::Json)).unwrap();
        assert_eq!(json["SecretAccessKey"], "temp/secret+=");
        assert!(json.get("Version").is_none());
        assert!(!format!("{:?}", creds()).contains("secret+"));
    }

    #[test]
    fn long_lived_keys_have_no_expiration() {
        let doc: serde_json::Value = serde_json::from_str(&credential_process_json(
            &AccessKey::new("AKIA", "s"),
            None,
            None,
        ))
        .unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"Version": 1, "AccessKeyId": "AKIA", "SecretAccessKey": "s"})
        );
    }
}
