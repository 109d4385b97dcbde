//! Counts a run's AWS requests per action, with the SDK's retries, so that the run can say
//! what it cost and a test can hold a rotation to list + delete + create + verify per user.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The requests of one action.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    /// Operations credrot asked for.
    pub calls: u64,
    /// Requests sent: the calls plus the SDK's retries of them.
    pub attempts: u64,
}

/// What a run asked of AWS so far.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CallReport {
    /// Operations, all actions together.
    pub calls: u64,
    /// Requests the SDK sent again (throttling, server errors, timeouts).
    pub retries: u64,
    /// Per action, as `Service:Operation` (`IAM:ListAccessKeys`).
    pub by_action: BTreeMap<String, ActionCount>,
}

/// An SDK interceptor that counts every operation and attempt of the clients it is added to;
/// clones share one tally.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    tally: Arc<Mutex<BTreeMap<String, ActionCount>>>,
}

impl CallCounter {
    fn add(&self, cfg: &ConfigBag, field: fn(&mut ActionCount) -> &mut u64) {
        let action = cfg
            .load::<Metadata>()
            .map(|m| format!("{}:{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".to_string());
        let mut tally = self.tally.lock().expect("call tally lock");
        *field(tally.entry(action).or_default()) += 1;
    }

    /// The counts so far.
    pub fn report(&self) -> CallReport {
        let by_action = self.tally.lock().expect("call tally lock").clone();
        let calls = by_action.values().map(|c| c.calls).sum();
        let attempts: u64 = by_action.values().map(|c| c.attempts).sum();
        CallReport {
            calls,
            retries: attempts.saturating_sub(calls),
            by_action,
        }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    // Counted here rather than before execution: a client's interceptors run before the
    // operation's metadata (its name) is in the bag, and this hook runs once per operation.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.add(cfg, |c| &mut c.calls);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.add(cfg, |c| &mut c.attempts);
        Ok(())
    }
}
