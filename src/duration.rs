//! Durations as people write them (`30d`, `12h`, `90m`), each checked against the range its
//! use allows. Every duration is range-checked where it is read, so that a huge value is a
//! usage or configuration error (exit 2) and never an overflow after IAM was changed.

use serde::{Serialize, Serializer};
use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The longest duration a setting in services.toml may have: ten years (3650d). Longer
/// keys are not a policy anyone means, and every sum of such settings fits a timestamp.
pub const MAX_SETTING: Duration = Duration::from_secs(3650 * DAY);

/// The values a duration may take, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    /// The shortest value allowed.
    pub min: Duration,
    /// The longest value allowed.
    pub max: Duration,
}

impl DurationRange {
    /// `min_secs..=max_secs`.
    pub const fn secs(min_secs: u64, max_secs: u64) -> Self {
        DurationRange {
            min: Duration::from_secs(min_secs),
            max: Duration::from_secs(max_secs),
        }
    }

    /// Parse `text` and check it is in this range; the error names the range and examples.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let value = humantime::parse_duration(text.trim()).map_err(|_| {
            format!("invalid duration '{text}': write a number and a unit, e.g. \"30d\", \"12h\" or \"90m\"")
        })?;
        if value < self.min || value > self.max {
            return Err(format!(
                "duration '{text}' is out of range: allowed are {} to {}",
                show(self.min),
                show(self.max)
            ));
        }
        Ok(value)
    }
}

/// A duration as credrot prints it everywhere: the largest unit and, when not zero, the
/// next one down, nothing finer (`44d`, `1d 12h`, `2h 5m`, `90s` is `1m 30s`, `0s`).
/// Days are the largest unit: months and years have no fixed length.
pub fn human(value: Duration) -> String {
    let secs = value.as_secs();
    let units = [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (1, "s")];
    let Some(i) = units.iter().position(|(unit, _)| secs >= *unit) else {
        return "0s".to_string();
    };
    let (unit, suffix) = units[i];
    let mut text = format!("{}{suffix}", secs / unit);
    if let Some((next, next_suffix)) = units.get(i + 1) {
        let rest = (secs % unit) / next;
        if rest > 0 {
            text.push_str(&format!(" {rest}{next_suffix}"));
        }
    }
    text
}

/// `1 user`, `2 users`: a count with its noun (English plural in -s).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn show(value: Duration) -> String {
    human(value)
}

/// Ranges of the command-line flags, documented in `--help` and docs/reference/commands.md.
pub mod flags {
    use super::{DurationRange, DAY, HOUR, MINUTE};

    /// `--verify-timeout`: long enough for IAM to propagate, short enough to notice a hang.
    pub const VERIFY_TIMEOUT: DurationRange = DurationRange::secs(1, HOUR);
    /// `--lock-ttl`: 0s takes over every young key at once; a week is the longest a run lasts.
    pub const LOCK_TTL: DurationRange = DurationRange::secs(0, 7 * DAY);
    /// `--time-limit`: the same week, the longest a run lasts.
    pub const TIME_LIMIT: DurationRange = DurationRange::secs(1, 7 * DAY);
    /// `status --unused-after`: a minute to ten years.
    pub const UNUSED_AFTER: DurationRange = DurationRange::secs(MINUTE, 3650 * DAY);
}

/// A duration setting as written in services.toml (`30d`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationSetting {
    /// The text the user wrote, shown back unchanged.
    pub text: String,
    /// Its value.
    pub value: Duration,
}

impl DurationSetting {
    /// Parse `30d`, `12h`, `90m`, `1d 12h`: positive and at most [`MAX_SETTING`]; the error
    /// says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = DurationRange {
            min: Duration::ZERO,
            max: MAX_SETTING,
        }
        .parse(text)?;
        if value.is_zero() {
            return Err(format!(
                "duration '{text}' is zero; give a positive duration such as \"30d\""
            ));
        }
        Ok(DurationSetting {
            text: text.to_string(),
            value,
        })
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_days_and_hours_with_one_rule() {
        let h = |secs: u64| human(Duration::from_secs(secs));
        assert_eq!(h(44 * DAY), "44d");
        assert_eq!(h(44 * DAY + 13 * HOUR + 26 * MINUTE), "44d 13h");
        assert_eq!(h(36 * HOUR), "1d 12h");
        assert_eq!(h(15 * MINUTE), "15m");
        assert_eq!(h(90), "1m 30s");
        assert_eq!(h(59), "59s");
        assert_eq!(h(0), "0s");
        assert_eq!(h(3650 * DAY), "3650d");
        assert_eq!(h(HOUR + 59), "1h", "nothing finer than the next unit");
        assert_eq!(count(1, "call"), "1 call");
        assert_eq!(count(0, "user"), "0 users");
        assert_eq!(count(2, "user"), "2 users");
    }

    #[test]
    fn settings_are_positive_and_at_most_ten_years() {
        assert_eq!(
            DurationSetting::parse("30d").unwrap().value,
            Duration::from_secs(30 * DAY)
        );
        assert!(DurationSetting::parse("3650d").is_ok());
        let err = DurationSetting::parse("3651d").unwrap_err();
        assert!(
            err.contains("out of range") && err.contains("3650d"),
            "{err}"
        );
        let err = DurationSetting::parse("500000000000y").unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        assert!(DurationSetting::parse("0s").unwrap_err().contains("zero"));
        assert!(DurationSetting::parse("a month")
            .unwrap_err()
            .contains("invalid duration"));
    }

    #[test]
    fn flag_ranges_include_their_ends_and_refuse_overflow() {
        assert_eq!(
            flags::VERIFY_TIMEOUT.parse("1h"),
            Ok(Duration::from_secs(HOUR))
        );
        assert!(flags::VERIFY_TIMEOUT.parse("0s").is_err());
        let err = flags::VERIFY_TIMEOUT.parse("500000000000y").unwrap_err();
        assert!(err.contains("1s to 1h"), "{err}");
        assert_eq!(flags::LOCK_TTL.parse("0s"), Ok(Duration::ZERO));
        let err = flags::LOCK_TTL.parse("999999999d").unwrap_err();
        assert!(err.contains("0s to 7d"), "{err}");
    }
}
