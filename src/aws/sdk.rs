//! The SDK-backed implementations of the AWS interfaces, and the shared SDK configuration.

use super::calls::{CallCounter, CallReport};
use super::wait::{Timeouts, WaitWatch};
use super::{
    AwsError, AwsErrorKind, IamApi, IamUser, KeyMeta, KeyUse, KeyVerifier, LogEvent, LogsApi,
};
use crate::secret::AccessKey;
use async_trait::async_trait;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_iam::config::retry::{ClientRateLimiter, RetryPartition, TokenBucket};
use aws_sdk_iam::types::StatusType;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How to reach AWS: the global command-line options.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Named profile from the shared config files (its region and settings).
    pub profile: Option<String>,
    /// Whether `profile`'s own credentials sign, whatever the environment holds: an
    /// explicit `--profile` wins over AWS_ACCESS_KEY_ID, as in the AWS CLI. Without it the
    /// SDK's default chain decides (environment keys first, then the profile).
    pub profile_credentials: bool,
    /// Region; else the configuration's default, else the SDK's chain.
    pub region: Option<String>,
    /// Endpoint for every service (an emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
}

/// A loaded SDK configuration, from which every client is made.
#[derive(Clone, Debug)]
pub struct AwsContext {
    sdk_config: SdkConfig,
    /// Shared by every client made from this context (and from its copies).
    calls: CallCounter,
    /// Says what every client's requests wait for.
    watch: WaitWatch,
    /// The retry partition of this account's IAM clients (see [`iam_partition`]); shared by
    /// the context's copies.
    iam_partition: RetryPartition,
}

/// The retry partition of one account's IAM clients. IAM throttles each account on its own,
/// and the SDK shares a partition's adaptive rate limiter and retry quota among its clients:
/// with the SDK's default (one partition for every IAM client of the process), a throttled
/// account would slow the others down and spend their quota. And the quota itself is
/// unlimited: the SDK's 500 tokens (5 per throttled retry) run dry after about 100 throttled
/// retries, after which requests fail unretried. That guards a service against retry storms
/// from unbounded clients; credrot's are bounded (at most `max_in_flight` users, one request
/// each, at most 8 attempts with backoff), and a request that fails unretried fails a user's
/// rotation.
fn iam_partition(name: String) -> RetryPartition {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    RetryPartition::custom(name)
        .token_bucket(TokenBucket::unlimited())
        .client_rate_limiter(ClientRateLimiter::new(now))
        .build()
}

/// The partition of the caller's own account.
const OWN_PARTITION: &str = "credrot-iam";

/// IAM and STS are global services; any region signs for them, so a run that names none
/// still works.
const FALLBACK_REGION: &str = "us-east-1";

impl AwsContext {
    /// Resolve credentials, region, endpoint and retry settings. Nothing is sent yet.
    pub async fn load(options: &AwsOptions) -> AwsContext {
        // Each attempt is bounded (CREDROT_AWS_TIMEOUT); the watch logs each unanswered
        // attempt and ends a call after a few of them, which bounds the call as a whole.
        let timeouts = Timeouts::from_env();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(super::http_client())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .operation_attempt_timeout(timeouts.attempt)
                    .build(),
            );
        // Adaptive retry slows every request down when AWS throttles, so a high
        // --concurrency degrades into waiting instead of failing. The standard AWS_* settings
        // still win when the user gives them.
        if std::env::var_os("AWS_RETRY_MODE").is_none()
            && std::env::var_os("AWS_MAX_ATTEMPTS").is_none()
        {
            loader = loader.retry_config(
                RetryConfig::adaptive()
                    .with_max_attempts(8)
                    .with_max_backoff(Duration::from_secs(10)),
            );
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
            if options.profile_credentials {
                // The default chain reads AWS_ACCESS_KEY_ID before any profile; the
                // profile's own provider (static keys, credential_process, SSO, roles)
                // reads only the profile.
                let provider_config = ProviderConfig::default()
                    .with_http_client(super::http_client())
                    .with_region(options.region.clone().map(Region::new))
                    .with_timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(timeouts.connect)
                            .operation_attempt_timeout(timeouts.attempt)
                            .build(),
                    );
                loader = loader.credentials_provider(
                    ProfileFileCredentialsProvider::builder()
                        .configure(&provider_config)
                        .profile_name(profile)
                        .build(),
                );
            }
        }
        // Without --region the loader's own chain finds one (AWS_REGION, the profile's
        // region, IMDS), through the shared HTTP client.
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let mut sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            sdk_config = sdk_config
                .to_builder()
                .region(Region::new(FALLBACK_REGION))
                .build();
        }
        AwsContext {
            sdk_config,
            calls: CallCounter::default(),
            watch: WaitWatch::new(timeouts),
            iam_partition: iam_partition(OWN_PARTITION.into()),
        }
    }

    /// Resolve the credentials once, before the first call: without any, every user of a
    /// run would fail with the same message. The clients resolve (and refresh) them again
    /// through the same provider.
    pub async fn check_credentials(&self) -> Result<(), AwsError> {
        use aws_credential_types::provider::ProvideCredentials;
        let Some(provider) = self.sdk_config.credentials_provider() else {
            return Ok(());
        };
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::credentials("loading AWS credentials", &e))
    }

    /// A context over an SDK configuration made elsewhere (tests, embedding programs).
    pub fn from_sdk_config(sdk_config: SdkConfig) -> AwsContext {
        AwsContext {
            sdk_config,
            calls: CallCounter::default(),
            watch: WaitWatch::new(Timeouts::from_env()),
            iam_partition: iam_partition(OWN_PARTITION.into()),
        }
    }

    /// The AWS requests made so far through clients of this context.
    pub fn calls(&self) -> CallReport {
        self.calls.report()
    }

    /// The interceptor that counts requests, for clients made outside this module.
    pub(crate) fn call_counter(&self) -> CallCounter {
        self.calls.clone()
    }

    /// The interceptor that says what requests wait for, for clients made outside this
    /// module.
    pub(crate) fn wait_watch(&self) -> WaitWatch {
        self.watch.clone()
    }

    /// The same configuration, signing with `key` (and `session_token`) instead of whatever
    /// the credential chain would find: for keys credrot decrypted or just created.
    pub fn with_credentials(&self, key: &AccessKey, session_token: Option<&str>) -> AwsContext {
        let credentials = Credentials::new(
            &key.id,
            key.expose(),
            session_token.map(str::to_string),
            None,
            "credrot",
        );
        AwsContext {
            sdk_config: self
                .sdk_config
                .to_builder()
                .credentials_provider(SharedCredentialsProvider::new(credentials))
                .build(),
            calls: self.calls.clone(),
            watch: self.watch.clone(),
            iam_partition: self.iam_partition.clone(),
        }
    }

    /// Another SDK configuration whose requests are counted and watched with this one's.
    pub fn with_sdk_config(&self, sdk_config: SdkConfig) -> AwsContext {
        AwsContext {
            sdk_config,
            calls: self.calls.clone(),
            watch: self.watch.clone(),
            iam_partition: self.iam_partition.clone(),
        }
    }

    /// The same context, for the clients of `account` (a role assumed there): its IAM
    /// clients get that account's own retry partition.
    pub fn for_account(mut self, account: &str) -> AwsContext {
        self.iam_partition = iam_partition(format!("{OWN_PARTITION}-{account}"));
        self
    }

    /// The shared SDK configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk_config
    }

    /// The configuration's region, with `region` overriding it when given.
    pub fn config_for_region(&self, region: Option<&str>) -> SdkConfig {
        match region {
            Some(r) => self
                .sdk_config
                .to_builder()
                .region(Region::new(r.to_string()))
                .build(),
            None => self.sdk_config.clone(),
        }
    }

    /// An IAM client.
    pub fn iam(&self) -> SdkIam {
        let config = aws_sdk_iam::config::Builder::from(&self.sdk_config)
            .retry_partition(self.iam_partition.clone())
            .interceptor(self.calls.clone())
            .interceptor(self.watch.clone())
            .build();
        SdkIam {
            client: aws_sdk_iam::Client::from_conf(config),
        }
    }

    /// CloudWatch Logs in the run's region.
    pub fn logs(&self) -> SdkLogs {
        let config = aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk_config)
            .interceptor(self.calls.clone())
            .interceptor(self.watch.clone())
            .build();
        SdkLogs {
            client: aws_sdk_cloudwatchlogs::Client::from_conf(config),
        }
    }

    /// The ARN of the identity this run signs as (STS `GetCallerIdentity` with the run's
    /// own credentials and endpoint), for the audit log.
    pub async fn caller_arn(&self) -> Result<String, AwsError> {
        // Few retries: this only labels audit lines, and an unreachable STS will show up
        // again, with a better message, in the rotation itself.
        let config = aws_sdk_sts::config::Builder::from(&self.sdk_config)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .interceptor(self.calls.clone())
            .interceptor(self.watch.clone())
            .build();
        let out = aws_sdk_sts::Client::from_conf(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))?;
        out.arn().map(str::to_string).ok_or_else(|| AwsError {
            operation: "sts:GetCallerIdentity",
            code: None,
            message: "the response held no ARN".to_string(),
            kind: AwsErrorKind::Other,
        })
    }

    /// A verifier that signs STS calls with the key under test.
    pub fn verifier(&self) -> SdkVerifier {
        let config = aws_sdk_sts::config::Builder::from(&self.sdk_config)
            // The caller retries rejected keys while IAM propagates them; the SDK's own
            // retries would only slow that loop down.
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .interceptor(self.calls.clone())
            .interceptor(self.watch.clone())
            .build();
        SdkVerifier {
            client: aws_sdk_sts::Client::from_conf(config),
        }
    }
}

impl SdkIam {
    /// The retry partition set on this client, if not the SDK's default.
    #[cfg(test)]
    pub(crate) fn partition(&self) -> Option<RetryPartition> {
        self.client.config().retry_partition().cloned()
    }
}

/// IAM through the SDK.
#[derive(Clone, Debug)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
}

fn to_system_time(date: Option<&aws_smithy_types::DateTime>) -> SystemTime {
    date.and_then(|d| SystemTime::try_from(*d).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl IamApi for SdkIam {
    async fn list_users(&self, path: &str) -> Result<Vec<IamUser>, AwsError> {
        let mut pages = self
            .client
            .list_users()
            .path_prefix(path)
            .into_paginator()
            .items()
            .send();
        let mut users = Vec::new();
        while let Some(user) = pages.next().await {
            let user = user.map_err(|e| AwsError::from_sdk("iam:ListUsers", e))?;
            // PathPrefix also matches deeper paths; credrot rotates exactly the path asked.
            if user.path() == path {
                users.push(IamUser {
                    name: user.user_name().to_string(),
                    path: user.path().to_string(),
                });
            }
        }
        Ok(users)
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<KeyMeta>, AwsError> {
        let out = self
            .client
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:ListAccessKeys", e))?;
        Ok(out
            .access_key_metadata()
            .iter()
            .filter_map(|k| {
                Some(KeyMeta {
                    id: k.access_key_id()?.to_string(),
                    active: k.status() == Some(&StatusType::Active),
                    created: to_system_time(k.create_date()),
                })
            })
            .collect())
    }

    async fn create_key(&self, user: &str) -> Result<(KeyMeta, AccessKey), AwsError> {
        let out = self
            .client
            .create_access_key()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default()
                    .retry_classifier(super::once::NoRetryIfItMayHaveLanded),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:CreateAccessKey", e))?;
        let key = out.access_key().ok_or_else(|| AwsError {
            operation: "iam:CreateAccessKey",
            code: None,
            message: "the response held no access key".to_string(),
            kind: AwsErrorKind::Other,
        })?;
        let meta = KeyMeta {
            id: key.access_key_id().to_string(),
            active: key.status() == &StatusType::Active,
            created: key
                .create_date()
                .map(|d| to_system_time(Some(d)))
                .unwrap_or_else(SystemTime::now),
        };
        Ok((
            meta,
            AccessKey::new(key.access_key_id(), key.secret_access_key()),
        ))
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
        self.client
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:DeleteAccessKey", e))?;
        Ok(())
    }

    async fn set_key_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), AwsError> {
        let status = if active {
            StatusType::Active
        } else {
            StatusType::Inactive
        };
        self.client
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(status)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:UpdateAccessKey", e))?;
        Ok(())
    }

    async fn last_used(&self, key_id: &str) -> Result<Option<KeyUse>, AwsError> {
        let out = self
            .client
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetAccessKeyLastUsed", e))?;
        Ok(out.access_key_last_used().and_then(|u| {
            Some(KeyUse {
                date: SystemTime::try_from(*u.last_used_date()?).ok()?,
                service: u.service_name().to_string(),
                region: u.region().to_string(),
            })
        }))
    }

    async fn user_tags(&self, user: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let mut pages = self
            .client
            .list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send();
        let mut tags = BTreeMap::new();
        while let Some(tag) = pages.next().await {
            let tag = tag.map_err(|e| AwsError::from_sdk("iam:ListUserTags", e))?;
            tags.insert(tag.key().to_string(), tag.value().to_string());
        }
        Ok(tags)
    }

    async fn tag_user(&self, user: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(|e| AwsError {
                operation: "iam:TagUser",
                code: None,
                message: e.to_string(),
                kind: AwsErrorKind::Other,
            })?;
        self.client
            .tag_user()
            .user_name(user)
            .tags(tag)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:TagUser", e))?;
        Ok(())
    }

    async fn untag_user(&self, user: &str, keys: &[String]) -> Result<(), AwsError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.client
            .untag_user()
            .user_name(user)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:UntagUser", e))?;
        Ok(())
    }
}

/// STS `GetCallerIdentity`, signed with the key being verified.
///
/// One client serves every key: each call overrides only the credentials. A client per key
/// built its own HTTP client each time (TLS root store parsed again, empty connection pool,
/// so a new connection per verification): about 0.2 ms of CPU per rotated user (bench/).
#[derive(Clone, Debug)]
pub struct SdkVerifier {
    client: aws_sdk_sts::Client,
}

#[async_trait]
impl KeyVerifier for SdkVerifier {
    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError> {
        let credentials = Credentials::new(&key.id, key.expose(), None, None, "credrot-new-key");
        let out = self
            .client
            .get_caller_identity()
            .customize()
            .config_override(
                aws_sdk_sts::config::Builder::default().credentials_provider(credentials),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))?;
        Ok(out.arn().unwrap_or_default().to_string())
    }
}

/// CloudWatch Logs through the SDK.
#[derive(Clone, Debug)]
pub struct SdkLogs {
    client: aws_sdk_cloudwatchlogs::Client,
}

/// Whether a create call failed only because the resource is already there.
fn already_exists(err: &AwsError) -> bool {
    err.code.as_deref() == Some("ResourceAlreadyExistsException")
}

#[async_trait]
impl LogsApi for SdkLogs {
    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<(), AwsError> {
        // Create and tolerate "already exists" rather than describe first: one call in the
        // common case, and no race with another run creating the same group.
        let created = self
            .client
            .create_log_group()
            .log_group_name(group)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("logs:CreateLogGroup", e));
        match created {
            Err(e) if !already_exists(&e) => return Err(e),
            _ => {}
        }
        let created = self
            .client
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(stream)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("logs:CreateLogStream", e));
        match created {
            Err(e) if !already_exists(&e) => Err(e),
            _ => Ok(()),
        }
    }

    async fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), AwsError> {
        let events = events
            .iter()
            .map(|e| {
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(e.timestamp_ms)
                    .message(&e.message)
                    .build()
                    .map_err(|err| AwsError {
                        operation: "logs:PutLogEvents",
                        code: None,
                        message: err.to_string(),
                        kind: AwsErrorKind::Other,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("logs:PutLogEvents", e))?;
        // CloudWatch answers 200 and drops events it finds too old or too new.
        if let Some(rejected) = out.rejected_log_events_info() {
            return Err(AwsError {
                operation: "logs:PutLogEvents",
                code: None,
                message: format!(
                    "CloudWatch Logs rejected events (too new before index {:?}, too old until {:?}, expired until {:?}); check this machine's clock",
                    rejected.too_new_log_event_start_index(),
                    rejected.too_old_log_event_end_index(),
                    rejected.expired_log_event_end_index()
                ),
                kind: AwsErrorKind::Other,
            });
        }
        Ok(())
    }
}
