//! Carries out the planner's steps for each user so that every step leaves a working,
//! stored key. The engine observes (IAM keys, every store, this host's in-flight records,
//! and what the planner asks besides), asks [`planner::plan`] what to do, and does exactly
//! that: a dry run prints the same steps. The new key's steps (create, write each store,
//! verify, promote) are one transaction: on any failure every store written is restored
//! and the new key deleted, unless a store could not be restored, in which case the new key
//! stays, since a store may hand it out.

use super::events::{Event, EventSink};
use super::inflight::InflightRecords;
use super::planner::{self, End, Held, Observed, Plan, PlanError, Rules, Step, StoreView};
use super::report::{KeyView, Outcome, UserReport};
use super::retire::{self, DEACTIVATED_TAG, VERIFIED_TAG};
use crate::aws::{user_name_from_arn, AwsError, AwsErrorKind, IamApi, KeyVerifier, Propagation};
use crate::policy::RotationPolicy;
use crate::secret::AccessKey;
use crate::store::{Holding, SecretStore, StoreError, WriteContext};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
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
    /// The key under verification is not (or no longer) one of the user's keys in IAM:
    /// deleted meanwhile by another run or by hand, or, for a key made elsewhere, wrong.
    #[error("key {key_id} is not (or no longer) an access key of IAM user {user}, so it cannot pass verification; if another run deleted it, run again")]
    KeyGone {
        /// The key being verified.
        key_id: String,
        /// Whose key it should be.
        user: String,
    },
    /// The IAM user does not exist.
    #[error("IAM user '{0}' does not exist; check iam_user in services.toml (or create the user) and run again")]
    NoSuchUser(String),
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
    /// Rotate even users whose CURRENT key is younger than `rotate_after`.
    pub force: bool,
    /// How long to keep retrying STS while IAM propagates a new key.
    pub verify_timeout: Duration,
    /// How long a new key that some store does not hand out yet counts as another run's
    /// rotation in progress (after that, as a dead run's leftover to clean up); `None` for
    /// a run that knows it is alone.
    pub lock_ttl: Option<Duration>,
    /// This run's id, for the in-flight records.
    pub run_id: String,
    /// Where this host records the keys it is handing out, so that the next run can tell a
    /// killed run from a live one; `None`: no records.
    pub inflight: Option<InflightRecords>,
}

/// One user to rotate and where its key goes.
pub struct Target {
    /// The IAM user.
    pub user: String,
    /// The service it belongs to, for `update`.
    pub service: Option<String>,
    /// The stores, in the order they are written.
    pub stores: Vec<Arc<dyn SecretStore>>,
    /// When and how to rotate.
    pub policy: RotationPolicy,
}

/// The rotation engine.
pub struct Engine {
    iam: Arc<dyn IamApi>,
    verifier: Arc<dyn KeyVerifier>,
    events: Arc<dyn EventSink>,
    options: EngineOptions,
}

/// What was observed of one user: the planner's view, and the keys behind it.
struct Observation {
    seen: Observed,
    /// What each store hands out.
    holdings: Vec<Holding>,
    /// What each store has staged.
    pending: Vec<Option<AccessKey>>,
}

impl Observation {
    /// The whole key with this id that some store hands out or has staged.
    fn key(&self, id: &str) -> Option<&AccessKey> {
        self.holdings
            .iter()
            .filter_map(Holding::key)
            .chain(self.pending.iter().flatten())
            .find(|k| k.id == id)
    }

    /// Ids the planner protects: a guard the executor checks again before any deletion.
    fn protected(&self) -> BTreeSet<String> {
        self.holdings
            .iter()
            .filter_map(|h| h.key_id().map(str::to_string))
            .chain(self.pending.iter().flatten().map(|k| k.id.clone()))
            .collect()
    }
}

/// The new key's transaction: what was created and how many stores were written.
#[derive(Default)]
struct NewKey {
    key: Option<AccessKey>,
    written: usize,
}

impl Engine {
    /// An engine over these AWS interfaces, reporting each action to `events`.
    pub fn new(
        iam: Arc<dyn IamApi>,
        verifier: Arc<dyn KeyVerifier>,
        events: Arc<dyn EventSink>,
        options: EngineOptions,
    ) -> Self {
        Engine {
            iam,
            verifier,
            events,
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
            Ok(outcome) => report.outcome = outcome,
            Err(err) => {
                warn!(user = %target.user, "rotation failed: {err}");
                report.outcome = Outcome::Failed;
                report.error = Some(err.to_string());
            }
        }
        report.finish();
        report
    }

    fn rules<'a>(&self, policy: &'a RotationPolicy) -> Rules<'a> {
        Rules {
            policy,
            force: self.options.force,
            lock_ttl: self.options.lock_ttl,
        }
    }

    async fn observe(&self, target: &Target) -> Result<Observation, RotateError> {
        let keys = self
            .iam
            .list_keys(&target.user)
            .await
            .map_err(|e| match e.kind {
                AwsErrorKind::NotFound => RotateError::NoSuchUser(target.user.clone()),
                _ => e.into(),
            })?;
        let mut holdings = Vec::with_capacity(target.stores.len());
        let mut pending = Vec::with_capacity(target.stores.len());
        for store in &target.stores {
            holdings.push(store.observe().await?);
            pending.push(store.pending().await?);
        }
        let now = crate::clock::now();
        let ttl = self.options.lock_ttl.unwrap_or_default();
        let owners = match &self.options.inflight {
            Some(records) => keys
                .iter()
                .filter(|k| now.duration_since(k.created).unwrap_or_default() < ttl)
                .filter_map(|k| records.owner(&k.id).map(|o| (k.id.clone(), o)))
                .collect(),
            None => BTreeMap::new(),
        };
        let stores = target
            .stores
            .iter()
            .zip(&holdings)
            .zip(&pending)
            .map(|((store, holding), pending)| StoreView {
                copy: store.is_copy(),
                held: match holding {
                    Holding::Empty => Held::Empty,
                    Holding::Key(k) => Held::Key(k.id.clone()),
                    Holding::Broken { key_id, reason } => {
                        warn!(user = %target.user, store = %store.location(), "the store holds a broken pair: {reason}; it is repaired from a verified key");
                        Held::Broken(key_id.clone())
                    }
                },
                pending: pending.as_ref().map(|k| k.id.clone()),
            })
            .collect();
        let mut seen = Observed {
            keys,
            stores,
            usage: BTreeMap::new(),
            tags: BTreeMap::new(),
            owners,
            now,
        };
        let questions = planner::questions(&seen, self.rules(&target.policy));
        for id in questions.usage {
            let usage = self.iam.last_used(&id).await?;
            seen.usage.insert(id, usage);
        }
        if questions.tags {
            seen.tags = self.iam.user_tags(&target.user).await?;
        }
        Ok(Observation {
            seen,
            holdings,
            pending,
        })
    }

    async fn run(&self, target: &Target, report: &mut UserReport) -> Result<Outcome, RotateError> {
        let observed = self.observe(target).await?;
        report.keys_before = observed.seen.keys.iter().map(KeyView::from).collect();
        let plan = planner::plan(&observed.seen, self.rules(&target.policy))?;
        report.current_before = plan.current.clone();
        report.last_before = plan.last.clone();
        let (outcome, note) = end_outcome(&plan.end);
        report.note = note;
        if self.options.dry_run {
            report.actions = plan
                .steps
                .iter()
                .map(|s| format!("would {}", s.describe(&report.stores)))
                .collect();
            report.deleted = plan.deleted().map(str::to_string);
            report.synced = fills(&plan).map(|i| target.stores[i].location()).collect();
            return Ok(if plan.steps.is_empty() {
                outcome
            } else {
                Outcome::Planned
            });
        }
        self.execute(target, &observed, &plan, report).await?;
        Ok(if report.outcome == Outcome::Busy {
            Outcome::Busy
        } else {
            outcome
        })
    }

    /// Carry out `plan`'s steps in order. A failure stops the user; once the new key
    /// exists, it is undone first.
    async fn execute(
        &self,
        target: &Target,
        observed: &Observation,
        plan: &Plan,
        report: &mut UserReport,
    ) -> Result<(), RotateError> {
        let protected = observed.protected();
        let ctx = WriteContext {
            user: target.user.clone(),
            service: target.service.clone(),
            previous_key_id: plan.current.clone(),
            rotated_at: crate::clock::now(),
        };
        // What each store holds as the steps go, for the undo.
        let mut holding: Vec<Option<AccessKey>> =
            observed.holdings.iter().map(|h| h.key().cloned()).collect();
        let mut new = NewKey::default();
        for step in &plan.steps {
            let done = self
                .step(
                    target,
                    observed,
                    step,
                    &protected,
                    &ctx,
                    &mut holding,
                    &mut new,
                    report,
                )
                .await;
            match done {
                Ok(true) => {}
                Ok(false) => {
                    // IAM refused the new key: another run created one since this one looked.
                    report.outcome = Outcome::Busy;
                    return Ok(());
                }
                Err(cause) => {
                    let Some(key) = &new.key else {
                        return Err(cause);
                    };
                    let error = self
                        .undo(target, key, &holding[..new.written], &ctx, cause, true)
                        .await;
                    self.forget(key);
                    return Err(error);
                }
            }
        }
        if let Some(key) = new.key {
            self.forget(&key);
            report.new_key = Some(key);
        }
        Ok(())
    }

    fn forget(&self, key: &AccessKey) {
        if let Some(records) = &self.options.inflight {
            records.end(&key.id);
        }
    }

    /// One step; `Ok(false)` when IAM refused to create the new key (the user is busy).
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        target: &Target,
        observed: &Observation,
        step: &Step,
        protected: &BTreeSet<String>,
        ctx: &WriteContext,
        holding: &mut [Option<AccessKey>],
        new: &mut NewKey,
        report: &mut UserReport,
    ) -> Result<bool, RotateError> {
        let stored = |id: &str| {
            observed
                .key(id)
                .cloned()
                .ok_or_else(|| RotateError::KeyGone {
                    key_id: id.to_string(),
                    user: target.user.clone(),
                })
        };
        match step {
            Step::VerifyStored { key } => {
                // Nothing is retired on the strength of a key that has not been proven.
                self.verify(target, &stored(key)?).await?;
            }
            Step::Fill { store, key, reason } => {
                let key = stored(key)?;
                let store_ref = &target.stores[*store];
                info!(user = %target.user, store = %store_ref.location(), key = %key.id, "repairing the store: {reason}");
                let sync = async {
                    store_ref.write(&key, ctx).await?;
                    store_ref.promote(&key).await
                };
                self.store_step(target, &**store_ref, "store-sync", Some(&key.id), sync)
                    .await?;
                holding[*store] = Some(key);
                report.synced.push(store_ref.location());
            }
            Step::DeleteOrphan { key } => {
                self.delete_key(target, key, protected).await?;
                report.actions.push(format!(
                    "deleted {key}: created by an interrupted run, never stored or used"
                ));
                report.deleted = Some(key.clone());
            }
            Step::Deactivate { key } => {
                self.deactivate_key(target, key, protected).await?;
                report.actions.push(format!("deactivated {key}"));
            }
            Step::MarkDeactivated { key } => {
                let tag = format!("{DEACTIVATED_TAG}{key}");
                self.iam
                    .tag_user(&target.user, &tag, &retire::tag_time(crate::clock::now()))
                    .await?;
            }
            Step::Delete { key, reason } => {
                info!(user = %target.user, key = %key, "deleting key ({reason})");
                fail::fail_point!("before-delete", |_| crate::failpoints::crash());
                self.delete_key(target, key, protected).await?;
                // Recorded only once done, so a failed run never claims a deletion.
                report.deleted = Some(key.clone());
                fail::fail_point!("after-delete", |_| crate::failpoints::crash());
                if *reason == planner::GRACE_OVER {
                    let stale = [
                        format!("{DEACTIVATED_TAG}{key}"),
                        format!("{VERIFIED_TAG}{key}"),
                    ];
                    self.iam.untag_user(&target.user, &stale).await?;
                    report.actions.push(format!("deleted {key} ({reason})"));
                }
            }
            Step::Create => {
                let created = self.iam.create_key(&target.user).await;
                self.emit(
                    target,
                    "create-key",
                    created.as_ref().ok().map(|(m, _)| m.id.as_str()),
                    None,
                    &created,
                );
                if matches!(&created, Err(e) if e.kind == AwsErrorKind::LimitExceeded) {
                    // The two-key limit is the atomic part of the implicit lock: another
                    // run created a key since this one looked, and that run hands it out.
                    report.note = Some(
                        "IAM refused a third key: another run created one since this run looked; that run rotates this user".to_string(),
                    );
                    return Ok(false);
                }
                let (meta, key) = created?;
                if let Some(records) = &self.options.inflight {
                    records.begin(&meta.id, &self.options.run_id);
                }
                info!(user = %target.user, key = %meta.id, "created new key");
                report.created = Some(meta.id.clone());
                new.key = Some(key);
                fail::fail_point!("after-create", |_| crate::failpoints::crash());
            }
            Step::Write { store } => {
                let key = new.key.as_ref().expect("the plan creates before it writes");
                let store_ref = &target.stores[*store];
                new.written = store + 1;
                let write = store_ref.write(key, ctx);
                self.store_step(target, &**store_ref, "store-write", Some(&key.id), write)
                    .await?;
                debug!(user = %target.user, store = %store_ref.location(), "stored new key");
                fail::fail_point!("after-store-write", |_| crate::failpoints::crash());
            }
            Step::VerifyNew => {
                let key = new
                    .key
                    .as_ref()
                    .expect("the plan creates before it verifies");
                self.verify(target, key).await?;
                fail::fail_point!("after-verify", |_| crate::failpoints::crash());
            }
            Step::Promote => {
                let key = new
                    .key
                    .as_ref()
                    .expect("the plan creates before it promotes");
                self.promote_all(target, key).await?;
            }
            Step::MarkVerified => {
                let key = new.key.as_ref().expect("the plan creates before it tags");
                let tag = format!("{VERIFIED_TAG}{}", key.id);
                self.iam
                    .tag_user(&target.user, &tag, &retire::tag_time(crate::clock::now()))
                    .await?;
            }
        }
        Ok(true)
    }

    async fn promote_all(&self, target: &Target, key: &AccessKey) -> Result<(), RotateError> {
        for store in &target.stores {
            let promote = store.promote(key);
            self.store_step(target, &**store, "store-promote", Some(&key.id), promote)
                .await?;
        }
        Ok(())
    }

    /// Delete a key, refusing one that a store hands out (the rule that is never traded).
    async fn delete_key(
        &self,
        target: &Target,
        key_id: &str,
        held: &BTreeSet<String>,
    ) -> Result<(), RotateError> {
        assert_not_held(key_id, held)?;
        let result = match self.iam.delete_key(&target.user, key_id).await {
            Err(e) if e.kind == AwsErrorKind::NotFound => Ok(()),
            other => other,
        };
        self.emit(target, "delete-key", Some(key_id), None, &result);
        Ok(result?)
    }

    async fn deactivate_key(
        &self,
        target: &Target,
        key_id: &str,
        held: &BTreeSet<String>,
    ) -> Result<(), RotateError> {
        assert_not_held(key_id, held)?;
        let result = self.iam.set_key_active(&target.user, key_id, false).await;
        self.emit(target, "deactivate-key", Some(key_id), None, &result);
        result?;
        let tag = format!("{DEACTIVATED_TAG}{key_id}");
        self.iam
            .tag_user(&target.user, &tag, &retire::tag_time(crate::clock::now()))
            .await?;
        Ok(())
    }

    /// Write `new_key` to every store, verify it, promote it. On failure, the error and how
    /// many stores were written (and so must be restored).
    async fn hand_off(
        &self,
        target: &Target,
        new_key: &AccessKey,
        ctx: &WriteContext,
    ) -> Result<(), (RotateError, usize)> {
        let mut written = 0;
        let result: Result<(), RotateError> = async {
            for store in &target.stores {
                written += 1;
                let write = store.write(new_key, ctx);
                self.store_step(target, &**store, "store-write", Some(&new_key.id), write)
                    .await?;
            }
            self.verify(target, new_key).await?;
            self.promote_all(target, new_key).await
        }
        .await;
        result.map_err(|e| (e, written))
    }

    /// Hand a key made elsewhere (e.g. by Terraform) to the user's stores: write it
    /// everywhere, verify it, promote it, roll the stores back on failure. IAM is not changed.
    pub async fn hand_off_key(&self, target: &Target, key: AccessKey) -> UserReport {
        let mut report = UserReport::new(&target.user, target.service.as_deref());
        report.stores = target.stores.iter().map(|s| s.location()).collect();
        let result = async {
            let mut held = Vec::with_capacity(target.stores.len());
            for store in &target.stores {
                held.push(store.read().await?);
            }
            report.current_before = held.iter().flatten().map(|k| k.id.clone()).next();
            // Same id and secret in every real store: nothing to hand on (the -o copy only
            // gets keys that are handed on).
            let copies: Vec<bool> = target.stores.iter().map(|s| s.is_copy()).collect();
            if held
                .iter()
                .zip(&copies)
                .all(|(k, &copy)| copy || k.as_ref() == Some(&key))
            {
                return Ok(Outcome::Fresh);
            }
            if self.options.dry_run {
                return Ok(Outcome::Planned);
            }
            let ctx = WriteContext {
                user: target.user.clone(),
                service: target.service.clone(),
                previous_key_id: report.current_before.clone(),
                rotated_at: crate::clock::now(),
            };
            report.created = Some(key.id.clone());
            match self.hand_off(target, &key, &ctx).await {
                Ok(()) => {
                    report.new_key = Some(key.clone());
                    Ok(Outcome::Rotated)
                }
                Err((cause, written)) => Err(self
                    .undo(target, &key, &held[..written], &ctx, cause, false)
                    .await),
            }
        }
        .await;
        match result {
            Ok(outcome) => report.outcome = outcome,
            Err(err) => {
                warn!(user = %target.user, "hand-off failed: {err}");
                report.error = Some(err.to_string());
            }
        }
        report.finish();
        report
    }

    /// Put the first `previous.len()` stores back and, when credrot created it
    /// (`delete_new`), delete the new key.
    async fn undo(
        &self,
        target: &Target,
        new_key: &AccessKey,
        previous: &[Option<AccessKey>],
        ctx: &WriteContext,
        cause: RotateError,
        delete_new: bool,
    ) -> RotateError {
        let mut problems = Vec::new();
        for (store, prev) in target.stores.iter().zip(previous).rev() {
            let restore = store.restore(prev.as_ref(), ctx);
            let prev_id = prev.as_ref().map(|k| k.id.as_str());
            if let Err(e) = self
                .store_step(target, &**store, "store-restore", prev_id, restore)
                .await
            {
                problems.push(e.to_string());
            }
        }
        let cleanup = if !problems.is_empty() {
            format!(
                "rollback incomplete, so new key {} was kept (a store may hand it out): {}; fix the store and run again",
                new_key.id,
                problems.join("; ")
            )
        } else if !delete_new {
            "rolled back: stores restored; IAM was not changed".to_string()
        } else {
            match self.delete_key(target, &new_key.id, &BTreeSet::new()).await {
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

    /// Prove `key` works and belongs to the user, retrying while IAM propagates it.
    async fn verify(&self, target: &Target, key: &AccessKey) -> Result<(), RotateError> {
        let result = self.verify_with_retries(&target.user, key).await;
        self.emit(target, "verify-key", Some(&key.id), None, &result);
        result
    }

    async fn verify_with_retries(&self, user: &str, key: &AccessKey) -> Result<(), RotateError> {
        let mut propagation = Propagation::new(
            self.options.verify_timeout,
            Duration::from_millis(250),
            Duration::from_secs(2),
        );
        loop {
            match self.verifier.caller_arn(key).await {
                Ok(arn) if user_name_from_arn(&arn) == Some(user) => return Ok(()),
                Ok(arn) => {
                    return Err(RotateError::WrongIdentity {
                        key_id: key.id.clone(),
                        arn,
                        user: user.to_string(),
                    })
                }
                Err(e)
                    if (e.is_unauthenticated() || e.is_transient()) && propagation.may_retry() =>
                {
                    // A rejected key is usually still propagating; one that IAM no longer
                    // lists never will be, and the stores should not hand it out any longer.
                    if e.is_unauthenticated()
                        && !self
                            .iam
                            .list_keys(user)
                            .await?
                            .iter()
                            .any(|k| k.id == key.id)
                    {
                        return Err(RotateError::KeyGone {
                            key_id: key.id.clone(),
                            user: user.to_string(),
                        });
                    }
                    debug!(user, key = %key.id, "key not accepted yet ({e}); retrying in {:?}", propagation.next_delay());
                    propagation.wait().await;
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

    /// Run one step on a store and record it as `action`.
    async fn store_step(
        &self,
        target: &Target,
        store: &dyn SecretStore,
        action: &'static str,
        key_id: Option<&str>,
        step: impl std::future::Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let result = step.await;
        self.emit(target, action, key_id, Some(store.location()), &result);
        result
    }

    fn emit<T, E: std::fmt::Display>(
        &self,
        target: &Target,
        action: &'static str,
        key_id: Option<&str>,
        store: Option<String>,
        result: &Result<T, E>,
    ) {
        self.events.record(Event {
            user: target.user.clone(),
            service: target.service.clone(),
            action,
            key_id: key_id.map(str::to_string),
            store,
            outcome: if result.is_ok() { "ok" } else { "failed" },
            error: result.as_ref().err().map(|e| e.to_string()),
        });
    }
}

fn assert_not_held(key_id: &str, held: &BTreeSet<String>) -> Result<(), RotateError> {
    if held.contains(key_id) {
        // Unreachable by construction; a guard so that no future change can break the rule.
        return Err(PlanError::BothKeysInUse(key_id.to_string(), "a store".to_string()).into());
    }
    Ok(())
}

/// The outcome and note a plan's end stands for.
fn end_outcome(end: &End) -> (Outcome, Option<String>) {
    match end {
        End::Fresh => (Outcome::Fresh, None),
        End::Synced(note) => (Outcome::Synced, Some(note.clone())),
        End::Busy(note) => (Outcome::Busy, Some(note.clone())),
        End::Rotated => (Outcome::Rotated, None),
        End::Retiring(note) => (Outcome::Retiring, note.clone()),
        End::Stuck(note) => (Outcome::Stuck, Some(note.clone())),
    }
}

/// The stores a plan repairs.
fn fills(plan: &Plan) -> impl Iterator<Item = usize> + '_ {
    plan.steps.iter().filter_map(|s| match s {
        Step::Fill { store, .. } => Some(*store),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
