//! The point where a finished rotation hands over to reload hooks: the command layer says
//! what to run (programs, signals, restarts), the engine says when: once a user's new key
//! is stored everywhere, verified and promoted, never on a dry run, and never in a way that
//! could undo the rotation.

use super::report::{HookReport, UserReport};
use async_trait::async_trait;

/// What runs after a user's rotation ends `rotated`.
#[async_trait]
pub trait AfterRotate: Send + Sync {
    /// Run the hooks of `report`'s user (its new key is in `report.new_key`) and say what
    /// each did. A failure is reported, never returned: the rotation stands.
    async fn after_rotate(&self, report: &UserReport) -> Vec<HookReport>;
}
