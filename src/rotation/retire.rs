//! Staged retirement: when an old key may be deactivated and deleted, as a pure decision over
//! what IAM reports about the keys' use. The state it needs between runs (when a key was
//! verified, when it was deactivated) lives in tags on the IAM user, so any machine can run
//! the next step.

use crate::aws::{KeyMeta, KeyUse};
use crate::policy::RotationPolicy;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tag prefix: when credrot verified a new key (`credrot:verified:<key id>` = unix seconds).
/// Uses of the new key after that moment are uses by its consumers, not by credrot.
pub const VERIFIED_TAG: &str = "credrot:verified:";
/// Tag prefix: when credrot deactivated a key (`credrot:deactivated:<key id>`).
pub const DEACTIVATED_TAG: &str = "credrot:deactivated:";

/// The tag value for `time`, in whole seconds rounded up: IAM reports last use in whole
/// seconds, so credrot's own verification in the same second must not look later than it.
pub fn tag_time(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
        .to_string()
}

/// The time in a tag value written by [`tag_time`].
pub fn parse_tag_time(value: &str) -> Option<SystemTime> {
    value
        .parse()
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// credrot verifies a new key within minutes of creating it; a use of the key inside this
/// window, when no `credrot:verified:` tag says better, is taken for credrot's own.
pub const OWN_VERIFICATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Whether `usage` of a key created at `created` can be credrot's own verification, given
/// when (if known) credrot verified it.
pub fn is_own_verification(
    created: SystemTime,
    verified_at: Option<SystemTime>,
    usage: &KeyUse,
) -> bool {
    match verified_at {
        Some(verified) => usage.date <= verified,
        None => usage.date <= created + OWN_VERIFICATION_WINDOW,
    }
}

/// What to do with the old key this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retirement {
    /// The new key is in use and the old one has gone quiet: deactivate it.
    Deactivate,
    /// Deactivated for longer than the grace period: delete it.
    Delete,
    /// Not yet; the reason says what it waits for.
    Wait(String),
    /// Waited longer than `max_wait`; the reason says who still uses the old key.
    Stuck(String),
}

/// What the decision looks at.
#[derive(Debug, Clone)]
pub struct RetireFacts<'a> {
    /// The key being retired.
    pub old: &'a KeyMeta,
    /// Its successor, which the stores hand out.
    pub new: &'a KeyMeta,
    /// The old key's last use.
    pub old_use: Option<&'a KeyUse>,
    /// The new key's last use.
    pub new_use: Option<&'a KeyUse>,
    /// When credrot verified the new key (its own use of it).
    pub verified_at: Option<SystemTime>,
    /// When credrot deactivated the old key.
    pub deactivated_at: Option<SystemTime>,
    /// Now.
    pub now: SystemTime,
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

fn describe(usage: Option<&KeyUse>) -> String {
    match usage {
        Some(u) => format!(
            "last used {} by {} in {}",
            humantime::format_rfc3339_seconds(u.date),
            u.service,
            u.region
        ),
        None => "never used".to_string(),
    }
}

/// Decide the old key's next step under `policy`.
pub fn decide(facts: &RetireFacts<'_>, policy: &RotationPolicy) -> Retirement {
    let RetireFacts { old, new, now, .. } = *facts;
    if !old.active {
        let deactivated = facts.deactivated_at.unwrap_or(now);
        return if since(now, deactivated) >= policy.grace.value {
            Retirement::Delete
        } else {
            Retirement::Wait(format!(
                "{} is Inactive; it is deleted once grace ({}) has passed",
                old.id, policy.grace.text
            ))
        };
    }
    let new_seen = facts
        .new_use
        .is_some_and(|u| !is_own_verification(new.created, facts.verified_at, u));
    let old_quiet = facts
        .old_use
        .is_none_or(|u| since(now, u.date) >= policy.quiet_period.value);
    if new_seen && old_quiet {
        return Retirement::Deactivate;
    }
    let waiting = if !new_seen {
        format!("new key {} has not been used by its consumers yet", new.id)
    } else {
        format!(
            "old key {} was used within quiet_period ({}): {}",
            old.id,
            policy.quiet_period.text,
            describe(facts.old_use)
        )
    };
    if since(now, new.created) >= policy.max_wait.value {
        Retirement::Stuck(format!(
            "{waiting}; waited longer than max_wait ({}); old key {}: {}; find who still uses it",
            policy.max_wait.text,
            old.id,
            describe(facts.old_use)
        ))
    } else {
        Retirement::Wait(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DurationSetting;
    use crate::policy::Mode;

    const HOUR: u64 = 3600;

    fn at(hours: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 * HOUR + hours * HOUR)
    }

    fn key(id: &str, active: bool, created_hour: u64) -> KeyMeta {
        KeyMeta {
            id: id.into(),
            active,
            created: at(created_hour),
        }
    }

    fn used(hour: u64) -> KeyUse {
        KeyUse {
            date: at(hour),
            service: "s3".into(),
            region: "us-west-2".into(),
        }
    }

    fn policy() -> RotationPolicy {
        RotationPolicy {
            mode: Mode::Staged,
            quiet_period: DurationSetting::parse("1h").unwrap(),
            grace: DurationSetting::parse("7d").unwrap(),
            max_wait: DurationSetting::parse("7d").unwrap(),
            ..RotationPolicy::default()
        }
    }

    fn facts<'a>(
        old: &'a KeyMeta,
        new: &'a KeyMeta,
        old_use: Option<&'a KeyUse>,
        new_use: Option<&'a KeyUse>,
        now: u64,
    ) -> RetireFacts<'a> {
        RetireFacts {
            old,
            new,
            old_use,
            new_use,
            verified_at: Some(new.created),
            deactivated_at: None,
            now: at(now),
        }
    }

    #[test]
    fn deactivates_once_new_is_used_and_old_is_quiet() {
        let (old, new) = (key("OLD", true, 0), key("NEW", true, 10));
        let (old_use, new_use) = (used(9), used(11));
        assert_eq!(
            decide(
                &facts(&old, &new, Some(&old_use), Some(&new_use), 12),
                &policy()
            ),
            Retirement::Deactivate
        );
    }

    #[test]
    fn waits_while_the_new_key_is_unused_or_the_old_one_busy() {
        let (old, new) = (key("OLD", true, 0), key("NEW", true, 10));
        let busy = used(12);
        let fresh_use = used(11);
        assert!(
            matches!(decide(&facts(&old, &new, None, None, 12), &policy()), Retirement::Wait(r) if r.contains("not been used"))
        );
        assert!(
            matches!(decide(&facts(&old, &new, Some(&busy), Some(&fresh_use), 12), &policy()), Retirement::Wait(r) if r.contains("quiet_period"))
        );
    }

    #[test]
    fn credrots_own_verification_does_not_count_as_use() {
        let (old, new) = (key("OLD", true, 0), key("NEW", true, 10));
        let verify_use = used(10);
        let mut f = facts(&old, &new, None, Some(&verify_use), 12);
        f.verified_at = Some(at(10));
        assert!(matches!(decide(&f, &policy()), Retirement::Wait(_)));
    }

    #[test]
    fn reports_stuck_after_max_wait_with_who_used_the_old_key() {
        let (old, new) = (key("OLD", true, 0), key("NEW", true, 10));
        let busy = used(10 + 7 * 24);
        let new_use = used(11);
        match decide(
            &facts(&old, &new, Some(&busy), Some(&new_use), 10 + 7 * 24),
            &policy(),
        ) {
            Retirement::Stuck(reason) => assert!(
                reason.contains("s3") && reason.contains("us-west-2"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_the_verified_tag_an_early_use_is_taken_for_credrots_own() {
        let (old, new) = (key("OLD", true, 0), key("NEW", true, 10));
        let early = KeyUse {
            date: new.created + Duration::from_secs(30),
            ..used(0)
        };
        let mut f = facts(&old, &new, None, Some(&early), 12);
        f.verified_at = None;
        assert!(matches!(decide(&f, &policy()), Retirement::Wait(_)));
        let later = used(11);
        f.new_use = Some(&later);
        assert_eq!(decide(&f, &policy()), Retirement::Deactivate);
    }

    #[test]
    fn deletes_only_after_grace() {
        let (old, new) = (key("OLD", false, 0), key("NEW", true, 10));
        let mut f = facts(&old, &new, None, None, 20);
        f.deactivated_at = Some(at(20));
        assert!(matches!(decide(&f, &policy()), Retirement::Wait(_)));
        f.now = at(20 + 7 * 24);
        assert_eq!(decide(&f, &policy()), Retirement::Delete);
    }
}
