//! Observing one user: its IAM keys, what every store hands out (as a pair) and has staged,
//! this host's in-flight records, and the last uses and tags the planner asks for.

use super::{Engine, RotateError, Target};
use crate::aws::AwsErrorKind;
use crate::policy::RotationPolicy;
use crate::rotation::planner::{self, Held, Observed, Rules, StoreView};
use crate::secret::AccessKey;
use crate::store::Holding;
use std::collections::{BTreeMap, BTreeSet};
use tracing::warn;

/// What was observed of one user: the planner's view, and the keys behind it.
pub(super) struct Observation {
    pub(super) seen: Observed,
    /// What each store hands out.
    pub(super) holdings: Vec<Holding>,
    /// What each store has staged.
    pub(super) pending: Vec<Option<AccessKey>>,
}

impl Observation {
    /// The whole key with this id that some store hands out or has staged.
    pub(super) fn key(&self, id: &str) -> Option<&AccessKey> {
        self.holdings
            .iter()
            .filter_map(Holding::key)
            .chain(self.pending.iter().flatten())
            .find(|k| k.id == id)
    }

    /// What each store holds, as a rollback puts it back: its whole key, or for a store
    /// that hands out a key by id only, the same key from a store that holds it whole
    /// (the planner refuses a rotation where there is none, unless IAM no longer has the
    /// key); `None` for a store holding nothing usable.
    pub(super) fn previous(&self) -> Vec<Option<AccessKey>> {
        self.holdings
            .iter()
            .map(|h| match h {
                Holding::KeyId(id) => self.key(id).cloned(),
                other => other.key().cloned(),
            })
            .collect()
    }

    /// Ids the planner protects: a guard the executor checks again before any deletion.
    pub(super) fn protected(&self) -> BTreeSet<String> {
        self.holdings
            .iter()
            .filter_map(|h| h.key_id().map(str::to_string))
            .chain(self.pending.iter().flatten().map(|k| k.id.clone()))
            .collect()
    }
}

impl Engine {
    pub(super) fn rules<'a>(&self, policy: &'a RotationPolicy) -> Rules<'a> {
        Rules {
            policy,
            force: self.options.force,
            lock_ttl: self.options.lock_ttl,
        }
    }

    pub(super) async fn observe(&self, target: &Target) -> Result<Observation, RotateError> {
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
                .filter_map(|k| {
                    records
                        .owner(&target.user, k.created)
                        .map(|o| (k.id.clone(), o))
                })
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
                    Holding::KeyId(id) => Held::KeyId(id.clone()),
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
}
