//! Which accounts `[accounts]` selects: the listed ids, and the Organization's ACTIVE
//! accounts that pass the filters, narrowed by `--account`.

use super::{Account, AccountsError};
use crate::aws::OrganizationApi;
use crate::config::AccountsConfig;
use std::collections::BTreeSet;

/// The accounts of a run, in id order. `only` (the `--account` flags) narrows them; each
/// must be among them.
pub async fn select(
    config: &AccountsConfig,
    org: &dyn OrganizationApi,
    only: &[String],
) -> Result<Vec<Account>, AccountsError> {
    let mut accounts: Vec<Account> = config
        .ids
        .iter()
        .map(|id| Account {
            id: id.clone(),
            name: config.names.get(id).cloned().unwrap_or_else(|| id.clone()),
        })
        .collect();
    let mut left_out = 0;
    if let Some(filter) = &config.organization {
        let listed = org
            .list_accounts()
            .await
            .map_err(AccountsError::Organization)?;
        let included_ous = accounts_in(org, &filter.include_ous).await?;
        let excluded_ous = accounts_in(org, &filter.exclude_ous).await?;
        for account in listed {
            let mut take = account.active
                && (filter.include.is_empty() || filter.include.contains(&account.id))
                && !filter.exclude.contains(&account.id)
                && (filter.include_ous.is_empty() || included_ous.contains(&account.id))
                && !excluded_ous.contains(&account.id);
            if take && !(filter.include_tags.is_empty() && filter.exclude_tags.is_empty()) {
                let tags = org
                    .account_tags(&account.id)
                    .await
                    .map_err(AccountsError::Organization)?;
                take = filter
                    .include_tags
                    .iter()
                    .all(|(k, v)| tags.get(k) == Some(v))
                    && !filter
                        .exclude_tags
                        .iter()
                        .any(|(k, v)| tags.get(k) == Some(v));
            }
            if !take {
                left_out += 1;
                continue;
            }
            if !accounts.iter().any(|a| a.id == account.id) {
                accounts.push(Account {
                    id: account.id,
                    name: account.name,
                });
            }
        }
    }
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    if accounts.is_empty() {
        return Err(AccountsError::Empty {
            why: match left_out {
                0 => String::new(),
                n => format!(
                    " (the filters left out all {} of the Organization)",
                    crate::duration::count(n, "account")
                ),
            },
        });
    }
    for id in only {
        if !accounts.iter().any(|a| &a.id == id) {
            return Err(AccountsError::NotSelected {
                id: id.clone(),
                selected: accounts
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if !only.is_empty() {
        accounts.retain(|a| only.contains(&a.id));
    }
    Ok(accounts)
}

/// The accounts in `ous` and the OUs below them.
async fn accounts_in(
    org: &dyn OrganizationApi,
    ous: &[String],
) -> Result<BTreeSet<String>, AccountsError> {
    let mut ids = BTreeSet::new();
    for ou in ous {
        ids.extend(
            org.accounts_under(ou)
                .await
                .map_err(AccountsError::Organization)?,
        );
    }
    Ok(ids)
}
