//! When keys are rotated and how old keys are retired: the policy keys that `[defaults]`,
//! `[services.NAME]` and `[paths.NAME]` share.

use crate::duration::DurationSetting;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How an old key is retired once a new one is handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// CURRENT/LAST: the previous key stays Active until the next rotation deletes it.
    #[default]
    TwoKey,
    /// One Active key: the old key is deactivated once the new one is seen in use and the
    /// old one has gone quiet, and deleted after a grace period.
    Staged,
}

/// The policy keys as written in one section; unset keys fall back to `[defaults]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// `max_age`
    pub max_age: Option<DurationSetting>,
    /// `rotate_after`
    pub rotate_after: Option<DurationSetting>,
    /// `mode`
    pub mode: Option<Mode>,
    /// `quiet_period`
    pub quiet_period: Option<DurationSetting>,
    /// `grace`
    pub grace: Option<DurationSetting>,
    /// `max_wait`
    pub max_wait: Option<DurationSetting>,
    /// `unused_after`
    pub unused_after: Option<DurationSetting>,
    /// `pickup_within`
    pub pickup_within: Option<DurationSetting>,
    /// `expect_regions`
    pub expect_regions: Option<Vec<String>>,
    /// `expect_services`
    pub expect_services: Option<Vec<String>>,
}

/// The effective policy of one service or path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationPolicy {
    /// The `[policies.NAME]` the section selected with `policy = "NAME"`, if any.
    #[serde(rename = "policy", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Longest any key may live.
    pub max_age: Option<DurationSetting>,
    /// A user is rotated once its CURRENT key is older than this; none: every run rotates.
    /// The default keeps every key within `max_age` when credrot runs daily: a key is
    /// CURRENT for `rotate_after` plus up to a day, then LAST for as long again, so
    /// `rotate_after` defaults to half of `max_age` less a day (half of it below 4 days).
    pub rotate_after: Option<DurationSetting>,
    /// How old keys are retired.
    pub mode: Mode,
    /// Staged: how long the old key must have gone unused before it is deactivated.
    pub quiet_period: DurationSetting,
    /// Staged: how long a deactivated key is kept before it is deleted.
    pub grace: DurationSetting,
    /// Staged: how long to wait for the old key to go quiet before reporting it stuck.
    pub max_wait: DurationSetting,
    /// `status`: an Active key unused this long is reported `unused` (CIS 1.12, Security
    /// Hub IAM.8 use 45 days).
    pub unused_after: DurationSetting,
    /// `status`: the LAST key still used this long after its successor was created means a
    /// consumer never picked the new key up.
    pub pickup_within: DurationSetting,
    /// `status`: the regions a key may be used from; empty: any.
    pub expect_regions: Vec<String>,
    /// `status`: the AWS services a key may call; empty: any.
    pub expect_services: Vec<String>,
}

fn fixed(text: &str) -> DurationSetting {
    DurationSetting::parse(text).expect("built-in durations parse")
}

impl Default for RotationPolicy {
    fn default() -> Self {
        PolicySettings::default()
            .resolve(&PolicySettings::default())
            .expect("the defaults are consistent")
    }
}

impl PolicySettings {
    /// These settings, each unset one taken from `fallback` (a section over its named
    /// policy).
    pub fn or(&self, fallback: &PolicySettings) -> PolicySettings {
        fn pick<T: Clone>(own: &Option<T>, other: &Option<T>) -> Option<T> {
            own.clone().or_else(|| other.clone())
        }
        PolicySettings {
            max_age: pick(&self.max_age, &fallback.max_age),
            rotate_after: pick(&self.rotate_after, &fallback.rotate_after),
            mode: self.mode.or(fallback.mode),
            quiet_period: pick(&self.quiet_period, &fallback.quiet_period),
            grace: pick(&self.grace, &fallback.grace),
            max_wait: pick(&self.max_wait, &fallback.max_wait),
            unused_after: pick(&self.unused_after, &fallback.unused_after),
            pickup_within: pick(&self.pickup_within, &fallback.pickup_within),
            expect_regions: pick(&self.expect_regions, &fallback.expect_regions),
            expect_services: pick(&self.expect_services, &fallback.expect_services),
        }
    }

    /// This section's settings over `defaults`; the error says what is inconsistent.
    pub fn resolve(&self, defaults: &PolicySettings) -> Result<RotationPolicy, String> {
        let pick = |own: &Option<DurationSetting>, fallback: &Option<DurationSetting>| {
            own.clone().or_else(|| fallback.clone())
        };
        let max_age = pick(&self.max_age, &defaults.max_age);
        let rotate_after = pick(&self.rotate_after, &defaults.rotate_after).or_else(|| {
            max_age.as_ref().map(|m| {
                const DAY: u64 = 86_400;
                let secs = m.value.as_secs();
                let half = Duration::from_secs(if secs >= 4 * DAY {
                    secs / 2 - DAY
                } else {
                    secs / 2
                });
                DurationSetting {
                    text: crate::duration::human(half),
                    value: half,
                }
            })
        });
        if let (Some(after), Some(max)) = (&rotate_after, &max_age) {
            if after.value > max.value {
                return Err(format!(
                    "rotate_after ({}) is longer than max_age ({}), so keys would outlive max_age; with daily runs keep it at most half of max_age less a day",
                    after.text, max.text
                ));
            }
        }
        Ok(RotationPolicy {
            name: None,
            max_age,
            rotate_after,
            mode: self.mode.or(defaults.mode).unwrap_or_default(),
            quiet_period: pick(&self.quiet_period, &defaults.quiet_period)
                .unwrap_or_else(|| fixed("1h")),
            grace: pick(&self.grace, &defaults.grace).unwrap_or_else(|| fixed("7d")),
            max_wait: pick(&self.max_wait, &defaults.max_wait).unwrap_or_else(|| fixed("7d")),
            unused_after: pick(&self.unused_after, &defaults.unused_after)
                .unwrap_or_else(|| fixed("45d")),
            pickup_within: pick(&self.pickup_within, &defaults.pickup_within)
                .unwrap_or_else(|| fixed("1d")),
            expect_regions: self
                .expect_regions
                .clone()
                .or_else(|| defaults.expect_regions.clone())
                .unwrap_or_default(),
            expect_services: self
                .expect_services
                .clone()
                .or_else(|| defaults.expect_services.clone())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_after_defaults_to_half_of_max_age_less_a_day() {
        let settings = PolicySettings {
            max_age: Some(fixed("30d")),
            ..Default::default()
        };
        let policy = settings.resolve(&PolicySettings::default()).unwrap();
        assert_eq!(
            policy.rotate_after.unwrap().value,
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(policy.mode, Mode::TwoKey);
        assert_eq!(policy.grace.value, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn section_settings_win_over_defaults() {
        let defaults = PolicySettings {
            max_age: Some(fixed("90d")),
            mode: Some(Mode::Staged),
            ..Default::default()
        };
        let own = PolicySettings {
            max_age: Some(fixed("10d")),
            ..Default::default()
        };
        let policy = own.resolve(&defaults).unwrap();
        assert_eq!(policy.max_age.unwrap().text, "10d");
        assert_eq!(policy.mode, Mode::Staged);
    }

    #[test]
    fn a_named_policy_sits_between_the_section_and_the_defaults() {
        let defaults = PolicySettings {
            max_age: Some(fixed("90d")),
            grace: Some(fixed("3d")),
            unused_after: Some(fixed("60d")),
            ..Default::default()
        };
        let named = PolicySettings {
            max_age: Some(fixed("30d")),
            expect_regions: Some(vec!["eu-west-1".into()]),
            unused_after: Some(fixed("20d")),
            ..Default::default()
        };
        let own = PolicySettings {
            unused_after: Some(fixed("10d")),
            ..Default::default()
        };
        let policy = own.or(&named).resolve(&defaults).unwrap();
        assert_eq!(policy.max_age.unwrap().text, "30d");
        assert_eq!(policy.grace.text, "3d");
        assert_eq!(policy.unused_after.text, "10d");
        assert_eq!(policy.expect_regions, vec!["eu-west-1".to_string()]);
        let plain = PolicySettings::default()
            .resolve(&PolicySettings::default())
            .unwrap();
        assert_eq!(plain.unused_after.value, Duration::from_secs(45 * 86400));
        assert!(plain.expect_services.is_empty());
    }

    #[test]
    fn no_max_age_means_every_run_rotates() {
        assert_eq!(RotationPolicy::default().rotate_after, None);
    }

    #[test]
    fn rotate_after_beyond_max_age_is_refused() {
        let settings = PolicySettings {
            max_age: Some(fixed("10d")),
            rotate_after: Some(fixed("20d")),
            ..Default::default()
        };
        assert!(settings.resolve(&PolicySettings::default()).is_err());
    }
}
