//! What IAM's eventual consistency asks of a caller: a key that was just created is refused
//! for a while, so the calls that use it are retried with backoff until a deadline. One
//! schedule, shared by the rotation engine's verification and the self-rotation of profiles.

use std::time::{Duration, Instant};

/// The retry schedule while IAM propagates a key: waits that double from `first` up to
/// `max`, until `timeout` has passed.
#[derive(Debug, Clone)]
pub struct Propagation {
    deadline: Instant,
    delay: Duration,
    max: Duration,
}

impl Propagation {
    /// A schedule starting now.
    pub fn new(timeout: Duration, first: Duration, max: Duration) -> Self {
        Propagation {
            // A deadline past what Instant can hold is as good as none.
            deadline: Instant::now()
                .checked_add(timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            delay: first,
            max: max.max(first),
        }
    }

    /// Whether another attempt fits before the deadline, after the next wait.
    pub fn may_retry(&self) -> bool {
        Instant::now() + self.delay < self.deadline
    }

    /// Wait before the next attempt.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.max);
    }

    /// The next wait, for messages.
    pub fn next_delay(&self) -> Duration {
        self.delay
    }
}

/// The IAM user name in a user ARN (`arn:aws:iam::123:user/path/name`); `None` for any
/// other kind of ARN (root, assumed roles).
pub fn user_name_from_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/').next().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_user_arns_only() {
        assert_eq!(
            user_name_from_arn("arn:aws:iam::123456789012:user/people/alice"),
            Some("alice")
        );
        assert_eq!(user_name_from_arn("arn:aws:iam::1:user/bob"), Some("bob"));
        assert_eq!(user_name_from_arn("arn:aws:iam::1:root"), None);
        assert_eq!(user_name_from_arn("arn:aws:sts::1:assumed-role/r/s"), None);
        assert_eq!(user_name_from_arn("arn:aws:iam::1:user/"), None);
    }

    #[tokio::test]
    async fn waits_double_up_to_the_cap_and_stop_at_the_deadline() {
        let mut p = Propagation::new(
            Duration::from_millis(40),
            Duration::from_millis(1),
            Duration::from_millis(4),
        );
        assert!(p.may_retry());
        for expected in [1, 2, 4, 4] {
            assert_eq!(p.next_delay(), Duration::from_millis(expected));
            p.wait().await;
        }
        let none = Propagation::new(Duration::ZERO, Duration::from_millis(1), Duration::ZERO);
        assert!(!none.may_retry());
        // A timeout no Instant can hold is not a panic.
        assert!(
            Propagation::new(Duration::MAX, Duration::from_millis(1), Duration::ZERO).may_retry()
        );
    }
}
