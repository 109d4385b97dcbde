//! What the engine did, step by step, for the audit log and other observers.

use serde::Serialize;

/// One action the engine took (or tried) on IAM or a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
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
