//! `kind = "ssm"`: the key as two SecureString parameters, `{prefix}/access_key_id` and
//! `{prefix}/secret_access_key`, overwritten in place so that the parameter history keeps
//! every earlier key.
//!
//! SSM has no call that writes two parameters at once, so a run killed between the writes
//! leaves the id of one key beside the secret of another. A third parameter,
//! `{prefix}/key_fingerprint`, is written last and names the pair the other two must hold:
//! whatever write was interrupted, the three disagree and the store reads as broken, to be
//! repaired from a verified key, instead of handing out a pair that cannot work.

use super::aws_shared::{creation_tags, description, may_have_landed, store_error};
use super::{Holding, SecretStore, StoreError, WriteContext};
use crate::aws::AwsError;
use crate::secret::AccessKey;
use async_trait::async_trait;
use aws_sdk_ssm::types::{ParameterType, Tag};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// The parameter names under the prefix, in the order they are written: the fingerprint
/// last, so that it matches the other two only once both are written.
const NAMES: [&str; 3] = ["secret_access_key", "access_key_id", "key_fingerprint"];
/// What each parameter holds, for descriptions.
const WHAT: [&str; 3] = [
    "AWS secret access key",
    "AWS access key id",
    "Fingerprint of the key pair in the two parameters beside this one",
];
const SECRET: usize = 0;
const ID: usize = 1;
const FINGERPRINT: usize = 2;

/// `id:` and a truncated SHA-256 of the pair: enough to tell which pair the parameters
/// belong to, and nothing an attacker could turn back into the secret.
fn fingerprint(key: &AccessKey) -> String {
    let mut hash = Sha256::new();
    hash.update(b"credrot-ssm-pair\0");
    hash.update(key.id.as_bytes());
    hash.update(b"\0");
    hash.update(key.expose().as_bytes());
    format!("{}:{}", key.id, hex::encode(&hash.finalize()[..16]))
}

/// The three values written for `key` (`print` is its [`fingerprint`]), indexed like
/// [`NAMES`]; borrowed, so the secret is not copied out of its zeroizing box.
fn values<'a>(key: &'a AccessKey, print: &'a str) -> [&'a str; 3] {
    let mut out = [""; 3];
    out[SECRET] = key.expose();
    out[ID] = &key.id;
    out[FINGERPRINT] = print;
    out
}

/// Judge what the three parameters hold. Parameters written before the fingerprint
/// existed (or by hand) have none: they are taken as they are.
fn judge(id: Option<&str>, secret: Option<&str>, print: Option<&str>) -> Holding {
    match (id, secret) {
        (None, None) => Holding::Empty,
        (Some(id), Some(secret)) => {
            let key = AccessKey::new(id, secret);
            match print {
                Some(print) if print != fingerprint(&key) => Holding::Broken {
                    key_id: Some(key.id),
                    reason: "access_key_id and secret_access_key belong to different keys (a write was interrupted)".into(),
                },
                _ => Holding::Key(key),
            }
        }
        (id, _) => Holding::Broken {
            key_id: id.map(str::to_string),
            reason: "only one of access_key_id and secret_access_key exists".into(),
        },
    }
}

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
    exists: [bool; 3],
    /// Which parameters the last write changed (or may have), i.e. what restore undoes.
    touched: [bool; 3],
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
        Ok(self.observe().await?.key().cloned())
    }

    async fn observe(&self) -> Result<Holding, StoreError> {
        let names = NAMES.map(|n| format!("{}/{n}", self.prefix));
        let out = self
            .client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                self.aws_error("read", AwsError::from_sdk("ssm:GetParameters", e), None)
            })?;
        let value = |index: usize| {
            out.parameters()
                .iter()
                .find(|p| p.name() == Some(names[index].as_str()))
                .and_then(|p| p.value())
        };
        self.state.lock().await.exists = [0, 1, 2].map(|i| value(i).is_some());
        Ok(judge(value(ID), value(SECRET), value(FINGERPRINT)))
    }

    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.touched = [false; 3];
        let print = fingerprint(key);
        for (index, value) in values(key, &print).into_iter().enumerate() {
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
                let print = fingerprint(key);
                let values = values(key, &print);
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
        state.touched = [false; 3];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_judged_by_its_fingerprint() {
        let old = AccessKey::new("AKIAOLD", "old-secret");
        let new = AccessKey::new("AKIANEW", "new-secret");
        let whole = judge(
            Some("AKIAOLD"),
            Some("old-secret"),
            Some(&fingerprint(&old)),
        );
        assert_eq!(whole, Holding::Key(old.clone()));
        // Killed after the secret was written: old id, new secret, old fingerprint.
        let torn = judge(
            Some("AKIAOLD"),
            Some("new-secret"),
            Some(&fingerprint(&old)),
        );
        assert!(matches!(torn, Holding::Broken { key_id: Some(ref id), .. } if id == "AKIAOLD"));
        // Killed before the fingerprint: a whole new pair, but unconfirmed: repaired too.
        let unconfirmed = judge(
            Some("AKIANEW"),
            Some("new-secret"),
            Some(&fingerprint(&old)),
        );
        assert!(matches!(unconfirmed, Holding::Broken { .. }));
        assert_eq!(
            judge(Some("AKIANEW"), Some("new-secret"), None),
            Holding::Key(new.clone()),
            "parameters without a fingerprint (older credrot, or by hand) are taken as they are"
        );
        assert!(matches!(
            judge(None, Some("s"), None),
            Holding::Broken { key_id: None, .. }
        ));
        assert_eq!(judge(None, None, Some("x")), Holding::Empty);
    }

    #[test]
    fn the_fingerprint_does_not_contain_the_secret() {
        let key = AccessKey::new("AKIAX", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY");
        let print = fingerprint(&key);
        assert!(print.starts_with("AKIAX:") && !print.contains(key.expose()));
        assert_ne!(print, fingerprint(&AccessKey::new("AKIAX", "other")));
    }
}
