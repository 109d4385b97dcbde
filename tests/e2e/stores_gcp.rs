//! The gcp-secret-manager store against the Secret Manager fake (tests/fake-cloud), with
//! service-account and authorized-user credentials through the fake's token endpoint, next
//! to file and SSM stores on moto: versions, old-version policies, and every failure path
//! rolled back.
use crate::harness::shown;

use crate::fake_cloud::FakeCloud;
use crate::harness::{assert_no_secret, key_of, read_json, Key, Moto};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const USER: &str = "pg-backup";
const PROJECT: &str = "home-ops-test";
const SECRET: &str = "pg-backup-aws";

/// The fake, and the credentials file credrot is given (its token_uri at the fake).
struct Gcp {
    fake: FakeCloud,
    credentials: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(kind: &str) -> Gcp {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fake-cloud/gcp-test-service-account.json");
    let port_file = dir.path().join("sa.json");
    // The fake needs the audience before it starts, so the port is chosen first.
    let port = crate::harness::free_port();
    let token_uri = format!("http://127.0.0.1:{port}/token");
    let mut account: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    account["token_uri"] = json!(token_uri);
    std::fs::write(&port_file, account.to_string()).unwrap();
    let user = json!({"client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
                      "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token": "1//0gtest-refresh"});
    let config = dir.path().join("fake.json");
    std::fs::write(
        &config,
        json!({"project": PROJECT, "project_number": 123456789012u64,
               "service_account": port_file, "authorized_user": user})
        .to_string(),
    )
    .unwrap();
    let fake = FakeCloud::start_on("gcp", port, &["--config", config.to_str().unwrap()]);
    let credentials = match kind {
        "service_account" => port_file,
        _ => {
            let mut doc = user.clone();
            doc["type"] = json!("authorized_user");
            doc["token_uri"] = json!(token_uri);
            let path = dir.path().join("adc.json");
            std::fs::write(&path, doc.to_string()).unwrap();
            path
        }
    };
    Gcp {
        fake,
        credentials,
        _dir: dir,
    }
}

fn store(gcp: &Gcp, extra: &str) -> String {
    format!(
        "{{ kind = \"gcp-secret-manager\", project = \"{PROJECT}\", secret = \"{SECRET}\", endpoint = \"{}\"{extra} }}",
        gcp.fake.url
    )
}

fn run(moto: &Moto, gcp: &Gcp, dir: &Path) -> assert_cmd::assert::Assert {
    moto.credrot(dir)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &gcp.credentials)
        .env("CREDROT_AWS_TIMEOUT", "5s")
        .args(["update", "pg"])
        .assert()
}

/// Each version's (state, key).
fn versions(gcp: &Gcp) -> Vec<(u64, String, Option<Key>)> {
    let state = gcp.fake.state();
    let Some(versions) = state["secrets"][SECRET]["versions"].as_object().cloned() else {
        return Vec::new();
    };
    let mut out: Vec<_> = versions
        .iter()
        .map(|(n, v)| {
            let key = v["data"]
                .as_str()
                .map(|d| key_of(&serde_json::from_str(d).unwrap()));
            (
                n.parse().unwrap(),
                v["state"].as_str().unwrap().to_string(),
                key,
            )
        })
        .collect();
    out.sort_by_key(|v| v.0);
    out
}

/// What `versions/latest` hands out: the newest version, if it is enabled.
fn latest(gcp: &Gcp) -> Option<Key> {
    versions(gcp)
        .pop()
        .filter(|(_, state, _)| state == "ENABLED")
        .and_then(|(_, _, key)| key)
}

fn file_key(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("pg.json")))
}

#[test]
fn a_service_account_adds_versions_and_old_ones_are_disabled_but_never_the_previous() {
    let (moto, _) = Moto::start_with_user(USER);
    let gcp = start("service_account");
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{}",
            store(&gcp, "")
        ),
    );
    let mut keys = Vec::new();
    for _ in 0..3 {
        let out = run(&moto, &gcp, dir.path()).success();
        let key = file_key(dir.path());
        assert_eq!(latest(&gcp), Some(key.clone()));
        moto.assert_key_works_for(&key, USER);
        keys.push(key);
        assert_no_secret(&shown(&out), &keys.iter().collect::<Vec<_>>(), "the output");
    }
    let states: Vec<(u64, String)> = versions(&gcp).into_iter().map(|(n, s, _)| (n, s)).collect();
    assert_eq!(
        states,
        [
            (1, "DISABLED".into()),
            (2, "ENABLED".into()),
            (3, "ENABLED".into())
        ],
        "version 2 holds the LAST key, which may still be in use"
    );
    let state = gcp.fake.state();
    assert_eq!(
        state["secrets"][SECRET]["replication"],
        json!({"automatic": {}})
    );
    assert_eq!(state["secrets"][SECRET]["labels"]["managed-by"], "credrot");
    let grants = state["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 3, "one token per run: {grants:?}");
    assert!(grants
        .iter()
        .all(|g| g == "urn:ietf:params:oauth:grant-type:jwt-bearer"));

    let status = moto
        .credrot(dir.path())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &gcp.credentials)
        .args(["--output", "json", "status"])
        .assert();
    let text = shown(&status);
    assert!(
        text.contains(&format!(
            "gcp-secret-manager:projects/{PROJECT}/secrets/{SECRET}"
        )) && text.contains(&keys[2].id),
        "{text}"
    );
}

#[test]
fn an_authorized_user_beside_file_and_ssm_with_old_versions_destroyed() {
    let (moto, _) = Moto::start_with_user(USER);
    let gcp = start("authorized_user");
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            store(&gcp, ", old_versions = \"destroy\"")
        ),
    );
    for _ in 0..3 {
        run(&moto, &gcp, dir.path()).success();
        let key = file_key(dir.path());
        assert_eq!(latest(&gcp), Some(key.clone()));
        assert_eq!(
            moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
            Some(key.clone())
        );
        moto.assert_key_works_for(&key, USER);
    }
    let v = versions(&gcp);
    assert_eq!(
        (v[0].1.as_str(), v[0].2.is_none()),
        ("DESTROYED", true),
        "{v:?}"
    );
    assert_eq!(v[1].1, "ENABLED");
    assert!(gcp.fake.state()["grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g == "refresh_token"));
}

#[test]
fn missing_or_refused_credentials_fail_before_any_iam_change() {
    let (moto, _) = Moto::start_with_user(USER);
    let gcp = start("service_account");
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(dir.path(), USER, &store(&gcp, ""));
    let keys = moto.keys(USER);
    let out = moto
        .credrot(dir.path())
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            dir.path().join("nope.json"),
        )
        .env("HOME", dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    assert!(
        shown(&out).contains("cannot read GCP credentials"),
        "{}",
        shown(&out)
    );
    // A service account key the token endpoint does not know (another key's signature).
    let mut other: Value =
        serde_json::from_slice(&std::fs::read(&gcp.credentials).unwrap()).unwrap();
    other["client_email"] = json!("someone-else@home-ops-test.iam.gserviceaccount.com");
    let forged = dir.path().join("other.json");
    std::fs::write(&forged, other.to_string()).unwrap();
    let out = moto
        .credrot(dir.path())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &forged)
        .args(["update", "pg"])
        .assert()
        .code(1);
    assert!(
        shown(&out).contains("refused the credentials: HTTP 400"),
        "{}",
        shown(&out)
    );
    assert_eq!(moto.keys(USER), keys);
    assert!(versions(&gcp).is_empty());
}

/// file, gcp, ssm rotated once; the key they hold.
fn three_stores(moto: &Moto, gcp: &Gcp, dir: &Path) -> Key {
    crate::harness::write_pg_service(
        dir,
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            store(gcp, "")
        ),
    );
    run(moto, gcp, dir).success();
    let key = file_key(dir);
    assert_eq!(latest(gcp), Some(key.clone()));
    key
}

fn assert_rolled_back_then_converges(moto: &Moto, gcp: &Gcp, dir: &Path, key: &Key) {
    assert_eq!(file_key(dir), *key, "file restored");
    assert_eq!(
        latest(gcp),
        Some(key.clone()),
        "latest is the old key again: {:?}",
        versions(gcp)
    );
    assert_eq!(
        moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
        Some(key.clone()),
        "ssm restored"
    );
    moto.assert_only_key(USER, key);
    run(moto, gcp, dir).success();
    let new = file_key(dir);
    assert_ne!(new, *key);
    assert_eq!(latest(gcp), Some(new.clone()));
    moto.assert_key_works_for(&new, USER);
}

fn failing(rule: Value, expect: &[&str]) {
    let (moto, _) = Moto::start_with_user(USER);
    let gcp = start("service_account");
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &gcp, dir.path());
    gcp.fake.fail(rule);
    let out = run(&moto, &gcp, dir.path()).code(1);
    let text = shown(&out);
    for part in expect {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(text.contains("rolled back"), "{text}");
    assert_no_secret(&text, &[&key], "the output");
    assert_rolled_back_then_converges(&moto, &gcp, dir.path(), &key);
}

#[test]
fn a_denied_version_add_rolls_everything_back() {
    failing(
        json!({"method": "POST", "path": ":addVersion$", "status": 403}),
        &["cannot write: POST :addVersion: HTTP 403: PERMISSION_DENIED"],
    );
}

#[test]
fn a_version_add_that_never_answers_rolls_everything_back() {
    failing(
        json!({"method": "POST", "path": ":addVersion$", "status": "hang"}),
        &["POST :addVersion", "did not answer within 5s"],
    );
}

#[test]
fn a_garbled_answer_to_a_version_add_that_landed_is_undone() {
    // The version is added but the answer is not JSON: credrot finds its version through
    // `latest`, adds the old key back and disables its own.
    failing(
        json!({"method": "POST", "path": ":addVersion$", "status": "garble"}),
        &["POST :addVersion: unexpected answer"],
    );
}

#[test]
fn a_server_error_on_the_first_write_of_a_new_secret_deletes_it() {
    let (moto, old) = Moto::start_with_user(USER);
    let gcp = start("service_account");
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{}",
            store(&gcp, "")
        ),
    );
    // A conflict on create (ALREADY_EXISTS without the secret existing: a concurrent
    // writer that then deleted it) makes the version add fail with NOT_FOUND.
    gcp.fake
        .fail(json!({"method": "POST", "path": "/secrets$", "status": 409}));
    let out = run(&moto, &gcp, dir.path()).code(1);
    let text = shown(&out);
    assert!(
        text.contains("POST :addVersion: HTTP 404") && text.contains("rolled back"),
        "{text}"
    );
    assert!(
        !dir.path().join("pg.json").exists(),
        "the new file is removed"
    );
    moto.assert_only_key(USER, &old);
    // A server error on the add: the secret credrot created is deleted again.
    gcp.fake
        .fail(json!({"method": "POST", "path": ":addVersion$", "status": 500}));
    let out = run(&moto, &gcp, dir.path()).code(1);
    assert!(shown(&out).contains("rolled back"), "{}", shown(&out));
    assert!(
        gcp.fake.state()["secrets"].as_object().unwrap().is_empty(),
        "{}",
        gcp.fake.state()
    );
    moto.assert_only_key(USER, &old);
    run(&moto, &gcp, dir.path()).success();
    assert_eq!(latest(&gcp), Some(file_key(dir.path())));
}

#[test]
fn a_later_store_failing_puts_the_old_key_back_as_the_newest_version() {
    let (moto, _) = Moto::start_with_user(USER);
    let gcp = start("service_account");
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &gcp, dir.path());
    let rotator = moto.create_identity("rotator", &["iam:*", "sts:*", "ssm:GetParameter*"]);
    let out = crate::harness::credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", &rotator.id)
        .env("AWS_SECRET_ACCESS_KEY", &rotator.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &gcp.credentials)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let text = shown(&out);
    assert!(
        text.contains("ssm:PutParameter") && text.contains("rolled back"),
        "{text}"
    );
    let v = versions(&gcp);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[1].1, "DISABLED", "the undone key's version is disabled");
    assert_eq!(
        v[2].2.as_ref(),
        Some(&key),
        "the old key is the newest version"
    );
    assert_rolled_back_then_converges(&moto, &gcp, dir.path(), &key);
}
