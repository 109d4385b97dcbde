//! A session for *another* IAM user, made by a manager profile (iam-sorry's
//! `iam-sorry --profile usermanager admin`).
//!
//! `GetSessionToken` always returns a session of the identity that signs it, so the manager's
//! own key cannot ask for one on NAME's behalf. The manager creates a short-lived access key
//! for NAME, that key proves it is NAME (`GetCallerIdentity`) and signs `GetSessionToken`,
//! and the manager deletes the key again, on success and on every failure after it was
//! created. AWS binds a session to the user, not to the key that asked for it: temporary
//! credentials "are valid until they expire, and they cannot be revoked" (IAM User Guide,
//! "Disabling permissions for temporary security credentials"), so the session outlives the
//! deleted key.
//!
//! iam-sorry 0.2.2 does this only when it bootstraps a base user (and deletes the key only on
//! success); for `--profile usermanager admin` it signs `GetSessionToken` with the manager's
//! key, so the session it stores for `admin` is really the manager's.

use super::{Mfa, SdkSts, SessionError, SessionRequest, StsApi, TemporaryCredentials};
use crate::aws::{AwsContext, AwsError, AwsErrorKind, IamApi, KeyVerifier, Propagation, SdkIam};
use crate::secret::AccessKey;
use async_trait::async_trait;
use sha2::Digest;
use std::time::Duration;

/// The calls of a session for another user. Calls named `manager_*` are signed by the
/// manager profile; the others by the short-lived key given.
#[async_trait]
pub trait UserSessionApi: Send + Sync {
    /// IAM `ListAccessKeys` of `user`: the key ids.
    async fn manager_list_keys(&self, user: &str) -> Result<Vec<String>, AwsError>;
    /// IAM `CreateAccessKey` for `user`.
    async fn manager_create_key(&self, user: &str) -> Result<AccessKey, AwsError>;
    /// IAM `DeleteAccessKey`.
    async fn manager_delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError>;
    /// STS `GetCallerIdentity` signed with `key`.
    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError>;
    /// STS `GetSessionToken` signed with `key`.
    async fn get_session_token(
        &self,
        key: &AccessKey,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError>;
}

/// The calls through the SDK: IAM signed by the manager's context, STS by the key given.
#[derive(Debug, Clone)]
pub struct SdkUserSession {
    manager: AwsContext,
    iam: SdkIam,
}

impl SdkUserSession {
    /// Calls through `manager` (its credentials sign IAM; its endpoint and region serve all).
    pub fn new(manager: AwsContext) -> SdkUserSession {
        SdkUserSession {
            iam: manager.iam(),
            manager,
        }
    }
}

#[async_trait]
impl UserSessionApi for SdkUserSession {
    async fn manager_list_keys(&self, user: &str) -> Result<Vec<String>, AwsError> {
        Ok(self
            .iam
            .list_keys(user)
            .await?
            .into_iter()
            .map(|k| k.id)
            .collect())
    }

    async fn manager_create_key(&self, user: &str) -> Result<AccessKey, AwsError> {
        Ok(self.iam.create_key(user).await?.1)
    }

    async fn manager_delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
        self.iam.delete_key(user, key_id).await
    }

    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError> {
        self.manager.verifier().caller_arn(key).await
    }

    async fn get_session_token(
        &self,
        key: &AccessKey,
        seconds: i32,
        mfa: Option<&Mfa>,
    ) -> Result<TemporaryCredentials, AwsError> {
        SdkSts::new(&self.manager.with_credentials(key, None))
            .get_session_token(seconds, mfa)
            .await
    }
}

/// How long to wait for IAM to accept the short-lived key, and how often to try.
#[derive(Debug, Clone, Copy)]
pub struct Propagating {
    /// Give up after this long (the key is deleted then).
    pub timeout: Duration,
    /// Pause between attempts.
    pub interval: Duration,
}

/// The short-lived keys this host created and has not deleted yet, by user: what a run
/// killed between `CreateAccessKey` and `DeleteAccessKey` left behind, for the next run to
/// delete. Holds key ids only.
pub trait KeyLedger: Send + Sync {
    /// The recorded key ids of `user`.
    fn pending(&self, user: &str) -> Vec<String>;
    /// Record `key_id` of `user`; failing only loses the clean-up after a crash.
    fn add(&self, user: &str, key_id: &str);
    /// Forget `key_id` of `user`.
    fn remove(&self, user: &str, key_id: &str);
}

/// The ledger as files: `<dir>/<manager>/<user>.<key id>`, empty. IAM user names
/// (`[A-Za-z0-9+=,.@_-]`) and key ids are valid file names; `<manager>` is a hash of the
/// manager profile's name, since user names repeat across the accounts managers serve and a
/// record must only be settled against the account its key was created in.
#[derive(Debug, Clone)]
pub struct FileLedger {
    dir: std::path::PathBuf,
}

impl FileLedger {
    /// The records of `manager` (a profile name, empty for environment keys) under
    /// `$CREDROT_STATE_DIR/user-sessions`, else `~/.local/state/credrot/user-sessions`; None
    /// when no directory can be named.
    pub fn default_location(manager: &str) -> Option<FileLedger> {
        let dir = match std::env::var_os("CREDROT_STATE_DIR") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => dirs::state_dir()
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?
                .join("credrot"),
        };
        let manager: String = sha2::Sha256::digest(manager.as_bytes())
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(FileLedger::at(dir.join("user-sessions").join(manager)))
    }

    /// A ledger in `dir`.
    pub fn at(dir: std::path::PathBuf) -> FileLedger {
        FileLedger { dir }
    }
}

impl KeyLedger for FileLedger {
    fn pending(&self, user: &str) -> Vec<String> {
        let prefix = format!("{user}.");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix(&prefix)
                    .map(str::to_string)
            })
            .collect()
    }

    fn add(&self, user: &str, key_id: &str) {
        use std::os::unix::fs::DirBuilderExt;
        let written = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| std::fs::File::create(self.dir.join(format!("{user}.{key_id}"))));
        if let Err(e) = written {
            tracing::warn!(
                "cannot record the short-lived key {key_id} in {}: if credrot is killed before deleting it, delete it by hand: {e}",
                self.dir.display()
            );
        }
    }

    fn remove(&self, user: &str, key_id: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{user}.{key_id}")));
    }
}

/// A session for `user`: create a short-lived key for it, let that key make the session,
/// delete the key. The key never outlives this call unless deleting it fails, and then the
/// error names it and the command that deletes it; or unless the process is killed, and then
/// `ledger` names it and the next call for `user` deletes it first.
pub async fn session_for_user(
    api: &dyn UserSessionApi,
    ledger: &dyn KeyLedger,
    user: &str,
    request: &SessionRequest,
    propagating: Propagating,
) -> Result<TemporaryCredentials, SessionError> {
    let mut keys = api
        .manager_list_keys(user)
        .await
        .map_err(|e| match e.kind {
            AwsErrorKind::NotFound => SessionError::NoSuchUser {
                user: user.to_string(),
            },
            _ => SessionError::Sts(e),
        })?;
    for left in ledger.pending(user) {
        // Key ids are unique across AWS: a recorded id that the user has is the one this
        // host created, never one of the user's own.
        if keys.contains(&left) {
            tracing::warn!(user, key = %left, "deleting the short-lived key an interrupted run left");
            delete(api, user, &left)
                .await
                .map_err(|e| SessionError::UserKeyLeft {
                    user: user.to_string(),
                    key_id: left.clone(),
                    error: e.to_string(),
                    earlier: None,
                })?;
            keys.retain(|k| *k != left);
        }
        ledger.remove(user, &left);
    }
    if keys.len() >= 2 {
        // Never delete or borrow one of the user's own keys to make room.
        return Err(SessionError::UserKeyLimit {
            user: user.to_string(),
            keys: keys.join(" and "),
        });
    }
    let key = api.manager_create_key(user).await?;
    ledger.add(user, &key.id);
    tracing::info!(user, key = %key.id, "created a short-lived access key");
    fail::fail_point!("user-session-after-create", |_| crate::failpoints::crash());
    let outcome = with_key(api, user, &key, request, propagating).await;
    // Deleted whatever happened above: the key was only ever a means to the session.
    let deleted = delete(api, user, &key.id).await;
    match (outcome, deleted) {
        (Ok(credentials), Ok(())) => {
            ledger.remove(user, &key.id);
            tracing::info!(user, key = %key.id, "deleted the short-lived access key");
            Ok(credentials)
        }
        (outcome, Err(e)) => Err(SessionError::UserKeyLeft {
            user: user.to_string(),
            key_id: key.id.clone(),
            error: e.to_string(),
            earlier: outcome.err().map(|e| e.to_string()),
        }),
        (Err(e), Ok(())) => {
            ledger.remove(user, &key.id);
            Err(SessionError::UserKeyDeleted {
                key_id: key.id.clone(),
                source: Box::new(e),
            })
        }
    }
}

/// With the short-lived key: prove it is `user`'s (retried while IAM propagates it), then ask
/// for the session with it.
async fn with_key(
    api: &dyn UserSessionApi,
    user: &str,
    key: &AccessKey,
    request: &SessionRequest,
    propagating: Propagating,
) -> Result<TemporaryCredentials, SessionError> {
    let mut schedule = Propagation::new(
        propagating.timeout,
        propagating.interval,
        propagating.interval,
    );
    let arn = loop {
        match api.caller_arn(key).await {
            Err(e) if e.is_unauthenticated() && schedule.may_retry() => {
                tracing::debug!("IAM has not propagated the short-lived key yet: {e}");
                schedule.wait().await;
            }
            other => break other?,
        }
    };
    if crate::aws::user_name_from_arn(&arn) != Some(user) {
        return Err(SessionError::NotTheUser {
            user: user.to_string(),
            arn,
        });
    }
    let seconds = i32::try_from(request.duration.as_secs()).unwrap_or(i32::MAX);
    Ok(api
        .get_session_token(key, seconds, request.mfa.as_ref())
        .await?)
}

/// Delete the short-lived key, retrying a transient failure a few times; a key already gone
/// counts as deleted.
async fn delete(api: &dyn UserSessionApi, user: &str, key_id: &str) -> Result<(), AwsError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match api.manager_delete_key(user, key_id).await {
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(()),
            Err(e) if e.is_transient() && attempts < 3 => {
                tracing::warn!("deleting the short-lived key {key_id} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// IAM and STS in memory: keys per user, strict about who signs. `refuse` names calls
    /// that fail (by name), `unpropagated` how many GetCallerIdentity calls a new key is
    /// refused first.
    #[derive(Default)]
    struct Fake {
        keys: Mutex<Vec<(String, String, String)>>,
        next: Mutex<u32>,
        refuse: Vec<&'static str>,
        unpropagated: Mutex<u32>,
        calls: Mutex<Vec<String>>,
    }

    fn error(operation: &'static str, kind: AwsErrorKind) -> AwsError {
        AwsError {
            operation,
            code: Some("Refused".into()),
            message: "refused by the test".into(),
            kind,
        }
    }

    impl Fake {
        fn with_users(users: &[(&str, usize)]) -> Fake {
            let fake = Fake::default();
            for (user, count) in users {
                for i in 0..*count {
                    fake.keys.lock().unwrap().push((
                        user.to_string(),
                        format!("AKIAOWN{user}{i}"),
                        "own-secret".into(),
                    ));
                }
            }
            fake
        }

        fn refusing(mut self, call: &'static str) -> Fake {
            self.refuse.push(call);
            self
        }

        fn call(&self, name: &'static str) -> Result<(), AwsError> {
            self.calls.lock().unwrap().push(name.to_string());
            if self.refuse.contains(&name) {
                return Err(error(name, AwsErrorKind::Other));
            }
            Ok(())
        }

        fn owner(&self, key: &AccessKey) -> Option<String> {
            self.keys
                .lock()
                .unwrap()
                .iter()
                .find(|(_, id, secret)| *id == key.id && secret == key.expose())
                .map(|(user, _, _)| user.clone())
        }

        fn key_ids(&self, user: &str) -> Vec<String> {
            self.keys
                .lock()
                .unwrap()
                .iter()
                .filter(|(u, _, _)| u == user)
                .map(|(_, id, _)| id.clone())
                .collect()
        }
    }

    #[async_trait]
    impl UserSessionApi for Fake {
        async fn manager_list_keys(&self, user: &str) -> Result<Vec<String>, AwsError> {
            self.call("ListAccessKeys")?;
            if user == "ghost" {
                return Err(error("iam:ListAccessKeys", AwsErrorKind::NotFound));
            }
            Ok(self.key_ids(user))
        }
        async fn manager_create_key(&self, user: &str) -> Result<AccessKey, AwsError> {
            self.call("CreateAccessKey")?;
            if self.key_ids(user).len() >= 2 {
                return Err(error("iam:CreateAccessKey", AwsErrorKind::Other));
            }
            let mut next = self.next.lock().unwrap();
            *next += 1;
            let key = AccessKey::new(format!("AKIANEW{next}"), format!("new-secret-{next}"));
            self.keys.lock().unwrap().push((
                user.to_string(),
                key.id.clone(),
                key.expose().to_string(),
            ));
            Ok(key)
        }
        async fn manager_delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
            self.call("DeleteAccessKey")?;
            let mut keys = self.keys.lock().unwrap();
            let before = keys.len();
            keys.retain(|(u, id, _)| !(u == user && id == key_id));
            if keys.len() == before {
                return Err(error("iam:DeleteAccessKey", AwsErrorKind::NotFound));
            }
            Ok(())
        }
        async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError> {
            self.call("GetCallerIdentity")?;
            {
                let mut pending = self.unpropagated.lock().unwrap();
                if *pending > 0 {
                    *pending -= 1;
                    return Err(error(
                        "sts:GetCallerIdentity",
                        AwsErrorKind::Unauthenticated,
                    ));
                }
            }
            let user = self
                .owner(key)
                .ok_or_else(|| error("sts:GetCallerIdentity", AwsErrorKind::Unauthenticated))?;
            Ok(format!("arn:aws:iam::123456789012:user/team/{user}"))
        }
        async fn get_session_token(
            &self,
            key: &AccessKey,
            seconds: i32,
            _mfa: Option<&Mfa>,
        ) -> Result<TemporaryCredentials, AwsError> {
            self.call("GetSessionToken")?;
            let user = self
                .owner(key)
                .ok_or_else(|| error("sts:GetSessionToken", AwsErrorKind::Unauthenticated))?;
            Ok(TemporaryCredentials {
                key: AccessKey::new(format!("ASIA{user}"), "session-secret"),
                token: SecretString::from(format!("token-of-{user}")),
                expiration: SystemTime::now() + Duration::from_secs(seconds as u64),
            })
        }
    }

    /// The ledger in memory.
    #[derive(Default)]
    struct Ledger(Mutex<Vec<(String, String)>>);

    impl KeyLedger for Ledger {
        fn pending(&self, user: &str) -> Vec<String> {
            let entries = self.0.lock().unwrap();
            entries
                .iter()
                .filter(|(u, _)| u == user)
                .map(|(_, k)| k.clone())
                .collect()
        }
        fn add(&self, user: &str, key_id: &str) {
            self.0
                .lock()
                .unwrap()
                .push((user.to_string(), key_id.to_string()));
        }
        fn remove(&self, user: &str, key_id: &str) {
            self.0
                .lock()
                .unwrap()
                .retain(|(u, k)| !(u == user && k == key_id));
        }
    }

    #[tokio::test]
    async fn a_key_an_interrupted_run_left_is_deleted_first_and_only_that_one() {
        let fake = Fake::with_users(&[("admin", 1)]);
        // A killed run created AKIANEW1 and recorded it; a stale record names a key gone.
        let left = fake.manager_create_key("admin").await.unwrap();
        let ledger = Ledger::default();
        ledger.add("admin", &left.id);
        ledger.add("admin", "AKIAGONE");
        ledger.add("other", "AKIAOWNadmin0");
        fake.calls.lock().unwrap().clear();
        session_for_user(&fake, &ledger, "admin", &request(), QUICK)
            .await
            .unwrap();
        assert_eq!(fake.key_ids("admin"), ["AKIAOWNadmin0"]);
        assert_eq!(
            *ledger.0.lock().unwrap(),
            [("other".to_string(), "AKIAOWNadmin0".to_string())],
            "admin's records are settled; another user's record is not acted on"
        );
        let deletes = fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == "DeleteAccessKey")
            .count();
        assert_eq!(deletes, 2, "the left key, then the new one");
    }

    #[tokio::test]
    async fn a_failed_deletion_stays_in_the_ledger() {
        let fake = Fake::with_users(&[("admin", 0)]).refusing("DeleteAccessKey");
        let ledger = Ledger::default();
        assert!(session_for_user(&fake, &ledger, "admin", &request(), QUICK)
            .await
            .is_err());
        assert_eq!(ledger.pending("admin"), ["AKIANEW1"]);
    }

    fn request() -> SessionRequest {
        SessionRequest::for_other_user(None, None).unwrap()
    }

    const QUICK: Propagating = Propagating {
        timeout: Duration::from_secs(5),
        interval: Duration::from_millis(1),
    };

    #[tokio::test]
    async fn the_session_is_the_users_and_the_key_is_deleted() {
        let fake = Fake::with_users(&[("admin", 1)]);
        *fake.unpropagated.lock().unwrap() = 2;
        let session = session_for_user(&fake, &Ledger::default(), "admin", &request(), QUICK)
            .await
            .unwrap();
        assert_eq!(session.key.id, "ASIAadmin");
        assert_eq!(fake.key_ids("admin"), ["AKIAOWNadmin0"], "only its own key");
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                "ListAccessKeys",
                "CreateAccessKey",
                "GetCallerIdentity",
                "GetCallerIdentity",
                "GetCallerIdentity",
                "GetSessionToken",
                "DeleteAccessKey"
            ]
        );
        let lasts = session
            .expiration
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(lasts > Duration::from_secs(35 * 3600), "36h by default");
    }

    #[tokio::test]
    async fn every_failure_after_creation_deletes_the_key() {
        for call in ["GetCallerIdentity", "GetSessionToken"] {
            let fake = Fake::with_users(&[("admin", 0)]).refusing(call);
            let err = session_for_user(&fake, &Ledger::default(), "admin", &request(), QUICK)
                .await
                .unwrap_err();
            assert!(matches!(err, SessionError::UserKeyDeleted { .. }), "{err}");
            assert!(err.to_string().contains("AKIANEW1 was deleted"), "{err}");
            assert!(fake.key_ids("admin").is_empty(), "{call}: key deleted");
        }
        // A key that never propagates is deleted too.
        let fake = Fake::with_users(&[("admin", 0)]);
        *fake.unpropagated.lock().unwrap() = u32::MAX;
        let quick = Propagating {
            timeout: Duration::from_millis(20),
            interval: Duration::from_millis(5),
        };
        assert!(
            session_for_user(&fake, &Ledger::default(), "admin", &request(), quick)
                .await
                .is_err()
        );
        assert!(fake.key_ids("admin").is_empty());
    }

    #[tokio::test]
    async fn a_failed_deletion_names_the_key_left_behind() {
        let fake = Fake::with_users(&[("admin", 0)]).refusing("DeleteAccessKey");
        let err = session_for_user(&fake, &Ledger::default(), "admin", &request(), QUICK)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aws iam delete-access-key --user-name admin --access-key-id AKIANEW1"),
            "{err}"
        );
        assert!(!err.contains("new-secret"), "{err}");
    }

    #[tokio::test]
    async fn a_user_with_two_keys_or_none_at_all_is_refused_before_any_change() {
        let fake = Fake::with_users(&[("admin", 2)]);
        let err = session_for_user(&fake, &Ledger::default(), "admin", &request(), QUICK)
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::UserKeyLimit { .. }), "{err}");
        assert!(err.is_usage());
        assert_eq!(fake.key_ids("admin").len(), 2);
        assert_eq!(*fake.calls.lock().unwrap(), ["ListAccessKeys"]);

        let err = session_for_user(&fake, &Ledger::default(), "ghost", &request(), QUICK)
            .await
            .unwrap_err();
        assert!(matches!(err, SessionError::NoSuchUser { .. }), "{err}");
        assert!(err.is_usage());
    }
}
