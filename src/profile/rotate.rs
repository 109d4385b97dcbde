//! Rotation of a profile's own key: the key in the profile creates its successor, the
//! successor is written to the profile (encrypted again if the profile was), proven through
//! STS, and then deletes the old key itself.
//!
//! Every failure leaves the profile with a key that works: before the write nothing changed
//! (a new key is deleted again); after a failed verification the old stored values are put
//! back byte for byte; a failed deletion leaves the verified new key in the profile and only
//! an extra key in IAM.

use super::{ProfileError, ProfileKey, StoredProfile};
use crate::aws::{
    AwsContext, AwsError, AwsErrorKind, IamApi, KeyMeta, KeyVerifier, Propagation, SdkIam,
};
use crate::credentials_file::CredentialsFile;
use crate::secret::AccessKey;
use async_trait::async_trait;
use std::time::Duration;

/// The IAM and STS calls of a self-rotation, each signed with the key given.
#[async_trait]
pub trait SelfRotationApi: Send + Sync {
    /// STS `GetCallerIdentity` signed with `signer`: the ARN it authenticates as.
    async fn caller_arn(&self, signer: &AccessKey) -> Result<String, AwsError>;
    /// IAM `ListAccessKeys` of `user`.
    async fn list_keys(&self, signer: &AccessKey, user: &str) -> Result<Vec<KeyMeta>, AwsError>;
    /// IAM `CreateAccessKey` for `user`.
    async fn create_key(&self, signer: &AccessKey, user: &str) -> Result<AccessKey, AwsError>;
    /// IAM `DeleteAccessKey`.
    async fn delete_key(
        &self,
        signer: &AccessKey,
        user: &str,
        key_id: &str,
    ) -> Result<(), AwsError>;
}

/// Where the profile is stored: swap its values only if it still holds what was read.
pub trait ProfileSlot {
    /// Replace `expected`'s credential values with `values`.
    fn replace(
        &self,
        expected: &StoredProfile,
        values: &[(&'static str, String)],
    ) -> Result<(), ProfileError>;
}

impl ProfileSlot for CredentialsFile {
    fn replace(
        &self,
        expected: &StoredProfile,
        values: &[(&'static str, String)],
    ) -> Result<(), ProfileError> {
        super::replace(self, expected, values)
    }
}

/// How long to wait for IAM to propagate the new key, and how often to ask.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Give up verifying the new key (and deleting with it) after this long.
    pub propagation_timeout: Duration,
    /// Pause between attempts.
    pub retry_interval: Duration,
}

/// A completed rotation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rotated {
    /// The profile.
    pub profile: String,
    /// The IAM user the key belongs to.
    pub user: String,
    /// The deleted key.
    pub old_key_id: String,
    /// The key the profile holds now.
    pub new_key_id: String,
    /// Whether the profile is stored encrypted.
    pub encrypted: bool,
}

/// Why a self-rotation stopped. Every message says which key the profile holds now.
#[derive(Debug, thiserror::Error)]
pub enum SelfRotateError {
    /// Temporary credentials cannot create access keys for themselves.
    #[error("profile [{profile}] holds temporary credentials (it has aws_session_token); rotate the long-lived key they were made from instead")]
    Temporary {
        /// The profile.
        profile: String,
    },
    /// The current key does not authenticate.
    #[error("the key {key_id} in profile [{profile}] is rejected, so it cannot rotate itself; nothing was changed: {source}")]
    OldKeyRejected {
        /// The profile.
        profile: String,
        /// Its key id.
        key_id: String,
        /// The STS failure.
        source: AwsError,
    },
    /// The key is not an IAM user's.
    #[error("the key in profile [{profile}] authenticates as {arn}, which is not an IAM user; only IAM user keys can be rotated; nothing was changed")]
    NotAUser {
        /// The profile.
        profile: String,
        /// Who it is.
        arn: String,
    },
    /// IAM allows two keys per user.
    #[error("IAM user {user} already has two access keys, {current} (in profile [{profile}]) and {other}, so no new key can be created; nothing was changed. If nothing uses {other}, delete it (aws iam delete-access-key --user-name {user} --access-key-id {other}) and run again")]
    KeyLimit {
        /// The profile.
        profile: String,
        /// The user.
        user: String,
        /// The profile's key.
        current: String,
        /// The other key.
        other: String,
    },
    /// Listing or creating failed before anything changed.
    #[error("{source}; nothing was changed: profile [{profile}] still holds its key {key_id}")]
    Unchanged {
        /// The profile.
        profile: String,
        /// The profile's key.
        key_id: String,
        /// The failure.
        source: AwsError,
    },
    /// The new key could not be written to the profile.
    #[error("writing the new key to profile [{profile}] failed: {source}; the profile still holds its key {key_id}; {cleanup}")]
    Write {
        /// The profile.
        profile: String,
        /// The profile's key.
        key_id: String,
        /// What happened to the new key.
        cleanup: String,
        /// The failure (boxed: it is large and rare).
        source: Box<ProfileError>,
    },
    /// The new key did not pass STS.
    #[error("the new key {new_key_id} did not pass verification through STS: {reason}; {outcome}")]
    Verify {
        /// The new key.
        new_key_id: String,
        /// Why.
        reason: String,
        /// What the profile holds now and what happened to the new key.
        outcome: String,
    },
    /// The old key could not be deleted.
    #[error("profile [{profile}] now holds the new key {new_key_id}, verified through STS, but deleting the old key {old_key_id} failed: {source}; delete it when nothing uses it any more: aws iam delete-access-key --user-name {user} --access-key-id {old_key_id}")]
    DeleteOld {
        /// The profile.
        profile: String,
        /// The user.
        user: String,
        /// The key that is still in IAM.
        old_key_id: String,
        /// The key in the profile.
        new_key_id: String,
        /// The failure.
        source: AwsError,
    },
}

impl SelfRotateError {
    /// Whether this is the user's input to fix (exit 2) rather than a failed run (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SelfRotateError::Temporary { .. } | SelfRotateError::NotAUser { .. }
        )
    }
}

/// The IAM user name in a user ARN (`arn:aws:iam::123:user/path/name`).
pub use crate::aws::user_name_from_arn as user_from_arn;

/// One self-rotation of a profile.
pub struct SelfRotation<'a> {
    /// The AWS calls.
    pub api: &'a dyn SelfRotationApi,
    /// Where the profile is stored.
    pub slot: &'a dyn ProfileSlot,
    /// The key that encrypts the profile, when it is stored encrypted.
    pub encryption: Option<&'a ProfileKey>,
    /// Timing.
    pub options: RotateOptions,
}

impl SelfRotation<'_> {
    /// Rotate the key `old` that `stored` holds.
    pub async fn run(
        &self,
        stored: &StoredProfile,
        old: &AccessKey,
    ) -> Result<Rotated, SelfRotateError> {
        let profile = stored.name.clone();
        if stored.has_session_token() {
            return Err(SelfRotateError::Temporary { profile });
        }
        let unchanged = |source| SelfRotateError::Unchanged {
            profile: profile.clone(),
            key_id: old.id.clone(),
            source,
        };
        let arn =
            self.api
                .caller_arn(old)
                .await
                .map_err(|source| SelfRotateError::OldKeyRejected {
                    profile: profile.clone(),
                    key_id: old.id.clone(),
                    source,
                })?;
        let user = user_from_arn(&arn)
            .ok_or_else(|| SelfRotateError::NotAUser {
                profile: profile.clone(),
                arn: arn.clone(),
            })?
            .to_string();
        let keys = self.api.list_keys(old, &user).await.map_err(unchanged)?;
        if keys.len() >= crate::rotation::MAX_KEYS {
            let other = keys
                .iter()
                .find(|k| k.id != old.id)
                .map(|k| k.id.clone())
                .unwrap_or_default();
            return Err(SelfRotateError::KeyLimit {
                profile,
                user,
                current: old.id.clone(),
                other,
            });
        }
        let new = self.api.create_key(old, &user).await.map_err(unchanged)?;
        tracing::info!(profile = %profile, new_key = %new.id, "created the new key");

        let new_values = self.stored_values(&profile, &new);
        if let Err(source) = self.slot.replace(stored, &new_values) {
            let cleanup = self.delete_unused(old, &user, &new.id).await;
            return Err(SelfRotateError::Write {
                profile,
                key_id: old.id.clone(),
                cleanup,
                source: Box::new(source),
            });
        }
        let written = stored.with_values(&new_values);

        if let Err(reason) = self.verify(&new, &arn).await {
            let outcome = match self.slot.replace(&written, &stored.values_owned()) {
                Ok(()) => format!(
                    "profile [{profile}] holds its old key {} again; {}",
                    old.id,
                    self.delete_unused(old, &user, &new.id).await
                ),
                Err(e) => format!(
                    "putting the old key back into profile [{profile}] failed too ({e}), so the profile holds the new key {} and IAM keeps both keys; run credrot rotate-profile {profile} again once the new key works",
                    new.id
                ),
            };
            return Err(SelfRotateError::Verify {
                new_key_id: new.id.clone(),
                reason,
                outcome,
            });
        }
        tracing::info!(profile = %profile, new_key = %new.id, "the new key works");

        self.delete_old(&new, &user, &old.id)
            .await
            .map_err(|source| SelfRotateError::DeleteOld {
                profile: profile.clone(),
                user: user.clone(),
                old_key_id: old.id.clone(),
                new_key_id: new.id.clone(),
                source,
            })?;
        Ok(Rotated {
            profile,
            user,
            old_key_id: old.id.clone(),
            new_key_id: new.id.clone(),
            encrypted: self.encryption.is_some(),
        })
    }

    /// The values to store for `key`: encrypted again when the profile was.
    fn stored_values(&self, profile: &str, key: &AccessKey) -> Vec<(&'static str, String)> {
        let credentials = super::ProfileCredentials {
            key: key.clone(),
            session_token: None,
        };
        match self.encryption {
            Some(k) => super::encrypt_all(k, profile, &credentials),
            None => super::plain_all(&credentials),
        }
    }

    /// STS accepts `new` as the same identity; retried while IAM propagates it.
    async fn verify(&self, new: &AccessKey, arn: &str) -> Result<(), String> {
        let got = self
            .retry_unauthenticated(|| self.api.caller_arn(new))
            .await
            .map_err(|e| e.to_string())?;
        if got != arn {
            return Err(format!("it authenticates as {got}, not as {arn}"));
        }
        Ok(())
    }

    /// Delete the old key signed with the new one (so the old key is never needed again);
    /// a key already gone counts as deleted.
    async fn delete_old(&self, new: &AccessKey, user: &str, old_id: &str) -> Result<(), AwsError> {
        match self
            .retry_unauthenticated(|| self.api.delete_key(new, user, old_id))
            .await
        {
            Err(e) if e.kind == AwsErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Delete a new key that no profile holds, signed with the old key; says what happened.
    async fn delete_unused(&self, old: &AccessKey, user: &str, new_id: &str) -> String {
        match self.api.delete_key(old, user, new_id).await {
            Ok(()) => format!("the new key {new_id} was deleted again"),
            Err(e) => format!(
                "the unused new key {new_id} could not be deleted ({e}); delete it: aws iam delete-access-key --user-name {user} --access-key-id {new_id}"
            ),
        }
    }

    async fn retry_unauthenticated<T, F, Fut>(&self, mut call: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let interval = self.options.retry_interval;
        let mut propagation =
            Propagation::new(self.options.propagation_timeout, interval, interval);
        loop {
            match call().await {
                Err(e) if e.is_unauthenticated() && propagation.may_retry() => {
                    tracing::debug!("IAM has not propagated the new key yet: {e}");
                    propagation.wait().await;
                }
                other => return other,
            }
        }
    }
}

/// The self-rotation calls through the SDK, each client signing with the key it is given.
#[derive(Debug, Clone)]
pub struct SdkSelfRotation {
    aws: AwsContext,
}

impl SdkSelfRotation {
    /// Calls through `aws` (its region, endpoint and retry settings; not its credentials).
    pub fn new(aws: AwsContext) -> SdkSelfRotation {
        SdkSelfRotation { aws }
    }

    fn iam(&self, signer: &AccessKey) -> SdkIam {
        self.aws.with_credentials(signer, None).iam()
    }
}

#[async_trait]
impl SelfRotationApi for SdkSelfRotation {
    async fn caller_arn(&self, signer: &AccessKey) -> Result<String, AwsError> {
        self.aws.verifier().caller_arn(signer).await
    }

    async fn list_keys(&self, signer: &AccessKey, user: &str) -> Result<Vec<KeyMeta>, AwsError> {
        self.iam(signer).list_keys(user).await
    }

    async fn create_key(&self, signer: &AccessKey, user: &str) -> Result<AccessKey, AwsError> {
        Ok(self.iam(signer).create_key(user).await?.1)
    }

    async fn delete_key(
        &self,
        signer: &AccessKey,
        user: &str,
        key_id: &str,
    ) -> Result<(), AwsError> {
        self.iam(signer).delete_key(user, key_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials_file::Document;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::SystemTime;

    const ARN: &str = "arn:aws:iam::123456789012:user/people/alice";

    #[derive(Default, Clone)]
    struct Faults {
        create: bool,
        write: bool,
        verify_new: bool,
        delete: bool,
        restore: bool,
    }

    /// IAM with one user; `live` maps key ids to secrets.
    struct FakeAws {
        live: Mutex<BTreeMap<String, String>>,
        original: String,
        faults: Faults,
        calls: Mutex<Vec<String>>,
        counter: Mutex<u32>,
    }

    fn err(kind: AwsErrorKind, operation: &'static str) -> AwsError {
        AwsError {
            operation,
            code: None,
            message: "injected".into(),
            kind,
        }
    }

    impl FakeAws {
        fn check(&self, signer: &AccessKey) -> Result<(), AwsError> {
            let live = self.live.lock().unwrap();
            let rejected = self.faults.verify_new && signer.id != self.original;
            match live.get(&signer.id) {
                Some(secret) if secret == signer.expose() && !rejected => Ok(()),
                _ => Err(err(AwsErrorKind::Unauthenticated, "sts:GetCallerIdentity")),
            }
        }

        fn works(&self, key: &AccessKey) -> bool {
            self.live.lock().unwrap().get(&key.id).map(String::as_str) == Some(key.expose())
        }
    }

    #[async_trait]
    impl SelfRotationApi for FakeAws {
        async fn caller_arn(&self, signer: &AccessKey) -> Result<String, AwsError> {
            self.check(signer)?;
            Ok(ARN.into())
        }
        async fn list_keys(&self, signer: &AccessKey, _: &str) -> Result<Vec<KeyMeta>, AwsError> {
            self.check(signer)?;
            Ok(self
                .live
                .lock()
                .unwrap()
                .keys()
                .map(|id| KeyMeta {
                    id: id.clone(),
                    active: true,
                    created: SystemTime::now(),
                })
                .collect())
        }
        async fn create_key(&self, signer: &AccessKey, _: &str) -> Result<AccessKey, AwsError> {
            self.check(signer)?;
            if self.faults.create {
                return Err(err(AwsErrorKind::Other, "iam:CreateAccessKey"));
            }
            let mut n = self.counter.lock().unwrap();
            *n += 1;
            let key = AccessKey::new(format!("AKIANEW{n}"), format!("new-secret-{n}"));
            self.live
                .lock()
                .unwrap()
                .insert(key.id.clone(), key.expose().into());
            Ok(key)
        }
        async fn delete_key(&self, signer: &AccessKey, _: &str, id: &str) -> Result<(), AwsError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("delete {id} signed by {}", signer.id));
            if self.faults.delete && id == self.original {
                return Err(err(AwsErrorKind::AccessDenied, "iam:DeleteAccessKey"));
            }
            self.check(signer)?;
            self.live.lock().unwrap().remove(id);
            Ok(())
        }
    }

    /// A credentials file in memory.
    struct FakeSlot {
        document: Mutex<Document>,
        writes: Mutex<u32>,
        fail_write: bool,
        fail_restore: bool,
    }

    impl ProfileSlot for FakeSlot {
        fn replace(
            &self,
            expected: &StoredProfile,
            values: &[(&'static str, String)],
        ) -> Result<(), ProfileError> {
            let mut writes = self.writes.lock().unwrap();
            *writes += 1;
            if (self.fail_write && *writes == 1) || (self.fail_restore && *writes == 2) {
                return Err(ProfileError::File(
                    crate::credentials_file::FileError::Write {
                        path: "credentials".into(),
                        source: std::io::Error::other("injected"),
                    },
                ));
            }
            let mut document = self.document.lock().unwrap();
            assert_eq!(
                &StoredProfile::read(&document, Path::new("c"), &expected.name).unwrap(),
                expected
            );
            for (field, value) in values {
                document.set(&expected.name, field, value)?;
            }
            Ok(())
        }
    }

    struct Case {
        aws: FakeAws,
        slot: FakeSlot,
        old: AccessKey,
        profile_key: Option<ProfileKey>,
    }

    impl Case {
        fn new(faults: Faults, encrypted: bool) -> Case {
            let old = AccessKey::new("AKIAOLD", "old-secret");
            let profile_key = encrypted.then(|| ProfileKey::from_bytes([9; 32]));
            let mut document = Document::parse("# mine\n[me]\nregion = x\n", Path::new("c"));
            let credentials = super::super::ProfileCredentials {
                key: old.clone(),
                session_token: None,
            };
            let values = match &profile_key {
                Some(k) => super::super::encrypt_all(k, "me", &credentials),
                None => super::super::plain_all(&credentials),
            };
            for (f, v) in values {
                document.set("me", f, &v).unwrap();
            }
            Case {
                aws: FakeAws {
                    live: Mutex::new([(old.id.clone(), old.expose().to_string())].into()),
                    original: old.id.clone(),
                    calls: Mutex::default(),
                    counter: Mutex::default(),
                    faults: Faults {
                        write: false,
                        restore: false,
                        ..faults
                    },
                },
                slot: FakeSlot {
                    document: Mutex::new(document),
                    writes: Mutex::default(),
                    fail_write: faults.write,
                    fail_restore: faults.restore,
                },
                old,
                profile_key,
            }
        }

        async fn run(&self) -> Result<Rotated, SelfRotateError> {
            let stored = self.stored();
            SelfRotation {
                api: &self.aws,
                slot: &self.slot,
                encryption: self.profile_key.as_ref(),
                options: RotateOptions {
                    propagation_timeout: Duration::from_millis(50),
                    retry_interval: Duration::from_millis(5),
                },
            }
            .run(&stored, &self.old)
            .await
        }

        fn stored(&self) -> StoredProfile {
            StoredProfile::read(&self.slot.document.lock().unwrap(), Path::new("c"), "me").unwrap()
        }

        /// The key the profile holds now, decrypted.
        fn profile_key_now(&self) -> AccessKey {
            let mut keys = match &self.profile_key {
                Some(_) => super::super::LazyKey::ready(ProfileKey::from_bytes([9; 32])),
                None => super::super::LazyKey::new(None),
            };
            self.stored().decrypt(&mut keys).unwrap().key
        }

        fn live_keys(&self) -> Vec<String> {
            self.aws.live.lock().unwrap().keys().cloned().collect()
        }
    }

    fn run(case: &Case) -> Result<Rotated, Box<SelfRotateError>> {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(case.run())
            .map_err(Box::new)
    }

    #[test]
    fn a_rotation_replaces_the_key_and_deletes_the_old_one_with_the_new() {
        for encrypted in [false, true] {
            let case = Case::new(Faults::default(), encrypted);
            let rotated = run(&case).unwrap();
            assert_eq!(rotated.user, "alice");
            assert_eq!(rotated.encrypted, encrypted);
            let now = case.profile_key_now();
            assert_eq!(now.id, "AKIANEW1");
            assert!(case.aws.works(&now));
            assert_eq!(case.live_keys(), ["AKIANEW1"]);
            assert_eq!(
                *case.aws.calls.lock().unwrap(),
                ["delete AKIAOLD signed by AKIANEW1"]
            );
            let raw = case.stored();
            assert_eq!(
                raw.kind() == super::super::cipher::ValueKind::Credrot,
                encrypted
            );
            assert!(case
                .slot
                .document
                .lock()
                .unwrap()
                .render()
                .starts_with("# mine\n[me]\nregion = x\n"));
        }
    }

    #[test]
    fn every_failure_leaves_a_working_key_in_the_profile() {
        let cases: Vec<(&str, Faults)> = vec![
            (
                "create",
                Faults {
                    create: true,
                    ..Faults::default()
                },
            ),
            (
                "write",
                Faults {
                    write: true,
                    ..Faults::default()
                },
            ),
            (
                "verify",
                Faults {
                    verify_new: true,
                    ..Faults::default()
                },
            ),
            (
                "verify+restore",
                Faults {
                    verify_new: true,
                    restore: true,
                    ..Faults::default()
                },
            ),
            (
                "delete",
                Faults {
                    delete: true,
                    ..Faults::default()
                },
            ),
        ];
        for (step, faults) in cases {
            for encrypted in [false, true] {
                let case = Case::new(faults.clone(), encrypted);
                let before = case.stored();
                let err = run(&case).unwrap_err();
                let message = err.to_string();
                let now = case.profile_key_now();
                match step {
                    "create" | "write" | "verify" => {
                        assert_eq!(case.stored(), before, "{step}: stored bytes restored");
                        assert!(case.aws.works(&now), "{step}: {message}");
                        assert_eq!(case.live_keys(), ["AKIAOLD"], "{step}: new key deleted");
                        assert!(message.contains("AKIAOLD"), "{message}");
                    }
                    "verify+restore" => {
                        // The profile could not be restored: it holds the new key, and both
                        // keys stay in IAM so nothing that works is deleted.
                        assert_eq!(now.id, "AKIANEW1");
                        assert_eq!(case.live_keys(), ["AKIANEW1", "AKIAOLD"]);
                        assert!(message.contains("IAM keeps both keys"), "{message}");
                    }
                    "delete" => {
                        assert_eq!(now.id, "AKIANEW1");
                        assert!(case.aws.works(&now));
                        assert!(message.contains("aws iam delete-access-key"), "{message}");
                    }
                    _ => unreachable!(),
                }
                assert!(!message.contains("secret"), "{message}");
            }
        }
    }

    #[test]
    fn preconditions_are_checked_before_any_change() {
        let case = Case::new(Faults::default(), false);
        case.aws
            .live
            .lock()
            .unwrap()
            .insert("AKIAOTHER".into(), "x".into());
        let err = run(&case).unwrap_err();
        assert!(
            matches!(*err, SelfRotateError::KeyLimit { ref other, .. } if other == "AKIAOTHER")
        );
        assert_eq!(case.live_keys(), ["AKIAOLD", "AKIAOTHER"]);

        let case = Case::new(Faults::default(), false);
        case.aws.live.lock().unwrap().clear();
        assert!(matches!(
            *run(&case).unwrap_err(),
            SelfRotateError::OldKeyRejected { .. }
        ));
    }

    #[test]
    fn user_names_come_from_user_arns_only() {
        assert_eq!(user_from_arn(ARN), Some("alice"));
        assert_eq!(
            user_from_arn("arn:aws:iam::123456789012:user/bob"),
            Some("bob")
        );
        assert_eq!(user_from_arn("arn:aws:iam::123456789012:root"), None);
        assert_eq!(
            user_from_arn("arn:aws:sts::123456789012:assumed-role/r/s"),
            None
        );
    }
}
