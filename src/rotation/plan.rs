//! The CURRENT/LAST decision for one user, as a pure function of IAM's keys and the key ids
//! the stores hand out.

use crate::aws::KeyMeta;
use serde::Serialize;
use std::collections::BTreeSet;

/// IAM allows at most two access keys per user.
pub const MAX_KEYS: usize = 2;

/// What a rotation of one user will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The newest Active key before the run.
    pub current: Option<String>,
    /// The other key before the run.
    pub last: Option<String>,
    /// The key deleted to make room for the new one.
    pub delete: Option<String>,
    /// Why that key was chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_reason: Option<&'static str>,
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
}

/// CURRENT is the newest Active key and LAST the other one. With two keys, one must go
/// before a new one can be created: never a key a store hands out (`held`), preferably an
/// Inactive one, else LAST. A key that no store holds while another one is held is an
/// orphan of an interrupted run (its secret was never stored), and it goes first.
pub fn plan(keys: &[KeyMeta], held: &BTreeSet<String>) -> Result<Plan, PlanError> {
    if keys.len() > MAX_KEYS {
        return Err(PlanError::TooManyKeys(keys.len()));
    }
    let mut newest_first: Vec<&KeyMeta> = keys.iter().collect();
    newest_first.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
    let current = newest_first.iter().find(|k| k.active).map(|k| k.id.clone());
    let last = newest_first
        .iter()
        .find(|k| Some(&k.id) != current.as_ref())
        .map(|k| k.id.clone());
    let mut plan = Plan {
        current,
        last,
        delete: None,
        delete_reason: None,
    };
    if keys.len() < MAX_KEYS {
        return Ok(plan);
    }
    let free: Vec<&KeyMeta> = newest_first
        .iter()
        .copied()
        .filter(|k| !held.contains(&k.id))
        .collect();
    let (victim, reason) = match free.as_slice() {
        [] => {
            return Err(PlanError::BothKeysInUse(
                newest_first[0].id.clone(),
                newest_first[1].id.clone(),
            ))
        }
        [only] if !held.is_empty() && Some(&only.id) == plan.current.as_ref() => (
            *only,
            "newest key is held by no store (left by an interrupted run)",
        ),
        [only] if !only.active => (*only, "Inactive key"),
        [only] => (*only, "LAST key"),
        both => match both.iter().find(|k| !k.active) {
            Some(inactive) => (*inactive, "Inactive key"),
            None => (
                *both
                    .iter()
                    .find(|k| Some(&k.id) == plan.last.as_ref())
                    .unwrap_or(&both[1]),
                "LAST key",
            ),
        },
    };
    plan.delete = Some(victim.id.clone());
    plan.delete_reason = Some(reason);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn key(id: &str, active: bool, age_days: u64) -> KeyMeta {
        KeyMeta {
            id: id.to_string(),
            active,
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000 - age_days * 86400),
        }
    }

    fn held(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_key_creates_without_deleting() {
        let p = plan(&[], &held(&[])).unwrap();
        assert_eq!((p.current, p.last, p.delete), (None, None, None));
    }

    #[test]
    fn one_key_becomes_last() {
        let p = plan(&[key("A", true, 3)], &held(&["A"])).unwrap();
        assert_eq!(p.current.as_deref(), Some("A"));
        assert_eq!(p.delete, None);
    }

    #[test]
    fn two_active_keys_lose_the_older() {
        let p = plan(&[key("OLD", true, 40), key("NEW", true, 10)], &held(&[])).unwrap();
        assert_eq!(p.current.as_deref(), Some("NEW"));
        assert_eq!(p.last.as_deref(), Some("OLD"));
        assert_eq!(p.delete.as_deref(), Some("OLD"));
    }

    #[test]
    fn an_inactive_key_goes_first_even_when_newer() {
        let p = plan(&[key("ACT", true, 40), key("INACT", false, 10)], &held(&[])).unwrap();
        assert_eq!(p.current.as_deref(), Some("ACT"));
        assert_eq!(p.delete.as_deref(), Some("INACT"));
    }

    #[test]
    fn a_key_a_store_hands_out_is_never_deleted() {
        // An interrupted run created NEW but never stored it; the store still has OLD.
        let p = plan(
            &[key("OLD", true, 40), key("NEW", true, 0)],
            &held(&["OLD"]),
        )
        .unwrap();
        assert_eq!(p.delete.as_deref(), Some("NEW"));
        let p = plan(
            &[key("OLD", false, 40), key("NEW", true, 0)],
            &held(&["OLD"]),
        )
        .unwrap();
        assert_eq!(p.delete.as_deref(), Some("NEW"));
    }

    #[test]
    fn both_keys_held_is_refused() {
        let err = plan(&[key("A", true, 4), key("B", true, 1)], &held(&["A", "B"])).unwrap_err();
        assert!(matches!(err, PlanError::BothKeysInUse(..)));
    }

    #[test]
    fn three_keys_are_refused() {
        let keys = [key("A", true, 3), key("B", true, 2), key("C", true, 1)];
        assert_eq!(
            plan(&keys, &held(&[])).unwrap_err(),
            PlanError::TooManyKeys(3)
        );
    }
}
