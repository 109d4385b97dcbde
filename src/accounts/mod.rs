//! Runs over many AWS accounts (`[accounts]`): which accounts a run covers, and the AWS
//! context of each, signing as the role assumed there. The rotation itself is the same in
//! every account; state stays in each account's IAM tags and stores.

mod select;
#[cfg(test)]
mod tests;

pub use select::select;

use crate::aws::{AwsContext, AwsError, RoleRequest};
use crate::config::AccountsConfig;
use serde::Serialize;

/// One account of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The 12-digit id (`{account}`).
    pub id: String,
    /// Its name (`{account_name}`): from Organizations, `[accounts] names`, else the id.
    pub name: String,
}

/// An account the run could not work in (its role, its users, or its stores' checks).
#[derive(Debug, Clone)]
pub struct AccountFailure {
    /// The account.
    pub account: Account,
    /// Why, and what to do.
    pub error: String,
}

/// Why a run over accounts could not start, or one account could not be worked on.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Organizations could not list the accounts.
    #[error("cannot list the Organization's accounts ({0}); with organization = true the caller needs organizations:ListAccounts (and ListAccountsForParent, ListOrganizationalUnitsForParent, ListTagsForResource for OU and tag filters), in the management account or a delegated administrator account; or list the accounts in [accounts] ids")]
    Organization(AwsError),
    /// `--account` names an account the configuration does not select.
    #[error("--account {id} is not one of the accounts of [accounts] ({selected}); name one of those, or add it to [accounts] ids")]
    NotSelected {
        /// The account asked for.
        id: String,
        /// What the configuration selects.
        selected: String,
    },
    /// The filters left no account.
    #[error("[accounts] selects no account{why}; check ids, include/exclude, include_ous/exclude_ous and the tag filters")]
    Empty {
        /// What was left out, for the message.
        why: String,
    },
    /// The role could not be assumed in one account; the others go on.
    #[error("cannot assume {role_arn}: {source}; check that the role exists in account {account}, that its trust policy lets {caller} assume it{hint}")]
    Assume {
        /// The account.
        account: String,
        /// The role.
        role_arn: String,
        /// Who asked.
        caller: String,
        /// What else to check.
        hint: &'static str,
        /// What STS said.
        source: AwsError,
    },
}

impl AccountsError {
    /// Whether it is the configuration's or the command line's fault (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::NotSelected { .. } | Self::Empty { .. })
    }
}

/// The identity a run signs as, from STS `GetCallerIdentity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The ARN.
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// The caller's account.
    pub account: String,
    /// The user name, or the session name of an assumed role.
    pub name: String,
}

impl Caller {
    /// Read an IAM or STS ARN: `arn:aws:iam::123456789012:user/path/alice`,
    /// `arn:aws:sts::123456789012:assumed-role/ROLE/SESSION`.
    pub fn from_arn(arn: &str) -> Option<Caller> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, partition, _, _, account, resource] = parts.as_slice() else {
            return None;
        };
        if !crate::config::is_account_id(account) {
            return None;
        }
        Some(Caller {
            arn: arn.to_string(),
            partition: partition.to_string(),
            account: account.to_string(),
            name: resource.rsplit('/').next().unwrap_or(resource).to_string(),
        })
    }

    /// `SourceIdentity` for the caller: its name, with what STS refuses replaced (2 to
    /// 64 of letters, digits and `_+=,.@-`).
    pub fn source_identity(&self) -> String {
        let mut id: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        while id.len() < 2 {
            id.push('_');
        }
        id
    }
}

/// The AWS context of `account`: the caller's own in the caller's account (a role there
/// is not needed, and AWS would require its trust policy to name the caller), else the
/// `[accounts]` role assumed there, the session named `run_id`.
pub async fn context_for(
    base: &AwsContext,
    caller: &Caller,
    config: &AccountsConfig,
    account: &Account,
    run_id: &str,
) -> Result<AwsContext, AccountsError> {
    if account.id == caller.account {
        return Ok(base.with_sdk_config(base.config_for_region(config.region.as_deref())));
    }
    let role_arn = format!(
        "arn:{}:iam::{}:role/{}",
        caller.partition, account.id, config.role_name
    );
    let request = RoleRequest {
        role_arn: role_arn.clone(),
        session_name: run_id.chars().take(64).collect(),
        external_id: config.external_id.clone(),
        duration: config.session_duration,
        source_identity: config.source_identity.then(|| caller.source_identity()),
    };
    base.assume_role(request, config.region.as_deref())
        .await
        .map_err(|source| AccountsError::Assume {
            account: account.id.clone(),
            role_arn,
            caller: caller.arn.clone(),
            hint: match (config.source_identity, config.external_id.is_some()) {
                (true, true) => ", that it allows sts:SetSourceIdentity (or set [accounts] source_identity = false) and that external_id matches",
                (true, false) => " and that it allows sts:SetSourceIdentity (or set [accounts] source_identity = false)",
                (false, true) => " and that external_id matches its sts:ExternalId condition",
                (false, false) => "",
            },
            source,
        })
}

/// Whether a section scoped to `scope` (empty: everywhere) runs in `account`.
pub fn runs_in(scope: &[String], account: Option<&Account>) -> bool {
    match account {
        None => true,
        Some(a) => scope.is_empty() || scope.contains(&a.id),
    }
}
