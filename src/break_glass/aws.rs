//! The AWS calls break-glass makes, behind a trait so the flow can be unit-tested in
//! memory: STS (who is asking, AssumeRole), SSM (the request history), IAM (group members,
//! the role's maximum session, the revocation policy).

use super::state::Version;
use crate::aws::{AwsContext, AwsError, AwsErrorKind};
use crate::secret::AccessKey;
use crate::session::TemporaryCredentials;
use async_trait::async_trait;
use secrecy::SecretString;
use std::time::{Duration, SystemTime};

/// What an AssumeRole for a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeParams {
    /// The role.
    pub role_arn: String,
    /// The session name CloudTrail shows.
    pub session_name: String,
    /// Seconds.
    pub seconds: i32,
    /// Session tags (key, value).
    pub tags: Vec<(String, String)>,
    /// `SourceIdentity`.
    pub source_identity: String,
}

/// The calls break-glass makes.
#[async_trait]
pub trait BreakGlassAws: Send + Sync {
    /// The caller's ARN (STS GetCallerIdentity).
    async fn caller_arn(&self) -> Result<String, AwsError>;
    /// Add a version to parameter `name` (`create`: only if it does not exist yet); the
    /// version number it got.
    async fn put_step(&self, name: &str, value: &str, create: bool) -> Result<i64, AwsError>;
    /// Label version `version` of parameter `name` with `label`: SSM keeps the 100 newest
    /// versions and drops older ones, except labelled ones.
    async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), AwsError>;
    /// Every version of parameter `name`.
    async fn history(&self, name: &str) -> Result<Vec<Version>, AwsError>;
    /// The names of the parameters directly under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, AwsError>;
    /// The ARNs of the users in IAM group `group`.
    async fn group_members(&self, group: &str) -> Result<Vec<String>, AwsError>;
    /// The role's MaxSessionDuration.
    async fn role_max_session(&self, role_name: &str) -> Result<Duration, AwsError>;
    /// AssumeRole.
    async fn assume(&self, params: &AssumeParams) -> Result<TemporaryCredentials, AwsError>;
    /// Put an inline policy on the role.
    async fn put_role_policy(
        &self,
        role_name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), AwsError>;
}

/// The SDK implementation.
pub struct SdkBreakGlass {
    aws: AwsContext,
    ssm: aws_sdk_ssm::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl SdkBreakGlass {
    /// Clients over the context's configuration.
    pub fn new(aws: &AwsContext) -> Self {
        SdkBreakGlass {
            aws: aws.clone(),
            ssm: aws_sdk_ssm::Client::new(aws.sdk_config()),
            iam: aws_sdk_iam::Client::new(aws.sdk_config()),
            sts: aws_sdk_sts::Client::new(aws.sdk_config()),
        }
    }
}

fn no_answer(operation: &'static str, what: &str) -> AwsError {
    AwsError {
        operation,
        code: None,
        message: format!("the response held no {what}"),
        kind: AwsErrorKind::Other,
    }
}

#[async_trait]
impl BreakGlassAws for SdkBreakGlass {
    async fn caller_arn(&self) -> Result<String, AwsError> {
        self.aws.caller_arn().await
    }

    async fn put_step(&self, name: &str, value: &str, create: bool) -> Result<i64, AwsError> {
        let out = self
            .ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(!create)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:PutParameter", e))?;
        Ok(out.version())
    }

    async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), AwsError> {
        let out = self
            .ssm
            .label_parameter_version()
            .name(name)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:LabelParameterVersion", e))?;
        if !out.invalid_labels().is_empty() {
            return Err(AwsError {
                operation: "ssm:LabelParameterVersion",
                code: None,
                message: format!("label {label} was refused as invalid"),
                kind: AwsErrorKind::Other,
            });
        }
        Ok(())
    }

    async fn history(&self, name: &str) -> Result<Vec<Version>, AwsError> {
        let mut pages = self
            .ssm
            .get_parameter_history()
            .name(name)
            .into_paginator()
            .send();
        let mut versions = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("ssm:GetParameterHistory", e))?;
            for item in page.parameters() {
                versions.push(Version {
                    version: item.version(),
                    value: item.value().unwrap_or_default().to_string(),
                    written_by: item.last_modified_user().map(str::to_string),
                });
            }
        }
        Ok(versions)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut pages = self
            .ssm
            .get_parameters_by_path()
            .path(prefix)
            .recursive(false)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("ssm:GetParametersByPath", e))?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
        }
        Ok(names)
    }

    async fn group_members(&self, group: &str) -> Result<Vec<String>, AwsError> {
        let mut pages = self
            .iam
            .get_group()
            .group_name(group)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iam:GetGroup", e))?;
            arns.extend(page.users().iter().map(|u| u.arn().to_string()));
        }
        Ok(arns)
    }

    async fn role_max_session(&self, role_name: &str) -> Result<Duration, AwsError> {
        let out = self
            .iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetRole", e))?;
        let role = out.role().ok_or_else(|| no_answer("iam:GetRole", "role"))?;
        // IAM's default when a role does not say: one hour.
        let secs = role.max_session_duration().unwrap_or(3600);
        Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(3600)))
    }

    async fn assume(&self, params: &AssumeParams) -> Result<TemporaryCredentials, AwsError> {
        let tags = params
            .tags
            .iter()
            .map(|(k, v)| {
                aws_sdk_sts::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| AwsError {
                        operation: "sts:AssumeRole",
                        code: None,
                        message: e.to_string(),
                        kind: AwsErrorKind::Setup,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .sts
            .assume_role()
            .role_arn(&params.role_arn)
            .role_session_name(&params.session_name)
            .duration_seconds(params.seconds)
            .set_tags(Some(tags))
            .source_identity(&params.source_identity)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:AssumeRole", e))?;
        let c = out
            .credentials()
            .ok_or_else(|| no_answer("sts:AssumeRole", "credentials"))?;
        Ok(TemporaryCredentials {
            key: AccessKey::new(c.access_key_id(), c.secret_access_key()),
            token: SecretString::from(c.session_token().to_string()),
            expiration: SystemTime::try_from(*c.expiration()).unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    async fn put_role_policy(
        &self,
        role_name: &str,
        policy_name: &str,
        document: &str,
    ) -> Result<(), AwsError> {
        self.iam
            .put_role_policy()
            .role_name(role_name)
            .policy_name(policy_name)
            .policy_document(document)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:PutRolePolicy", e))?;
        Ok(())
    }
}
