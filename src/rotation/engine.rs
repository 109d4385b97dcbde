//! Carries out the planner's steps for each user so that every step leaves a working,
//! stored key. The engine observes (IAM keys, every store, this host's in-flight records,
//! and what the planner asks besides), asks [`planner::plan`] what to do, and does exactly
//! that: a dry run prints the same steps. The new key's steps (create, write each store,
//! verify, promote) are one transaction: on any failure every store written is restored
//! and the new key deleted, unless a store could not be restored, in which case the new key
//! stays, since a store may hand it out.

use super::events::{Event, EventSink};
use super::hooks::AfterRotate;
use super::inflight::InflightRecords;
use super::planner::{self, End, Plan, PlanError, Step};
use super::report::{KeyView, Outcome, UserReport};
use crate::aws::{AwsError, IamApi, KeyVerifier};
use crate::policy::RotationPolicy;
use crate::secret::AccessKey;
use crate::store::{Holding, SecretStore, StoreError, WriteContext};
use futures::stream::{self, StreamExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

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
    /// The [`KeyMaker`] (e.g. Terraform) could not make the new key.
    #[error(transparent)]
    KeyMaker(Box<dyn std::error::Error + Send + Sync>),
    /// The hand-off failed and was undone (fully or not: `cleanup` says).
    #[error("{cause}; {cleanup}")]
    RolledBack {
        /// What failed.
        cause: Box<RotateError>,
        /// What the undo did.
        cleanup: String,
    },
}

/// The error of a user the run's time limit left unstarted.
pub const NOT_STARTED: &str = "not started: the run's time limit ran out before this user's turn; nothing was changed, and the next run takes it";

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
    /// No user starts after this instant (a scheduler's deadline): a user not started is
    /// reported failed and left untouched, so a run cut short is never a kill mid-rotation.
    pub stop_at: Option<Instant>,
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

/// Where a plan's new key comes from when it is not IAM's `CreateAccessKey`: a tool that
/// owns the key (Terraform, whose state then holds it). The plan is the same (the old key is
/// retired by the usual rules first, to make room); only its `Create` step calls this.
#[async_trait::async_trait]
pub trait KeyMaker: Send + Sync {
    /// The `Create` step in words, for the plan and dry runs.
    fn describe(&self) -> String;
    /// Make a new, Active key of `user` and return it whole.
    async fn make(&self, user: &str) -> Result<AccessKey, RotateError>;
    /// Why a new key whose hand-off failed is kept rather than deleted (its maker holds
    /// it and hands it out again), for the rollback message.
    fn kept_because(&self) -> String;
}

/// The rotation engine.
pub struct Engine {
    iam: Arc<dyn IamApi>,
    verifier: Arc<dyn KeyVerifier>,
    events: Arc<dyn EventSink>,
    options: EngineOptions,
    after_rotate: Option<Arc<dyn AfterRotate>>,
    key_maker: Option<Arc<dyn KeyMaker>>,
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
            after_rotate: None,
            key_maker: None,
        }
    }

    /// Make new keys with `maker` instead of IAM's `CreateAccessKey`.
    pub fn with_key_maker(mut self, maker: Arc<dyn KeyMaker>) -> Self {
        self.key_maker = Some(maker);
        self
    }

    /// A step in words; the `Create` step names the key maker's way, if there is one.
    fn describe_step(&self, step: &Step, locations: &[String]) -> String {
        match (step, &self.key_maker) {
            (Step::Create, Some(maker)) => maker.describe(),
            _ => step.describe(locations),
        }
    }

    /// Run `hooks` after each user's rotation that ends `rotated` (not on dry runs).
    pub fn with_after_rotate(mut self, hooks: Arc<dyn AfterRotate>) -> Self {
        self.after_rotate = Some(hooks);
        self
    }

    /// The hooks of a user whose rotation just ended: only a rotation that made (or handed
    /// on) a new key that is now stored, verified and promoted. Each hook is an event of
    /// its own (`after-rotate`), for the audit log.
    async fn run_hooks(&self, target: &Target, report: &mut UserReport) {
        let Some(hooks) = &self.after_rotate else {
            return;
        };
        if self.options.dry_run || report.outcome != Outcome::Rotated || report.new_key.is_none() {
            return;
        }
        report.hooks = hooks.after_rotate(report).await;
        let key_id = report.new_key.as_ref().map(|k| k.id.clone());
        for hook in &report.hooks {
            self.events.record(Event {
                account: None,
                user: target.user.clone(),
                service: target.service.clone(),
                action: "after-rotate",
                key_id: key_id.clone(),
                store: Some(hook.hook.clone()),
                outcome: hook.outcome,
                error: hook.error.clone(),
            });
            if let Some(e) = &hook.error {
                warn!(user = %target.user, hook = %hook.hook, "after_rotate hook failed (the rotation stands): {e}");
            }
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
        if self.options.stop_at.is_some_and(|at| Instant::now() >= at) {
            info!(user = %target.user, "not started: the run's time limit ran out");
            report.outcome = Outcome::Failed;
            report.error = Some(NOT_STARTED.to_string());
            report.finish();
            return report;
        }
        match self.run(target, &mut report).await {
            Ok(outcome) => {
                report.outcome = outcome;
                if outcome != Outcome::Busy && !self.options.dry_run {
                    if let Some(records) = &self.options.inflight {
                        records.settle(&target.user);
                    }
                }
                self.run_hooks(target, &mut report).await;
            }
            Err(err) => {
                // The summary says it (once); -v says it as it happens.
                info!(user = %target.user, "rotation failed: {err}");
                report.outcome = Outcome::Failed;
                report.error = Some(err.to_string());
            }
        }
        info!(user = %target.user, outcome = report.outcome.as_str(), "user done");
        report.finish();
        report
    }

    async fn run(&self, target: &Target, report: &mut UserReport) -> Result<Outcome, RotateError> {
        let observed = self.observe(target).await?;
        report.keys_before = observed.seen.keys.iter().map(KeyView::from).collect();
        let plan =
            planner::plan(&observed.seen, self.rules(&target.policy)).map_err(|e| match e {
                PlanError::CannotRestore { key_id, index, .. } => PlanError::CannotRestore {
                    key_id,
                    index,
                    store: target.stores[index].location(),
                },
                other => other,
            })?;
        report.current_before = plan.current.clone();
        report.last_before = plan.last.clone();
        let none = || "none".to_string();
        info!(
            user = %target.user,
            current = %plan.current.clone().unwrap_or_else(none),
            last = %plan.last.clone().unwrap_or_else(none),
            "plan: {}",
            if plan.steps.is_empty() {
                "nothing to do".to_string()
            } else {
                plan.steps
                    .iter()
                    .map(|s| self.describe_step(s, &report.stores))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        );
        let (outcome, note) = end_outcome(&plan.end);
        report.note = note;
        if self.options.dry_run {
            report.actions = plan
                .steps
                .iter()
                .map(|s| format!("would {}", self.describe_step(s, &report.stores)))
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

    /// Hand a key made elsewhere (e.g. by Terraform) to the user's stores: write it
    /// everywhere, verify it, promote it, roll the stores back on failure. IAM is not changed.
    pub async fn hand_off_key(&self, target: &Target, key: AccessKey) -> UserReport {
        let mut report = UserReport::new(&target.user, target.service.as_deref());
        report.stores = target.stores.iter().map(|s| s.location()).collect();
        let result = async {
            let mut holdings = Vec::with_capacity(target.stores.len());
            for store in &target.stores {
                holdings.push(store.observe().await?);
            }
            report.current_before = holdings.iter().find_map(|h| h.key_id().map(str::to_string));
            // Same key in every real store: nothing to hand on (the -o copy only gets keys
            // that are handed on). A store that hands out a key by id only holds it when
            // the ids agree: an access key id names one secret.
            let has = |h: &Holding| match h {
                Holding::KeyId(id) => *id == key.id,
                other => other.key() == Some(&key),
            };
            if target
                .stores
                .iter()
                .zip(&holdings)
                .all(|(store, h)| store.is_copy() || has(h))
            {
                return Ok(Outcome::Fresh);
            }
            // What a rollback puts back; a store that hands out a key by id only needs the
            // same key whole from another store, or it could not be put back.
            let whole = |id: &str| {
                holdings
                    .iter()
                    .filter_map(Holding::key)
                    .find(|k| k.id == id)
                    .cloned()
            };
            let mut held = Vec::with_capacity(holdings.len());
            for (index, holding) in holdings.iter().enumerate() {
                held.push(match holding {
                    Holding::KeyId(id) => {
                        Some(whole(id).ok_or_else(|| PlanError::CannotRestore {
                            key_id: id.clone(),
                            index,
                            store: target.stores[index].location(),
                        })?)
                    }
                    other => other.key().cloned(),
                });
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
                    .undo(
                        target,
                        &key,
                        &held[..written],
                        &ctx,
                        cause,
                        Some("IAM was not changed".to_string()),
                    )
                    .await),
            }
        }
        .await;
        match result {
            Ok(outcome) => {
                report.outcome = outcome;
                // Every store hands the key out now: a dead run's record of this user (one
                // killed after its key maker made the key) is acted on, and must not later
                // claim that key, once it is LAST, as its leftover.
                if !self.options.dry_run {
                    if let Some(records) = &self.options.inflight {
                        records.settle(&target.user);
                    }
                }
                self.run_hooks(target, &mut report).await;
            }
            Err(err) => {
                info!(user = %target.user, "hand-off failed: {err}");
                report.error = Some(err.to_string());
            }
        }
        info!(user = %target.user, outcome = report.outcome.as_str(), "user done");
        report.finish();
        report
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
            account: None,
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

mod execute;
mod observe;
mod verify;

#[cfg(test)]
mod tests;
