//! What a rotation did, per user: the data behind the summary table and `--output json`.
//! It never holds a secret in a serialized field.

use crate::aws::KeyMeta;
use crate::secret::AccessKey;
use serde::Serialize;
use std::time::SystemTime;

/// How one user's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A new key was created, stored and verified.
    Rotated,
    /// CURRENT is younger than `rotate_after`: nothing to do.
    Fresh,
    /// Stores were repaired; the rotation that was due waits for the next run, because it
    /// would delete a key that a store handed out when this run started.
    Synced,
    /// Staged retirement is under way (old key deactivated, or waiting for it to go quiet).
    Retiring,
    /// Staged retirement waited longer than `max_wait`; the note says who uses the old key.
    Stuck,
    /// Another credrot run holds the user's lock and rotates it.
    Busy,
    /// `--dry-run`: the plan only.
    Planned,
    /// Something failed; the error says what and what was undone.
    Failed,
}

impl Outcome {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [Outcome; 8] = [
        Outcome::Rotated,
        Outcome::Fresh,
        Outcome::Synced,
        Outcome::Retiring,
        Outcome::Stuck,
        Outcome::Busy,
        Outcome::Planned,
        Outcome::Failed,
    ];

    /// The word shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rotated => "rotated",
            Outcome::Fresh => "fresh",
            Outcome::Synced => "synced",
            Outcome::Retiring => "retiring",
            Outcome::Stuck => "stuck",
            Outcome::Busy => "busy",
            Outcome::Planned => "planned",
            Outcome::Failed => "failed",
        }
    }
}

/// One key as it was before the run.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// The access key id.
    pub id: String,
    /// `Active` or `Inactive`.
    pub status: &'static str,
    /// Creation time, RFC 3339.
    pub created: String,
}

impl From<&KeyMeta> for KeyView {
    fn from(key: &KeyMeta) -> Self {
        KeyView {
            id: key.id.clone(),
            status: if key.active { "Active" } else { "Inactive" },
            created: humantime::format_rfc3339_seconds(key.created).to_string(),
        }
    }
}

/// The record of one user's rotation.
#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    /// The account, in a run over `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The account's name, in a run over `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// The IAM user.
    pub user: String,
    /// The service, for `update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The keys IAM listed before anything changed.
    pub keys_before: Vec<KeyView>,
    /// CURRENT before the run.
    pub current_before: Option<String>,
    /// LAST before the run.
    pub last_before: Option<String>,
    /// The key deleted (or, with --dry-run, that would be).
    pub deleted: Option<String>,
    /// The new key's id (never its secret).
    pub created: Option<String>,
    /// The stores handed the new key.
    pub stores: Vec<String>,
    /// Stores that lagged behind and were brought up to date first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synced: Vec<String>,
    /// Other actions: orphans deleted, staged deactivations and deletions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Why a user is waiting, stuck or busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// What failed and what was undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the run for this user finished.
    pub finished_at: String,
    /// What each `after_rotate` hook did, in order (only after a rotation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookReport>,
    /// The new key, for `-o` and `--print-secrets`; never serialized.
    #[serde(skip)]
    pub new_key: Option<AccessKey>,
}

/// What one `after_rotate` hook did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookReport {
    /// The hook, as configured (`command systemctl reload app`).
    pub hook: String,
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// Why it failed (never a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HookReport {
    /// Whether the hook failed.
    pub fn failed(&self) -> bool {
        self.outcome != "ok"
    }
}

impl UserReport {
    /// The hooks that failed.
    pub fn failed_hooks(&self) -> impl Iterator<Item = &HookReport> {
        self.hooks.iter().filter(|h| h.failed())
    }

    /// An empty report for `user`, filled in as the run goes.
    pub fn new(user: &str, service: Option<&str>) -> Self {
        UserReport {
            account: None,
            account_name: None,
            user: user.to_string(),
            service: service.map(str::to_string),
            keys_before: Vec::new(),
            current_before: None,
            last_before: None,
            deleted: None,
            created: None,
            stores: Vec::new(),
            synced: Vec::new(),
            actions: Vec::new(),
            note: None,
            outcome: Outcome::Failed,
            error: None,
            finished_at: String::new(),
            hooks: Vec::new(),
            new_key: None,
        }
    }

    pub(crate) fn finish(&mut self) {
        self.finished_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    }
}
