//! Credentials of a role in another account (STS `AssumeRole`), for runs over `[accounts]`.
//! The first session is asked for at once, so that a role that cannot be assumed fails its
//! account before anything else; later ones are asked for when a session runs out.

use super::sdk::AwsContext;
use super::AwsError;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{self, error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Renew a session this long before it runs out: a rotation step in flight must not sign
/// with credentials that expire under it.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// What to assume, and how the session is labelled in CloudTrail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequest {
    /// `arn:PARTITION:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// `RoleSessionName`: the run id, so CloudTrail ties every call to the run.
    pub session_name: String,
    /// `ExternalId`, when the trust policy requires one.
    pub external_id: Option<String>,
    /// How long each session lasts.
    pub duration: Duration,
    /// `SourceIdentity`: who started the run (needs `sts:SetSourceIdentity` in the trust
    /// policy).
    pub source_identity: Option<String>,
}

/// Sessions of one role, each asked for when the one before runs out.
#[derive(Debug)]
struct AssumedRole {
    client: aws_sdk_sts::Client,
    request: RoleRequest,
    session: Mutex<Option<Credentials>>,
}

impl AssumedRole {
    async fn assume(&self) -> Result<Credentials, AwsError> {
        let r = &self.request;
        let out = self
            .client
            .assume_role()
            .role_arn(&r.role_arn)
            .role_session_name(&r.session_name)
            .set_external_id(r.external_id.clone())
            .duration_seconds(i32::try_from(r.duration.as_secs()).unwrap_or(3600))
            .set_source_identity(r.source_identity.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:AssumeRole", e))?;
        let Some(c) = out.credentials() else {
            return Err(AwsError {
                operation: "sts:AssumeRole",
                code: None,
                message: "the response held no credentials".to_string(),
                kind: super::AwsErrorKind::Other,
            });
        };
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            SystemTime::try_from(*c.expiration()).ok(),
            "credrot-assume-role",
        );
        *self.session.lock().expect("session lock") = Some(credentials.clone());
        Ok(credentials)
    }

    async fn current(&self) -> provider::Result {
        let fresh = self
            .session
            .lock()
            .expect("session lock")
            .clone()
            .filter(|c| {
                c.expiry()
                    .is_none_or(|end| end > SystemTime::now() + RENEW_BEFORE)
            });
        match fresh {
            Some(c) => Ok(c),
            None => self
                .assume()
                .await
                .map_err(CredentialsError::provider_error),
        }
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.current())
    }
}

impl AwsContext {
    /// The same configuration signing as `request`'s role (in `region`, when given), with
    /// the requests counted with this context's. The role is assumed here, once.
    pub async fn assume_role(
        &self,
        request: RoleRequest,
        region: Option<&str>,
    ) -> Result<AwsContext, AwsError> {
        let config = aws_sdk_sts::config::Builder::from(self.sdk_config())
            .interceptor(self.call_counter())
            .interceptor(self.wait_watch())
            .build();
        let role_arn = request.role_arn.clone();
        let role = AssumedRole {
            client: aws_sdk_sts::Client::from_conf(config),
            request,
            session: Mutex::new(None),
        };
        role.assume().await?;
        let sdk_config = self
            .config_for_region(region)
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(role))
            .build();
        let context = self.with_sdk_config(sdk_config);
        Ok(match account_of(&role_arn) {
            Some(account) => context.for_account(account),
            None => context,
        })
    }
}

/// The account of `arn:PARTITION:iam::ACCOUNT:role/NAME`.
fn account_of(role_arn: &str) -> Option<&str> {
    role_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::config::retry::RetryPartition;

    #[test]
    fn each_accounts_iam_clients_have_their_own_retry_partition() {
        assert_eq!(
            account_of("arn:aws:iam::222222222222:role/credrot"),
            Some("222222222222")
        );
        assert_eq!(account_of("not-an-arn"), None);
        let base = AwsContext::from_sdk_config(
            aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        );
        let partition = |context: &AwsContext| context.iam().partition();
        let custom = |name: &str| Some(RetryPartition::custom(name.to_string()).build());
        // The caller's own account has a partition of its own, not the SDK's default.
        assert_eq!(partition(&base), custom("credrot-iam"));
        let member = base
            .with_sdk_config(base.sdk_config().clone())
            .for_account("222222222222");
        assert_eq!(partition(&member), custom("credrot-iam-222222222222"));
        // Copies of an account's context (new credentials, another region) keep it.
        let copy = member.with_sdk_config(member.sdk_config().clone());
        assert_eq!(partition(&copy), partition(&member));
        assert_ne!(
            partition(
                &base
                    .with_sdk_config(base.sdk_config().clone())
                    .for_account("333333333333")
            ),
            partition(&member)
        );
    }
}
