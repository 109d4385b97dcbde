//! `credrot status`: verdicts from real IAM state and stores, an exit code for gates, and
//! nothing changed.

use crate::harness::{Key, Moto};
use std::path::Path;

fn write_config(dir: &Path, policy: &str) {
    std::fs::write(
        dir.join("services.toml"),
        format!("[services.app]\niam_user = \"app\"\n{policy}\nstores = [{{ kind = \"file\", path = \"app.json\" }}]\n"),
    )
    .unwrap();
}

fn store(dir: &Path, key: &Key) {
    crate::harness::write_key_file(&dir.join("app.json"), key);
}

/// Run status with `args`; returns (exit code, the user's JSON entry, raw stdout).
fn status(moto: &Moto, dir: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    status_at(moto, dir, "0s", args)
}

/// `status` with credrot's clock shifted by `offset`.
fn status_at(
    moto: &Moto,
    dir: &Path,
    offset: &str,
    args: &[&str],
) -> (i32, serde_json::Value, String) {
    let out = moto
        .credrot_process(dir)
        .env("CREDROT_CLOCK_OFFSET", offset)
        .args(["--output", "json", "status"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let parsed: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), parsed[0].clone(), stdout)
}

#[test]
fn a_healthy_user_is_ok_and_drift_trips_the_gate() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "max_age = \"30d\"");
    moto.create_user("app", "/");
    let key = moto.create_key("app", true);
    store(dir.path(), &key);
    moto.assert_key_works_for(&key, "app");

    let (code, user, stdout) = status(&moto, dir.path(), &["--fail-on", "drift"]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(user["verdict"], "ok", "{user}");
    assert_eq!(user["keys"][0]["id"], key.id.as_str());
    assert_eq!(user["keys"][0]["role"], "CURRENT");
    assert_eq!(user["keys"][0]["held_by"][0], "file:app.json");
    assert_eq!(user["keys"][0]["last_used"]["service"], "sts");
    assert!(!stdout.contains(&key.secret));

    // A key created behind credrot's back becomes CURRENT; the store still has the old one.
    let newer = moto.create_key("app", true);
    let before = moto.keys("app");
    let (code, user, _) = status(&moto, dir.path(), &["--fail-on", "drift"]);
    assert_eq!(code, 3);
    assert_eq!(user["verdict"], "drift");
    let reasons = user["reasons"].to_string();
    assert!(
        reasons.contains(&format!("not CURRENT {}", newer.id)),
        "{reasons}"
    );
    assert_eq!(moto.keys("app"), before, "status changed IAM");
}

#[test]
fn old_and_unused_keys_are_overdue_and_unused() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "max_age = \"2h\"\nrotate_after = \"1h\"");
    moto.create_user("app", "/");
    let key = moto.create_key("app", true);
    store(dir.path(), &key);

    let (code, user, _) = status(&moto, dir.path(), &["--fail-on", "due"]);
    assert_eq!((code, user["verdict"].as_str()), (0, Some("ok")), "{user}");

    // Later, by credrot's clock (CREDROT_CLOCK_OFFSET): hours of margin, not milliseconds,
    // so a slow machine cannot move a key across a threshold.
    let (code, user, _) = status_at(&moto, dir.path(), "90m", &["--fail-on", "due"]);
    assert_eq!((code, user["verdict"].as_str()), (3, Some("due")), "{user}");
    let (code, _, _) = status_at(&moto, dir.path(), "90m", &["--fail-on", "overdue"]);
    assert_eq!(code, 0, "due is not yet overdue");

    let (code, user, _) = status_at(
        &moto,
        dir.path(),
        "3h",
        &["--fail-on", "overdue", "--unused-after", "1h"],
    );
    assert_eq!(
        (code, user["verdict"].as_str()),
        (3, Some("overdue")),
        "{user}"
    );
    let reasons = user["reasons"].to_string();
    assert!(
        reasons.contains("past max_age (2h)") && reasons.contains("has not been used"),
        "{reasons}"
    );
}

#[test]
fn path_users_are_reported_and_a_table_is_printed() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Batch]\nstores = [{ kind = \"file\", path = \"{user}.json\" }]\n",
    )
    .unwrap();
    for user in ["b1", "b2"] {
        moto.create_user(user, "/Batch/");
        let key = moto.create_key(user, true);
        crate::harness::write_key_file(&dir.path().join(format!("{user}.json")), &key);
    }
    let out = moto
        .credrot(dir.path())
        .args(["status", "--path", "Batch"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("VERDICT")
            && text.contains("b1")
            && text.contains("b2")
            && text.contains("file:b1.json"),
        "{text}"
    );
}

#[test]
fn a_gate_over_no_users_is_a_usage_error_like_rotate() {
    let moto = Moto::start();
    moto.create_user("b1", "/PSKServiceAccounts/");
    let dir = tempfile::tempdir().unwrap();
    let message = "no IAM user has the path /pskserviceaccounts/";
    // The same typo, the same message and exit code from rotate and status, gate or not.
    for args in [
        vec!["rotate", "--path", "pskserviceaccounts", "-o", "k.json"],
        vec!["status", "--path", "pskserviceaccounts", "--fail-on", "ok"],
        vec![
            "status",
            "--path",
            "pskserviceaccounts",
            "--fail-on",
            "drift",
        ],
        vec!["status", "--path", "pskserviceaccounts"],
    ] {
        let out = moto.credrot(dir.path()).args(&args).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            out.get_output().stdout.is_empty(),
            "{args:?}: no empty table"
        );
    }
    // A configuration with no service and no --path: a gate with nothing to look at.
    std::fs::write(
        dir.path().join("services.toml"),
        "[defaults]\nmax_age = \"90d\"\n",
    )
    .unwrap();
    let out = moto
        .credrot(dir.path())
        .args(["status", "--fail-on", "ok"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("found no user to check"), "{stderr}");
}
