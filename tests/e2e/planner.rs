//! The planner's promises, end to end: torn SSM pairs are found and repaired, stores that
//! hold nothing get a key at once, and a dry run prints exactly what the run then does.

use crate::harness::{key_of, read_json, write_pg_service, Key, Moto};
use std::path::Path;

const PREFIX: &str = "/psk/pg";

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn update(moto: &Moto, dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = moto
        .credrot(dir)
        .args(["--output", "json", "update", "pg"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), json(&out)["users"][0].clone())
}

fn status(moto: &Moto, dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = moto
        .credrot(dir)
        .args(["--output", "json", "status", "--fail-on", "drift"])
        .output()
        .unwrap();
    (out.status.code(), json(&out)[0].clone())
}

/// Overwrite only the secret parameter, as a run killed between the two writes leaves it.
fn tear_ssm_pair(moto: &Moto, secret: &str) {
    moto.rt
        .block_on(
            moto.ssm()
                .put_parameter()
                .name(format!("{PREFIX}/secret_access_key"))
                .value(secret)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send(),
        )
        .unwrap();
}

fn ssm_pair(moto: &Moto) -> Key {
    moto.ssm_key(PREFIX).expect("both parameters").0
}

#[test]
fn a_torn_ssm_pair_is_reported_broken_and_repaired_from_a_whole_store() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[defaults]\nmax_age = \"30d\"\n[services.pg]\niam_user = \"pg\"\nstores = [{{ kind = \"file\", path = \"pg.json\" }}, {{ kind = \"ssm\", prefix = \"{PREFIX}\" }}]\n"),
    )
    .unwrap();
    moto.create_user("pg", "/");
    let (code, first) = update(&moto, dir.path(), &[]);
    assert_eq!(
        (code, first["outcome"].as_str()),
        (Some(0), Some("rotated"))
    );
    let stored = key_of(&read_json(&dir.path().join("pg.json")));
    assert_eq!(ssm_pair(&moto), stored);

    tear_ssm_pair(&moto, "a-secret-of-another-key-0000000000000000");
    let (code, user) = status(&moto, dir.path());
    assert_eq!(code, Some(3), "{user}");
    assert_eq!(user["verdict"], "broken", "{user}");
    assert!(
        user["reasons"].to_string().contains("broken pair"),
        "{user}"
    );

    // Default flags: the file's key is verified, then written over the torn pair. Nothing
    // was due, so nothing else changes.
    let (code, user) = update(&moto, dir.path(), &[]);
    assert_eq!(code, Some(0), "{user}");
    assert_eq!(user["outcome"], "fresh", "{user}");
    assert_eq!(user["synced"][0], format!("ssm:{PREFIX}"), "{user}");
    assert_eq!(ssm_pair(&moto), stored);
    moto.assert_key_works_for(&ssm_pair(&moto), "pg");
    assert_eq!(status(&moto, dir.path()).1["verdict"], "ok");
}

#[test]
fn a_torn_pair_in_the_only_store_makes_the_user_due_now() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[defaults]\nmax_age = \"30d\"\n[services.pg]\niam_user = \"pg\"\nstores = [{{ kind = \"ssm\", prefix = \"{PREFIX}\" }}]\n"),
    )
    .unwrap();
    moto.create_user("pg", "/");
    update(&moto, dir.path(), &[]);
    let before = ssm_pair(&moto);
    tear_ssm_pair(&moto, "a-secret-of-another-key-0000000000000000");

    let (code, user) = update(&moto, dir.path(), &[]);
    assert_eq!(
        (code, user["outcome"].as_str()),
        (Some(0), Some("rotated")),
        "{user}"
    );
    let after = ssm_pair(&moto);
    assert_ne!(after.id, before.id);
    moto.assert_key_works_for(&after, "pg");
    // The key the torn store named survives as LAST.
    assert!(moto.keys("pg").contains(&(before.id.clone(), true)));
}

#[test]
fn stores_that_hold_nothing_get_a_key_although_the_key_is_young() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_pg_service(
        dir.path(),
        "pg",
        "{ kind = \"file\", path = \"pg.json\" }, { kind = \"ssm\", prefix = \"/psk/pg\" }",
    );
    let toml = std::fs::read_to_string(dir.path().join("services.toml")).unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[defaults]\nmax_age = \"30d\"\n{toml}"),
    )
    .unwrap();
    moto.create_user("pg", "/");
    // Terraform made the user and its key a minute ago; no store holds anything.
    let terraform_key = moto.create_key("pg", true);

    let (code, user) = update(&moto, dir.path(), &[]);
    assert_eq!(
        (code, user["outcome"].as_str()),
        (Some(0), Some("rotated")),
        "{user}"
    );
    let stored = key_of(&read_json(&dir.path().join("pg.json")));
    assert_eq!(ssm_pair(&moto), stored);
    moto.assert_key_works_for(&stored, "pg");
    moto.assert_key_works_for(&terraform_key, "pg");

    // Now the stores hold a young key: the next run is fresh.
    let (_, user) = update(&moto, dir.path(), &[]);
    assert_eq!(user["outcome"], "fresh", "{user}");
}

#[test]
fn a_dry_run_prints_the_steps_the_run_then_takes() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_pg_service(dir.path(), "pg", "{ kind = \"file\", path = \"pg.json\" }");
    moto.create_user("pg", "/");
    let (_, first) = update(&moto, dir.path(), &[]);
    // The first run's key is LAST after the second run.
    let last = first["created"].as_str().unwrap().to_string();
    update(&moto, dir.path(), &[]);
    let keys = moto.keys("pg");
    assert_eq!(keys.len(), 2);
    let newest = keys.iter().find(|(id, _)| *id != last).unwrap().0.clone();

    let (code, plan) = update(&moto, dir.path(), &["--dry-run"]);
    assert_eq!((code, plan["outcome"].as_str()), (Some(0), Some("planned")));
    let steps: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let file = plan["stores"][0].as_str().unwrap();
    assert_eq!(
        steps,
        [
            format!("would delete {last} (LAST key)"),
            "would create a new key".to_string(),
            format!("would write the new key to {file}"),
            "would verify the new key through STS".to_string(),
            "would make the new key current in every store".to_string(),
        ],
        "{plan}"
    );
    assert_eq!(moto.keys("pg"), keys, "the dry run changed IAM");

    let (_, done) = update(&moto, dir.path(), &[]);
    assert_eq!(done["outcome"], "rotated");
    assert_eq!(
        done["deleted"],
        last.as_str(),
        "the run deleted what the plan said"
    );
    let now: Vec<String> = moto.keys("pg").into_iter().map(|k| k.0).collect();
    assert!(now.contains(&newest) && now.contains(&done["created"].as_str().unwrap().to_string()));
}

#[test]
fn a_staged_dry_run_deletes_nothing_and_says_would() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.pg]\niam_user = \"pg\"\nmax_age = \"30d\"\nmode = \"staged\"\ngrace = \"1h\"\nstores = [{ kind = \"file\", path = \"pg.json\" }]\n",
    )
    .unwrap();
    moto.create_user("pg", "/");
    let old = moto.create_key("pg", false);
    let (_, first) = update(&moto, dir.path(), &[]);
    assert_eq!(first["outcome"], "rotated", "{first}");
    // The old key was deactivated two hours ago: its grace period is over.
    let two_hours_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 7200;
    moto.rt
        .block_on(
            moto.iam()
                .tag_user()
                .user_name("pg")
                .tags(
                    aws_sdk_iam::types::Tag::builder()
                        .key(format!("credrot:deactivated:{}", old.id))
                        .value(two_hours_ago.to_string())
                        .build()
                        .unwrap(),
                )
                .send(),
        )
        .unwrap();
    let keys = moto.keys("pg");

    let (_, plan) = update(&moto, dir.path(), &["--dry-run"]);
    let actions = plan["actions"].to_string();
    assert!(
        actions.contains(&format!("would delete {} (grace over)", old.id)),
        "{plan}"
    );
    assert!(!actions.contains("would create"), "nothing is due: {plan}");
    assert!(!actions.contains("\"deleted"), "{plan}");
    assert_eq!(moto.keys("pg"), keys, "the dry run deleted a key");

    let (_, done) = update(&moto, dir.path(), &[]);
    assert_eq!(done["deleted"], old.id.as_str(), "{done}");
    assert_eq!(done["outcome"], "fresh", "{done}");
}

#[test]
fn a_user_of_a_path_and_a_service_gets_every_store_of_both() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Team]\nstores = [{ kind = \"file\", path = \"team/{user}.json\" }]\n\n[services.pg]\niam_user = \"pg\"\nstores = [{ kind = \"file\", path = \"pg.json\" }]\n",
    )
    .unwrap();
    moto.create_user("pg", "/Team/");
    let seed = moto.create_key("pg", true);
    crate::harness::write_key_file(&dir.path().join("pg.json"), &seed);

    // The path run writes the service's store too, so the service's consumers follow.
    // (`--lock-ttl 0s`: the seed key is seconds old and the path's store lacks it, which is
    // what another run at work looks like.)
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "rotate", "--path", "/Team/", "--force"])
        .args(["--lock-ttl", "0s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let user = &json(&out)["users"][0];
    assert_eq!(user["outcome"], "rotated", "{user}");
    let service_key = key_of(&read_json(&dir.path().join("pg.json")));
    let path_key = key_of(&read_json(&dir.path().join("team/pg.json")));
    assert_eq!(service_key, path_key);
    assert_ne!(service_key.id, seed.id);
    moto.assert_key_works_for(&service_key, "pg");

    // And the service's run writes the path's store: nobody is left with a deleted key.
    let (code, user) = update(&moto, dir.path(), &["--force"]);
    assert_eq!(
        (code, user["outcome"].as_str()),
        (Some(0), Some("rotated")),
        "{user}"
    );
    let service_key = key_of(&read_json(&dir.path().join("pg.json")));
    assert_eq!(
        key_of(&read_json(&dir.path().join("team/pg.json"))),
        service_key
    );
    moto.assert_key_works_for(&service_key, "pg");
    assert_eq!(user["deleted"], seed.id.as_str(), "{user}");
    assert_eq!(user["stores"].as_array().unwrap().len(), 2, "{user}");
}

#[test]
fn a_path_store_that_is_another_users_service_store_is_refused_before_any_change() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Team]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n\n[services.pg]\niam_user = \"alice\"\nstores = [{ kind = \"file\", path = \"keys/bob.json\" }]\n",
    )
    .unwrap();
    moto.create_user("bob", "/Team/");
    moto.create_user("alice", "/");
    moto.create_key("bob", true);
    let before = moto.keys("bob");

    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", "/Team/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("service 'pg'") && stderr.contains("alice") && stderr.contains("bob"),
        "{stderr}"
    );
    assert_eq!(moto.keys("bob"), before, "IAM changed");
    assert!(!dir.path().join("keys").exists(), "a store was written");

    // The same from the service's side: `update pg` sees that bob, under /Team/, would
    // write the service's store.
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(moto.keys("alice").is_empty(), "IAM changed");
}
