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

/// `3650d`, `1h`, `0s`: the range ends as they are documented.
fn show(value: Duration) -> String {
    let secs = value.as_secs();
    match [(DAY, "d"), (HOUR, "h"), (MINUTE, "m")]
        .into_iter()
        .find(|(unit, _)| secs > 0 && secs.is_multiple_of(*unit))
    {
        Some((unit, suffix)) => format!("{}{suffix}", secs / unit),
        None => format!("{secs}s"),
    }
}

/// Ranges of the command-line flags, documented in `--help` and README.md.
pub mod flags {
    use super::{DurationRange, DAY, HOUR, MINUTE};

    /// `--verify-timeout`: long enough for IAM to propagate, short enough to notice a hang.
    pub const VERIFY_TIMEOUT: DurationRange = DurationRange::secs(1, HOUR);
    /// `--lock-ttl`: 0s takes over every young key at once; a week is the longest a run lasts.
    pub const LOCK_TTL: DurationRange = DurationRange::secs(0, 7 * DAY);
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
