//! Two credrot runs over the same path at once: the implicit per-user lock (a young key that
//! a store lacks is another run's) and IAM's two-key limit keep every user with a working,
//! stored key, and the slower run reports the user `busy`, not failed.

use crate::harness::{key_of, read_json, Moto};

const PATH: &str = "/Concurrent/";

#[test]
fn two_runs_at_once_keep_the_invariants() {
    let moto = Moto::start();
    let users: Vec<String> = (0..16).map(|i| format!("job-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, PATH);
        moto.create_key(user, true);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Concurrent]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        moto.rotate_path_json(dir.path(), PATH)
            .args(["--concurrency", "4"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (run(&[]), run(&[]));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        assert!(matches!(code, Some(0) | Some(1)), "a run crashed: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{out:?}"
        );
    }
    let check = |when: &str| {
        for user in &users {
            let key = key_of(&read_json(&dir.path().join(format!("keys/{user}.json"))));
            moto.assert_key_works_for(&key, user);
            let keys = moto.keys(user);
            assert!(keys.len() <= 2, "{when}: {user} has {keys:?}");
            assert!(
                keys.contains(&(key.id.clone(), true)),
                "{when}: {user}'s stored key is not in IAM"
            );
        }
    };
    check("after the concurrent runs");
    // A later run converges whatever the race left, and rotates everyone once more.
    moto.credrot(dir.path())
        .args(["rotate", "--path", PATH])
        .assert()
        .success();
    check("after a clean run");

    // Now every user has a stored key: two forced runs at once. Every user is rotated by
    // one of them and left to it by the other, which reports it busy; nobody fails.
    let (first, second) = (run(&["--force"]), run(&["--force"]));
    let mut busy = 0;
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["failed"], 0, "{summary}");
        for user in summary["users"].as_array().unwrap() {
            let outcome = user["outcome"].as_str().unwrap();
            assert!(matches!(outcome, "rotated" | "busy"), "{user}");
            busy += usize::from(outcome == "busy");
        }
    }
    println!(
        "concurrent forced runs: {busy} of {} user runs busy",
        2 * users.len()
    );
    check("after two forced runs at once");
}
