//! Executes a rotation for one user so that every step leaves a working, stored key:
//!
//! 1. list the user's keys and read every store (a read failure stops the user before any
//!    change: it is the preflight);
//! 2. bring stores that lag behind up to date with the newest stored key, after verifying it;
//! 3. delete the one key that is neither CURRENT in a store nor needed (two-key limit);
//! 4. create the new key, write it to every store, verify it through STS, promote it;
//! 5. on any failure in 4: restore every store written, then delete the new key — unless a
//!    store could not be restored, in which case the new key stays, since a store hands it
//!    out.

use super::plan::{plan, PlanError};
use super::report::{KeyView, Outcome, UserReport};
use crate::aws::{AwsError, AwsErrorKind, IamApi, KeyMeta, KeyVerifier};
use crate::secret::AccessKey;
use crate::store::{SecretStore, StoreError, WriteContext};
use futures::stream::{self, StreamExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// Why one user's rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// An IAM or STS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user's keys are in a state the two-key pattern cannot rotate safely.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The new key did not work through STS.
    #[error("key {key_id} did not pass verification through STS: {source}")]
    Verify {
        /// The key being verified.
        key_id: String,
        /// The last STS failure.
        source: AwsError,
    },
    /// The new key works but belongs to someone else (should never happen).
    #[error("key {key_id} authenticates as {arn}, not as IAM user {user}")]
    WrongIdentity {
        /// The key being verified.
        key_id: String,
        /// Who it authenticated as.
        arn: String,
        /// Who it should be.
        user: String,
    },
    /// The hand-off failed and was undone (fully or not: `cleanup` says).
    #[error("{cause}; {cleanup}")]
    RolledBack {
        /// What failed.
        cause: Box<RotateError>,
        /// What the undo did.
        cleanup: String,
    },
}

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Plan only: no mutating call.
    pub dry_run: bool,
    /// How long to keep retrying STS while IAM propagates a new key.
    pub verify_timeout: Duration,
}

/// One user to rotate and where its key goes.
pub struct Target {
    /// The IAM user.
    pub user: String,
    /// The service it belongs to, for `update`.
    pub service: Option<String>,
    /// The stores, in the order they are written.
    pub stores: Vec<Arc<dyn SecretStore>>,
}

/// The rotation engine.
pub struct Engine {
    iam: Arc<dyn IamApi>,
    verifier: Arc<dyn KeyVerifier>,
    options: EngineOptions,
}

/// Stores whose key is older than the newest key another store hands out.
struct Lagging {
    /// The newest key any store hands out that IAM still has.
    source: AccessKey,
    /// Indexes of the stores that do not hand it out.
    stores: Vec<usize>,
}

impl Engine {
    /// An engine over these AWS interfaces.
    pub fn new(
        iam: Arc<dyn IamApi>,
        verifier: Arc<dyn KeyVerifier>,
        options: EngineOptions,
    ) -> Self {
        Engine {
            iam,
            verifier,
            options,
        }
    }

    /// Rotate many users, at most `concurrency` at once; `on_done` sees each report as it
    /// completes. One user's failure does not stop the others.
    pub async fn rotate_many(
        &self,
        targets: Vec<Target>,
        concurrency: usize,
        on_done: &(dyn Fn(&UserReport) + Sync),
    ) -> Vec<UserReport> {
        let mut reports: Vec<UserReport> = stream::iter(targets)
            .map(|target| async move {
                let report = self.rotate_user(&target).await;
                on_done(&report);
                report
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        reports.sort_by(|a, b| a.user.cmp(&b.user));
        reports
    }

    /// Rotate one user; the report says what happened, failures included.
    pub async fn rotate_user(&self, target: &Target) -> UserReport {
        let mut report = UserReport::new(&target.user, target.service.as_deref());
        report.stores = target.stores.iter().map(|s| s.location()).collect();
        match self.run(target, &mut report).await {
            Ok(()) => {
                report.outcome = if self.options.dry_run {
                    Outcome::Planned
                } else {
                    Outcome::Rotated
                };
            }
            Err(err) => {
                warn!(user = %target.user, "rotation failed: {err}");
                report.outcome = Outcome::Failed;
                report.error = Some(err.to_string());
            }
        }
        report.finish();
        report
    }

    async fn run(&self, target: &Target, report: &mut UserReport) -> Result<(), RotateError> {
        let user = target.user.as_str();
        let keys = self.iam.list_keys(user).await?;
        report.keys_before = keys.iter().map(KeyView::from).collect();

        let mut held = Vec::with_capacity(target.stores.len());
        for store in &target.stores {
            held.push(store.read().await?);
        }
        let lagging = find_lagging(&keys, &held);
        let held_ids: BTreeSet<String> = match &lagging {
            Some(lag) => BTreeSet::from([lag.source.id.clone()]),
            None => held
                .iter()
                .flatten()
                .filter(|k| keys.iter().any(|m| m.id == k.id))
                .map(|k| k.id.clone())
                .collect(),
        };
        let plan = plan(&keys, &held_ids)?;
        report.current_before = plan.current.clone();
        report.last_before = plan.last.clone();
        report.deleted = plan.delete.clone();
        if self.options.dry_run {
            if let Some(lag) = &lagging {
                report.synced = lag
                    .stores
                    .iter()
                    .map(|&i| target.stores[i].location())
                    .collect();
            }
            return Ok(());
        }

        let ctx = WriteContext {
            user: user.to_string(),
            service: target.service.clone(),
            previous_key_id: plan.current.clone(),
            rotated_at: SystemTime::now(),
        };
        if let Some(lag) = lagging {
            // Nothing is retired on the strength of a key that has not been proven to work.
            self.verify(&lag.source, user).await?;
            for &i in &lag.stores {
                info!(user, store = %target.stores[i].location(), key = %lag.source.id, "bringing a lagging store up to date");
                target.stores[i].write(&lag.source, &ctx).await?;
                target.stores[i].promote(&lag.source).await?;
                held[i] = Some(lag.source.clone());
                report.synced.push(target.stores[i].location());
            }
        }
        if let Some(victim) = &plan.delete {
            info!(user, key = %victim, "deleting key to make room");
            match self.iam.delete_key(user, victim).await {
                Err(e) if e.kind != AwsErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let (meta, new_key) = self.iam.create_key(user).await.map_err(|e| match e.kind {
            AwsErrorKind::LimitExceeded => AwsError {
                message: format!(
                    "{}; another rotation of this user may be running: wait for it and run again",
                    e.message
                ),
                ..e
            },
            _ => e,
        })?;
        info!(user, key = %meta.id, "created new key");
        report.created = Some(meta.id.clone());

        let mut written = 0;
        let handed_off: Result<(), RotateError> = async {
            for store in &target.stores {
                written += 1;
                store.write(&new_key, &ctx).await?;
                debug!(user, store = %store.location(), "stored new key");
            }
            self.verify(&new_key, user).await?;
            for store in &target.stores {
                store.promote(&new_key).await?;
            }
            Ok(())
        }
        .await;
        match handed_off {
            Ok(()) => {
                report.new_key = Some(new_key);
                Ok(())
            }
            Err(cause) => Err(self
                .undo(target, &new_key, &held[..written], &ctx, cause)
                .await),
        }
    }

    /// Put the first `previous.len()` stores back and delete the new key.
    async fn undo(
        &self,
        target: &Target,
        new_key: &AccessKey,
        previous: &[Option<AccessKey>],
        ctx: &WriteContext,
        cause: RotateError,
    ) -> RotateError {
        let mut problems = Vec::new();
        for (store, prev) in target.stores.iter().zip(previous).rev() {
            if let Err(e) = store.restore(prev.as_ref(), ctx).await {
                problems.push(e.to_string());
            }
        }
        let cleanup = if !problems.is_empty() {
            format!(
                "rollback incomplete, so new key {} was kept (a store may hand it out): {}; fix the store and run again",
                new_key.id,
                problems.join("; ")
            )
        } else {
            match self.iam.delete_key(&target.user, &new_key.id).await {
                Ok(()) => format!(
                    "rolled back: stores restored, new key {} deleted, old keys untouched",
                    new_key.id
                ),
                Err(e) => format!(
                    "stores restored, but new key {} could not be deleted ({e}); the next run deletes it",
                    new_key.id
                ),
            }
        };
        RotateError::RolledBack {
            cause: Box::new(cause),
            cleanup,
        }
    }

    /// Prove `key` works and belongs to `user`, retrying while IAM propagates it.
    async fn verify(&self, key: &AccessKey, user: &str) -> Result<(), RotateError> {
        let deadline = Instant::now() + self.options.verify_timeout;
        let mut delay = Duration::from_millis(250);
        loop {
            match self.verifier.caller_arn(key).await {
                Ok(arn) if arn_user_name(&arn) == Some(user) => return Ok(()),
                Ok(arn) => {
                    return Err(RotateError::WrongIdentity {
                        key_id: key.id.clone(),
                        arn,
                        user: user.to_string(),
                    })
                }
                Err(e) if e.is_unauthenticated() && Instant::now() + delay < deadline => {
                    debug!(user, key = %key.id, "new key not accepted yet; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(source) => {
                    return Err(RotateError::Verify {
                        key_id: key.id.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// The user name at the end of an IAM user ARN (`arn:aws:iam::1:user/path/name`).
fn arn_user_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/').next()
}

/// The stores to bring up to date: when stores disagree, the newest key that some store
/// hands out and IAM still has is the one every store should hold.
fn find_lagging(keys: &[KeyMeta], held: &[Option<AccessKey>]) -> Option<Lagging> {
    let created = |id: &str| keys.iter().find(|k| k.id == id).map(|k| k.created);
    let source = held
        .iter()
        .flatten()
        .filter_map(|k| created(&k.id).map(|c| (c, k)))
        .max_by_key(|(c, _)| *c)
        .map(|(_, k)| k.clone())?;
    let stores: Vec<usize> = held
        .iter()
        .enumerate()
        .filter(|(_, k)| k.as_ref().map(|k| &k.id) != Some(&source.id))
        .map(|(i, _)| i)
        .collect();
    (!stores.is_empty()).then_some(Lagging { source, stores })
}

#[cfg(test)]
mod tests;
