//! What the Secrets Manager and SSM stores share: clients cached per region for the whole
//! run, the mapping of SDK failures to store errors, and the tags put on what they create.

use super::{StoreError, WriteContext};
use crate::aws::{AwsContext, AwsError, AwsErrorKind};
use std::collections::HashMap;
use std::sync::Mutex;

/// AWS clients for the stores, one per service and region, made on first use and shared
/// by every user of the run: a 1000-user path run builds one client, not 1000.
pub(crate) struct AwsClients {
    context: AwsContext,
    ssm: Mutex<HashMap<Option<String>, aws_sdk_ssm::Client>>,
    secrets_manager: Mutex<HashMap<Option<String>, aws_sdk_secretsmanager::Client>>,
}

impl AwsClients {
    pub(crate) fn new(context: AwsContext) -> Self {
        AwsClients {
            context,
            ssm: Mutex::default(),
            secrets_manager: Mutex::default(),
        }
    }

    /// The SSM client for `region` (`None`: the run's region).
    pub(crate) fn ssm(&self, region: Option<&str>) -> aws_sdk_ssm::Client {
        let calls = self.context.call_counter();
        self.cached(&self.ssm, region, |config| {
            let config = aws_sdk_ssm::config::Builder::from(config)
                .interceptor(calls)
                .interceptor(self.context.wait_watch())
                .build();
            aws_sdk_ssm::Client::from_conf(config)
        })
    }

    /// The Secrets Manager client for `region` (`None`: the run's region).
    pub(crate) fn secrets_manager(&self, region: Option<&str>) -> aws_sdk_secretsmanager::Client {
        let calls = self.context.call_counter();
        self.cached(&self.secrets_manager, region, |config| {
            let config = aws_sdk_secretsmanager::config::Builder::from(config)
                .interceptor(calls)
                .interceptor(self.context.wait_watch())
                .build();
            aws_sdk_secretsmanager::Client::from_conf(config)
        })
    }

    fn cached<C: Clone>(
        &self,
        cache: &Mutex<HashMap<Option<String>, C>>,
        region: Option<&str>,
        make: impl FnOnce(&aws_config::SdkConfig) -> C,
    ) -> C {
        // SDK clients are handles over shared state, so cloning one is cheap.
        cache
            .lock()
            .expect("client cache lock")
            .entry(region.map(str::to_string))
            .or_insert_with(|| make(&self.context.config_for_region(region)))
            .clone()
    }
}

/// A store error from a failed AWS call; the AWS message names the operation, so an
/// AccessDenied says which permission is missing. `redact` lists the secrets the call
/// carried: should the service ever quote a value back, it does not reach the message.
pub(crate) fn store_error(
    location: String,
    action: &'static str,
    err: AwsError,
    redact: &[&str],
) -> StoreError {
    let mut reason = err.to_string();
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        reason = reason.replace(secret, "[redacted]");
    }
    StoreError {
        store: location,
        action,
        reason,
    }
}

/// Whether a failed write may still have reached the service (a timeout or a dropped
/// connection): such a write is undone on rollback as if it had landed. A store write that
/// the service answered, even with a server error, is taken as not done: undoing a version
/// that does not exist fails the rollback (the emulator answers it with a 500 of its own).
pub(crate) fn may_have_landed(err: &AwsError) -> bool {
    err.kind == AwsErrorKind::Unreachable
}

/// Tags for a secret or parameter credrot creates: each configured tag as a key with an
/// empty value (services.toml tags are plain words), plus who manages it and for whom.
pub(crate) fn creation_tags(tags: &[String], ctx: &WriteContext) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = tags.iter().map(|t| (t.clone(), String::new())).collect();
    out.push(("managed-by".into(), "credrot".into()));
    out.push(("credrot:iam-user".into(), ctx.user.clone()));
    out
}

/// The description of a secret or parameter credrot writes.
pub(crate) fn description(what: &str, ctx: &WriteContext) -> String {
    format!(
        "{what} of IAM user {}, rotated by credrot; do not edit by hand",
        ctx.user
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn creation_tags_keep_the_configured_words_and_name_the_user() {
        let ctx = WriteContext {
            user: "svc".into(),
            service: None,
            previous_key_id: None,
            rotated_at: SystemTime::now(),
        };
        let tags = creation_tags(&["aws".into(), "backup".into()], &ctx);
        assert_eq!(tags[0], ("aws".into(), String::new()));
        assert!(tags.contains(&("managed-by".into(), "credrot".into())));
        assert!(tags.contains(&("credrot:iam-user".into(), "svc".into())));
    }

    #[test]
    fn store_errors_never_quote_a_secret() {
        let err = AwsError {
            operation: "ssm:PutParameter",
            code: Some("ValidationException".into()),
            message: "value 'wJalrXUtnFEMI' is invalid".into(),
            kind: AwsErrorKind::Other,
        };
        let err = store_error("ssm:/x".into(), "write", err, &["wJalrXUtnFEMI", ""]);
        assert!(!err.to_string().contains("wJalrXUtnFEMI"), "{err}");
        assert!(err.to_string().contains("[redacted]"), "{err}");
    }

    #[test]
    fn only_unreachable_failures_may_have_landed() {
        let err = |kind| AwsError {
            operation: "ssm:PutParameter",
            code: None,
            message: String::new(),
            kind,
        };
        assert!(may_have_landed(&err(AwsErrorKind::Unreachable)));
        assert!(!may_have_landed(&err(AwsErrorKind::AccessDenied)));
        assert!(!may_have_landed(&err(AwsErrorKind::Other)));
    }
}
