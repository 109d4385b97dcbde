//! `credrot update SERVICE`, `list` and `show` through the built binary.

use crate::harness::{assert_no_secret, key_of, mode_of, read_json, Key, Moto};
use std::path::Path;

const SERVICE_TOML: &str = r#"
[services.postgresql]
description = "PostgreSQL S3 backups"
iam_user = "postgresql-backup"
tags = ["aws", "postgresql"]

[[services.postgresql.stores]]
kind = "file"
path = "secrets/postgresql.json"

[[services.postgresql.stores]]
kind = "file"
path = "secrets/postgresql.env"
format = "env"
"#;

fn setup(moto: &Moto) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), SERVICE_TOML).unwrap();
    moto.create_user("postgresql-backup", "/");
    dir
}

fn stored_key(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("secrets/postgresql.json")))
}

fn env_key(dir: &Path) -> Key {
    let text = std::fs::read_to_string(dir.join("secrets/postgresql.env")).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    Key {
        id: value("AWS_ACCESS_KEY_ID"),
        secret: value("AWS_SECRET_ACCESS_KEY"),
    }
}

#[test]
fn list_and_show_print_the_configuration_without_aws() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), SERVICE_TOML).unwrap();
    let out = crate::harness::credrot_command(dir.path())
        .arg("list")
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("postgresql") && text.contains("postgresql-backup"),
        "{text}"
    );

    let out = crate::harness::credrot_command(dir.path())
        .args(["--output", "json", "show", "postgresql"])
        .assert()
        .success();
    let shown: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(shown["iam_user"], "postgresql-backup");
    assert_eq!(shown["stores"][1]["format"], "env");

    let out = crate::harness::credrot_command(dir.path())
        .args(["show", "redis"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("service 'redis' is not in") && err.contains("credrot list"),
        "{err}"
    );
}

#[test]
fn update_rotates_one_service_and_keeps_the_old_key_as_last() {
    let moto = Moto::start();
    let dir = setup(&moto);
    let old = moto.create_key("postgresql-backup", true);

    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let new = stored_key(dir.path());
    assert_ne!(new.id, old.id);
    assert_eq!(
        env_key(dir.path()),
        new,
        "both stores hold the same new key"
    );
    moto.assert_key_works_for(&new, "postgresql-backup");
    moto.assert_key_works_for(&old, "postgresql-backup");
    let mut expected = vec![(old.id.clone(), true), (new.id.clone(), true)];
    expected.sort();
    assert_eq!(moto.keys("postgresql-backup"), expected);
    assert_eq!(mode_of(&dir.path().join("secrets/postgresql.json")), 0o600);
    assert_eq!(mode_of(&dir.path().join("secrets/postgresql.env")), 0o600);

    // Second rotation: LAST (the original key) goes, the previous CURRENT stays.
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let newer = stored_key(dir.path());
    assert!(
        moto.whoami(&old).is_none(),
        "the old LAST key must be deleted"
    );
    moto.assert_key_works_for(&new, "postgresql-backup");
    moto.assert_key_works_for(&newer, "postgresql-backup");
    assert_eq!(moto.keys("postgresql-backup").len(), 2);
}

#[test]
fn summary_json_names_old_and_new_keys_and_no_secret() {
    let moto = Moto::start();
    let dir = setup(&moto);
    let last = moto.create_key("postgresql-backup", false);
    let current = moto.create_key("postgresql-backup", true);

    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "-vvv", "update", "postgresql"])
        .assert()
        .success();
    let new = stored_key(dir.path());
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let keys = [&new, &current, &last, &moto.admin];
    assert_no_secret(&stdout, &keys, "stdout");
    assert_no_secret(&stderr, &keys, "stderr at -vvv");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["rotated"], 1);
    let user = &summary["users"][0];
    assert_eq!(user["user"], "postgresql-backup");
    assert_eq!(user["current_before"], current.id.as_str());
    assert_eq!(
        user["deleted"],
        last.id.as_str(),
        "the Inactive key is the one deleted"
    );
    assert_eq!(user["created"], new.id.as_str());
    assert_eq!(user["outcome"], "rotated");
}

#[test]
fn dry_run_changes_nothing() {
    let moto = Moto::start();
    let dir = setup(&moto);
    let a = moto.create_key("postgresql-backup", true);
    moto.create_key("postgresql-backup", true);
    let before = moto.keys("postgresql-backup");

    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql", "--dry-run"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("WOULD DELETE") && stdout.contains(&a.id),
        "{stdout}"
    );
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(moto.keys("postgresql-backup"), before);
    assert!(
        !dir.path().join("secrets").exists(),
        "dry run wrote a store"
    );
}

/// A store that reads as empty but cannot be written, for real: nobody, not even root, can
/// create a directory in /proc.
const UNWRITABLE: &str = "/proc/credrot-cannot-write/pg.json";

fn write_config(dir: &Path, stores: &str) {
    let toml = format!("[services.pg]\niam_user = \"postgresql-backup\"\nstores = [{stores}]\n");
    std::fs::write(dir.join("services.toml"), toml).unwrap();
}

#[test]
fn a_store_that_cannot_be_written_rolls_the_new_key_back() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("{{ kind = \"file\", path = \"{UNWRITABLE}\" }}"),
    );
    moto.create_user("postgresql-backup", "/");
    let old = moto.create_key("postgresql-backup", true);

    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains(UNWRITABLE) && stdout.contains("rolled back"),
        "{stdout}"
    );
    assert!(stdout.contains("0 rotated, 1 failed"), "{stdout}");
    moto.assert_only_key("postgresql-backup", &old);
}

#[test]
fn a_lagging_store_that_cannot_be_fixed_stops_before_iam_changes() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("{{ kind = \"file\", path = \"good/pg.json\" }}, {{ kind = \"file\", path = \"{UNWRITABLE}\" }}"),
    );
    moto.create_user("postgresql-backup", "/");
    let old = moto.create_key("postgresql-backup", true);
    std::fs::create_dir(dir.path().join("good")).unwrap();
    let good = dir.path().join("good/pg.json");
    crate::harness::write_key_file(&good, &old);

    // The second store is empty, so it lags behind the first: credrot must bring it up to
    // date before retiring anything, and that fails. (`--lock-ttl 0s`: the key is seconds
    // old, and a key some store lacks is otherwise taken for another run's in progress.)
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg", "--lock-ttl", "0s"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains(&format!("file:{UNWRITABLE}: cannot write")),
        "{stdout}"
    );
    assert!(!stdout.contains("brought up to date"), "{stdout}");
    assert_eq!(moto.keys("postgresql-backup"), vec![(old.id.clone(), true)]);
    assert_eq!(
        key_of(&read_json(&good)),
        old,
        "the good store is untouched"
    );
}

#[test]
fn an_orphan_from_an_interrupted_run_is_replaced_not_the_stored_key() {
    let moto = Moto::start();
    let dir = setup(&moto);
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let stored = stored_key(dir.path());
    // A run killed between CreateAccessKey and the store write leaves a key whose secret
    // nobody has.
    let orphan = moto.create_key("postgresql-backup", true);

    // Seconds old, it could as well be the key of a run in progress: hands off.
    let keys_before = moto.keys("postgresql-backup");
    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("busy") && stdout.contains(&orphan.id),
        "{stdout}"
    );
    assert_eq!(moto.keys("postgresql-backup"), keys_before);
    assert_eq!(stored_key(dir.path()), stored);

    // Older than the lock TTL, it is a dead run's: deleted, and the user rotated.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    moto.credrot(dir.path())
        .args(["update", "postgresql", "--lock-ttl", "1s"])
        .assert()
        .success();
    let new = stored_key(dir.path());
    let ids: Vec<String> = moto
        .keys("postgresql-backup")
        .into_iter()
        .map(|k| k.0)
        .collect();
    assert!(!ids.contains(&orphan.id), "the orphan is deleted");
    assert!(
        ids.contains(&stored.id),
        "the key the store handed out stays as LAST"
    );
    moto.assert_key_works_for(&new, "postgresql-backup");
    moto.assert_key_works_for(&stored, "postgresql-backup");
}

#[test]
fn print_secrets_prints_working_keys_and_moves_the_summary_to_stderr() {
    let moto = Moto::start();
    let dir = setup(&moto);
    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql", "--print-secrets"])
        .assert()
        .success();
    let printed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let key = key_of(&printed["postgresql-backup"]);
    assert_eq!(key, stored_key(dir.path()));
    moto.assert_key_works_for(&key, "postgresql-backup");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("1 rotated, 0 failed"), "{stderr}");
    assert!(!stderr.contains(&key.secret));
}
