//! The github store against the GitHub fake (tests/fake-cloud), next to file and SSM
//! stores on moto: sealed secrets the fake opens, the key id variable, rotations, the
//! refusal when a rollback could not put the key back, and every failure path rolled back.
use crate::harness::shown;

use crate::fake_cloud::FakeCloud;
use crate::harness::{assert_no_secret, key_of, read_json, Key, Moto};
use serde_json::{json, Value};
use std::path::Path;

const USER: &str = "pg-backup";
const TOKEN: &str = "ghp_testtoken0123456789";
const REPO: &str = "repo:home-ops/infra";

fn github() -> FakeCloud {
    FakeCloud::start(
        "github",
        &[
            "--token",
            TOKEN,
            "--read-token",
            "ghp_readonly",
            "--scope",
            REPO,
            "--scope",
            "env:home-ops/infra/production",
            "--scope",
            "org:home-ops",
        ],
    )
}

fn github_store(fake: &FakeCloud, scope: &str) -> String {
    format!(
        "{{ kind = \"github\", {scope}, api_url = \"{}\" }}",
        fake.url
    )
}

fn run(moto: &Moto, dir: &Path, token: &str) -> assert_cmd::assert::Assert {
    moto.credrot(dir)
        .env("GITHUB_TOKEN", token)
        .env("CREDROT_AWS_TIMEOUT", "5s")
        .args(["update", "pg"])
        .assert()
}

/// The key the fake's scope hands out (both secrets opened) and the variable.
fn held(fake: &FakeCloud, scope: &str) -> (Option<Key>, Option<String>) {
    let state = fake.state();
    let scope = &state[scope];
    let secret = |n: &str| scope["secrets"][n]["value"].as_str().map(str::to_string);
    let key = match (secret("AWS_ACCESS_KEY_ID"), secret("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some(Key { id, secret }),
        _ => None,
    };
    let variable = scope["variables"]["CREDROT_KEY_ID"]
        .as_str()
        .map(str::to_string);
    (key, variable)
}

fn file_key(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("pg.json")))
}

#[test]
fn repository_secrets_are_sealed_then_rotated_and_status_shows_the_id() {
    let (moto, _old) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{}",
            github_store(&fake, "repository = \"home-ops/infra\"")
        ),
    );

    let out = run(&moto, dir.path(), TOKEN).success();
    let first = file_key(dir.path());
    let (key, variable) = held(&fake, REPO);
    assert_eq!(key.as_ref(), Some(&first), "the fake opened both boxes");
    assert_eq!(variable.as_deref(), Some(first.id.as_str()));
    moto.assert_key_works_for(&first, USER);
    assert_no_secret(&shown(&out), &[&first], "the output");

    // GitHub may rotate the repository's public key: each write seals with the current one
    // (the fake refuses a stale key_id).
    fake.seed(json!({"rotate_public_key": REPO}));
    let out = run(&moto, dir.path(), TOKEN).success();
    let second = file_key(dir.path());
    assert_ne!(second.id, first.id);
    assert_eq!(
        held(&fake, REPO),
        (Some(second.clone()), Some(second.id.clone()))
    );
    moto.assert_key_works_for(&second, USER);
    assert_no_secret(&shown(&out), &[&first, &second], "the output");

    let status = moto
        .credrot(dir.path())
        .env("GITHUB_TOKEN", TOKEN)
        .args(["--output", "json", "status"])
        .assert();
    let text = shown(&status);
    assert!(
        text.contains("github:home-ops/infra") && text.contains(&second.id),
        "{text}"
    );
    // Every secret PUT carried a sealed value and the scope's key id (the fake refuses
    // anything else); nothing was sent that it had to refuse.
    let refused: Vec<Value> = fake
        .log()
        .into_iter()
        .filter(|c| c["status"].as_u64().is_some_and(|s| s >= 400 && s != 404))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn alone_it_rotates_once_then_refuses_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &github_store(&fake, "repository = \"home-ops/infra\""),
    );
    run(&moto, dir.path(), TOKEN).success();
    let (Some(first), _) = held(&fake, REPO) else {
        panic!("no key in the fake");
    };
    moto.assert_key_works_for(&first, USER);
    let mut keys = moto.keys(USER);
    keys.sort();
    let out = run(&moto, dir.path(), TOKEN).code(1);
    let text = shown(&out);
    assert!(
        text.contains("cannot give a secret back") && text.contains(&first.id),
        "{text}"
    );
    let mut after = moto.keys(USER);
    after.sort();
    assert_eq!(after, keys, "no IAM change");
    assert_eq!(held(&fake, REPO).0, Some(first.clone()));
    moto.assert_key_works_for(&old, USER);
}

#[test]
fn environment_and_org_secrets_beside_file_and_ssm() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            github_store(
                &fake,
                "repository = \"home-ops/infra\", environment = \"production\""
            ),
            github_store(
                &fake,
                "org = \"home-ops\", visibility = \"selected\", selected_repository_ids = [1296269], key_id_variable = \"PG_KEY_ID\", access_key_id_secret = \"PG_AWS_ID\", secret_access_key_secret = \"PG_AWS_SECRET\""
            ),
        ),
    );
    for _ in 0..2 {
        run(&moto, dir.path(), TOKEN).success();
        let key = file_key(dir.path());
        assert_eq!(
            held(&fake, "env:home-ops/infra/production"),
            (Some(key.clone()), Some(key.id.clone()))
        );
        let org = &fake.state()["org:home-ops"];
        assert_eq!(org["secrets"]["PG_AWS_ID"]["value"], json!(key.id));
        assert_eq!(org["secrets"]["PG_AWS_SECRET"]["value"], json!(key.secret));
        assert_eq!(org["secrets"]["PG_AWS_SECRET"]["visibility"], "selected");
        assert_eq!(org["variables"]["PG_KEY_ID"], json!(key.id));
        assert_eq!(
            moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
            Some(key.clone())
        );
        moto.assert_key_works_for(&key, USER);
    }
    assert!(
        held(&fake, REPO).0.is_none(),
        "the repository's own secrets untouched"
    );
}

/// A service with a file store, the github store and an SSM store, rotated once; the
/// key they all hold.
fn three_stores(moto: &Moto, fake: &FakeCloud, dir: &Path) -> Key {
    crate::harness::write_pg_service(
        dir,
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            github_store(fake, "repository = \"home-ops/infra\"")
        ),
    );
    run(moto, dir, TOKEN).success();
    let key = file_key(dir);
    assert_eq!(held(fake, REPO).0.as_ref(), Some(&key));
    key
}

/// After a failed run: the key every store held is still what they hold, it is the only
/// key, it works; then a rerun converges on a new key.
fn assert_rolled_back_then_converges(moto: &Moto, fake: &FakeCloud, dir: &Path, key: &Key) {
    assert_eq!(file_key(dir), *key, "file restored");
    assert_eq!(
        held(fake, REPO),
        (Some(key.clone()), Some(key.id.clone())),
        "github restored"
    );
    assert_eq!(
        moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
        Some(key.clone()),
        "ssm restored"
    );
    moto.assert_only_key(USER, key);
    run(moto, dir, TOKEN).success();
    let new = file_key(dir);
    assert_ne!(new, *key);
    assert_eq!(held(fake, REPO), (Some(new.clone()), Some(new.id.clone())));
    assert_eq!(
        moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
        Some(new.clone())
    );
    moto.assert_key_works_for(&new, USER);
}

fn failing_run(moto: &Moto, fake: &FakeCloud, dir: &Path, rule: Value, expect: &[&str]) -> Key {
    let key = three_stores(moto, fake, dir);
    fake.fail(rule);
    let out = run(moto, dir, TOKEN).code(1);
    let text = shown(&out);
    for part in expect {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(text.contains("rolled back"), "{text}");
    assert_no_secret(&text, &[&key], "the output");
    key
}

#[test]
fn a_denied_secret_write_rolls_everything_back() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    // The second secret's PUT is refused: the first was written, so both are re-sealed
    // with the old key, and the file is put back.
    let key = failing_run(
        &moto,
        &fake,
        dir.path(),
        json!({"method": "PUT", "path": "/secrets/AWS_SECRET_ACCESS_KEY$", "status": 403}),
        &["github:home-ops/infra: cannot write: PUT secret AWS_SECRET_ACCESS_KEY: HTTP 403"],
    );
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
}

#[test]
fn a_read_only_token_is_refused_at_the_first_write_and_rolled_back() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &fake, dir.path());
    let out = run(&moto, dir.path(), "ghp_readonly").code(1);
    let text = shown(&out);
    assert!(
        text.contains("HTTP 403") && text.contains("rolled back"),
        "{text}"
    );
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
    // A wrong token is refused at the first read: no IAM change.
    let keys = moto.keys(USER);
    let out = run(&moto, dir.path(), "ghp_wrong").code(1);
    assert!(shown(&out).contains("HTTP 401"), "{}", shown(&out));
    assert_eq!(moto.keys(USER), keys);
}

#[test]
fn a_conflict_on_the_variable_rolls_everything_back() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    // The final PATCH of the variable (after both secrets) meets a conflict, twice: once
    // for PATCH and once for the POST credrot falls back to.
    let key = failing_run(
        &moto,
        &fake,
        dir.path(),
        json!({"method": "PATCH", "path": "/variables/CREDROT_KEY_ID$", "skip": 1, "status": 409}),
        &["set variable CREDROT_KEY_ID: HTTP 409"],
    );
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
}

#[test]
fn a_secret_write_that_never_answers_rolls_everything_back() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    let key = failing_run(
        &moto,
        &fake,
        dir.path(),
        json!({"method": "PUT", "path": "/secrets/AWS_ACCESS_KEY_ID$", "status": "hang"}),
        &["PUT secret AWS_ACCESS_KEY_ID", "did not answer within 5s"],
    );
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
}

#[test]
fn a_garbled_public_key_or_a_lost_answer_rolls_everything_back() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    // The public-key GET of the write (the read's comes first) answers something that
    // is not JSON: nothing was written to GitHub, file and the rest are put back.
    let key = failing_run(
        &moto,
        &fake,
        dir.path(),
        json!({"method": "GET", "path": "/secrets/public-key$", "skip": 1, "status": "garble"}),
        &["GET the secrets' public key: unexpected answer"],
    );
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);

    // A secret PUT that is carried out but whose answer is lost: undone too.
    let key = file_key(dir.path());
    fake.fail(
        json!({"method": "PUT", "path": "/secrets/AWS_SECRET_ACCESS_KEY$", "status": "reset"}),
    );
    let out = run(&moto, dir.path(), TOKEN).code(1);
    assert!(shown(&out).contains("rolled back"), "{}", shown(&out));
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
}

#[test]
fn a_later_store_failing_puts_the_old_key_back_into_github() {
    let (moto, _) = Moto::start_with_user(USER);
    let fake = github();
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &fake, dir.path());
    // SSM comes after GitHub: this identity may read parameters but not put them.
    let rotator = moto.create_identity("rotator", &["iam:*", "sts:*", "ssm:GetParameter*"]);
    let out = crate::harness::credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", &rotator.id)
        .env("AWS_SECRET_ACCESS_KEY", &rotator.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("GITHUB_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let text = shown(&out);
    assert!(
        text.contains("ssm:PutParameter") && text.contains("rolled back"),
        "{text}"
    );
    let state = fake.state();
    // Written with the new key, then re-sealed with the old one.
    assert_eq!(state[REPO]["secrets"]["AWS_SECRET_ACCESS_KEY"]["writes"], 3);
    assert_rolled_back_then_converges(&moto, &fake, dir.path(), &key);
}
