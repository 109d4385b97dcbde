//! `credrot rotate --path`: every user under an IAM path, in every key state.

use crate::harness::{key_of, mode_of, read_json, Moto};
use assert_cmd::Command;

const PATH: &str = "/PSKServiceAccounts/";

#[test]
fn rotates_users_in_every_key_state_and_leaves_other_paths_alone() {
    let moto = Moto::start();
    for user in ["no-key", "one-key", "two-active", "inactive-and-active"] {
        moto.create_user(user, PATH);
    }
    moto.create_user("outsider", "/Other/");
    let outsider_key = moto.create_key("outsider", true);
    let one = moto.create_key("one-key", true);
    let two_old = moto.create_key("two-active", true);
    let two_new = moto.create_key("two-active", true);
    let active = moto.create_key("inactive-and-active", true);
    let inactive = moto.create_key("inactive-and-active", false);
    let outsider_before = moto.keys("outsider");

    let dir = tempfile::tempdir().unwrap();
    // No services.toml: keys go to the outfile only. Both spellings of the path work.
    moto.credrot(dir.path())
        .args(["rotate", "--path", "PSKServiceAccounts", "-o", "keys.json"])
        .assert()
        .success();

    let outfile = dir.path().join("keys.json");
    assert_eq!(mode_of(&outfile), 0o600);
    let keys = read_json(&outfile);
    assert_eq!(keys.as_object().unwrap().len(), 4, "{keys}");
    for user in ["no-key", "one-key", "two-active", "inactive-and-active"] {
        moto.assert_key_works_for(&key_of(&keys[user]), user);
    }
    let ids = |user: &str| -> Vec<String> { moto.keys(user).into_iter().map(|k| k.0).collect() };
    assert_eq!(ids("no-key").len(), 1);
    assert_eq!(ids("one-key").len(), 2);
    assert!(
        ids("one-key").contains(&one.id),
        "the previous CURRENT survives as LAST"
    );
    assert!(!ids("two-active").contains(&two_old.id), "LAST is deleted");
    assert!(
        ids("two-active").contains(&two_new.id),
        "CURRENT survives as LAST"
    );
    assert!(
        !ids("inactive-and-active").contains(&inactive.id),
        "the Inactive key goes first"
    );
    assert!(ids("inactive-and-active").contains(&active.id));
    moto.assert_key_works_for(&one, "one-key");
    assert_eq!(moto.keys("outsider"), outsider_before);
    moto.assert_key_works_for(&outsider_key, "outsider");

    // The same path spelled the IAM way, and a re-run keeps the outfile's earlier entries.
    moto.credrot(dir.path())
        .args(["rotate", "--path", PATH, "-o", "keys.json"])
        .assert()
        .success();
    let again = read_json(&outfile);
    assert_ne!(
        again["no-key"]["AccessKeyId"],
        keys["no-key"]["AccessKeyId"]
    );
    moto.assert_key_works_for(&key_of(&again["no-key"]), "no-key");
    assert!(
        moto.whoami(&key_of(&keys["two-active"])).is_some(),
        "last run's key is now LAST"
    );
}

#[test]
fn templated_path_stores_get_each_users_key() {
    let moto = Moto::start();
    let users: Vec<String> = (0..12).map(|i| format!("svc-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, PATH);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.PSKServiceAccounts]\nstores = [{ kind = \"file\", path = \"secrets/{user}.json\" }]\n",
    )
    .unwrap();
    moto.credrot(dir.path())
        .args([
            "rotate",
            "--path",
            "PSKServiceAccounts",
            "--concurrency",
            "4",
        ])
        .assert()
        .success();
    for user in &users {
        let path = dir.path().join(format!("secrets/{user}.json"));
        assert_eq!(mode_of(&path), 0o600);
        let key = key_of(&read_json(&path));
        moto.assert_key_works_for(&key, user);
        assert_eq!(moto.keys(user), vec![(key.id.clone(), true)]);
    }
}

#[test]
fn a_path_without_users_is_reported() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", "Nobody", "--print-secrets"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("no IAM user has the path /Nobody/"),
        "{stderr}"
    );
}

#[test]
/// moto answers ListUsers in one page whatever MaxItems says, so the paging itself is the
/// SDK paginator's; this proves no cap on the number of users.
fn rotates_150_users_in_one_run() {
    let moto = Moto::start();
    let users: Vec<String> = (0..150).map(|i| format!("batch-{i:03}")).collect();
    for (i, user) in users.iter().enumerate() {
        moto.create_user(user, PATH);
        if i % 3 == 0 {
            moto.create_key(user, true);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::from_std(moto.rotate_path_json(dir.path(), PATH))
        .args(["-o", "keys.json"])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(summary["rotated"], 150);
    assert_eq!(summary["failed"], 0);
    let keys = read_json(&dir.path().join("keys.json"));
    assert_eq!(keys.as_object().unwrap().len(), 150);
    // Spot-check a few keys through STS (checking all 150 would only slow the suite).
    for user in ["batch-000", "batch-001", "batch-077", "batch-149"] {
        moto.assert_key_works_for(&key_of(&keys[user]), user);
    }
}

/// The calls a run reports making, by action, against what it must make: ListUsers once,
/// then per user ListAccessKeys, DeleteAccessKey when the user has two keys, CreateAccessKey
/// and GetCallerIdentity with the new key. Nothing else, in the first run (no key stored
/// yet) or in a steady-state run (every user with a stored CURRENT and a LAST).
#[test]
fn a_rotation_makes_list_delete_create_verify_calls_and_no_more() {
    const PATH: &str = "/Counted/";
    let moto = Moto::start();
    let users: Vec<String> = (0..8).map(|i| format!("counted-{i}")).collect();
    let mut two_keys = 0;
    for (i, user) in users.iter().enumerate() {
        moto.create_user(user, PATH);
        // Round robin: no key, one Active, two Active, an older Inactive and an Active.
        match i % 4 {
            1 => drop(moto.create_key(user, true)),
            2 => (0..2).for_each(|_| drop(moto.create_key(user, true))),
            3 => [false, true]
                .into_iter()
                .for_each(|active| drop(moto.create_key(user, active))),
            _ => {}
        }
        two_keys += usize::from(i % 4 >= 2);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Counted]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n",
    )
    .unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = Command::from_std(moto.rotate_path_json(dir.path(), PATH))
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let expect = |deletes: usize| {
        let n = users.len() as u64;
        serde_json::json!({
            "IAM:ListUsers": {"calls": 1, "attempts": 1},
            "IAM:ListAccessKeys": {"calls": n, "attempts": n},
            "IAM:DeleteAccessKey": {"calls": deletes, "attempts": deletes},
            "IAM:CreateAccessKey": {"calls": n, "attempts": n},
            "STS:GetCallerIdentity": {"calls": n, "attempts": n},
        })
    };

    let first = run(&[]);
    assert_eq!(first["rotated"], 8, "{first}");
    assert_eq!(first["aws_calls"]["by_action"], expect(two_keys), "{first}");
    assert_eq!(first["aws_calls"]["retries"], 0);

    // Every user now has a stored CURRENT; those that had a key before also have a LAST,
    // which goes.
    let second = run(&["--force"]);
    assert_eq!(second["rotated"], 8, "{second}");
    assert_eq!(second["aws_calls"]["by_action"], expect(6), "{second}");
    assert_eq!(second["aws_calls"]["calls"], 1 + 3 * 8 + 6);

    // Steady state, every user with a CURRENT and a LAST: 4 calls per user, and the table
    // says so.
    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", PATH, "--force"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("AWS: 33 calls (4.12 per rotated user), 0 retried by the SDK"),
        "{stdout}"
    );
}

/// `--time-limit`: a user whose turn comes after the limit is not touched (reported failed,
/// "not started"), the one under way finishes, and the next run takes the rest.
/// The first user's verification is held 12 s by a fail point, against a 6 s limit: the
/// margins are seconds, so a slow machine changes nothing.
#[test]
fn a_time_limit_leaves_later_users_untouched_for_the_next_run() {
    let moto = Moto::start();
    let users = ["tl-a", "tl-b", "tl-c"];
    let mut old = Vec::new();
    for user in users {
        moto.create_user(user, PATH);
        old.push(moto.create_key(user, true));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = moto
        .rotate_path_json(dir.path(), PATH)
        .env("FAILPOINTS", "after-verify=sleep(12000)")
        .args([
            "--concurrency",
            "1",
            "--time-limit",
            "6s",
            "-o",
            "keys.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["rotated"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(2)),
        "{summary}"
    );
    let keys = read_json(&dir.path().join("keys.json"));
    for (user, key) in users.iter().zip(&old) {
        let row = summary["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == *user)
            .unwrap();
        if row["outcome"] == "rotated" {
            moto.assert_key_works_for(&key_of(&keys[*user]), user);
        } else {
            assert!(
                row["error"].as_str().unwrap().starts_with("not started"),
                "{row}"
            );
            assert_eq!(
                moto.keys(user),
                vec![(key.id.clone(), true)],
                "{user} untouched"
            );
        }
    }
    // The next run, without a limit, rotates everyone (no rotate_after: each run rotates).
    let out = moto
        .rotate_path_json(dir.path(), PATH)
        .args(["-o", "keys.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rotated"].as_u64(), Some(3), "{summary}");
}
