//! `kind = "secrets-manager"`: the key as `{"AccessKeyId": .., "SecretAccessKey": ..}` in one
//! secret, handed over with the staging protocol of Secrets Manager's own rotation:
//!
//! - `write` puts the new value as a version labelled AWSPENDING (consumers reading
//!   AWSCURRENT still get the old key), with a ClientRequestToken derived from the new key
//!   id, so a re-run with the same key is idempotent;
//! - `promote`, after the key is verified, moves AWSCURRENT to that version (Secrets
//!   Manager then labels the old one AWSPREVIOUS) and takes AWSPENDING off;
//! - `restore` undoes only what the last write/promote did: it moves AWSCURRENT (and
//!   AWSPREVIOUS) back, or just takes AWSPENDING off a version that was never promoted.
//!
//! Secrets Manager labels the first version of a secret AWSCURRENT at once, whatever the
//! request says, so a secret credrot creates hands out the new key before promotion. If that
//! run then fails, the secret is deleted (ForceDeleteWithoutRecovery): before the run there
//! was no secret, and a secret left behind would hand out a key that the rollback deletes
//! from IAM. Consumers see "not found", exactly as before the run, and a re-run creates it
//! again.

use super::aws_shared::{creation_tags, description, may_have_landed, store_error};
use super::{KeyDocument, SecretStore, StoreError, WriteContext};
use crate::aws::{AwsError, AwsErrorKind};
use crate::secret::AccessKey;
use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;
use std::collections::HashMap;
use std::time::SystemTime;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";
const PREVIOUS: &str = "AWSPREVIOUS";

/// One secret in AWS Secrets Manager holding one key.
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
    name: String,
    kms_key_id: Option<String>,
    tags: Vec<String>,
    state: Mutex<State>,
}

/// A version of the secret and the key id it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    id: String,
    key_id: String,
}

/// Where the labels were before the last write/promote moved AWSCURRENT.
struct Moved {
    /// The version AWSCURRENT was on (`None`: the secret had no current version).
    current: Option<Version>,
    /// The version AWSPREVIOUS was on.
    previous_label: Option<String>,
    /// The move failed, so whether AWSCURRENT left `current` is unknown: a lost answer, a
    /// server error, or the SDK's retry of a move that had landed (which Secrets Manager
    /// refuses, since the old version no longer has the label). Restore asks the secret.
    uncertain: bool,
}

/// The version the last write put.
struct Staged {
    version: Version,
    /// Whether it carries AWSPENDING, which promote and restore take off.
    pending_label: bool,
}

/// What the store knows of the secret, from its read and its own calls since.
#[derive(Default)]
struct State {
    exists: bool,
    /// Created by this store: a failed run deletes it again (see the module docs).
    created: bool,
    /// The version AWSCURRENT is on.
    current: Option<Version>,
    /// The version AWSPREVIOUS is on.
    previous_label: Option<String>,
    staged: Option<Staged>,
    /// Set when AWSCURRENT was moved by the last write/promote; what restore moves back.
    moved: Option<Moved>,
}

/// The ClientRequestToken (and so the version id) of the version holding `key_id`: the
/// same key always maps to the same token, which makes a repeated put a no-op. Secrets
/// Manager wants 32 to 64 characters; IAM key ids are 16 to 128, and in practice 20.
fn request_token(key_id: &str) -> String {
    let mut token = format!("credrot-rotation-{key_id}");
    while token.len() < 32 {
        token.push('0');
    }
    // Key ids are ASCII, so truncating at a byte index is safe.
    token.truncate(64);
    token
}

/// The version ids carrying each label.
fn label_holders(stages: Option<&HashMap<String, Vec<String>>>) -> HashMap<String, String> {
    let mut holders = HashMap::new();
    for (version, labels) in stages.into_iter().flatten() {
        for label in labels {
            holders.insert(label.clone(), version.clone());
        }
    }
    holders
}

impl SecretsManagerStore {
    /// A store writing the secret `name` through `client`; `kms_key_id` and `tags` are used
    /// when the secret has to be created.
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        name: String,
        kms_key_id: Option<String>,
        tags: Vec<String>,
    ) -> Self {
        SecretsManagerStore {
            client,
            name,
            kms_key_id,
            tags,
            state: Mutex::default(),
        }
    }

    fn aws_error(&self, action: &'static str, err: AwsError) -> StoreError {
        store_error(self.location(), action, err, &[])
    }

    /// Move `label` to `to` and/or off `from`.
    async fn move_label(
        &self,
        label: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(&self.name)
            .version_stage(label)
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:UpdateSecretVersionStage", e))?;
        Ok(())
    }

    async fn create(&self, ctx: &WriteContext) -> Result<(), AwsError> {
        let tags = creation_tags(&self.tags, ctx)
            .into_iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        // No value here: the key goes in with put_secret_value, with its request token.
        self.client
            .create_secret()
            .name(&self.name)
            .set_kms_key_id(self.kms_key_id.clone())
            .description(description("AWS access key", ctx))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:CreateSecret", e))?;
        Ok(())
    }

    async fn delete(&self) -> Result<(), AwsError> {
        self.client
            .delete_secret()
            .secret_id(&self.name)
            .force_delete_without_recovery(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:DeleteSecret", e))?;
        Ok(())
    }

    /// Put AWSPREVIOUS back on `wanted` (or nowhere), wherever Secrets Manager moved it.
    async fn put_previous_label_back(&self, wanted: Option<&str>) -> Result<(), AwsError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(&self.name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:DescribeSecret", e))?;
        let holder = label_holders(described.version_ids_to_stages()).remove(PREVIOUS);
        if holder.as_deref() == wanted {
            return Ok(());
        }
        self.move_label(PREVIOUS, wanted, holder.as_deref()).await
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    fn location(&self) -> String {
        format!("secrets-manager:{}", self.name)
    }

    async fn pending(&self) -> Result<Option<AccessKey>, StoreError> {
        // A run that died between writing AWSPENDING and promoting it leaves the new key
        // here; reading it lets the next run finish the promotion instead of taking the
        // (already verified, so "used") key for someone else's.
        match self
            .client
            .get_secret_value()
            .secret_id(&self.name)
            .version_stage(PENDING)
            .send()
            .await
        {
            Ok(out) => Ok(out.secret_string().and_then(KeyDocument::parse)),
            Err(e) => {
                let err = AwsError::from_sdk("secretsmanager:GetSecretValue", e);
                if err.kind == AwsErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(self.aws_error("read", err))
                }
            }
        }
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        let mut state = self.state.lock().await;
        *state = State::default();
        let described = match self
            .client
            .describe_secret()
            .secret_id(&self.name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = AwsError::from_sdk("secretsmanager:DescribeSecret", e);
                if err.kind == AwsErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(self.aws_error("read", err));
            }
        };
        if let Some(date) = described.deleted_date() {
            // Secrets Manager would refuse every write; stop before IAM is touched.
            let when = SystemTime::try_from(*date)
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_else(|_| "a scheduled date".to_string());
            return Err(self.error(
                "read",
                format!(
                    "the secret is scheduled for deletion (on {when}); cancel that with 'aws secretsmanager restore-secret --secret-id {}', or point the store at another secret",
                    self.name
                ),
            ));
        }
        state.exists = true;
        let holders = label_holders(described.version_ids_to_stages());
        state.previous_label = holders.get(PREVIOUS).cloned();
        if !holders.contains_key(CURRENT) {
            return Ok(None);
        }
        // Ask by label: moto can answer a label-less get with a stale version.
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.name)
            .version_stage(CURRENT)
            .send()
            .await
            .map_err(|e| {
                self.aws_error(
                    "read",
                    AwsError::from_sdk("secretsmanager:GetSecretValue", e),
                )
            })?;
        let key = out
            .secret_string()
            .and_then(KeyDocument::parse)
            .ok_or_else(|| {
                self.error(
                    "read",
                    "its AWSCURRENT value is not a key document {\"AccessKeyId\": .., \"SecretAccessKey\": ..}; point the store at another secret or replace the value",
                )
            })?;
        state.current = Some(Version {
            id: out
                .version_id()
                .map(str::to_string)
                .or_else(|| holders.get(CURRENT).cloned())
                .unwrap_or_default(),
            key_id: key.id.clone(),
        });
        Ok(Some(key))
    }

    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.staged = None;
        state.moved = None;
        if !state.exists {
            self.create(ctx)
                .await
                .map_err(|e| self.aws_error("write", e))?;
            state.exists = true;
            state.created = true;
        }
        let token = request_token(&key.id);
        let mut bytes = KeyDocument::to_wiped(key, false);
        // Moved, not copied, into the string the SDK call takes.
        let value =
            Zeroizing::new(String::from_utf8(std::mem::take(&mut *bytes)).expect("JSON is UTF-8"));
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.name)
            .secret_string(value.as_str())
            .client_request_token(&token)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e));
        let out = match put {
            Ok(out) => out,
            Err(err) => {
                if may_have_landed(&err) {
                    // The token is the version id, so restore can find the version anyway.
                    state.staged = Some(Staged {
                        version: Version {
                            id: token,
                            key_id: key.id.clone(),
                        },
                        pending_label: true,
                    });
                }
                return Err(store_error(self.location(), "write", err, &[key.expose()]));
            }
        };
        let version = Version {
            id: out.version_id().unwrap_or(&token).to_string(),
            key_id: key.id.clone(),
        };
        let labels = out.version_stages();
        if labels.iter().any(|l| l == CURRENT) && state.current.as_ref() != Some(&version) {
            // The secret's first version: Secrets Manager made it AWSCURRENT already.
            state.moved = Some(Moved {
                current: state.current.take(),
                previous_label: state.previous_label.clone(),
                uncertain: false,
            });
            state.current = Some(version.clone());
        }
        state.staged = Some(Staged {
            version,
            pending_label: labels.is_empty() || labels.iter().any(|l| l == PENDING),
        });
        Ok(())
    }

    async fn promote(&self, key: &AccessKey) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let Some(staged) = &state.staged else {
            return match &state.current {
                Some(current) if current.key_id == key.id => Ok(()),
                _ => Err(self.error(
                    "promote",
                    format!("key {} was not written to the secret first", key.id),
                )),
            };
        };
        if staged.version.key_id != key.id {
            return Err(self.error(
                "promote",
                format!(
                    "the staged version holds key {}, not {}",
                    staged.version.key_id, key.id
                ),
            ));
        }
        let version = staged.version.clone();
        let pending_label = staged.pending_label;
        if state.current.as_ref() != Some(&version) {
            let old = state.current.clone();
            let moved = self
                .move_label(
                    CURRENT,
                    Some(&version.id),
                    old.as_ref().map(|v| v.id.as_str()),
                )
                .await;
            state.moved = Some(Moved {
                current: old.clone(),
                previous_label: state.previous_label.clone(),
                uncertain: moved.is_err(),
            });
            if let Err(e) = moved {
                // Consumers may be reading the new key already; restore finds out.
                state.current = Some(version.clone());
                return Err(self.aws_error("promote", e));
            }
            // Secrets Manager labels the version AWSCURRENT left AWSPREVIOUS.
            state.previous_label = old.map(|v| v.id);
            state.current = Some(version.clone());
        }
        if pending_label {
            self.move_label(PENDING, None, Some(&version.id))
                .await
                .map_err(|e| self.aws_error("promote", e))?;
        }
        state.staged = None;
        Ok(())
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(moved) = state.moved.take() {
            let now = state
                .current
                .clone()
                .expect("AWSCURRENT was moved to a version");
            if moved.uncertain
                && !self.current_is(&now.id).await.map_err(|e| {
                    // Asked again by the next run; until then the store counts as not restored.
                    state.moved = Some(Moved {
                        current: moved.current.clone(),
                        previous_label: moved.previous_label.clone(),
                        uncertain: true,
                    });
                    self.aws_error("restore", e)
                })?
            {
                // The failed move never happened: AWSCURRENT is where it was.
                state.current = moved.current;
                state.previous_label = moved.previous_label;
                return self.finish_restore(&mut state, previous).await;
            }
            match moved.current {
                Some(old) => {
                    self.move_label(CURRENT, Some(&old.id), Some(&now.id))
                        .await
                        .map_err(|e| self.aws_error("restore", e))?;
                    self.put_previous_label_back(moved.previous_label.as_deref())
                        .await
                        .map_err(|e| self.aws_error("restore", e))?;
                    state.current = Some(old);
                    state.previous_label = moved.previous_label;
                }
                None if state.created => {
                    self.delete()
                        .await
                        .map_err(|e| self.aws_error("restore", e))?;
                    *state = State::default();
                    return Ok(());
                }
                None => {
                    // Put the record back so a second restore reports the same.
                    state.moved = Some(moved);
                    return Err(self.error(
                        "restore",
                        format!(
                            "the secret had no AWSCURRENT version before this run, and Secrets Manager cannot take AWSCURRENT off its only version, so it hands out key {}",
                            now.key_id
                        ),
                    ));
                }
            }
        }
        self.finish_restore(&mut state, previous).await
    }
}

impl SecretsManagerStore {
    /// Whether AWSCURRENT is on `version_id` now.
    async fn current_is(&self, version_id: &str) -> Result<bool, AwsError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(&self.name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:DescribeSecret", e))?;
        Ok(label_holders(described.version_ids_to_stages())
            .get(CURRENT)
            .is_some_and(|v| v == version_id))
    }

    /// The rest of a restore once AWSCURRENT is back: take AWSPENDING off what was staged,
    /// delete a secret this run created for nothing, and check what it hands out.
    async fn finish_restore(
        &self,
        state: &mut State,
        previous: Option<&AccessKey>,
    ) -> Result<(), StoreError> {
        if let Some(staged) = &state.staged {
            if staged.pending_label {
                let id = staged.version.id.clone();
                match self.move_label(PENDING, None, Some(&id)).await {
                    Ok(()) => {}
                    // A write that may have landed may also not have: nothing to take off.
                    Err(e) if e.kind == AwsErrorKind::NotFound => {}
                    Err(e) => return Err(self.aws_error("restore", e)),
                }
            }
            state.staged = None;
        }
        if state.created && previous.is_none() && state.current.is_none() {
            self.delete()
                .await
                .map_err(|e| self.aws_error("restore", e))?;
            *state = State::default();
            return Ok(());
        }
        let holds = state.current.as_ref().map(|v| v.key_id.as_str());
        if holds != previous.map(|k| k.id.as_str()) {
            return Err(self.error(
                "restore",
                format!(
                    "AWSCURRENT holds key {} but key {} was to be put back; set AWSCURRENT by hand",
                    holds.unwrap_or("(none)"),
                    previous.map(|k| k.id.as_str()).unwrap_or("(none)")
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_deterministic_and_the_right_length() {
        let token = request_token("AKIAIOSFODNN7EXAMPLE");
        assert_eq!(token, request_token("AKIAIOSFODNN7EXAMPLE"));
        assert_ne!(token, request_token("AKIAIOSFODNN7EXAMPLF"));
        for id in ["AKIA", "AKIAIOSFODNN7EXAMPLE", &"A".repeat(128)] {
            let len = request_token(id).len();
            assert!((32..=64).contains(&len), "{id}: {len}");
        }
    }

    #[test]
    fn label_holders_maps_each_label_to_its_version() {
        let stages = HashMap::from([
            ("v1".to_string(), vec![PREVIOUS.to_string()]),
            (
                "v2".to_string(),
                vec![CURRENT.to_string(), PENDING.to_string()],
            ),
        ]);
        let holders = label_holders(Some(&stages));
        assert_eq!(holders[CURRENT], "v2");
        assert_eq!(holders[PENDING], "v2");
        assert_eq!(holders[PREVIOUS], "v1");
        assert!(label_holders(None).is_empty());
    }
}
