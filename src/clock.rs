//! The time credrot's decisions use: key ages, `rotate_after`, staged quiet and grace periods,
//! the lock TTL, and the times it records in IAM tags. It is the system clock, shifted by
//! `CREDROT_CLOCK_OFFSET` when that is set (`2h`, `30d`, `-1h`): to see what a run or
//! `status` would say at another time, and for tests, which must not depend on how fast the
//! machine runs. AWS request signing always uses the real clock.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The environment variable that shifts the clock.
pub const OFFSET_VAR: &str = "CREDROT_CLOCK_OFFSET";

/// A signed shift of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Offset {
    back: bool,
    by: Duration,
}

static OFFSET: OnceLock<Offset> = OnceLock::new();

fn parse(text: &str) -> Result<Offset, String> {
    let (back, magnitude) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim().trim_start_matches('+')),
    };
    let by = humantime::parse_duration(magnitude).map_err(|e| {
        format!("{OFFSET_VAR}={text:?} is not a duration ({e}); examples: 2h, 30d, -1h")
    })?;
    // Ten years either way: far enough for any policy, near enough to stay a valid time.
    if by > Duration::from_secs(10 * 366 * 86_400) {
        return Err(format!("{OFFSET_VAR}={text:?} is more than 10 years"));
    }
    Ok(Offset { back, by })
}

/// Read `CREDROT_CLOCK_OFFSET` once, before any decision is made; an invalid value is a
/// usage error (and the clock stays unshifted).
pub fn init() -> Result<(), String> {
    let offset = match std::env::var(OFFSET_VAR) {
        Ok(text) if !text.trim().is_empty() => parse(&text)?,
        _ => Offset::default(),
    };
    let _ = OFFSET.set(offset);
    Ok(())
}

/// Now, as credrot's decisions see it.
pub fn now() -> SystemTime {
    shift(SystemTime::now(), OFFSET.get().copied().unwrap_or_default())
}

fn shift(time: SystemTime, offset: Offset) -> SystemTime {
    if offset.back {
        time.checked_sub(offset.by).unwrap_or(time)
    } else {
        time.checked_add(offset.by).unwrap_or(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_a_sign_and_a_limit() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            parse("2h").unwrap(),
            Offset {
                back: false,
                by: 2 * hour
            }
        );
        assert_eq!(
            parse("+2h").unwrap(),
            Offset {
                back: false,
                by: 2 * hour
            }
        );
        assert_eq!(
            parse("-1h").unwrap(),
            Offset {
                back: true,
                by: hour
            }
        );
        assert!(parse("soon").unwrap_err().contains(OFFSET_VAR));
        assert!(parse("100years").is_err());
        let t = SystemTime::UNIX_EPOCH + 10 * hour;
        assert_eq!(shift(t, parse("-1h").unwrap()), t - hour);
    }
}
