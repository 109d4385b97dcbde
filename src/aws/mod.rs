//! Narrow interfaces over the AWS APIs credrot uses, so the rotation engine can run against
//! the real SDK (or the emulator) and against in-memory fakes in unit tests.

mod error;
mod sdk;

pub use error::{AwsError, AwsErrorKind};
pub use sdk::{AwsContext, AwsOptions, SdkIam, SdkVerifier};

use crate::secret::AccessKey;
use async_trait::async_trait;
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
}

/// Proves that a key works by calling STS with it.
#[async_trait]
pub trait KeyVerifier: Send + Sync {
    /// The ARN that `key` authenticates as (STS `GetCallerIdentity` signed with it).
    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError>;
}
