//! Narrow interfaces over the AWS APIs credrot uses, so the rotation engine can run against
//! the real SDK (or the emulator) and against in-memory fakes in unit tests.

mod assume;
mod calls;
mod error;
mod http;
mod once;
mod organizations;
mod propagation;
mod sdk;
mod wait;

pub use assume::RoleRequest;
pub use calls::{ActionCount, CallCounter, CallReport};
pub use error::{AwsError, AwsErrorKind};
pub use http::http_client;
pub use organizations::{OrgAccount, OrganizationApi, SdkOrganizations};
pub use propagation::{user_name_from_arn, Propagation};
pub use sdk::{AwsContext, AwsOptions, SdkIam, SdkLogs, SdkVerifier};
pub use wait::{Timeouts, TIMEOUT_ENV};

use crate::secret::AccessKey;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// An IAM user found under a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamUser {
    /// The user name.
    pub name: String,
    /// The user's IAM path, `/Name/`.
    pub path: String,
}

/// An access key as IAM lists it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    /// The access key id.
    pub id: String,
    /// Whether IAM accepts the key (`Active`) or not (`Inactive`).
    pub active: bool,
    /// When the key was created.
    pub created: SystemTime,
}

/// The last use of an access key, as IAM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// When.
    pub date: SystemTime,
    /// Which AWS service it called.
    pub service: String,
    /// In which region.
    pub region: String,
}

/// The IAM calls the rotation engine makes.
#[async_trait]
pub trait IamApi: Send + Sync {
    /// Every user whose path is exactly `path` (all pages).
    async fn list_users(&self, path: &str) -> Result<Vec<IamUser>, AwsError>;
    /// The user's access keys.
    async fn list_keys(&self, user: &str) -> Result<Vec<KeyMeta>, AwsError>;
    /// Create a key; the secret is only ever returned here.
    async fn create_key(&self, user: &str) -> Result<(KeyMeta, AccessKey), AwsError>;
    /// Delete a key.
    async fn delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError>;
    /// Make a key Active or Inactive.
    async fn set_key_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), AwsError>;
    /// When the key was last used; `None` if never.
    async fn last_used(&self, key_id: &str) -> Result<Option<KeyUse>, AwsError>;
    /// The user's tags (credrot keeps its lock and retirement state there).
    async fn user_tags(&self, user: &str) -> Result<BTreeMap<String, String>, AwsError>;
    /// Set one tag on the user.
    async fn tag_user(&self, user: &str, key: &str, value: &str) -> Result<(), AwsError>;
    /// Remove tags from the user.
    async fn untag_user(&self, user: &str, keys: &[String]) -> Result<(), AwsError>;
}

/// Proves that a key works by calling STS with it.
#[async_trait]
pub trait KeyVerifier: Send + Sync {
    /// The ARN that `key` authenticates as (STS `GetCallerIdentity` signed with it).
    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError>;
}

/// One message for CloudWatch Logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The message (an audit line, without its newline).
    pub message: String,
}

/// The CloudWatch Logs calls the audit sink makes.
#[async_trait]
pub trait LogsApi: Send + Sync {
    /// Create the log group and the log stream, each unless it already exists.
    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<(), AwsError>;
    /// `PutLogEvents`: `events` are in time order and within the API's batch limits.
    async fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), AwsError>;
}
