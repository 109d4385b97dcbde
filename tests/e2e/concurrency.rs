//! Two credrot runs over the same path at once: the per-user lock and IAM's two-key limit
//! keep every user with a working, stored key.

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
    let run = || {
        moto.credrot_process(dir.path())
            .args(["rotate", "--path", PATH, "--concurrency", "4"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (run(), run());
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
}
