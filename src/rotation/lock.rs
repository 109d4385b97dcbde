//! A per-user lock kept as a tag on the IAM user, so two credrot runs (on any machines) do
//! not rotate the same user at once. It expires, so a killed run cannot block a user forever.
//!
//! IAM has no compare-and-set, so the lock is written and read back: the last writer wins and
//! the other run backs off. A narrow race remains (both read back before either overwrites);
//! IAM's two-key limit and the engine's convergence keep the invariants even then.

use crate::aws::{AwsError, IamApi};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tag that holds the lock: `<owner>/<expiry, unix seconds>`.
pub const LOCK_TAG: &str = "credrot:lock";

/// Who holds a lock and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The run that holds it.
    pub owner: String,
    /// When it lapses.
    pub until: SystemTime,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse(value: &str) -> Option<LockHolder> {
    let (owner, until) = value.rsplit_once('/')?;
    Some(LockHolder {
        owner: owner.to_string(),
        until: UNIX_EPOCH + Duration::from_secs(until.parse().ok()?),
    })
}

/// Take the lock on `user` for `owner`; `Ok(Err(holder))` when another run holds it.
pub async fn acquire(
    iam: &dyn IamApi,
    user: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Result<(), LockHolder>, AwsError> {
    let now = SystemTime::now();
    let held_by_other = |value: Option<&String>| {
        value
            .and_then(|v| parse(v))
            .filter(|h| h.owner != owner && h.until > now)
    };
    if let Some(holder) = held_by_other(iam.user_tags(user).await?.get(LOCK_TAG)) {
        return Ok(Err(holder));
    }
    let mine = format!("{owner}/{}", unix(now + ttl));
    iam.tag_user(user, LOCK_TAG, &mine).await?;
    let tags = iam.user_tags(user).await?;
    match tags.get(LOCK_TAG) {
        Some(value) if *value == mine => Ok(Ok(())),
        other => Ok(Err(held_by_other(other).unwrap_or(LockHolder {
            owner: "another credrot run".to_string(),
            until: now + ttl,
        }))),
    }
}

/// Give the lock back.
pub async fn release(iam: &dyn IamApi, user: &str) -> Result<(), AwsError> {
    iam.untag_user(user, &[LOCK_TAG.to_string()]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_values_round_trip() {
        let holder = parse("run-42/1700000000").unwrap();
        assert_eq!(holder.owner, "run-42");
        assert_eq!(unix(holder.until), 1_700_000_000);
        assert!(parse("garbage").is_none());
    }
}
