//! Staged retirement: the old key is deactivated only once the new key is used by its
//! consumers and the old one has gone quiet, deleted after the grace period, and reported
//! stuck when it stays in use. The state lives in tags on the IAM user.

use crate::harness::{key_of, read_json, Key, Moto};
use std::path::Path;
use std::time::Duration;

fn setup(moto: &Moto, policy: &str) -> (tempfile::TempDir, Key) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[services.batch]\niam_user = \"batch\"\nmode = \"staged\"\n{policy}\nstores = [{{ kind = \"file\", path = \"batch.json\" }}]\n"),
    )
    .unwrap();
    moto.create_user("batch", "/");
    let old = moto.create_key("batch", true);
    crate::harness::write_key_file(&dir.path().join("batch.json"), &old);
    (dir, old)
}

/// Run `credrot update batch` and return the user's summary entry.
fn update(moto: &Moto, dir: &Path, extra: &[&str]) -> serde_json::Value {
    update_at(moto, dir, "0s", extra)
}

/// `update` with credrot's clock shifted by `offset` (`CREDROT_CLOCK_OFFSET`).
fn update_at(moto: &Moto, dir: &Path, offset: &str, extra: &[&str]) -> serde_json::Value {
    let out = moto
        .credrot(dir)
        .env("CREDROT_CLOCK_OFFSET", offset)
        .args(["--output", "json", "update", "batch"])
        .args(extra)
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    summary["users"][0].clone()
}

fn user_tags(moto: &Moto) -> Vec<String> {
    let out = moto
        .rt
        .block_on(moto.iam().list_user_tags().user_name("batch").send())
        .unwrap();
    out.tags().iter().map(|t| t.key().to_string()).collect()
}

#[test]
fn the_old_key_is_deactivated_after_use_and_deleted_after_grace() {
    let moto = Moto::start();
    let (dir, old) = setup(
        &moto,
        "max_age = \"30d\"\nquiet_period = \"1s\"\ngrace = \"1h\"",
    );

    let first = update(&moto, dir.path(), &["--force"]);
    assert_eq!(first["outcome"], "rotated");
    let new = key_of(&read_json(&dir.path().join("batch.json")));
    assert_eq!(moto.keys("batch").len(), 2);
    moto.assert_key_works_for(&old, "batch");

    // credrot's own verification is not a use: nobody has used the new key yet.
    let waiting = update(&moto, dir.path(), &[]);
    assert_eq!(waiting["outcome"], "retiring");
    assert!(
        waiting["note"].as_str().unwrap().contains("not been used"),
        "{waiting}"
    );
    assert!(moto.keys("batch").iter().all(|(_, active)| *active));

    // A consumer picks the new key up; the old one has been quiet for the quiet period.
    std::thread::sleep(Duration::from_millis(1100));
    moto.assert_key_works_for(&new, "batch");
    std::thread::sleep(Duration::from_millis(1100));
    let deactivated = update(&moto, dir.path(), &[]);
    assert_eq!(deactivated["outcome"], "retiring", "{deactivated}");
    assert!(
        moto.keys("batch").contains(&(old.id.clone(), false)),
        "old key is Inactive"
    );
    assert!(moto.keys("batch").contains(&(new.id.clone(), true)));
    assert!(user_tags(&moto).contains(&format!("credrot:deactivated:{}", old.id)));

    // Within grace the Inactive key stays; after it, it is deleted and its tags go.
    let within_grace = update(&moto, dir.path(), &[]);
    assert_eq!(within_grace["outcome"], "retiring");
    // Two hours later (the clock credrot decides by, shifted: no test waits for grace).
    let deleted = update_at(&moto, dir.path(), "2h", &[]);
    assert_eq!(deleted["deleted"], old.id.as_str(), "{deleted}");
    assert_eq!(deleted["outcome"], "fresh");
    assert_eq!(moto.keys("batch"), vec![(new.id.clone(), true)]);
    assert!(!user_tags(&moto).iter().any(|t| t.contains(&old.id)));
    moto.assert_key_works_for(&new, "batch");
}

#[test]
fn an_old_key_still_in_use_after_max_wait_is_reported_stuck_and_kept() {
    let moto = Moto::start();
    let (dir, old) = setup(&moto, "quiet_period = \"1h\"\nmax_wait = \"1s\"");
    update(&moto, dir.path(), &["--force"]);
    let new = key_of(&read_json(&dir.path().join("batch.json")));
    std::thread::sleep(Duration::from_millis(1100));
    moto.assert_key_works_for(&new, "batch");
    // A job that was never reconfigured keeps using the old key.
    moto.assert_key_works_for(&old, "batch");

    let stuck = update(&moto, dir.path(), &[]);
    assert_eq!(stuck["outcome"], "stuck", "{stuck}");
    let note = stuck["note"].as_str().unwrap();
    assert!(
        note.contains(&old.id) && note.contains("last used") && note.contains("sts"),
        "{note}"
    );
    assert!(
        moto.keys("batch").contains(&(old.id.clone(), true)),
        "a stuck key is not deactivated"
    );
}
