//! Named rotation policies (`[policies.NAME]`, `policy = "NAME"`): what `show`, `status`
//! and `update` do with them, against moto, and an unknown name refused before any AWS call.

use crate::harness::{credrot_command, write_key_file, Moto, Tripwire};
use std::path::Path;

const CONFIG: &str = r#"
[defaults]
max_age = "30d"

[policies.short-lived]
description = "keys rotated hourly"
max_age = "2h"
rotate_after = "1h"
expect_regions = ["us-east-1"]

[services.follows]
iam_user = "follows"
policy = "short-lived"
stores = [{ kind = "file", path = "follows.json" }]

[services.overrides]
iam_user = "overrides"
policy = "short-lived"
rotate_after = "30m"
stores = [{ kind = "file", path = "overrides.json" }]

[services.plain]
iam_user = "plain"
stores = [{ kind = "file", path = "plain.json" }]
"#;

fn seed(moto: &Moto, dir: &Path) {
    std::fs::write(dir.join("services.toml"), CONFIG).unwrap();
    for user in ["follows", "overrides", "plain"] {
        moto.create_user(user, "/");
        let key = moto.create_key(user, true);
        write_key_file(&dir.join(format!("{user}.json")), &key);
    }
}

fn status_json(moto: &Moto, dir: &Path, offset: &str) -> Vec<serde_json::Value> {
    let out = moto
        .credrot_process(dir)
        .env("CREDROT_CLOCK_OFFSET", offset)
        .args(["--output", "json", "status"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str::<serde_json::Value>(&stdout)
        .unwrap_or_else(|_| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        .as_array()
        .unwrap()
        .clone()
}

fn by_user<'a>(statuses: &'a [serde_json::Value], user: &str) -> &'a serde_json::Value {
    statuses.iter().find(|s| s["user"] == user).unwrap()
}

#[test]
fn show_and_status_name_the_policy_in_force_and_its_keys_apply() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    seed(&moto, dir.path());

    let out = moto
        .credrot(dir.path())
        .args(["show", "overrides"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("policy:       short-lived"), "{text}");
    assert!(text.contains("max_age:      2h"), "{text}");
    assert!(
        text.contains("rotate_after: 30m"),
        "the service's own key wins: {text}"
    );
    assert!(text.contains("regions us-east-1"), "{text}");
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "show", "follows"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["policy"], "short-lived");
    assert_eq!(json["rotate_after"], "1h");

    // 45 minutes on: past the override's 30m, not the policy's 1h, nowhere near 30d.
    let statuses = status_json(&moto, dir.path(), "45m");
    let follows = by_user(&statuses, "follows");
    let overrides = by_user(&statuses, "overrides");
    let plain = by_user(&statuses, "plain");
    assert_eq!(follows["verdict"], "ok", "{follows}");
    assert_eq!(overrides["verdict"], "due", "{overrides}");
    assert_eq!(plain["verdict"], "ok", "{plain}");
    assert!(
        follows["policy"]
            .as_str()
            .unwrap()
            .starts_with("short-lived: max_age 2h, rotate_after 1h"),
        "{follows}"
    );
    assert!(
        plain["policy"]
            .as_str()
            .unwrap()
            .starts_with("[defaults]: max_age 30d"),
        "{plain}"
    );
    // Three hours on: the policy's max_age (2h) makes both overdue, naming the controls.
    let statuses = status_json(&moto, dir.path(), "3h");
    let follows = by_user(&statuses, "follows");
    assert_eq!(follows["verdict"], "overdue", "{follows}");
    assert!(
        follows["reasons"]
            .to_string()
            .contains("past max_age (2h) [Security Hub IAM.3, AWS Config access-keys-rotated"),
        "{follows}"
    );
    assert_eq!(by_user(&statuses, "plain")["verdict"], "ok");

    // The table names the policy of each user too.
    let out = moto
        .credrot(dir.path())
        .args(["status", "follows"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("follows: policy short-lived: max_age 2h"),
        "{text}"
    );

    // update follows the policy: a key younger than the policy's rotate_after is fresh.
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "update", "follows"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["fresh"], 1, "{json}");
    let out = moto
        .credrot_process(dir.path())
        .env("CREDROT_CLOCK_OFFSET", "70m")
        .args(["--output", "json", "update", "follows"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rotated"], 1, "{json}");
}

#[test]
fn an_unknown_policy_is_a_config_error_naming_the_line_and_the_known_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        CONFIG.replace(
            "policy = \"short-lived\"\nrotate_after",
            "policy = \"shortlived\"\nrotate_after",
        ),
    )
    .unwrap();
    let tripwire = Tripwire::new();
    for args in [
        &["status"][..],
        &["update", "overrides"],
        &["show", "plain"],
    ] {
        let out = credrot_command(dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example")
            .args(["--endpoint-url", &tripwire.endpoint])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(
                "services.toml:18:10: policy 'shortlived' is not defined (known: short-lived)"
            ),
            "{stderr}"
        );
    }
    assert!(
        !tripwire.tripped(),
        "no AWS call with an invalid configuration"
    );
}
