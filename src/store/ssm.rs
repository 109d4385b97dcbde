//! `kind = "ssm"`: the key as two SecureString parameters, `{prefix}/access_key_id` and
//! `{prefix}/secret_access_key`, overwritten in place so that the parameter history keeps
//! every earlier key.

use super::aws_shared::{creation_tags, description, may_have_landed, store_error};
use super::{SecretStore, StoreError, WriteContext};
use crate::aws::AwsError;
use crate::secret::AccessKey;
use async_trait::async_trait;
use aws_sdk_ssm::types::{ParameterType, Tag};
use tokio::sync::Mutex;
use tracing::warn;

/// The parameter names under the prefix, in the order they are written.
const NAMES: [&str; 2] = ["access_key_id", "secret_access_key"];
/// What each parameter holds, for descriptions.
const WHAT: [&str; 2] = ["AWS access key id", "AWS secret access key"];

/// Two SecureString parameters in SSM Parameter Store holding one key.
pub struct SsmStore {
    client: aws_sdk_ssm::Client,
    prefix: String,
    kms_key_id: Option<String>,
    tags: Vec<String>,
    state: Mutex<State>,
}

/// What the store knows of its parameters; indexes follow [`NAMES`].
#[derive(Default)]
struct State {
    /// Which parameters exist, as last read or written: a new one is created with tags, an
    /// existing one is overwritten (SSM refuses tags together with Overwrite).
    exists: [bool; 2],
    /// Which parameters the last write changed (or may have), i.e. what restore undoes.
    touched: [bool; 2],
}

impl SsmStore {
    /// A store writing under `prefix` (no trailing `/`) through `client`.
    pub fn new(
        client: aws_sdk_ssm::Client,
        prefix: String,
        kms_key_id: Option<String>,
        tags: Vec<String>,
    ) -> Self {
        SsmStore {
            client,
            prefix,
            kms_key_id,
            tags,
            state: Mutex::default(),
        }
    }

    fn name(&self, index: usize) -> String {
        format!("{}/{}", self.prefix, NAMES[index])
    }

    /// A store error; `secret` is the secret the failed call carried, if any.
    fn aws_error(&self, action: &'static str, err: AwsError, secret: Option<&str>) -> StoreError {
        store_error(self.location(), action, err, secret.as_slice())
    }

    /// Write one parameter: create it (with tags) or overwrite it (history keeps the old
    /// version).
    async fn put(
        &self,
        index: usize,
        value: &str,
        create: bool,
        ctx: &WriteContext,
    ) -> Result<(), AwsError> {
        let tags = create.then(|| {
            creation_tags(&self.tags, ctx)
                .into_iter()
                .map(|(key, value)| {
                    Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .expect("key and value are set")
                })
                .collect()
        });
        self.client
            .put_parameter()
            .name(self.name(index))
            .value(value)
            .r#type(ParameterType::SecureString)
            .set_key_id(self.kms_key_id.clone())
            .description(description(WHAT[index], ctx))
            .overwrite(!create)
            .set_tags(tags)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ssm:PutParameter", e))?;
        Ok(())
    }
}

#[async_trait]
impl SecretStore for SsmStore {
    fn location(&self) -> String {
        format!("ssm:{}", self.prefix)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        let names = [self.name(0), self.name(1)];
        let out = self
            .client
            .get_parameters()
            .names(&names[0])
            .names(&names[1])
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                self.aws_error("read", AwsError::from_sdk("ssm:GetParameters", e), None)
            })?;
        let value = |name: &str| {
            out.parameters()
                .iter()
                .find(|p| p.name() == Some(name))
                .and_then(|p| p.value())
        };
        let (id, secret) = (value(&names[0]), value(&names[1]));
        self.state.lock().await.exists = [id.is_some(), secret.is_some()];
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Some(AccessKey::new(id, secret))),
            (None, None) => Ok(None),
            _ => {
                // Half a key (an interrupted write, or a hand edit) hands out nothing usable;
                // the next write replaces both parameters.
                warn!(store = %self.location(), "only one of the two parameters exists; treating the store as empty");
                Ok(None)
            }
        }
    }

    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.touched = [false; 2];
        for (index, value) in [key.id.as_str(), key.expose()].into_iter().enumerate() {
            let create = !state.exists[index];
            match self.put(index, value, create, ctx).await {
                Ok(()) => {
                    state.exists[index] = true;
                    state.touched[index] = true;
                }
                Err(err) => {
                    if may_have_landed(&err) {
                        state.exists[index] = true;
                        state.touched[index] = true;
                    }
                    return Err(self.aws_error("write", err, Some(key.expose())));
                }
            }
        }
        Ok(())
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let touched: Vec<usize> = (0..NAMES.len()).filter(|&i| state.touched[i]).collect();
        if touched.is_empty() {
            return Ok(());
        }
        match previous {
            Some(key) => {
                let values = [key.id.as_str(), key.expose()];
                for &index in &touched {
                    self.put(index, values[index], false, ctx)
                        .await
                        .map_err(|e| self.aws_error("restore", e, Some(key.expose())))?;
                }
            }
            None => {
                let names: Vec<String> = touched.iter().map(|&i| self.name(i)).collect();
                // Parameters that are already gone are reported back, not failed on.
                self.client
                    .delete_parameters()
                    .set_names(Some(names))
                    .send()
                    .await
                    .map_err(|e| {
                        self.aws_error(
                            "restore",
                            AwsError::from_sdk("ssm:DeleteParameters", e),
                            None,
                        )
                    })?;
                for &index in &touched {
                    state.exists[index] = false;
                }
            }
        }
        state.touched = [false; 2];
        Ok(())
    }
}
