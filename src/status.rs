//! `credrot status`: what an auditor would ask about each user's keys, computed without
//! changing anything: age, last use, which store hands out which key, and a verdict.

use crate::aws::{AwsError, AwsErrorKind, IamApi, KeyMeta, KeyUse};
pub use crate::monitor::Finding;
use crate::monitor::{UseFacts, MAX_AGE_CONTROLS};
use crate::policy::Mode;
use crate::rotation::{
    current_key, decide_retirement, RetireFacts, Retirement, Target, DEACTIVATED_TAG, VERIFIED_TAG,
};
use crate::store::Holding;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// How a user's keys stand, from best to worst; `--fail-on V` trips at V or worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// CURRENT has not been used for the unused threshold.
    Unused,
    /// CURRENT is past `rotate_after`: the next run rotates it.
    Due,
    /// A key is past `max_age`.
    Overdue,
    /// The LAST key is still used `pickup_within` after its successor was created.
    LastInUse,
    /// Staged retirement waits on an old key that is still in use, past `max_wait`.
    Stuck,
    /// A store hands out a key that is not CURRENT, or holds none.
    Drift,
    /// A store hands out a pair no consumer can use (the id of one key beside the secret of
    /// another, after an interrupted write); the next run repairs it.
    Broken,
    /// A key was used from a region or called a service outside `expect_regions` /
    /// `expect_services`.
    UnexpectedUse,
    /// The user's state could not be read.
    #[value(skip)]
    Error,
}

/// When and where a key was last used.
#[derive(Debug, Clone, Serialize)]
pub struct LastUse {
    /// RFC 3339.
    pub date: String,
    /// The AWS service it called.
    pub service: String,
    /// The region.
    pub region: String,
}

/// One key of the user.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The access key id.
    pub id: String,
    /// `CURRENT` or `LAST`.
    pub role: &'static str,
    /// `Active` or `Inactive`.
    pub status: &'static str,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Whole days since creation.
    pub age_days: u64,
    /// Its last use, if any.
    pub last_used: Option<LastUse>,
    /// The stores that hand this key out.
    pub held_by: Vec<String>,
}

/// What one store hands out.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// The store's location.
    pub store: String,
    /// The key id it hands out, if any.
    pub key_id: Option<String>,
}

/// The status of one IAM user.
#[derive(Debug, Clone, Serialize)]
pub struct UserStatus {
    /// The account, in a run over `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The IAM user.
    pub user: String,
    /// The service, when the user belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Its keys, CURRENT first.
    pub keys: Vec<KeyStatus>,
    /// What each store hands out.
    pub stores: Vec<StoreStatus>,
    /// The policy in force: its name (or `[defaults]`) and main keys.
    pub policy: String,
    /// The worst verdict that applies.
    pub verdict: Verdict,
    /// Why, one line per finding.
    pub reasons: Vec<String>,
    /// The findings, with the verdict, key and compliance control of each.
    pub findings: Vec<Finding>,
}

/// Status thresholds that are not part of the rotation policy.
#[derive(Debug, Clone, Copy)]
pub struct StatusOptions {
    /// A key unused for this long is reported `unused`; none: the policy's `unused_after`.
    pub unused_after: Option<Duration>,
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Read one user's keys and stores and judge them.
pub async fn user_status(iam: &dyn IamApi, target: &Target, options: StatusOptions) -> UserStatus {
    let mut status = UserStatus {
        account: None,
        user: target.user.clone(),
        service: target.service.clone(),
        keys: Vec::new(),
        stores: Vec::new(),
        policy: crate::monitor::policy_summary(&target.policy),
        verdict: Verdict::Ok,
        reasons: Vec::new(),
        findings: Vec::new(),
    };
    if let Err(reason) = fill(iam, target, options, &mut status).await {
        flag(&mut status, Verdict::Error, reason);
    }
    status
}

/// The status of an account that could not be read at all (its role, its users): one
/// `error` row, user `-`.
pub fn account_failed(account: &str, reason: String) -> UserStatus {
    let mut status = UserStatus {
        account: Some(account.to_string()),
        user: "-".to_string(),
        service: None,
        keys: Vec::new(),
        stores: Vec::new(),
        policy: "-".to_string(),
        verdict: Verdict::Ok,
        reasons: Vec::new(),
        findings: Vec::new(),
    };
    flag(&mut status, Verdict::Error, reason);
    status
}

fn flag(status: &mut UserStatus, verdict: Verdict, reason: String) {
    add(
        status,
        Finding {
            verdict,
            key_id: None,
            control: None,
            message: reason,
        },
    );
}

fn add(status: &mut UserStatus, finding: Finding) {
    status.verdict = status.verdict.max(finding.verdict);
    status.reasons.push(finding.reason());
    status.findings.push(finding);
}

async fn fill(
    iam: &dyn IamApi,
    target: &Target,
    options: StatusOptions,
    status: &mut UserStatus,
) -> Result<(), String> {
    let now = crate::clock::now();
    let mut keys = iam
        .list_keys(&target.user)
        .await
        .map_err(|e| match e.kind {
            AwsErrorKind::NotFound => format!("IAM user '{}' does not exist", target.user),
            _ => e.to_string(),
        })?;
    keys.sort_by_key(|k| std::cmp::Reverse(k.created));
    let mut uses = Vec::with_capacity(keys.len());
    for key in &keys {
        uses.push(
            iam.last_used(&key.id)
                .await
                .map_err(|e: AwsError| e.to_string())?,
        );
    }
    let mut holdings = Vec::with_capacity(target.stores.len());
    for store in &target.stores {
        holdings.push(store.observe().await);
    }
    let stored: BTreeSet<String> = holdings
        .iter()
        .flatten()
        .filter_map(|h| h.key_id().map(str::to_string))
        .collect();
    // The engine's rule for CURRENT, so that status and a rotation name the same key.
    let current = current_key(&keys, &stored).cloned();
    for (store, holding) in target.stores.iter().zip(holdings) {
        let key_id = match holding {
            Ok(Holding::Broken { key_id, reason }) => {
                flag(
                    status,
                    Verdict::Broken,
                    format!("{} holds a broken pair: {reason}; the next rotation run repairs it from a verified key", store.location()),
                );
                status.stores.push(StoreStatus {
                    store: store.location(),
                    key_id,
                });
                continue;
            }
            Ok(holding) => holding.key_id().map(str::to_string),
            Err(e) => {
                flag(status, Verdict::Drift, format!("{e}"));
                None
            }
        };
        match (&key_id, &current) {
            (None, _) => flag(
                status,
                Verdict::Drift,
                format!("{} holds no key", store.location()),
            ),
            (Some(id), Some(c)) if *id != c.id => flag(
                status,
                Verdict::Drift,
                format!("{} hands out {id}, not CURRENT {}", store.location(), c.id),
            ),
            (Some(id), None) => flag(
                status,
                Verdict::Drift,
                format!(
                    "{} hands out {id}, which is not an Active key",
                    store.location()
                ),
            ),
            _ => {}
        }
        status.stores.push(StoreStatus {
            store: store.location(),
            key_id,
        });
    }
    for (key, usage) in keys.iter().zip(&uses) {
        status.keys.push(KeyStatus {
            id: key.id.clone(),
            role: if Some(&key.id) == current.as_ref().map(|c| &c.id) {
                "CURRENT"
            } else {
                "LAST"
            },
            status: if key.active { "Active" } else { "Inactive" },
            created: rfc3339(key.created),
            age_days: days(now.duration_since(key.created).unwrap_or_default()),
            last_used: usage.as_ref().map(|u| LastUse {
                date: rfc3339(u.date),
                service: u.service.clone(),
                region: u.region.clone(),
            }),
            held_by: status
                .stores
                .iter()
                .filter(|s| s.key_id.as_deref() == Some(key.id.as_str()))
                .map(|s| s.store.clone())
                .collect(),
        });
    }
    judge_age(target, &keys, current.as_ref(), now, status);
    // The tags say when credrot verified a key; they only matter for staged retirement and
    // for a use close enough to a key's creation to be credrot's own check, so other users
    // cost no iam:ListUserTags call (nor the permission).
    let near_creation = keys.iter().zip(&uses).any(|(k, u)| {
        u.as_ref()
            .is_some_and(|u| u.date <= k.created + crate::rotation::OWN_VERIFICATION_WINDOW)
    });
    let tags = if target.policy.mode == Mode::Staged && !keys.is_empty() {
        iam.user_tags(&target.user)
            .await
            .map_err(|e| e.to_string())?
    } else if near_creation {
        iam.user_tags(&target.user).await.unwrap_or_else(|e| {
            tracing::warn!(user = %target.user, "cannot read the user's tags ({e}): a use within 10 minutes of a key's creation is taken for credrot's own check");
            Default::default()
        })
    } else {
        Default::default()
    };
    let facts = UseFacts {
        keys: &keys,
        uses: &uses,
        current: current.as_ref(),
        tags: &tags,
        unused_after: options.unused_after,
        now,
    };
    for finding in crate::monitor::judge_use(&facts, &target.policy) {
        add(status, finding);
    }
    if let Some(c) = &current {
        if target.policy.mode == Mode::Staged {
            judge_staged(target, &keys, c, &uses, &tags, now, status);
        }
    } else {
        flag(
            status,
            Verdict::Overdue,
            "no Active key: the next run creates one".to_string(),
        );
    }
    Ok(())
}

fn judge_age(
    target: &Target,
    keys: &[KeyMeta],
    current: Option<&KeyMeta>,
    now: SystemTime,
    status: &mut UserStatus,
) {
    let age = |k: &KeyMeta| now.duration_since(k.created).unwrap_or_default();
    if let Some(max) = &target.policy.max_age {
        for key in keys.iter().filter(|k| age(k) > max.value) {
            add(
                status,
                Finding {
                    verdict: Verdict::Overdue,
                    key_id: Some(key.id.clone()),
                    control: Some(MAX_AGE_CONTROLS),
                    message: format!(
                        "{} is {} old, past max_age ({})",
                        key.id,
                        crate::duration::human(age(key)),
                        max.text
                    ),
                },
            );
        }
    }
    if let (Some(after), Some(c)) = (&target.policy.rotate_after, current) {
        if age(c) >= after.value {
            flag(
                status,
                Verdict::Due,
                format!("CURRENT {} is past rotate_after ({})", c.id, after.text),
            );
        }
    }
}

fn judge_staged(
    target: &Target,
    keys: &[KeyMeta],
    current: &KeyMeta,
    uses: &[Option<KeyUse>],
    tags: &std::collections::BTreeMap<String, String>,
    now: SystemTime,
    status: &mut UserStatus,
) {
    let Some(old_index) = keys.iter().position(|k| k.id != current.id) else {
        return;
    };
    let tag_time = |prefix: &str, id: &str| {
        tags.get(&format!("{prefix}{id}"))
            .and_then(|v| crate::rotation::parse_tag_time(v))
    };
    let current_index = keys.iter().position(|k| k.id == current.id).unwrap_or(0);
    let old = &keys[old_index];
    let facts = RetireFacts {
        old,
        new: current,
        old_use: uses[old_index].as_ref(),
        new_use: uses[current_index].as_ref(),
        verified_at: tag_time(VERIFIED_TAG, &current.id),
        deactivated_at: tag_time(DEACTIVATED_TAG, &old.id),
        now,
    };
    if let Retirement::Stuck(reason) = decide_retirement(&facts, &target.policy) {
        flag(status, Verdict::Stuck, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_ordered_by_severity() {
        assert!(Verdict::Ok < Verdict::Unused);
        assert!(Verdict::Due < Verdict::Overdue);
        assert!(Verdict::Overdue < Verdict::Stuck);
        assert!(Verdict::Stuck < Verdict::Drift);
        assert!(Verdict::Overdue < Verdict::LastInUse);
        assert!(Verdict::Broken < Verdict::UnexpectedUse);
    }
}
