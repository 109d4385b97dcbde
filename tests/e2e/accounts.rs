//! One run over several AWS accounts (`[accounts]`), on one moto server with IAM auth on:
//! the harness creates, in each member account, the role credrot assumes (through
//! `x-moto-account-id` during the unauthenticated bootstrap), then everything else signs
//! as the management account's admin or as that role.

use super::harness::*;
use aws_credential_types::Credentials;
use std::path::Path;

const ROLE: &str = "credrot-rotation";
const PATH: &str = "/PSKServiceAccounts/";
const USERS: [&str; 2] = ["alice", "bob"];

/// What the bootstrap of one member account costs: CreateRole and PutRolePolicy.
const REQUESTS_PER_ACCOUNT: u32 = 2;

/// Create the role in `account`, unauthenticated (bootstrap window).
fn create_role(moto: &Moto, account: &str) {
    let iam = moto.iam();
    let header = account.to_string();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":["sts:AssumeRole","sts:SetSourceIdentity"]}]}"#;
    let allow =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    moto.rt.block_on(async {
        let h = header.clone();
        iam.create_role()
            .role_name(ROLE)
            .assume_role_policy_document(trust)
            .customize()
            .mutate_request(move |r| {
                r.headers_mut().insert("x-moto-account-id", h.clone());
            })
            .send()
            .await
            .unwrap();
        let h = header.clone();
        iam.put_role_policy()
            .role_name(ROLE)
            .policy_name("allow-all")
            .policy_document(allow)
            .customize()
            .mutate_request(move |r| {
                r.headers_mut().insert("x-moto-account-id", h.clone());
            })
            .send()
            .await
            .unwrap();
    });
}

/// A moto server whose member `accounts` each have the role, and the users under PATH
/// with one key each.
fn start(accounts: &[&str]) -> Moto {
    let moto = Moto::start_with_extra_bootstrap(REQUESTS_PER_ACCOUNT * accounts.len() as u32);
    for account in accounts {
        create_role(&moto, account);
    }
    for account in accounts {
        let iam = member_iam(&moto, account);
        moto.rt.block_on(async {
            for user in USERS {
                iam.create_user()
                    .user_name(user)
                    .path(PATH)
                    .send()
                    .await
                    .unwrap();
                iam.create_access_key()
                    .user_name(user)
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    moto
}

/// SDK configuration signing as the role in `account`, assumed by the admin.
fn member_config(moto: &Moto, account: &str) -> aws_config::SdkConfig {
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config(&moto.admin));
    let out = moto
        .rt
        .block_on(
            sts.assume_role()
                .role_arn(format!("arn:aws:iam::{account}:role/{ROLE}"))
                .role_session_name("harness")
                .send(),
        )
        .unwrap();
    let c = out.credentials().unwrap();
    moto.sdk_config(&moto.admin)
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "harness",
            )),
        )
        .build()
}

fn member_iam(moto: &Moto, account: &str) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&member_config(moto, account))
}

/// The user's keys in `account`: (id, active).
fn member_keys(moto: &Moto, account: &str, user: &str) -> Vec<(String, bool)> {
    let iam = member_iam(moto, account);
    let out = moto
        .rt
        .block_on(iam.list_access_keys().user_name(user).send())
        .unwrap();
    out.access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap().to_string(),
                k.status().map(|s| s.as_str()) == Some("Active"),
            )
        })
        .collect()
}

/// services.toml over `accounts`, with path stores in a file per account and in each
/// account's SSM.
fn write_config(dir: &Path, accounts: &[&str], extra: &str) {
    let ids: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(
        dir.join("services.toml"),
        format!(
            r#"[accounts]
ids = [{}]
role_name = "{ROLE}"
{extra}

[paths.PSKServiceAccounts]
stores = [
  {{ kind = "file", path = "keys/{{account}}/{{user}}.json" }},
  {{ kind = "ssm", prefix = "/credrot/{{user}}" }},
]
"#,
            ids.join(", ")
        ),
    )
    .unwrap();
}

fn file_key(dir: &Path, account: &str, user: &str) -> Key {
    key_of(&read_json(&dir.join(format!("keys/{account}/{user}.json"))))
}

/// The key the file of `user` in `account` holds works, as that account's user, and the
/// account's SSM store holds the same key.
fn assert_stored_and_working(moto: &Moto, dir: &Path, account: &str, user: &str) -> Key {
    let key = file_key(dir, account, user);
    assert_eq!(
        moto.whoami(&key).as_deref(),
        Some(format!("arn:aws:iam::{account}:user{PATH}{user}").as_str()),
        "the stored key of {account}/{user} must authenticate as that account's user"
    );
    let ssm = aws_sdk_ssm::Client::new(&member_config(moto, account));
    let id = moto
        .rt
        .block_on(
            ssm.get_parameter()
                .name(format!("/credrot/{user}/access_key_id"))
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    assert_eq!(
        id.parameter().unwrap().value().unwrap(),
        key.id,
        "{account}'s own SSM holds the key of {account}/{user}"
    );
    key
}

fn rotate(moto: &Moto, dir: &Path) -> std::process::Command {
    moto.rotate_path_json(dir, "PSKServiceAccounts")
}

#[test]
fn three_member_accounts_rotate_in_one_run_each_with_its_own_clients_and_stores() {
    let accounts = ["222222222222", "333333333333", "444444444444"];
    let moto = start(&accounts);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "");
    let before: Vec<Vec<(String, bool)>> = accounts
        .iter()
        .flat_map(|a| USERS.map(|u| member_keys(&moto, a, u)))
        .collect();

    let out = rotate(&moto, dir.path())
        .args(["-o", "keys.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rotated"], 6, "{summary}");
    // The same user name in three accounts: one -o entry each, named ACCOUNT/user.
    let outfile = read_json(&dir.path().join("keys.json"));
    assert_eq!(outfile.as_object().unwrap().len(), 6, "{outfile}");
    for account in accounts {
        for user in USERS {
            assert_eq!(
                key_of(&outfile[format!("{account}/{user}")]),
                file_key(dir.path(), account, user)
            );
        }
    }
    let totals = summary["accounts"].as_array().unwrap();
    assert_eq!(totals.len(), 3, "{summary}");
    for (total, account) in totals.iter().zip(accounts) {
        assert_eq!(total["id"], account);
        assert_eq!(
            (total["users"].as_u64(), total["rotated"].as_u64()),
            (Some(2), Some(2))
        );
    }
    for user in summary["users"].as_array().unwrap() {
        assert!(
            accounts.contains(&user["account"].as_str().unwrap()),
            "{user}"
        );
    }
    let mut i = 0;
    for account in accounts {
        for user in USERS {
            let key = assert_stored_and_working(&moto, dir.path(), account, user);
            let keys = member_keys(&moto, account, user);
            // CURRENT/LAST in each account: the new key and the seed key, both Active.
            assert_eq!(keys.len(), 2, "{account}/{user}: {keys:?}");
            assert!(keys.contains(&(key.id.clone(), true)));
            assert!(keys.contains(&before[i][0]), "the seed key stays as LAST");
            i += 1;
        }
    }
    let table = moto
        .credrot(dir.path())
        .args([
            "rotate",
            "--path",
            "PSKServiceAccounts",
            "--force",
            "--account",
            "333333333333",
        ])
        .assert()
        .success();
    let shown = shown(&table);
    assert!(shown.contains("ACCOUNT"), "{shown}");
    assert!(
        shown.contains("account 333333333333: 2 users: 2 rotated, 0 failed"),
        "{shown}"
    );
    assert!(
        !shown.contains("222222222222"),
        "--account narrows the run: {shown}"
    );
}

#[test]
fn an_account_whose_role_cannot_be_assumed_fails_alone_with_a_clear_message() {
    let accounts = ["222222222222", "333333333333", "444444444444"];
    let moto = start(&accounts);
    // moto does not check cross-account trust policies; the proxy answers as AWS does for
    // a role whose trust policy does not name the caller.
    let proxy = FaultProxy::start(&moto.endpoint, 0.0, &["--deny", "AssumeRole:444444444444"]);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "");
    let untouched = USERS.map(|u| member_keys(&moto, "444444444444", u));

    let out = rotate(&moto, dir.path())
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["rotated"], 4,
        "the other accounts are rotated: {summary}"
    );
    let failed = &summary["accounts"][2];
    assert_eq!(failed["id"], "444444444444", "{summary}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("cannot assume arn:aws:iam::444444444444:role/credrot-rotation")
            && error.contains("AccessDenied")
            && error.contains("trust policy"),
        "{error}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be worked in"), "{stderr}");
    assert_eq!(
        USERS.map(|u| member_keys(&moto, "444444444444", u)),
        untouched
    );
    for account in ["222222222222", "333333333333"] {
        for user in USERS {
            assert_stored_and_working(&moto, dir.path(), account, user);
        }
    }
}

/// `--time-limit` across accounts, one account at a time: the first account's first user is
/// held 12 s by a fail point against a 6 s limit, so its second user and the whole second
/// account are not started, and are untouched (seconds of margin: a slow machine changes
/// nothing).
#[test]
fn an_account_whose_turn_comes_after_the_time_limit_is_not_started() {
    let accounts = ["222222222222", "333333333333"];
    let moto = start(&accounts);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "concurrency = 1");
    let late = USERS.map(|u| member_keys(&moto, "333333333333", u));
    let out = rotate(&moto, dir.path())
        .args(["--concurrency", "1", "--time-limit", "6s"])
        .env("FAILPOINTS", "after-verify=sleep(12000)")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["rotated"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(1)),
        "{summary}"
    );
    let not_started = summary["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["outcome"] == "failed")
        .unwrap();
    assert_eq!(not_started["account"], "222222222222", "{summary}");
    assert!(
        not_started["error"]
            .as_str()
            .unwrap()
            .starts_with("not started"),
        "{summary}"
    );
    let second = &summary["accounts"][1];
    assert_eq!(second["id"], "333333333333", "{summary}");
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("--time-limit ran out before this account's turn"),
        "{summary}"
    );
    assert_eq!(USERS.map(|u| member_keys(&moto, "333333333333", u)), late);
}

#[test]
fn a_dry_run_across_accounts_plans_each_and_changes_nothing() {
    let accounts = ["222222222222", "333333333333"];
    let moto = start(&accounts);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "");
    let before: Vec<_> = accounts
        .iter()
        .flat_map(|a| USERS.map(|u| member_keys(&moto, a, u)))
        .collect();
    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", "PSKServiceAccounts", "--dry-run"])
        .assert()
        .success();
    let shown = shown(&out);
    for account in accounts {
        assert!(
            shown.contains(&format!("account {account}: 2 users: 2 planned, 0 failed")),
            "{shown}"
        );
    }
    let after: Vec<_> = accounts
        .iter()
        .flat_map(|a| USERS.map(|u| member_keys(&moto, a, u)))
        .collect();
    assert_eq!(before, after);
    assert!(
        !dir.path().join("keys").exists(),
        "a dry run writes no store"
    );
}

#[test]
fn a_run_killed_mid_way_converges_in_every_account_on_the_rerun() {
    let accounts = ["222222222222", "333333333333"];
    let moto = start(&accounts);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "concurrency = 1");
    // Killed after the fifth store write: one account done or half done, the other not.
    let crashed = rotate(&moto, dir.path())
        .env("FAILPOINTS", "after-store-write=4*off->return")
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        None,
        "credrot was not killed: {crashed:?}"
    );
    for account in accounts {
        for user in USERS {
            let keys = member_keys(&moto, account, user);
            assert!(
                keys.iter().any(|k| k.1),
                "{account}/{user} kept a working key: {keys:?}"
            );
        }
    }
    let out = rotate(&moto, dir.path()).output().unwrap();
    assert!(out.status.success(), "the rerun converges: {out:?}");
    for account in accounts {
        for user in USERS {
            assert_stored_and_working(&moto, dir.path(), account, user);
            assert!(member_keys(&moto, account, user).len() <= 2);
        }
    }
}

#[test]
fn organization_accounts_are_listed_filtered_and_the_callers_own_needs_no_role() {
    // Two member accounts made by Organizations, plus the management account itself.
    let moto = Moto::start_with_extra_bootstrap(1 + 2 + 2 * REQUESTS_PER_ACCOUNT);
    let org = aws_sdk_organizations::Client::new(&moto.sdk_config(&moto.admin));
    let members: Vec<String> = moto.rt.block_on(async {
        org.create_organization().send().await.unwrap();
        let mut ids = Vec::new();
        for name in ["staging", "sandbox"] {
            let out = org
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .unwrap();
            ids.push(
                out.create_account_status()
                    .unwrap()
                    .account_id()
                    .unwrap()
                    .to_string(),
            );
        }
        ids
    });
    for account in &members {
        create_role(&moto, account);
    }
    for account in &members {
        let iam = member_iam(&moto, account);
        moto.rt.block_on(async {
            iam.create_user()
                .user_name("alice")
                .path(PATH)
                .send()
                .await
                .unwrap();
        });
    }
    moto.create_user("alice", PATH);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!(
            r#"[accounts]
organization = true
exclude = ["{}"]
role_name = "{ROLE}"

[paths.PSKServiceAccounts]
stores = [{{ kind = "file", path = "keys/{{account_name}}/{{user}}.json" }}]
"#,
            members[1]
        ),
    )
    .unwrap();
    let out = rotate(&moto, dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let mut expected = vec!["123456789012", members[0].as_str()];
    expected.sort();
    assert_eq!(ids, expected, "{summary}");
    let staging = key_of(&read_json(&dir.path().join("keys/staging/alice.json")));
    assert_eq!(
        moto.whoami(&staging).unwrap(),
        format!("arn:aws:iam::{}:user{PATH}alice", members[0])
    );
    let own = key_of(&read_json(&dir.path().join("keys/master/alice.json")));
    moto.assert_key_works_for(&own, "alice");
    assert!(
        !dir.path().join("keys/sandbox").exists(),
        "excluded accounts are left alone"
    );
}

#[test]
fn account_settings_that_cannot_work_are_refused_before_any_aws_call() {
    let dir = tempfile::tempdir().unwrap();
    // The same user name in two accounts would share this file.
    std::fs::write(
        dir.path().join("services.toml"),
        "[accounts]\nids = [\"222222222222\", \"333333333333\"]\nrole_name = \"r\"\n\n[paths.P]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n",
    )
    .unwrap();
    let out = credrot_command(dir.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["rotate", "--path", "P"])
        .assert()
        .code(2);
    let said = shown(&out);
    assert!(
        said.contains("services.toml:6:")
            && said.contains("has no {account}")
            && said.contains("keys/{user}.json"),
        "{said}"
    );
    std::fs::write(
        dir.path().join("services.toml"),
        "[accounts]\nids = [\"222222222222\"]\n",
    )
    .unwrap();
    let out = credrot_command(dir.path()).args(["list"]).assert().code(2);
    assert!(shown(&out).contains("no role_name"), "{}", shown(&out));
    std::fs::write(dir.path().join("services.toml"), "").unwrap();
    let out = credrot_command(dir.path())
        .args([
            "rotate",
            "--path",
            "P",
            "--account",
            "222222222222",
            "-o",
            "k.json",
        ])
        .assert()
        .code(2);
    assert!(
        shown(&out).contains("--account needs an [accounts] section"),
        "{}",
        shown(&out)
    );
    assert!(
        !dir.path().join("k.json").exists(),
        "a usage error leaves nothing behind"
    );
    let out = credrot_command(dir.path())
        .args(["rotate", "--path", "P", "--account", "22"])
        .assert()
        .code(2);
    assert!(shown(&out).contains("12 digits"), "{}", shown(&out));
}

#[test]
fn update_status_and_audit_carry_the_account_of_every_row() {
    let accounts = ["222222222222", "333333333333"];
    let moto = start(&accounts);
    let hook = WebhookServer::start(204);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!(
            r#"[accounts]
ids = ["222222222222", "333333333333"]
names = {{ "333333333333" = "staging" }}
role_name = "{ROLE}"

[audit]
path = "audit.log"

[notify]
webhook = "{}/hook"

[services.alice]
iam_user = "alice"
stores = [{{ kind = "file", path = "keys/{{account_name}}-{{service}}.json" }}]

[services.bob]
iam_user = "bob"
accounts = ["333333333333"]
stores = [{{ kind = "file", path = "keys/bob.json" }}]
"#,
            hook.url
        ),
    )
    .unwrap();
    moto.credrot(dir.path())
        .args(["update", "alice"])
        .assert()
        .success();
    for (account, file) in [
        ("222222222222", "222222222222-alice"),
        ("333333333333", "staging-alice"),
    ] {
        let key = key_of(&read_json(&dir.path().join(format!("keys/{file}.json"))));
        assert_eq!(
            moto.whoami(&key).unwrap(),
            format!("arn:aws:iam::{account}:user{PATH}alice")
        );
    }
    let notice = hook.received()[0].json();
    let rows: Vec<(&str, &str)> = notice["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["account"].as_str().unwrap(),
                u["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("222222222222", "rotated"), ("333333333333", "rotated")],
        "the webhook notice names each user's account: {notice}"
    );
    // A service scoped to one account runs there only.
    moto.credrot(dir.path())
        .args(["update", "bob"])
        .assert()
        .success();
    assert_eq!(
        member_keys(&moto, "222222222222", "bob").len(),
        1,
        "bob of 222222222222 is not in scope"
    );
    assert_eq!(member_keys(&moto, "333333333333", "bob").len(), 2);
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    for line in audit.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            accounts.contains(&line["account"].as_str().unwrap_or_default()),
            "every audit line names its account: {line}"
        );
    }
    moto.credrot(dir.path())
        .args(["audit", "verify"])
        .assert()
        .success();
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap().to_string(),
                r["user"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("222222222222".to_string(), "alice".to_string()),
            ("333333333333".to_string(), "alice".to_string()),
            ("333333333333".to_string(), "bob".to_string()),
        ]
    );
    let table = moto.credrot(dir.path()).args(["status"]).assert().success();
    assert!(
        shown(&table).contains("333333333333/bob"),
        "{}",
        shown(&table)
    );
}

#[test]
fn a_lambda_event_names_the_accounts_it_rotates() {
    let accounts = ["222222222222", "333333333333"];
    let moto = start(&accounts);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &accounts, "");
    let before = USERS.map(|u| member_keys(&moto, "222222222222", u));
    let rig = super::lambda::LambdaRig::start(&moto, dir.path());
    let summary = rig
        .invoke(&serde_json::json!({
            "command": "rotate",
            "path": "PSKServiceAccounts",
            "accounts": ["333333333333"],
        }))
        .unwrap();
    assert_eq!(summary["rotated"], 2, "{summary}");
    assert_eq!(summary["accounts"][0]["id"], "333333333333", "{summary}");
    for user in USERS {
        assert_stored_and_working(&moto, dir.path(), "333333333333", user);
    }
    assert_eq!(
        USERS.map(|u| member_keys(&moto, "222222222222", u)),
        before,
        "an account not named is left alone"
    );
    let (kind, error) = rig
        .invoke(&serde_json::json!({
            "command": "rotate",
            "path": "PSKServiceAccounts",
            "accounts": ["999999999999"],
        }))
        .unwrap_err();
    assert_eq!(kind, "credrot.Usage", "{error}");
    assert!(
        error
            .to_string()
            .contains("--account 999999999999 is not one of"),
        "{error}"
    );
}
