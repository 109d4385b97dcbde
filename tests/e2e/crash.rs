//! Crash safety: credrot is killed with SIGKILL at every step of a rotation (fail points,
//! built with `--features failpoints`), then run again. Every user must end with a working
//! key that every store holds, at most two keys, and no key whose secret nobody has.

use crate::harness::{key_of, read_json, Moto};
use std::collections::BTreeSet;
use std::path::Path;

const STORES: [&str; 2] = ["a/key.json", "b/key.json"];

/// The key ids the stores hold now (absent stores are skipped).
fn stored_ids(dir: &Path) -> Vec<String> {
    STORES
        .iter()
        .map(|s| dir.join(s))
        .filter(|p| p.exists())
        .map(|p| key_of(&read_json(&p)).id)
        .collect()
}

/// Service `app` (IAM user `app`) writing to the two file stores of [`STORES`].
fn app_with_two_file_stores() -> (Moto, tempfile::TempDir) {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.app]\niam_user = \"app\"\nstores = [{ kind = \"file\", path = \"a/key.json\" }, { kind = \"file\", path = \"b/key.json\" }]\n",
    )
    .unwrap();
    moto.create_user("app", "/");
    (moto, dir)
}

fn crash_then_rerun(failpoint: &str) {
    let (moto, dir) = app_with_two_file_stores();
    moto.create_key("app", true);
    // A first clean rotation: both stores hold CURRENT, the seed key is LAST.
    moto.credrot(dir.path())
        .args(["update", "app"])
        .assert()
        .success();
    let mut ever_stored: BTreeSet<String> = moto.keys("app").into_iter().map(|k| k.0).collect();

    let crashed = moto
        .credrot(dir.path())
        .args(["update", "app"])
        .env("FAILPOINTS", failpoint)
        .output()
        .unwrap();
    assert_eq!(
        crashed.status.code(),
        None,
        "{failpoint}: credrot was not killed: {crashed:?}"
    );
    ever_stored.extend(stored_ids(dir.path()));

    // At once, with default flags: the dead run's process is gone, which this host's
    // in-flight record shows, so its work is taken over without waiting for --lock-ttl.
    let soon = rerun(&moto, dir.path(), failpoint);
    assert!(
        matches!(soon.as_str(), "rotated" | "synced" | "fresh"),
        "{failpoint}: {soon}"
    );
    ever_stored.extend(stored_ids(dir.path()));
    // A run that repaired stores leaves the due rotation to the next one.
    let again = rerun(&moto, dir.path(), failpoint);
    assert!(
        matches!(again.as_str(), "rotated" | "fresh"),
        "{failpoint}: {again}"
    );
    let stored = stored_ids(dir.path());
    ever_stored.extend(stored.iter().cloned());

    assert_eq!(stored.len(), 2, "{failpoint}: a store is empty");
    assert_eq!(stored[0], stored[1], "{failpoint}: the stores disagree");
    let key = key_of(&read_json(&dir.path().join(STORES[0])));
    moto.assert_key_works_for(&key, "app");
    let keys = moto.keys("app");
    assert!(keys.len() <= 2, "{failpoint}: {keys:?}");
    for (id, _) in &keys {
        assert!(
            ever_stored.contains(id),
            "{failpoint}: key {id} was never stored: orphaned"
        );
    }
    assert!(
        keys.contains(&(key.id.clone(), true)),
        "{failpoint}: the stored key is not Active in IAM"
    );
}

/// A run with default flags; its outcome. Keys that a store handed out before it must
/// survive it.
fn rerun(moto: &Moto, dir: &Path, failpoint: &str) -> String {
    let handed_out = stored_ids(dir);
    let out = moto
        .credrot(dir)
        .args(["--output", "json", "update", "app"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{failpoint}: re-run failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let keys: Vec<String> = moto.keys("app").into_iter().map(|k| k.0).collect();
    for id in &handed_out {
        assert!(
            keys.contains(id),
            "{failpoint}: the re-run deleted {id}, which a store handed out when it started"
        );
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    summary["users"][0]["outcome"].as_str().unwrap().to_string()
}

#[test]
fn a_key_in_flight_on_another_host_is_left_alone_and_reported_unconverged() {
    let (moto, dir) = app_with_two_file_stores();
    moto.credrot(dir.path())
        .args(["update", "app"])
        .assert()
        .success();
    // Killed after the first store write, on "another host": its record is elsewhere.
    let crashed = moto
        .credrot(dir.path())
        .args(["update", "app"])
        .env("FAILPOINTS", "after-store-write=return")
        .env("CREDROT_STATE_DIR", dir.path().join("other-host"))
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), None, "{crashed:?}");
    let keys = moto.keys("app");

    let out = moto
        .credrot(dir.path())
        .args(["update", "app"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 user left unconverged (busy)"), "{text}");
    let gated = moto
        .credrot(dir.path())
        .args(["--output", "json", "update", "app", "--fail-on", "busy"])
        .output()
        .unwrap();
    assert_eq!(gated.status.code(), Some(3), "{gated:?}");
    let summary: serde_json::Value = serde_json::from_slice(&gated.stdout).unwrap();
    assert_eq!(summary["busy"], 1, "{summary}");
    assert_eq!(summary["unconverged"][0], "app", "{summary}");
    assert_eq!(moto.keys("app"), keys, "a busy user is not touched");
}

#[test]
fn killed_before_delete() {
    crash_then_rerun("before-delete=return");
}

#[test]
fn killed_after_delete() {
    crash_then_rerun("after-delete=return");
}

#[test]
fn killed_after_create() {
    crash_then_rerun("after-create=return");
}

#[test]
fn killed_after_the_first_store_write() {
    crash_then_rerun("after-store-write=return");
}

#[test]
fn killed_after_the_second_store_write() {
    crash_then_rerun("after-store-write=1*off->return");
}

#[test]
fn killed_after_verify() {
    crash_then_rerun("after-verify=return");
}
