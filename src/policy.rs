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
}

/// The effective policy of one service or path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationPolicy {
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
            max_age,
            rotate_after,
            mode: self.mode.or(defaults.mode).unwrap_or_default(),
            quiet_period: pick(&self.quiet_period, &defaults.quiet_period)
                .unwrap_or_else(|| fixed("1h")),
            grace: pick(&self.grace, &defaults.grace).unwrap_or_else(|| fixed("7d")),
            max_wait: pick(&self.max_wait, &defaults.max_wait).unwrap_or_else(|| fixed("7d")),
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
