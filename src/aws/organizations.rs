//! The AWS Organizations calls that choose the accounts of a run over `[accounts]`.

use super::sdk::AwsContext;
use super::AwsError;
use async_trait::async_trait;
use std::collections::BTreeMap;

/// An account as Organizations lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    /// The 12-digit id.
    pub id: String,
    /// Its name in the Organization.
    pub name: String,
    /// Whether it is ACTIVE (not suspended, closed or being closed).
    pub active: bool,
}

/// What the account selection asks of Organizations.
#[async_trait]
pub trait OrganizationApi: Send + Sync {
    /// Every account of the Organization (all pages).
    async fn list_accounts(&self) -> Result<Vec<OrgAccount>, AwsError>;
    /// The ids of the accounts in `parent` (an OU or root) and in every OU below it.
    async fn accounts_under(&self, parent: &str) -> Result<Vec<String>, AwsError>;
    /// The account's tags.
    async fn account_tags(&self, id: &str) -> Result<BTreeMap<String, String>, AwsError>;
}

/// Organizations through the SDK. Its endpoint is global (us-east-1).
#[derive(Clone, Debug)]
pub struct SdkOrganizations {
    client: aws_sdk_organizations::Client,
}

impl AwsContext {
    /// An Organizations client.
    pub fn organizations(&self) -> SdkOrganizations {
        let config = aws_sdk_organizations::config::Builder::from(
            &self.config_for_region(Some("us-east-1")),
        )
        .interceptor(self.call_counter())
        .interceptor(self.wait_watch())
        .build();
        SdkOrganizations {
            client: aws_sdk_organizations::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl OrganizationApi for SdkOrganizations {
    async fn list_accounts(&self) -> Result<Vec<OrgAccount>, AwsError> {
        use aws_sdk_organizations::types::{AccountState, AccountStatus};
        let mut pages = self.client.list_accounts().into_paginator().send();
        let mut accounts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("organizations:ListAccounts", e))?;
            for account in page.accounts() {
                // `State` replaces `Status`; an Organization may still answer with either.
                let active = match (account.state(), account.status()) {
                    (Some(state), _) => *state == AccountState::Active,
                    (None, Some(status)) => *status == AccountStatus::Active,
                    (None, None) => false,
                };
                accounts.push(OrgAccount {
                    id: account.id().unwrap_or_default().to_string(),
                    name: account.name().unwrap_or_default().to_string(),
                    active,
                });
            }
        }
        Ok(accounts)
    }

    async fn accounts_under(&self, parent: &str) -> Result<Vec<String>, AwsError> {
        let mut ids = Vec::new();
        let mut parents = vec![parent.to_string()];
        while let Some(parent) = parents.pop() {
            let mut accounts = self
                .client
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = accounts.next().await {
                let page =
                    page.map_err(|e| AwsError::from_sdk("organizations:ListAccountsForParent", e))?;
                ids.extend(
                    page.accounts()
                        .iter()
                        .filter_map(|a| a.id().map(str::to_string)),
                );
            }
            let mut units = self
                .client
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = units.next().await {
                let page = page.map_err(|e| {
                    AwsError::from_sdk("organizations:ListOrganizationalUnitsForParent", e)
                })?;
                parents.extend(
                    page.organizational_units()
                        .iter()
                        .filter_map(|u| u.id().map(str::to_string)),
                );
            }
        }
        Ok(ids)
    }

    async fn account_tags(&self, id: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let mut pages = self
            .client
            .list_tags_for_resource()
            .resource_id(id)
            .into_paginator()
            .send();
        let mut tags = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| AwsError::from_sdk("organizations:ListTagsForResource", e))?;
            for tag in page.tags() {
                tags.insert(tag.key().to_string(), tag.value().to_string());
            }
        }
        Ok(tags)
    }
}
