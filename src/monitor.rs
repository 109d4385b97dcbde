//! Key-use monitoring: what IAM records of each key's use (`GetAccessKeyLastUsed`: date,
//! service, region), judged against the service's policy. Pure functions; `status` feeds
//! them what it read and `status --alert` sends what they find to the `[notify]` webhook.
//!
//! The findings, each naming the compliance control it stands for where there is one:
//! - a key unused for `unused_after` (CIS AWS Foundations 1.12, Security Hub IAM.8/IAM.22);
//! - the LAST key still used `pickup_within` after its successor was created: a consumer
//!   never picked the new key up (the service and region that used it are named);
//! - a key used from a region or calling a service outside `expect_regions` /
//!   `expect_services`.
//!
//! Key age past `max_age` (Security Hub IAM.3, AWS Config `access-keys-rotated`, CIS 1.14)
//! is judged by [`crate::status`], which names [`MAX_AGE_CONTROLS`].

use crate::aws::{KeyMeta, KeyUse};
use crate::policy::RotationPolicy;
use crate::rotation::is_own_verification;
use crate::status::Verdict;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// The controls a key past `max_age` fails.
pub const MAX_AGE_CONTROLS: &str =
    "Security Hub IAM.3, AWS Config access-keys-rotated, CIS AWS Foundations 1.14";
/// The controls an unused key fails.
pub const UNUSED_CONTROLS: &str = "CIS AWS Foundations 1.12, Security Hub IAM.8/IAM.22";

/// One thing `status` found about a user's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The verdict it stands for.
    pub verdict: Verdict,
    /// The key it is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The compliance controls it fails, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<&'static str>,
    /// What was found, in words.
    pub message: String,
}

impl Finding {
    /// The line `status` prints: the message and, in brackets, the controls.
    pub fn reason(&self) -> String {
        match self.control {
            Some(control) => format!("{} [{control}]", self.message),
            None => self.message.clone(),
        }
    }
}

/// What the key-use judgments read.
pub struct UseFacts<'a> {
    /// The user's keys.
    pub keys: &'a [KeyMeta],
    /// Each key's last use, in the order of `keys`.
    pub uses: &'a [Option<KeyUse>],
    /// CURRENT, if there is an Active key.
    pub current: Option<&'a KeyMeta>,
    /// The user's tags (`credrot:verified:KEY` says when credrot verified a key).
    pub tags: &'a BTreeMap<String, String>,
    /// `status --unused-after`, which overrides the policy's `unused_after`.
    pub unused_after: Option<Duration>,
    /// Now, by credrot's clock.
    pub now: SystemTime,
}

fn when(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The use of `key` that is not credrot's own verification of it.
fn real_use<'a>(
    key: &KeyMeta,
    usage: Option<&'a KeyUse>,
    tags: &BTreeMap<String, String>,
) -> Option<&'a KeyUse> {
    let verified = tags
        .get(&format!("{}{}", crate::rotation::VERIFIED_TAG, key.id))
        .and_then(|v| crate::rotation::parse_tag_time(v));
    usage.filter(|u| !is_own_verification(key.created, verified, u))
}

/// Judge every key's use against `policy`.
pub fn judge_use(facts: &UseFacts<'_>, policy: &RotationPolicy) -> Vec<Finding> {
    let mut found = Vec::new();
    let (unused_after, unused_text) = match facts.unused_after {
        Some(d) => (d, humantime::format_duration(d).to_string()),
        None => (policy.unused_after.value, policy.unused_after.text.clone()),
    };
    for (key, usage) in facts.keys.iter().zip(facts.uses) {
        let role = if Some(&key.id) == facts.current.map(|c| &c.id) {
            "CURRENT"
        } else {
            "LAST"
        };
        let usage = real_use(key, usage.as_ref(), facts.tags);
        let since = usage.map(|u| u.date).unwrap_or(key.created);
        if key.active && facts.now.duration_since(since).unwrap_or_default() > unused_after {
            found.push(Finding {
                verdict: Verdict::Unused,
                key_id: Some(key.id.clone()),
                control: Some(UNUSED_CONTROLS),
                message: format!(
                    "{role} {} has not been used for {} (unused_after {unused_text}){}",
                    key.id,
                    crate::duration::human(facts.now.duration_since(since).unwrap_or_default()),
                    if usage.is_none() { ", never used" } else { "" }
                ),
            });
        }
        let Some(usage) = usage else { continue };
        if let Some(current) = facts.current.filter(|c| c.id != key.id) {
            let picked_up_by = current.created + policy.pickup_within.value;
            if usage.date > picked_up_by {
                found.push(Finding {
                    verdict: Verdict::LastInUse,
                    key_id: Some(key.id.clone()),
                    control: None,
                    message: format!(
                        "LAST {} was used at {} by {} in {}, {} after its successor {} was created (pickup_within {}): a consumer still has the old key",
                        key.id,
                        when(usage.date),
                        usage.service,
                        usage.region,
                        humantime::format_duration(Duration::from_secs(
                            usage
                                .date
                                .duration_since(current.created)
                                .unwrap_or_default()
                                .as_secs()
                        )),
                        current.id,
                        policy.pickup_within.text
                    ),
                });
            }
        }
        let outside = |list: &[String], value: &str| {
            !list.is_empty() && !list.iter().any(|v| v.eq_ignore_ascii_case(value))
        };
        if outside(&policy.expect_regions, &usage.region) {
            found.push(Finding {
                verdict: Verdict::UnexpectedUse,
                key_id: Some(key.id.clone()),
                control: None,
                message: format!(
                    "{role} {} was used from region {} ({} at {}), outside expect_regions [{}]",
                    key.id,
                    usage.region,
                    usage.service,
                    when(usage.date),
                    policy.expect_regions.join(", ")
                ),
            });
        }
        if outside(&policy.expect_services, &usage.service) {
            found.push(Finding {
                verdict: Verdict::UnexpectedUse,
                key_id: Some(key.id.clone()),
                control: None,
                message: format!(
                    "{role} {} called service {} ({} at {}), outside expect_services [{}]",
                    key.id,
                    usage.service,
                    usage.region,
                    when(usage.date),
                    policy.expect_services.join(", ")
                ),
            });
        }
    }
    found
}

/// One user in a status alert.
#[derive(Debug, Serialize)]
pub struct AlertUser<'a> {
    /// The IAM user.
    pub user: &'a str,
    /// The service, when the user belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    /// The policy in force.
    pub policy: &'a str,
    /// The worst verdict.
    pub verdict: Verdict,
    /// What was found.
    pub findings: &'a [Finding],
}

/// The body of `status --alert`'s POST (never a secret: status reads none).
#[derive(Debug, Serialize)]
pub struct StatusAlert<'a> {
    /// Always `status-alert`, to tell it from a run notice.
    pub kind: &'static str,
    /// When it was made, RFC 3339 (credrot's clock).
    pub generated_at: String,
    /// The verdict users were selected at (`--fail-on`), else `unused` (any finding).
    pub threshold: Verdict,
    /// Users at or past the threshold.
    pub users: Vec<AlertUser<'a>>,
}

impl<'a> StatusAlert<'a> {
    /// The alert for `statuses`: users at or past `fail_on`, else with any finding.
    pub fn new(statuses: &'a [crate::status::UserStatus], fail_on: Option<Verdict>) -> Self {
        let threshold = fail_on.unwrap_or(Verdict::Unused);
        StatusAlert {
            kind: "status-alert",
            generated_at: when(crate::clock::now()),
            threshold,
            users: statuses
                .iter()
                .filter(|s| s.verdict >= threshold)
                .map(|s| AlertUser {
                    user: &s.user,
                    service: s.service.as_deref(),
                    policy: &s.policy,
                    verdict: s.verdict,
                    findings: &s.findings,
                })
                .collect(),
        }
    }
}

/// `status --alert`: POST the users with findings to the webhook, when there are any.
pub async fn send_alert(
    notify: &crate::config::NotifyConfig,
    statuses: &[crate::status::UserStatus],
    fail_on: Option<Verdict>,
) -> Result<(), crate::notify::NotifyError> {
    let alert = StatusAlert::new(statuses, fail_on);
    if alert.users.is_empty() {
        tracing::info!("no findings at or past the threshold: no alert sent");
        return Ok(());
    }
    let body = serde_json::to_vec(&alert).expect("the alert always serializes");
    notify.webhook.post(body, notify.timeout).await?;
    tracing::info!(webhook = %notify.webhook.target(), users = alert.users.len(), "status alert sent");
    Ok(())
}

/// One line naming the policy in force and its main keys, for `status`.
pub fn policy_summary(policy: &RotationPolicy) -> String {
    let name = policy.name.as_deref().unwrap_or("[defaults]");
    let dash = |d: &Option<crate::duration::DurationSetting>| {
        d.as_ref().map_or("-".to_string(), |d| d.text.clone())
    };
    let mut text = format!(
        "{name}: max_age {}, rotate_after {}, mode {}, unused_after {}",
        dash(&policy.max_age),
        dash(&policy.rotate_after),
        mode_name(policy),
        policy.unused_after.text
    );
    if !policy.expect_regions.is_empty() {
        text.push_str(&format!(
            ", expect_regions [{}]",
            policy.expect_regions.join(", ")
        ));
    }
    if !policy.expect_services.is_empty() {
        text.push_str(&format!(
            ", expect_services [{}]",
            policy.expect_services.join(", ")
        ));
    }
    text
}

fn mode_name(policy: &RotationPolicy) -> &'static str {
    match policy.mode {
        crate::policy::Mode::TwoKey => "two-key",
        crate::policy::Mode::Staged => "staged",
    }
}

/// The policy lines of `credrot show`.
pub fn write_policy_lines(out: &mut dyn Write, policy: &RotationPolicy) -> std::io::Result<()> {
    let dash = |d: &Option<crate::duration::DurationSetting>| {
        d.as_ref().map_or("-".to_string(), |d| d.text.clone())
    };
    let list = |l: &[String]| {
        if l.is_empty() {
            "any".to_string()
        } else {
            l.join(", ")
        }
    };
    writeln!(
        out,
        "policy:       {}",
        policy.name.as_deref().unwrap_or("- ([defaults])")
    )?;
    writeln!(out, "rotate_after: {}", dash(&policy.rotate_after))?;
    writeln!(out, "mode:         {}", mode_name(policy))?;
    writeln!(out, "unused_after: {}", policy.unused_after.text)?;
    writeln!(
        out,
        "expect:       regions {}; services {}",
        list(&policy.expect_regions),
        list(&policy.expect_services)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::DurationSetting;
    use std::time::UNIX_EPOCH;

    const HOUR: u64 = 3600;

    fn at(h: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 * HOUR + h * HOUR)
    }

    fn key(id: &str, h: u64) -> KeyMeta {
        KeyMeta {
            id: id.into(),
            active: true,
            created: at(h),
        }
    }

    fn used(h: u64, service: &str, region: &str) -> Option<KeyUse> {
        Some(KeyUse {
            date: at(h),
            service: service.into(),
            region: region.into(),
        })
    }

    fn policy() -> RotationPolicy {
        RotationPolicy {
            unused_after: DurationSetting::parse("45d").unwrap(),
            pickup_within: DurationSetting::parse("1d").unwrap(),
            expect_regions: vec!["eu-west-1".into()],
            expect_services: vec!["s3".into()],
            ..RotationPolicy::default()
        }
    }

    fn judge(keys: &[KeyMeta], uses: &[Option<KeyUse>], now: u64) -> Vec<Finding> {
        let tags = BTreeMap::new();
        let facts = UseFacts {
            keys,
            uses,
            current: keys.first(),
            tags: &tags,
            unused_after: None,
            now: at(now),
        };
        judge_use(&facts, &policy())
    }

    #[test]
    fn the_last_key_used_after_pickup_within_names_who_used_it() {
        let keys = [key("NEW", 100), key("OLD", 0)];
        let found = judge(
            &keys,
            &[used(120, "s3", "eu-west-1"), used(130, "s3", "eu-west-1")],
            131,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].verdict, Verdict::LastInUse);
        assert!(
            found[0].message.contains("by s3 in eu-west-1"),
            "{}",
            found[0].message
        );
        // Within a day of the successor: still being picked up.
        let found = judge(
            &keys,
            &[used(120, "s3", "eu-west-1"), used(110, "s3", "eu-west-1")],
            131,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn use_outside_the_expected_regions_and_services_is_unexpected() {
        let keys = [key("NEW", 100)];
        let found = judge(&keys, &[used(120, "iam", "ap-south-1")], 121);
        let verdicts: Vec<Verdict> = found.iter().map(|f| f.verdict).collect();
        assert_eq!(
            verdicts,
            vec![Verdict::UnexpectedUse, Verdict::UnexpectedUse]
        );
        assert!(found[0].message.contains("region ap-south-1"));
        assert!(found[1].message.contains("service iam"));
        // credrot's own verification right after creation is not a use.
        assert!(judge(&keys, &[used(100, "sts", "us-east-1")], 101).is_empty());
    }

    #[test]
    fn a_key_unused_for_unused_after_names_the_controls() {
        let keys = [key("NEW", 0)];
        let found = judge(&keys, &[None], 46 * 24);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Unused);
        assert!(
            found[0].reason().contains("CIS AWS Foundations 1.12"),
            "{}",
            found[0].reason()
        );
        assert!(judge(&keys, &[None], 44 * 24).is_empty());
        let inactive = [KeyMeta {
            active: false,
            ..key("NEW", 0)
        }];
        assert!(judge(&inactive, &[None], 46 * 24).is_empty());
    }
}
