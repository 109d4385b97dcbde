//! Proving a key works through STS while IAM propagates it, and stopping early when IAM no
//! longer lists it.

use super::{Engine, RotateError, Target};
use crate::aws::{user_name_from_arn, Propagation};
use crate::secret::AccessKey;
use std::time::Duration;
use tracing::{debug, info};

impl Engine {
    /// Prove `key` works and belongs to the user, retrying while IAM propagates it.
    pub(super) async fn verify(&self, target: &Target, key: &AccessKey) -> Result<(), RotateError> {
        let result = self.verify_with_retries(&target.user, key).await;
        self.emit(target, "verify-key", Some(&key.id), None, &result);
        result
    }

    pub(super) async fn verify_with_retries(
        &self,
        user: &str,
        key: &AccessKey,
    ) -> Result<(), RotateError> {
        let mut propagation = Propagation::new(
            self.options.verify_timeout,
            Duration::from_millis(250),
            Duration::from_secs(2),
        );
        loop {
            match self.verifier.caller_arn(key).await {
                Ok(arn) if user_name_from_arn(&arn) == Some(user) => {
                    info!(user, key = %key.id, "the key works: STS answers {arn}");
                    return Ok(());
                }
                Ok(arn) => {
                    return Err(RotateError::WrongIdentity {
                        key_id: key.id.clone(),
                        arn,
                        user: user.to_string(),
                    })
                }
                Err(e)
                    if (e.is_unauthenticated() || e.is_transient()) && propagation.may_retry() =>
                {
                    // A rejected key is usually still propagating; one that IAM no longer
                    // lists never will be, and the stores should not hand it out any longer.
                    if e.is_unauthenticated()
                        && !self
                            .iam
                            .list_keys(user)
                            .await?
                            .iter()
                            .any(|k| k.id == key.id)
                    {
                        return Err(RotateError::KeyGone {
                            key_id: key.id.clone(),
                            user: user.to_string(),
                        });
                    }
                    debug!(user, key = %key.id, "key not accepted yet ({e}); retrying in {:?}", propagation.next_delay());
                    propagation.wait().await;
                }
                Err(source) => {
                    return Err(RotateError::Verify {
                        key_id: key.id.clone(),
                        source,
                    })
                }
            }
        }
    }
}
