//! Carrying out a plan's steps for one user. The new key's steps (create, write each store,
//! verify, promote) are one transaction: on any failure every store written is restored and
//! the new key deleted, unless a store could not be restored, in which case the new key
//! stays, since a store may hand it out.

use super::observe::Observation;
use super::{assert_not_held, Engine, RotateError, Target};
use crate::aws::AwsErrorKind;
use crate::rotation::planner::{self, Plan, Step};
use crate::rotation::report::{Outcome, UserReport};
use crate::rotation::retire::{self, DEACTIVATED_TAG, VERIFIED_TAG};
use crate::secret::AccessKey;
use crate::store::WriteContext;
use std::collections::BTreeSet;
use tracing::info;

/// The new key's transaction: what was created and how many stores were written.
#[derive(Default)]
pub(super) struct NewKey {
    key: Option<AccessKey>,
    written: usize,
}

impl NewKey {
    /// The key the plan's `Create` step made; a plan that writes, verifies or promotes
    /// before it creates is a planner bug, reported instead of panicking.
    fn created(&self) -> Result<&AccessKey, RotateError> {
        self.key
            .as_ref()
            .ok_or(RotateError::Plan(planner::PlanError::OutOfOrder(
                "a step needs the new key before the plan creates it",
            )))
    }
}

impl Engine {
    /// Carry out `plan`'s steps in order. A failure stops the user; once the new key
    /// exists, it is undone first.
    pub(super) async fn execute(
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
        let mut holding: Vec<Option<AccessKey>> = observed.previous();
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
                    // A key maker's key is kept: its maker holds it and hands it out again.
                    let keep = self
                        .key_maker
                        .as_ref()
                        .map(|m| format!("new key {} kept: {}", key.id, m.kept_because()));
                    return Err(self
                        .undo(target, key, &holding[..new.written], &ctx, cause, keep)
                        .await);
                }
            }
        }
        if let Some(key) = new.key {
            self.forget(&target.user);
            report.new_key = Some(key);
        }
        Ok(())
    }

    /// The user is done (the new key stored, or undone): the record says the run finished,
    /// so that the next run takes over whatever it left instead of waiting for the TTL.
    pub(super) fn forget(&self, user: &str) {
        if let Some(records) = &self.options.inflight {
            records.end(user);
        }
    }

    /// No key was created for the user: no claim, so that another run's key made meanwhile
    /// is not taken for this run's.
    fn abandon(&self, user: &str) {
        if let Some(records) = &self.options.inflight {
            records.abandon(user);
        }
    }

    /// One step; `Ok(false)` when IAM refused to create the new key (the user is busy).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn step(
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
                // Recorded before the call, so that a key whose answer is lost (or whose
                // run is killed) is known on this host as a dead run's.
                if let Some(records) = &self.options.inflight {
                    records.begin(&target.user, &self.options.run_id);
                }
                if let Some(maker) = &self.key_maker {
                    // The record stays open on failure: the maker may have made a key.
                    let made = maker.make(&target.user).await;
                    self.emit(
                        target,
                        "create-key",
                        made.as_ref().ok().map(|k| k.id.as_str()),
                        None,
                        &made,
                    );
                    let key = made?;
                    info!(user = %target.user, key = %key.id, "made new key: {}", maker.describe());
                    report.created = Some(key.id.clone());
                    new.key = Some(key);
                    return Ok(true);
                }
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
                    self.abandon(&target.user);
                    return Ok(false);
                }
                if let Err(e) = &created {
                    // An answer that never came, or a server error, may hide a key IAM did
                    // create (such an attempt is never retried): the record stays open, so
                    // that the next run on this host deletes that key. A refusal the service
                    // answered in full created nothing.
                    if !e.may_have_landed() {
                        self.abandon(&target.user);
                    }
                }
                let (meta, key) = created?;
                info!(user = %target.user, key = %meta.id, "created new key");
                report.created = Some(meta.id.clone());
                new.key = Some(key);
                fail::fail_point!("after-create", |_| crate::failpoints::crash());
            }
            Step::Write { store } => {
                new.written = store + 1;
                let key = new.created()?;
                let store_ref = &target.stores[*store];
                let write = store_ref.write(key, ctx);
                self.store_step(target, &**store_ref, "store-write", Some(&key.id), write)
                    .await?;
                info!(user = %target.user, store = %store_ref.location(), key = %key.id, "stored new key");
                fail::fail_point!("after-store-write", |_| crate::failpoints::crash());
            }
            Step::VerifyNew => {
                let key = new.created()?;
                self.verify(target, key).await?;
                fail::fail_point!("after-verify", |_| crate::failpoints::crash());
            }
            Step::Promote => {
                let key = new.created()?;
                self.promote_all(target, key).await?;
            }
            Step::MarkVerified => {
                let key = new.created()?;
                let tag = format!("{VERIFIED_TAG}{}", key.id);
                self.iam
                    .tag_user(&target.user, &tag, &retire::tag_time(crate::clock::now()))
                    .await?;
            }
        }
        Ok(true)
    }

    pub(super) async fn promote_all(
        &self,
        target: &Target,
        key: &AccessKey,
    ) -> Result<(), RotateError> {
        for store in &target.stores {
            let promote = store.promote(key);
            self.store_step(target, &**store, "store-promote", Some(&key.id), promote)
                .await?;
        }
        Ok(())
    }

    /// Delete a key, refusing one that a store hands out (the rule that is never traded).
    pub(super) async fn delete_key(
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

    pub(super) async fn deactivate_key(
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
    pub(super) async fn hand_off(
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

    /// Put the first `previous.len()` stores back and delete the new key, unless `keep`
    /// says why it stays (credrot did not create it).
    pub(super) async fn undo(
        &self,
        target: &Target,
        new_key: &AccessKey,
        previous: &[Option<AccessKey>],
        ctx: &WriteContext,
        cause: RotateError,
        keep: Option<String>,
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
        } else if let Some(keep) = keep {
            format!("rolled back: stores restored; {keep}")
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
        // Done with the user: whatever is left of the new key is no run's work any more.
        self.forget(&target.user);
        RotateError::RolledBack {
            cause: Box::new(cause),
            cleanup,
        }
    }
}
