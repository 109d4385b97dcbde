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

fn crash_then_rerun(failpoint: &str) {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.app]\niam_user = \"app\"\nstores = [{ kind = \"file\", path = \"a/key.json\" }, { kind = \"file\", path = \"b/key.json\" }]\n",
    )
    .unwrap();
    moto.create_user("app", "/");
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

    // At once, with the default lock TTL, the dead run's new key looks like a run in
    // progress: the user is left alone (busy) or, when no such key is left, rotated.
    let keys_after_crash = moto.keys("app");
    let soon = moto
        .credrot(dir.path())
        .args(["--output", "json", "update", "app"])
        .output()
        .unwrap();
    assert!(soon.status.success(), "{failpoint}: {soon:?}");
    let summary: serde_json::Value = serde_json::from_slice(&soon.stdout).unwrap();
    let outcome = &summary["users"][0]["outcome"];
    if *outcome == "busy" {
        assert_eq!(
            moto.keys("app"),
            keys_after_crash,
            "{failpoint}: busy but changed"
        );
    } else {
        assert_eq!(*outcome, "rotated", "{failpoint}");
    }
    ever_stored.extend(stored_ids(dir.path()));

    // Once the lock TTL has passed, a run finishes the dead run's work: it must converge.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let rerun = moto
        .credrot(dir.path())
        .args(["update", "app", "--lock-ttl", "1s"])
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{failpoint}: re-run failed: {}",
        String::from_utf8_lossy(&rerun.stdout)
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
