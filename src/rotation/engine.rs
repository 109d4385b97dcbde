//! Executes a rotation for one user so that every step leaves a working, stored key:
//!
//! 1. list the user's keys and read every store (a read failure stops the user before any
//!    change: it is the preflight); a user with nothing to do stops here (`fresh`);
//! 2. stop (`busy`) when the keys show another run at work: a key younger than the lock
//!    TTL that some store does not hand out yet. The key itself is the lock, so taking it
//!    costs no call; IAM's two-key limit makes creating it atomic (the loser is `busy` too);
//! 3. converge: bring lagging stores up to date with the newest stored key (verified first),
//!    and delete keys an interrupted run created but never stored and nobody used;
//! 4. two-key mode: delete the one key that no store hands out, create the new key;
//!    staged mode: deactivate or delete the old key when its time has come, create the new
//!    key when due and a slot is free;
//! 5. write the new key to every store, verify it through STS, promote it; on any failure,
//!    restore every store written, then delete the new key — unless a store could not be
//!    restored, in which case the new key stays, since a store may hand it out.

use super::events::{Event, EventSink};
use super::plan::{plan, PlanError, MAX_KEYS};
use super::report::{KeyView, Outcome, UserReport};
use super::retire::{self, decide, RetireFacts, Retirement, DEACTIVATED_TAG, VERIFIED_TAG};
use crate::aws::{AwsError, AwsErrorKind, IamApi, KeyMeta, KeyVerifier};
use crate::policy::{Mode, RotationPolicy};
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
    /// A key no store hands out is in use: someone holds a copy credrot does not manage.
    #[error("key {key_id} is handed out by no store but was used ({usage}); credrot leaves it alone: find its user, then delete it or put it in a store")]
    UnmanagedKeyInUse {
        /// The key.
        key_id: String,
        /// Its last use.
        usage: String,
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
    /// Rotate even users whose CURRENT key is younger than `rotate_after`.
    pub force: bool,
    /// How long to keep retrying STS while IAM propagates a new key.
    pub verify_timeout: Duration,
    /// How long a new key that some store does not hand out yet counts as another run's
    /// rotation in progress (after that, as a dead run's leftover to clean up); `None` for
    /// a run that knows it is alone.
    pub lock_ttl: Option<Duration>,
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

/// What IAM and the stores hold for one user.
struct Observed {
    keys: Vec<KeyMeta>,
    /// What each store hands out now.
    held: Vec<Option<AccessKey>>,
    /// What each store has staged but not promoted (Secrets Manager's AWSPENDING).
    pending: Vec<Option<AccessKey>>,
    /// Which stores are copies for the user (the `-o` file), not where services read keys.
    copies: Vec<bool>,
}

impl Observed {
    fn in_iam(&self, key: &AccessKey) -> bool {
        self.keys.iter().any(|m| m.id == key.id)
    }

    /// Ids of IAM keys that the stores hand out. Copies count only when the user has no
    /// real store: then the copy is the only place the key's secret lives.
    fn held_ids(&self) -> BTreeSet<String> {
        self.counted_stores()
            .filter_map(|i| self.held[i].as_ref())
            .filter(|k| self.in_iam(k))
            .map(|k| k.id.clone())
            .collect()
    }

    /// Indexes of the stores whose key counts: the real ones, or the copies when the user
    /// has no real store.
    fn counted_stores(&self) -> impl Iterator<Item = usize> + '_ {
        let only_copies = self.copies.iter().all(|&c| c);
        (0..self.held.len()).filter(move |&i| only_copies || !self.copies[i])
    }

    /// Held keys plus staged ones: keys that must not be taken for orphans.
    fn protected_ids(&self) -> BTreeSet<String> {
        let mut ids = self.held_ids();
        ids.extend(
            self.pending
                .iter()
                .flatten()
                .filter(|k| self.in_iam(k))
                .map(|k| k.id.clone()),
        );
        ids
    }

    /// The newest Active key.
    fn current(&self) -> Option<&KeyMeta> {
        self.keys
            .iter()
            .filter(|k| k.active)
            .max_by_key(|k| k.created)
    }
}

/// Stores whose key is older than the newest key another store hands out.
struct Lagging {
    /// The newest key any store hands out that IAM still has.
    source: AccessKey,
    /// Indexes of the stores that do not hand it out.
    stores: Vec<usize>,
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

    async fn observe(&self, target: &Target) -> Result<Observed, RotateError> {
        let keys = self
            .iam
            .list_keys(&target.user)
            .await
            .map_err(|e| match e.kind {
                AwsErrorKind::NotFound => RotateError::NoSuchUser(target.user.clone()),
                _ => e.into(),
            })?;
        let mut held = Vec::with_capacity(target.stores.len());
        let mut pending = Vec::with_capacity(target.stores.len());
        for store in &target.stores {
            held.push(store.read().await?);
            pending.push(store.pending().await?);
        }
        let copies = target.stores.iter().map(|s| s.is_copy()).collect();
        Ok(Observed {
            keys,
            held,
            pending,
            copies,
        })
    }

    /// Whether this run would change anything for the user.
    fn needs_work(&self, target: &Target, seen: &Observed) -> bool {
        find_lagging(seen).is_some()
            || !orphan_candidates(&seen.keys, &seen.protected_ids()).is_empty()
            || self.is_due(target, seen)
            || (target.policy.mode == Mode::Staged && seen.keys.len() > 1)
    }

    fn is_due(&self, target: &Target, seen: &Observed) -> bool {
        let (Some(after), Some(current)) = (&target.policy.rotate_after, seen.current()) else {
            return true;
        };
        self.options.force || age(current) >= after.value
    }

    async fn run(&self, target: &Target, report: &mut UserReport) -> Result<Outcome, RotateError> {
        let mut seen = self.observe(target).await?;
        report.keys_before = seen.keys.iter().map(KeyView::from).collect();
        report.current_before = seen.current().map(|k| k.id.clone());
        if !self.needs_work(target, &seen) {
            return Ok(Outcome::Fresh);
        }
        if let Some(ttl) = self.options.lock_ttl {
            if let Some(key) = key_in_flight(&seen, ttl) {
                report.note = Some(format!(
                    "key {} was created {}s ago and is not in every store yet: another run is handing it out; if that run died, a run after {} finishes its work",
                    key.id,
                    age(key).as_secs(),
                    humantime::format_rfc3339_seconds(key.created + ttl)
                ));
                return Ok(Outcome::Busy);
            }
        }
        self.converge_and_rotate(target, &mut seen, report).await
    }

    async fn converge_and_rotate(
        &self,
        target: &Target,
        seen: &mut Observed,
        report: &mut UserReport,
    ) -> Result<Outcome, RotateError> {
        if seen.keys.len() > MAX_KEYS {
            // Not a state IAM allows: touch nothing and let a person look.
            return Err(PlanError::TooManyKeys(seen.keys.len()).into());
        }
        let ctx = WriteContext {
            user: target.user.clone(),
            service: target.service.clone(),
            previous_key_id: seen.current().map(|k| k.id.clone()),
            rotated_at: SystemTime::now(),
        };
        self.sync_lagging(target, seen, &ctx, report).await?;
        self.delete_orphans(target, seen, report).await?;
        report.current_before = seen.current().map(|k| k.id.clone());
        report.last_before = seen
            .keys
            .iter()
            .find(|k| Some(&k.id) != report.current_before.as_ref())
            .map(|k| k.id.clone());
        match target.policy.mode {
            Mode::TwoKey => self.rotate_two_key(target, seen, &ctx, report).await,
            Mode::Staged => self.rotate_staged(target, seen, &ctx, report).await,
        }
    }

    /// Stores that hand out an older key than another store get the newest one first, so
    /// nothing below retires a key some store still hands out.
    async fn sync_lagging(
        &self,
        target: &Target,
        seen: &mut Observed,
        ctx: &WriteContext,
        report: &mut UserReport,
    ) -> Result<(), RotateError> {
        let Some(lag) = find_lagging(seen) else {
            return Ok(());
        };
        if self.options.dry_run {
            report.synced = lag
                .stores
                .iter()
                .map(|&i| target.stores[i].location())
                .collect();
            for &i in &lag.stores {
                seen.held[i] = Some(lag.source.clone());
            }
            return Ok(());
        }
        // Nothing is retired on the strength of a key that has not been proven to work.
        self.verify(target, &lag.source).await?;
        for &i in &lag.stores {
            let store = &target.stores[i];
            info!(user = %target.user, store = %store.location(), key = %lag.source.id, "bringing a lagging store up to date");
            let sync = async {
                store.write(&lag.source, ctx).await?;
                store.promote(&lag.source).await
            };
            self.store_step(target, &**store, "store-sync", Some(&lag.source.id), sync)
                .await?;
            seen.held[i] = Some(lag.source.clone());
            report.synced.push(store.location());
        }
        Ok(())
    }

    /// Keys created by an interrupted run (newer than every stored key, held by no store,
    /// never used) are deleted: their secret is gone. A used one is someone's: stop.
    async fn delete_orphans(
        &self,
        target: &Target,
        seen: &mut Observed,
        report: &mut UserReport,
    ) -> Result<(), RotateError> {
        let held = seen.protected_ids();
        for orphan in orphan_candidates(&seen.keys, &held) {
            if let Some(usage) = self.iam.last_used(&orphan).await? {
                return Err(RotateError::UnmanagedKeyInUse {
                    key_id: orphan,
                    usage: format!(
                        "{} by {} in {}",
                        humantime::format_rfc3339_seconds(usage.date),
                        usage.service,
                        usage.region
                    ),
                });
            }
            if !self.options.dry_run {
                self.delete_key(target, &orphan, &held).await?;
            }
            let verb = if self.options.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            report.actions.push(format!(
                "{verb} {orphan}: created by an interrupted run, never stored or used"
            ));
            report.deleted = Some(orphan.clone());
            seen.keys.retain(|k| k.id != orphan);
        }
        Ok(())
    }

    async fn rotate_two_key(
        &self,
        target: &Target,
        seen: &Observed,
        ctx: &WriteContext,
        report: &mut UserReport,
    ) -> Result<Outcome, RotateError> {
        if !self.is_due(target, seen) {
            return Ok(Outcome::Fresh);
        }
        let held = seen.held_ids();
        let plan = plan(&seen.keys, &held)?;
        if self.options.dry_run {
            report.deleted = plan.delete.clone();
            return Ok(Outcome::Planned);
        }
        if let Some(victim) = &plan.delete {
            info!(user = %target.user, key = %victim, "deleting key to make room");
            fail::fail_point!("before-delete", |_| crate::failpoints::crash());
            self.delete_key(target, victim, &held).await?;
            // Recorded only once done, so a failed run never claims a deletion.
            report.deleted = Some(victim.clone());
            fail::fail_point!("after-delete", |_| crate::failpoints::crash());
        }
        self.create_and_hand_off(target, seen, ctx, report).await
    }

    async fn rotate_staged(
        &self,
        target: &Target,
        seen: &mut Observed,
        ctx: &WriteContext,
        report: &mut UserReport,
    ) -> Result<Outcome, RotateError> {
        let held = seen.held_ids();
        let current = seen.current().cloned();
        let old = seen
            .keys
            .iter()
            .find(|k| Some(&k.id) != current.as_ref().map(|c| &c.id))
            .cloned();
        if let (Some(old), Some(new)) = (old, current) {
            if held.contains(&old.id) {
                return Err(PlanError::BothKeysInUse(old.id, new.id).into());
            }
            match self.retire_step(target, &old, &new, &held, report).await? {
                Some(outcome) => return Ok(outcome),
                None => seen.keys.retain(|k| k.id != old.id),
            }
        }
        if !self.is_due(target, seen) {
            return Ok(Outcome::Fresh);
        }
        if self.options.dry_run {
            return Ok(Outcome::Planned);
        }
        let outcome = self.create_and_hand_off(target, seen, ctx, report).await?;
        if let Some(new) = &report.created {
            let tag = format!("{VERIFIED_TAG}{new}");
            self.iam
                .tag_user(&target.user, &tag, &retire::tag_time(SystemTime::now()))
                .await?;
        }
        Ok(outcome)
    }

    /// One staged step for `old`; `None` when it was deleted (the slot is free).
    async fn retire_step(
        &self,
        target: &Target,
        old: &KeyMeta,
        new: &KeyMeta,
        held: &BTreeSet<String>,
        report: &mut UserReport,
    ) -> Result<Option<Outcome>, RotateError> {
        let user = target.user.as_str();
        let tags = self.iam.user_tags(user).await?;
        let tag_of = |prefix: &str, id: &str| {
            tags.get(&format!("{prefix}{id}"))
                .and_then(|v| retire::parse_tag_time(v))
        };
        let old_use = self.iam.last_used(&old.id).await?;
        let new_use = self.iam.last_used(&new.id).await?;
        let facts = RetireFacts {
            old,
            new,
            old_use: old_use.as_ref(),
            new_use: new_use.as_ref(),
            verified_at: tag_of(VERIFIED_TAG, &new.id),
            deactivated_at: tag_of(DEACTIVATED_TAG, &old.id),
            now: SystemTime::now(),
        };
        let decision = decide(&facts, &target.policy);
        let dry = self.options.dry_run;
        match decision {
            Retirement::Deactivate => {
                if !dry {
                    self.deactivate_key(target, &old.id, held).await?;
                }
                let verb = if dry {
                    "would deactivate"
                } else {
                    "deactivated"
                };
                report.actions.push(format!("{verb} {}", old.id));
                Ok(Some(if dry {
                    Outcome::Planned
                } else {
                    Outcome::Retiring
                }))
            }
            Retirement::Delete => {
                if !dry {
                    self.delete_key(target, &old.id, held).await?;
                    let stale = [
                        format!("{DEACTIVATED_TAG}{}", old.id),
                        format!("{VERIFIED_TAG}{}", old.id),
                    ];
                    self.iam.untag_user(user, &stale).await?;
                }
                report
                    .actions
                    .push(format!("deleted {} (grace over)", old.id));
                report.deleted = Some(old.id.clone());
                Ok(None)
            }
            Retirement::Wait(reason) => {
                if !old.active && facts.deactivated_at.is_none() && !dry {
                    // Deactivated by hand or by a run that died before tagging: the grace
                    // period starts now.
                    let tag = format!("{DEACTIVATED_TAG}{}", old.id);
                    self.iam
                        .tag_user(user, &tag, &retire::tag_time(facts.now))
                        .await?;
                }
                report.note = Some(reason);
                Ok(Some(Outcome::Retiring))
            }
            Retirement::Stuck(reason) => {
                report.note = Some(reason);
                Ok(Some(Outcome::Stuck))
            }
        }
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
            .tag_user(&target.user, &tag, &retire::tag_time(SystemTime::now()))
            .await?;
        Ok(())
    }

    async fn create_and_hand_off(
        &self,
        target: &Target,
        seen: &Observed,
        ctx: &WriteContext,
        report: &mut UserReport,
    ) -> Result<Outcome, RotateError> {
        let created = self.iam.create_key(&target.user).await;
        self.emit(
            target,
            "create-key",
            created.as_ref().ok().map(|(m, _)| m.id.as_str()),
            None,
            &created,
        );
        if matches!(&created, Err(e) if e.kind == AwsErrorKind::LimitExceeded) {
            // The two-key limit is the atomic part of the implicit lock: another run created
            // a key since this one looked, and that run hands it out.
            report.note = Some(
                "IAM refused a third key: another run created one since this run looked; that run rotates this user".to_string(),
            );
            return Ok(Outcome::Busy);
        }
        let (meta, new_key) = created?;
        info!(user = %target.user, key = %meta.id, "created new key");
        report.created = Some(meta.id.clone());
        fail::fail_point!("after-create", |_| crate::failpoints::crash());

        match self.hand_off(target, &new_key, &seen.held, ctx).await {
            Ok(()) => {
                report.new_key = Some(new_key);
                Ok(Outcome::Rotated)
            }
            Err((cause, written)) => Err(self
                .undo(target, &new_key, &seen.held[..written], ctx, cause, true)
                .await),
        }
    }

    /// Write `new_key` to every store, verify it, promote it. On failure, the error and how
    /// many stores were written (and so must be restored).
    async fn hand_off(
        &self,
        target: &Target,
        new_key: &AccessKey,
        held: &[Option<AccessKey>],
        ctx: &WriteContext,
    ) -> Result<(), (RotateError, usize)> {
        let mut written = 0;
        let result: Result<(), RotateError> = async {
            for store in &target.stores {
                written += 1;
                let write = store.write(new_key, ctx);
                self.store_step(target, &**store, "store-write", Some(&new_key.id), write)
                    .await?;
                debug!(user = %target.user, store = %store.location(), "stored new key");
                fail::fail_point!("after-store-write", |_| crate::failpoints::crash());
            }
            self.verify(target, new_key).await?;
            fail::fail_point!("after-verify", |_| crate::failpoints::crash());
            for store in &target.stores {
                let promote = store.promote(new_key);
                self.store_step(
                    target,
                    &**store,
                    "store-promote",
                    Some(&new_key.id),
                    promote,
                )
                .await?;
            }
            Ok(())
        }
        .await;
        debug_assert!(written <= held.len());
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
                rotated_at: SystemTime::now(),
            };
            report.created = Some(key.id.clone());
            match self.hand_off(target, &key, &held, &ctx).await {
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
                Err(e)
                    if (e.is_unauthenticated() || e.is_transient())
                        && Instant::now() + delay < deadline =>
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
                    debug!(user, key = %key.id, "key not accepted yet ({e}); retrying in {delay:?}");
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

fn age(key: &KeyMeta) -> Duration {
    SystemTime::now()
        .duration_since(key.created)
        .unwrap_or_default()
}

/// The user name at the end of an IAM user ARN (`arn:aws:iam::1:user/path/name`).
fn arn_user_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/').next()
}

/// The newest key that looks like another run's rotation in progress: Active, younger than
/// `ttl`, and newer than the key some store hands out (a store that hands out nothing, or a
/// key IAM no longer has, is behind every key). A run creates its key, then writes the
/// stores one by one, then promotes: until the last store has it, this is what others see.
/// With no key stored anywhere yet there is nothing to be behind, and nothing to protect.
/// IAM dates keys to the second, so a key created in the same second as the stored one is
/// not seen as newer. Should another run delete it as unstored, its owner's verification
/// fails and its undo puts the stores back to the key they held, which still works; until
/// then the stores it already wrote hand out the deleted key.
fn key_in_flight(seen: &Observed, ttl: Duration) -> Option<&KeyMeta> {
    if seen.held_ids().is_empty() {
        return None;
    }
    let created = |id: &str| seen.keys.iter().find(|k| k.id == id).map(|k| k.created);
    let behind = seen
        .counted_stores()
        .map(|i| {
            seen.held[i]
                .as_ref()
                .and_then(|k| created(&k.id))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        })
        .min()?;
    seen.keys
        .iter()
        .filter(|k| k.active && k.created > behind && age(k) < ttl)
        .max_by_key(|k| k.created)
}

/// Active keys that no store holds and that are newer than every key a store holds: what a
/// run killed between CreateAccessKey and the store write leaves behind (IAM creates keys
/// Active; an Inactive key was put in that state on purpose).
fn orphan_candidates(keys: &[KeyMeta], held: &BTreeSet<String>) -> Vec<String> {
    let Some(newest_held) = keys
        .iter()
        .filter(|k| held.contains(&k.id))
        .map(|k| k.created)
        .max()
    else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| k.active && !held.contains(&k.id) && k.created > newest_held)
        .map(|k| k.id.clone())
        .collect()
}

/// The stores to bring up to date: when stores disagree, the newest key that some store
/// hands out or has staged (a promotion an interrupted run did not finish), and that IAM
/// still has, is the one every store should hold. Copies are never brought up to date.
fn find_lagging(seen: &Observed) -> Option<Lagging> {
    let created = |id: &str| seen.keys.iter().find(|k| k.id == id).map(|k| k.created);
    let real = |i: &usize| !seen.copies[*i];
    let source = (0..seen.held.len())
        .filter(real)
        .flat_map(|i| [&seen.held[i], &seen.pending[i]])
        .flatten()
        .filter_map(|k| created(&k.id).map(|c| (c, k)))
        .max_by_key(|(c, _)| *c)
        .map(|(_, k)| k.clone())?;
    let stores: Vec<usize> = (0..seen.held.len())
        .filter(real)
        .filter(|&i| seen.held[i].as_ref().map(|k| &k.id) != Some(&source.id))
        .collect();
    (!stores.is_empty()).then_some(Lagging { source, stores })
}

#[cfg(test)]
mod tests;
