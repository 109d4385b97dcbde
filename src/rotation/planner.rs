//! The planner: one pure function from what was observed about a user (its IAM keys, what
//! every store that hands out its key holds, what credrot knows of runs in flight) to the
//! complete list of steps a run takes for it, each with its reason. The executor only
//! carries the steps out, and `--dry-run` prints them, so the two cannot disagree.
//!
//! The rules every plan keeps:
//! - a key that a store hands out or has staged when the run starts is never deleted or
//!   deactivated by that run, whatever else the run repairs first;
//! - nothing is retired on the strength of a stored key that was not proven to work first;
//! - a store that holds nothing usable (empty, or a torn pair) is repaired from a verified
//!   key, or, when no store holds one, the user is rotated now.

use super::retire::{
    decide, is_own_verification, parse_tag_time, RetireFacts, Retirement, DEACTIVATED_TAG,
    VERIFIED_TAG,
};
use crate::aws::{KeyMeta, KeyUse};
use crate::policy::{Mode, RotationPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// IAM allows at most two access keys per user.
pub const MAX_KEYS: usize = 2;

/// The reason of a staged deletion after the grace period (its tags go with it).
pub const GRACE_OVER: &str = "grace over";

/// What one store hands out, by key id (the planner never sees a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Nothing.
    Empty,
    /// A whole key.
    Key(String),
    /// A key whose secret the store cannot give back (a GitHub secret): it hands out this
    /// key, which is protected like a whole one, but it is never a repair source.
    KeyId(String),
    /// A pair no consumer can use; the id it names, if any.
    Broken(Option<String>),
}

impl Held {
    fn id(&self) -> Option<&str> {
        match self {
            Held::Key(id) | Held::KeyId(id) | Held::Broken(Some(id)) => Some(id),
            _ => None,
        }
    }

    /// Whether the store hands out key `id` in working order (whole, or by id only).
    fn hands_out(&self, id: &str) -> bool {
        matches!(self, Held::Key(k) | Held::KeyId(k) if k == id)
    }
}

/// One store of the user, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreView {
    /// A copy for the person running credrot (`-o`, `--print-secrets`), not a place
    /// services read from: never repaired, and its key counts only when it is all there is.
    pub copy: bool,
    /// What it hands out.
    pub held: Held,
    /// What it has staged but not promoted (Secrets Manager's AWSPENDING).
    pub pending: Option<String>,
}

/// Who created a key that looks like a rotation in progress, as far as this host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A credrot process on this host that is still running; the text names it.
    Alive(String),
    /// A credrot process on this host that is gone (killed) before it was done with the
    /// user: what it left can be taken over, and a key of it that no store holds is an
    /// orphan (its secret died with the process).
    Dead(String),
    /// A credrot run on this host that was done with the user (the key stored, or undone):
    /// no run is at work on the key.
    Finished(String),
}

/// Everything observed about one user.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The user's keys in IAM.
    pub keys: Vec<KeyMeta>,
    /// Every store that hands out the user's key, in write order.
    pub stores: Vec<StoreView>,
    /// The last use of the keys [`questions`] asked about (`None`: never used).
    pub usage: BTreeMap<String, Option<KeyUse>>,
    /// The user's IAM tags, when [`questions`] asked for them (staged state).
    pub tags: BTreeMap<String, String>,
    /// What this host knows of the runs that created keys (keys not listed: nothing).
    pub owners: BTreeMap<String, Owner>,
    /// The time the plan is made for.
    pub now: SystemTime,
}

/// The settings a plan follows.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// When and how to rotate.
    pub policy: &'a RotationPolicy,
    /// Rotate even if CURRENT is younger than `rotate_after`.
    pub force: bool,
    /// How long a young key that some store lacks counts as another run's work; `None`:
    /// this run is alone.
    pub lock_ttl: Option<Duration>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Prove through STS that a stored key works, before stores are filled with it.
    VerifyStored {
        /// The key.
        key: String,
    },
    /// Write (and promote) an existing, verified key to a store that lacks it.
    Fill {
        /// Index of the store.
        store: usize,
        /// The key.
        key: String,
        /// What the store held.
        reason: String,
    },
    /// Delete a key an interrupted run created and nobody stored or used.
    DeleteOrphan {
        /// The key.
        key: String,
    },
    /// Staged mode: deactivate the old key (and record when).
    Deactivate {
        /// The key.
        key: String,
    },
    /// Staged mode: record that an Inactive key's grace period starts now.
    MarkDeactivated {
        /// The key.
        key: String,
    },
    /// Delete a key: to make room for the new one, or after its grace period.
    Delete {
        /// The key.
        key: String,
        /// Why this key.
        reason: &'static str,
    },
    /// Create the new key.
    Create,
    /// Write the new key to a store.
    Write {
        /// Index of the store.
        store: usize,
    },
    /// Prove through STS that the new key works and belongs to the user.
    VerifyNew,
    /// Make the new key the one every store hands out (Secrets Manager: AWSCURRENT).
    Promote,
    /// Staged mode: record when the new key was verified.
    MarkVerified,
}

impl Step {
    /// The step in words; `locations` names the stores.
    pub fn describe(&self, locations: &[String]) -> String {
        let at = |i: &usize| locations.get(*i).cloned().unwrap_or_default();
        match self {
            Step::VerifyStored { key } => format!("verify {key} through STS"),
            Step::Fill { store, key, reason } => {
                format!("write {key} to {} ({reason})", at(store))
            }
            Step::DeleteOrphan { key } => {
                format!("delete {key}: created by an interrupted run, never stored or used")
            }
            Step::Deactivate { key } => format!("deactivate {key}"),
            Step::MarkDeactivated { key } => {
                format!("record that {key} is Inactive: its grace period starts now")
            }
            Step::Delete { key, reason } => format!("delete {key} ({reason})"),
            Step::Create => "create a new key".to_string(),
            Step::Write { store } => format!("write the new key to {}", at(store)),
            Step::VerifyNew => "verify the new key through STS".to_string(),
            Step::Promote => "make the new key current in every store".to_string(),
            Step::MarkVerified => "record when the new key was verified".to_string(),
        }
    }
}

/// How a plan ends when every step succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Nothing was due (repairs may have been made).
    Fresh,
    /// Stores were repaired; the rotation that is due waits for the next run, because it
    /// would delete a key that a store handed out when this run started.
    Synced(String),
    /// Another run is at work on the user.
    Busy(String),
    /// A new key was created, stored, verified and promoted.
    Rotated,
    /// Staged retirement is under way.
    Retiring(Option<String>),
    /// Staged retirement waited longer than `max_wait`.
    Stuck(String),
}

/// The complete plan for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The newest Active key before the run.
    pub current: Option<String>,
    /// The other key before the run.
    pub last: Option<String>,
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// How it ends if every step succeeds.
    pub end: End,
}

impl Plan {
    /// The key the plan deletes, if any (orphans first).
    pub fn deleted(&self) -> Option<&str> {
        self.steps.iter().rev().find_map(|s| match s {
            Step::Delete { key, .. } | Step::DeleteOrphan { key } => Some(key.as_str()),
            _ => None,
        })
    }
}

/// A user whose keys cannot be rotated safely as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Both keys are handed out by stores, so deleting either would break a consumer.
    #[error("both keys ({0}, {1}) are handed out by stores, so neither can be deleted; make the stores agree (re-run after fixing the failing store) and run again")]
    BothKeysInUse(String, String),
    /// More keys than IAM allows: not something credrot creates.
    #[error(
        "the user has {0} access keys but IAM allows {MAX_KEYS}; delete the extra keys by hand"
    )]
    TooManyKeys(usize),
    /// A store hands out a key only by id (a GitHub secret) and no store holds that key
    /// whole, so a failed rotation could not put it back: refused before any IAM change.
    #[error("key {key_id} is handed out by {store}, which cannot give a secret back, and no other store holds {key_id} whole, so a failed rotation could not put it back there; nothing was changed. Add a store that holds the key whole (file, 1password, ssm, secrets-manager) and fill it, or see docs/stores/github.md for starting the store afresh")]
    CannotRestore {
        /// The key the store hands out.
        key_id: String,
        /// The store's index in [`Observed::stores`].
        index: usize,
        /// The store's location (the engine names it; the planner knows only indexes).
        store: String,
    },
    /// The steps came in an order the executor cannot carry out (a bug, never expected).
    #[error("internal error: {0}; nothing after this step was done, please report it")]
    OutOfOrder(&'static str),
    /// A key no store hands out is in use: someone holds a copy credrot does not manage.
    #[error("key {key_id} is handed out by no store but was used ({usage}); credrot leaves it alone: find its user, then delete it or put it in a store")]
    UnmanagedKeyInUse {
        /// The key.
        key_id: String,
        /// Its last use.
        usage: String,
    },
}

/// What the planner needs to know beyond keys and stores, fetched by the caller first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Questions {
    /// Keys whose last use matters.
    pub usage: Vec<String>,
    /// Whether the user's tags matter (staged state).
    pub tags: bool,
}

/// The one rule for CURRENT: the newest Active key; between keys of the same second (IAM
/// dates keys to the second), the one a store hands out, then the greater id.
pub fn current<'a>(keys: &'a [KeyMeta], protected: &BTreeSet<String>) -> Option<&'a KeyMeta> {
    keys.iter()
        .filter(|k| k.active)
        .max_by(|a, b| rank(a, protected).cmp(&rank(b, protected)))
}

fn rank<'a>(key: &'a KeyMeta, protected: &BTreeSet<String>) -> (SystemTime, bool, &'a str) {
    (key.created, protected.contains(&key.id), key.id.as_str())
}

/// The key that is not CURRENT.
fn last<'a>(keys: &'a [KeyMeta], current: Option<&KeyMeta>) -> Option<&'a KeyMeta> {
    keys.iter()
        .filter(|k| Some(&k.id) != current.map(|c| &c.id))
        .max_by_key(|k| (k.created, k.id.as_str()))
}

/// The state a plan is made from, with what follows from it computed once.
struct View<'a> {
    seen: &'a Observed,
    rules: Rules<'a>,
    /// Ids of IAM keys that a counted store hands out (whole or broken) or any store has
    /// staged: never deleted or deactivated by this run.
    protected: BTreeSet<String>,
}

impl<'a> View<'a> {
    fn new(seen: &'a Observed, rules: Rules<'a>) -> Self {
        let mut view = View {
            seen,
            rules,
            protected: BTreeSet::new(),
        };
        let protected: BTreeSet<String> = view
            .counted()
            .filter_map(|s| s.held.id())
            .chain(seen.stores.iter().filter_map(|s| s.pending.as_deref()))
            .filter(|id| view.in_iam(id))
            .map(str::to_string)
            .collect();
        view.protected = protected;
        view
    }

    fn in_iam(&self, id: &str) -> bool {
        self.seen.keys.iter().any(|k| k.id == id)
    }

    fn created(&self, id: &str) -> Option<SystemTime> {
        self.seen
            .keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.created)
    }

    fn age(&self, key: &KeyMeta) -> Duration {
        self.seen
            .now
            .duration_since(key.created)
            .unwrap_or_default()
    }

    fn real(&self) -> impl Iterator<Item = (usize, &'a StoreView)> {
        self.seen.stores.iter().enumerate().filter(|(_, s)| !s.copy)
    }

    /// The stores whose key counts: the real ones, or the copies when there is no other.
    fn counted(&self) -> impl Iterator<Item = &'a StoreView> {
        let only_copies = self.seen.stores.iter().all(|s| s.copy);
        self.seen
            .stores
            .iter()
            .filter(move |s| only_copies || !s.copy)
    }

    /// A young key that some counted store lacks: another run creates a key, then writes
    /// the stores one by one, then promotes, and until the last store has it this is what
    /// others see. A key whose creator this host saw die is not in flight: its work is
    /// taken over. With no key stored anywhere there is nothing a run could be behind,
    /// unless this host knows the creator is still running.
    fn in_flight(&self) -> Option<(&'a KeyMeta, Option<&'a Owner>)> {
        let ttl = self.rules.lock_ttl?;
        let behind = self
            .counted()
            .filter_map(|s| match s.held.id() {
                // A torn pair names the key it was written for before the tear: a run
                // in progress is one whose key the store does not name yet.
                Some(id) => self.created(id),
                // A store that names a key IAM no longer has is no sign of a run in
                // progress (a run writes the key it created, and fills stale stores before
                // it creates one): it is stale, and repaired now rather than after the TTL.
                None => Some(SystemTime::UNIX_EPOCH),
            })
            .min()?;
        let seen = self.seen;
        let everywhere = |id: &str| self.counted().all(|s| s.held.hands_out(id));
        seen.keys
            .iter()
            .filter(|k| k.active && self.age(k) < ttl && !everywhere(&k.id))
            .map(|k| (k, seen.owners.get(&k.id)))
            .filter(|(k, owner)| match owner {
                Some(Owner::Dead(_) | Owner::Finished(_)) => false,
                // IAM dates keys to the second: a key this host knows a live run is
                // handing out is in flight even when it is as old as the stored one.
                Some(Owner::Alive(_)) => true,
                // Without a record: newer than what some store hands out, and not older
                // than any stored key (a run creates its key after every stored one, so
                // an older unstored key is a leftover, not work in progress).
                None => {
                    k.created > behind
                        && !self.protected.is_empty()
                        && !self
                            .protected
                            .iter()
                            .any(|id| self.created(id).is_some_and(|c| c > k.created))
                }
            })
            .max_by_key(|(k, _)| k.created)
    }

    /// The newest whole key some real store hands out or has staged, that IAM still has:
    /// the key every real store should hand out.
    fn repair_source(&self) -> Option<&'a str> {
        self.real()
            .flat_map(|(_, s)| {
                let whole = match &s.held {
                    Held::Key(id) => Some(id.as_str()),
                    _ => None,
                };
                [whole, s.pending.as_deref()]
            })
            .flatten()
            .filter_map(|id| self.created(id).map(|c| (c, id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Keys created by a run that was interrupted before storing them, whose secret is gone:
    /// Active keys that no store holds and that are newer than every key a store holds (IAM
    /// creates keys Active; an Inactive key was put in that state on purpose), and any
    /// unstored key whose creator this host saw die. The second kind is known to be
    /// credrot's own (`true`): its use, if any, was credrot's verification.
    fn orphans(&self) -> Vec<(&'a KeyMeta, bool)> {
        let newest = self
            .protected
            .iter()
            .filter_map(|id| self.created(id))
            .max();
        self.seen
            .keys
            .iter()
            .filter(|k| k.active && !self.protected.contains(&k.id))
            .filter_map(|k| {
                let ours = matches!(self.seen.owners.get(&k.id), Some(Owner::Dead(_)));
                let newer = newest.is_some_and(|n| k.created > n);
                (ours || newer).then_some((k, ours))
            })
            .collect()
    }

    /// Whether a new key is due: forced, no Active key, CURRENT older than `rotate_after`,
    /// or no real store holds a whole key (no consumer can get one, so waiting helps nobody).
    fn due(&self, current: Option<&KeyMeta>) -> bool {
        // Stores that hand out an IAM key by id only (GitHub) serve their consumers; only
        // when some other store holds nothing usable is the user starved.
        let serving = |s: &StoreView| matches!(&s.held, Held::KeyId(id) if self.in_iam(id));
        let starved = self.real().any(|(_, s)| !serving(s)) && self.repair_source().is_none();
        let (Some(after), Some(current)) = (&self.rules.policy.rotate_after, current) else {
            return true;
        };
        self.rules.force || starved || self.age(current) >= after.value
    }
}

/// What the planner needs to know besides keys and stores: the last use of orphan
/// candidates (a used one is someone's), and in staged mode both keys' use and the tags.
pub fn questions(seen: &Observed, rules: Rules<'_>) -> Questions {
    let view = View::new(seen, rules);
    if seen.keys.len() > MAX_KEYS || view.in_flight().is_some() {
        return Questions::default();
    }
    let orphans = view.orphans();
    let mut usage: Vec<String> = orphans
        .iter()
        .filter(|(_, ours)| !ours)
        .map(|(k, _)| k.id.clone())
        .collect();
    let remaining = without(&seen.keys, &orphans);
    let staged = rules.policy.mode == Mode::Staged && remaining.len() == MAX_KEYS;
    if staged {
        usage.extend(remaining.iter().map(|k| k.id.clone()));
    }
    Questions {
        usage,
        tags: staged,
    }
}

/// The plan for one user. `seen.usage` and `seen.tags` must answer [`questions`].
pub fn plan(seen: &Observed, rules: Rules<'_>) -> Result<Plan, PlanError> {
    if seen.keys.len() > MAX_KEYS {
        // Not a state IAM allows: touch nothing and let a person look.
        return Err(PlanError::TooManyKeys(seen.keys.len()));
    }
    let view = View::new(seen, rules);
    let current_key = current(&seen.keys, &view.protected);
    let mut plan = Plan {
        current: current_key.map(|k| k.id.clone()),
        last: last(&seen.keys, current_key).map(|k| k.id.clone()),
        steps: Vec::new(),
        end: End::Fresh,
    };
    if let Some((key, owner)) = view.in_flight() {
        let who = match owner {
            Some(Owner::Alive(who)) => format!("{who}, which is still running,"),
            _ => "another run".to_string(),
        };
        let ttl = rules.lock_ttl.unwrap_or_default();
        plan.end = End::Busy(format!(
            "key {} was created {} ago and is not in every store yet: {who} is handing it out; if that run died on another host, a run after {} finishes its work",
            key.id,
            crate::duration::human(view.age(key)),
            humantime::format_rfc3339_seconds(key.created + ttl)
        ));
        return Ok(plan);
    }

    // Repairs first: stores that lack the newest stored key get it once it is proven.
    if let Some(source) = view.repair_source() {
        let lagging: Vec<(usize, String)> = view
            .real()
            .filter(|(_, s)| !s.held.hands_out(source))
            .map(|(i, s)| (i, fill_reason(s, source)))
            .collect();
        if !lagging.is_empty() {
            plan.steps.push(Step::VerifyStored {
                key: source.to_string(),
            });
            for (store, reason) in lagging {
                plan.steps.push(Step::Fill {
                    store,
                    key: source.to_string(),
                    reason,
                });
            }
        }
    }
    let orphans = view.orphans();
    for (orphan, ours) in &orphans {
        let usage = seen.usage.get(&orphan.id).cloned().flatten();
        // credrot verifies a key minutes after creating it; that use is its own.
        let used = usage.filter(|u| !ours && !is_own_verification(orphan.created, None, u));
        if let Some(usage) = used {
            return Err(PlanError::UnmanagedKeyInUse {
                key_id: orphan.id.clone(),
                usage: format!(
                    "{} by {} in {}",
                    humantime::format_rfc3339_seconds(usage.date),
                    usage.service,
                    usage.region
                ),
            });
        }
        plan.steps.push(Step::DeleteOrphan {
            key: orphan.id.clone(),
        });
    }
    let remaining = without(&seen.keys, &orphans);
    let current_key = current(&remaining, &view.protected).cloned();
    let repaired = !plan.steps.is_empty();

    let mut free_slots = MAX_KEYS.saturating_sub(remaining.len());
    let staged_pair = match &current_key {
        Some(new) if rules.policy.mode == Mode::Staged && remaining.len() == MAX_KEYS => {
            last(&remaining, Some(new)).map(|old| (old.clone(), new.clone()))
        }
        _ => None,
    };
    if let Some((old, new)) = staged_pair {
        if view.protected.contains(&old.id) {
            return defer_or_refuse(plan, repaired, &old.id, &new.id);
        }
        match retire(seen, rules, &old, &new) {
            Retirement::Deactivate => {
                plan.steps.push(Step::Deactivate { key: old.id });
                plan.end = End::Retiring(None);
                return Ok(plan);
            }
            Retirement::Delete => {
                plan.steps.push(Step::Delete {
                    key: old.id,
                    reason: GRACE_OVER,
                });
                free_slots = 1;
            }
            Retirement::Wait(reason) => {
                let tagged = seen
                    .tags
                    .contains_key(&format!("{DEACTIVATED_TAG}{}", old.id));
                if !old.active && !tagged {
                    // Deactivated by hand or by a run that died before tagging.
                    plan.steps.push(Step::MarkDeactivated { key: old.id });
                }
                plan.end = End::Retiring(Some(reason));
                return Ok(plan);
            }
            Retirement::Stuck(reason) => {
                plan.end = End::Stuck(reason);
                return Ok(plan);
            }
        }
    }
    if !view.due(current_key.as_ref()) {
        return Ok(plan);
    }
    if free_slots == 0 {
        let candidates: Vec<&KeyMeta> = remaining
            .iter()
            .filter(|k| !view.protected.contains(&k.id))
            .collect();
        let victim = candidates
            .iter()
            .find(|k| !k.active)
            .map(|k| (*k, "Inactive key"))
            .or_else(|| candidates.first().map(|k| (*k, "LAST key")));
        let Some((victim, reason)) = victim else {
            let newest = current_key.map(|k| k.id).unwrap_or_default();
            let other = remaining
                .iter()
                .find(|k| k.id != newest)
                .map(|k| k.id.clone())
                .unwrap_or_default();
            return defer_or_refuse(plan, repaired, &other, &newest);
        };
        plan.steps.push(Step::Delete {
            key: victim.id.clone(),
            reason,
        });
    }
    check_restorable(seen, &view, &plan.steps)?;
    plan.steps.push(Step::Create);
    plan.steps
        .extend((0..seen.stores.len()).map(|store| Step::Write { store }));
    plan.steps.push(Step::VerifyNew);
    plan.steps.push(Step::Promote);
    if rules.policy.mode == Mode::Staged {
        plan.steps.push(Step::MarkVerified);
    }
    plan.end = End::Rotated;
    Ok(plan)
}

/// Before a new key is made: every store that hands out a key by id only (and is not
/// filled with a whole key first by this plan) must hand out a key some store holds whole,
/// so that a rollback can put it back. A key IAM no longer has needs no putting back.
fn check_restorable(seen: &Observed, view: &View<'_>, steps: &[Step]) -> Result<(), PlanError> {
    let whole = |id: &str| {
        seen.stores
            .iter()
            .any(|s| s.held == Held::Key(id.to_string()) || s.pending.as_deref() == Some(id))
    };
    for (index, store) in seen.stores.iter().enumerate() {
        let filled = steps
            .iter()
            .any(|s| matches!(s, Step::Fill { store, .. } if *store == index));
        if let Held::KeyId(id) = &store.held {
            if !filled && view.in_iam(id) && !whole(id) {
                return Err(PlanError::CannotRestore {
                    key_id: id.clone(),
                    index,
                    store: format!("store #{}", index + 1),
                });
            }
        }
    }
    Ok(())
}

/// The keys that remain once `orphans` are deleted.
fn without(keys: &[KeyMeta], orphans: &[(&KeyMeta, bool)]) -> Vec<KeyMeta> {
    keys.iter()
        .filter(|k| !orphans.iter().any(|(o, _)| o.id == k.id))
        .cloned()
        .collect()
}

/// Why a store gets the repair key.
fn fill_reason(store: &StoreView, source: &str) -> String {
    match &store.held {
        Held::Empty => "it holds nothing".to_string(),
        Held::Broken(_) => "it holds a broken pair".to_string(),
        Held::Key(id) if store.pending.as_deref() == Some(source) => {
            format!("it hands out {id} and has {source} staged by an interrupted run")
        }
        Held::Key(id) | Held::KeyId(id) => format!("it hands out older key {id}"),
    }
}

/// Neither key may go. When this run repaired stores, the key it would retire was handed
/// out when the run started, so the rotation waits for the next run; otherwise the stores
/// hand out both keys and a person must look.
fn defer_or_refuse(
    mut plan: Plan,
    repaired: bool,
    old: &str,
    new: &str,
) -> Result<Plan, PlanError> {
    if !repaired {
        return Err(PlanError::BothKeysInUse(old.to_string(), new.to_string()));
    }
    plan.end = End::Synced(format!(
        "stores repaired; the rotation that is due waits for the next run, because {old} was handed out by a store when this run started and consumers may still hold it"
    ));
    Ok(plan)
}

/// The staged decision for `old`, from the observed use and tags.
fn retire(seen: &Observed, rules: Rules<'_>, old: &KeyMeta, new: &KeyMeta) -> Retirement {
    let tag = |prefix: &str, id: &str| {
        seen.tags
            .get(&format!("{prefix}{id}"))
            .and_then(|v| parse_tag_time(v))
    };
    let usage = |id: &str| seen.usage.get(id).cloned().flatten();
    let (old_use, new_use) = (usage(&old.id), usage(&new.id));
    let facts = RetireFacts {
        old,
        new,
        old_use: old_use.as_ref(),
        new_use: new_use.as_ref(),
        verified_at: tag(VERIFIED_TAG, &new.id),
        deactivated_at: tag(DEACTIVATED_TAG, &old.id),
        now: seen.now,
    };
    decide(&facts, rules.policy)
}

#[cfg(test)]
mod tests;
