//! What the engine did, step by step, for the audit log and other observers.

use serde::Serialize;

/// One action the engine took (or tried) on IAM or a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The account, in a run over `[accounts]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The IAM user acted on.
    pub user: String,
    /// The service, for `update` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What was done: `create-key`, `delete-key`, `deactivate-key`, `verify-key`,
    /// `store-write`, `store-promote`, `store-restore`, `store-sync`.
    pub action: &'static str,
    /// The key acted on (never its secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The store acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Receives every [`Event`] as it happens.
pub trait EventSink: Send + Sync {
    /// Record one event. Must not fail the rotation: a sink reports its own problems.
    fn record(&self, event: Event);
}

/// A sink that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn record(&self, _event: Event) {}
}

/// Passes every event on to `inner` with the account it happened in.
pub struct AccountEvents {
    /// Where the events go.
    pub inner: std::sync::Arc<dyn EventSink>,
    /// The account's id.
    pub account: String,
}

impl EventSink for AccountEvents {
    fn record(&self, mut event: Event) {
        event.account = Some(self.account.clone());
        self.inner.record(event);
    }
}
