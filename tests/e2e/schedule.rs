//! The schedule: a daily run rotates only users whose CURRENT key is older than
//! rotate_after; --force rotates regardless.

use crate::harness::{key_of, read_json, Moto};

#[test]
fn a_daily_run_skips_fresh_users_and_force_rotates_them() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        r#"
[defaults]
max_age = "30d"

[services.app]
iam_user = "app"
stores = [{ kind = "file", path = "app.json" }]
"#,
    )
    .unwrap();
    moto.create_user("app", "/");

    // No key at all: due.
    moto.credrot(dir.path())
        .args(["update", "app"])
        .assert()
        .success();
    let first = key_of(&read_json(&dir.path().join("app.json")));

    // The key is minutes old, far younger than rotate_after (15 days by default).
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "update", "app"])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(summary["users"][0]["outcome"], "fresh");
    assert_eq!(summary["users"][0]["created"], serde_json::Value::Null);
    assert_eq!(moto.keys("app"), vec![(first.id.clone(), true)]);

    moto.credrot(dir.path())
        .args(["update", "app", "--force"])
        .assert()
        .success();
    let second = key_of(&read_json(&dir.path().join("app.json")));
    assert_ne!(second.id, first.id);
    moto.assert_key_works_for(&second, "app");
    assert_eq!(moto.keys("app").len(), 2);
}

#[test]
fn rotate_after_longer_than_max_age_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.app]\niam_user = \"app\"\nmax_age = \"10d\"\nrotate_after = \"20d\"\n",
    )
    .unwrap();
    let out = crate::harness::credrot_command(dir.path())
        .args(["update", "app"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("rotate_after (20d) is longer than max_age (10d)"),
        "{stderr}"
    );
}
