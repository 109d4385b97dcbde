use super::*;
use crate::aws::{AwsError, OrgAccount, OrganizationApi};
use crate::config::{AccountsConfig, OrganizationFilter};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

/// An Organization: accounts, the OU tree (parent → children) and tags.
#[derive(Default)]
struct FakeOrg {
    accounts: Vec<OrgAccount>,
    children: BTreeMap<String, Vec<String>>,
    tags: BTreeMap<String, BTreeMap<String, String>>,
    fail: bool,
}

#[async_trait]
impl OrganizationApi for FakeOrg {
    async fn list_accounts(&self) -> Result<Vec<OrgAccount>, AwsError> {
        if self.fail {
            return Err(AwsError {
                operation: "organizations:ListAccounts",
                code: Some("AccessDeniedException".into()),
                message: "not allowed".into(),
                kind: crate::aws::AwsErrorKind::AccessDenied,
            });
        }
        Ok(self.accounts.clone())
    }
    async fn accounts_under(&self, parent: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut todo = vec![parent.to_string()];
        while let Some(p) = todo.pop() {
            for child in self.children.get(&p).into_iter().flatten() {
                if child.starts_with("ou-") {
                    todo.push(child.clone());
                } else {
                    out.push(child.clone());
                }
            }
        }
        Ok(out)
    }
    async fn account_tags(&self, id: &str) -> Result<BTreeMap<String, String>, AwsError> {
        Ok(self.tags.get(id).cloned().unwrap_or_default())
    }
}

fn account(id: &str, name: &str, active: bool) -> OrgAccount {
    OrgAccount {
        id: id.into(),
        name: name.into(),
        active,
    }
}

fn config(ids: &[&str], organization: Option<OrganizationFilter>) -> AccountsConfig {
    AccountsConfig {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        names: BTreeMap::from([("111111111111".to_string(), "prod".to_string())]),
        organization,
        role_name: "credrot".into(),
        external_id: None,
        session_duration: Duration::from_secs(3600),
        region: None,
        concurrency: 4,
        max_in_flight: 64,
        source_identity: true,
    }
}

fn org() -> FakeOrg {
    FakeOrg {
        accounts: vec![
            account("222222222222", "staging", true),
            account("333333333333", "dev", true),
            account("444444444444", "closed", false),
            account("555555555555", "sandbox", true),
        ],
        children: BTreeMap::from([
            ("r-root".into(), vec!["ou-a".into(), "555555555555".into()]),
            ("ou-a".into(), vec!["222222222222".into(), "ou-b".into()]),
            ("ou-b".into(), vec!["333333333333".into()]),
        ]),
        tags: BTreeMap::from([(
            "333333333333".into(),
            BTreeMap::from([("team".into(), "platform".into())]),
        )]),
        fail: false,
    }
}

fn ids(accounts: &[Account]) -> Vec<&str> {
    accounts.iter().map(|a| a.id.as_str()).collect()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn listed_ids_are_taken_as_written_with_their_names_and_no_organizations_call() {
    let org = FakeOrg {
        fail: true,
        ..FakeOrg::default()
    };
    let got = run(select(
        &config(&["111111111111", "999999999999"], None),
        &org,
        &[],
    ))
    .unwrap();
    assert_eq!(ids(&got), ["111111111111", "999999999999"]);
    assert_eq!(got[0].name, "prod");
    assert_eq!(got[1].name, "999999999999");
}

#[test]
fn the_organization_gives_its_active_accounts_only() {
    let got = run(select(
        &config(&[], Some(OrganizationFilter::default())),
        &org(),
        &[],
    ))
    .unwrap();
    assert_eq!(ids(&got), ["222222222222", "333333333333", "555555555555"]);
    assert_eq!(got[0].name, "staging");
}

#[test]
fn an_ou_filter_takes_the_accounts_of_child_ous_too_and_exclusions_win() {
    let filter = OrganizationFilter {
        include_ous: vec!["ou-a".into()],
        exclude: vec!["222222222222".into()],
        ..OrganizationFilter::default()
    };
    let got = run(select(&config(&[], Some(filter)), &org(), &[])).unwrap();
    assert_eq!(ids(&got), ["333333333333"]);
    let filter = OrganizationFilter {
        exclude_ous: vec!["ou-b".into()],
        ..OrganizationFilter::default()
    };
    let got = run(select(&config(&[], Some(filter)), &org(), &[])).unwrap();
    assert_eq!(ids(&got), ["222222222222", "555555555555"]);
}

#[test]
fn tag_filters_need_every_included_tag_and_none_excluded() {
    let include = OrganizationFilter {
        include_tags: BTreeMap::from([("team".into(), "platform".into())]),
        ..OrganizationFilter::default()
    };
    let got = run(select(&config(&[], Some(include)), &org(), &[])).unwrap();
    assert_eq!(ids(&got), ["333333333333"]);
    let exclude = OrganizationFilter {
        exclude_tags: BTreeMap::from([("team".into(), "platform".into())]),
        ..OrganizationFilter::default()
    };
    let got = run(select(&config(&[], Some(exclude)), &org(), &[])).unwrap();
    assert_eq!(ids(&got), ["222222222222", "555555555555"]);
}

#[test]
fn listed_and_organization_accounts_merge_once_and_account_flags_narrow_them() {
    let cfg = config(
        &["222222222222", "111111111111"],
        Some(OrganizationFilter::default()),
    );
    let got = run(select(&cfg, &org(), &[])).unwrap();
    assert_eq!(
        ids(&got),
        [
            "111111111111",
            "222222222222",
            "333333333333",
            "555555555555"
        ]
    );
    let got = run(select(&cfg, &org(), &["333333333333".into()])).unwrap();
    assert_eq!(ids(&got), ["333333333333"]);
}

#[test]
fn an_account_flag_outside_the_selection_and_an_empty_selection_are_usage_errors() {
    let cfg = config(&["111111111111"], None);
    let e = run(select(&cfg, &org(), &["222222222222".into()])).unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("--account 222222222222"), "{e}");
    let filter = OrganizationFilter {
        include: vec!["444444444444".into()],
        ..OrganizationFilter::default()
    };
    let e = run(select(&config(&[], Some(filter)), &org(), &[])).unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("left out all 4 accounts"), "{e}");
}

#[test]
fn organizations_refusing_the_listing_says_which_permission() {
    let org = FakeOrg {
        fail: true,
        ..org()
    };
    let e = run(select(
        &config(&[], Some(OrganizationFilter::default())),
        &org,
        &[],
    ))
    .unwrap_err();
    assert!(!e.is_usage());
    assert!(e.to_string().contains("organizations:ListAccounts"), "{e}");
}

#[test]
fn callers_are_read_from_user_and_assumed_role_arns() {
    let user = Caller::from_arn("arn:aws:iam::123456789012:user/ops/alice").unwrap();
    assert_eq!(
        (
            user.partition.as_str(),
            user.account.as_str(),
            user.name.as_str()
        ),
        ("aws", "123456789012", "alice")
    );
    let role = Caller::from_arn("arn:aws-us-gov:sts::123456789012:assumed-role/ci/run 42").unwrap();
    assert_eq!(role.partition, "aws-us-gov");
    assert_eq!(role.source_identity(), "run_42");
    assert!(Caller::from_arn("arn:aws:iam::12:user/x").is_none());
}

#[test]
fn a_section_without_accounts_runs_everywhere_and_a_scoped_one_only_there() {
    let a = Account {
        id: "222222222222".into(),
        name: "x".into(),
    };
    assert!(runs_in(&[], Some(&a)));
    assert!(runs_in(&["222222222222".into()], Some(&a)));
    assert!(!runs_in(&["333333333333".into()], Some(&a)));
    assert!(runs_in(&["333333333333".into()], None));
}
