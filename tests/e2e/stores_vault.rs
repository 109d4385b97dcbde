//! The HashiCorp Vault KV v2 store through the built binary, against the fake Vault
//! (tests/fake-vault) and moto for IAM and SSM.

use crate::fake_http::{FakeServer, TestCa};
use crate::harness::{key_of, read_json, shown, write_key_file, Key, Moto};
use serde_json::{json, Value};
use std::path::Path;

const USER: &str = "pg-backup";
const TOKEN: &str = "hvs.fake-vault-token-0123456789";

fn vault(args: &[&str], tls: Option<&TestCa>) -> FakeServer {
    let mut all = vec!["--token", TOKEN, "--cas-required"];
    all.extend_from_slice(args);
    FakeServer::start("fake-vault/server.py", &all, tls)
}

fn vault_store(fake: &FakeServer, extra: &str) -> String {
    format!(
        "{{ kind = \"vault\", address = \"{}\", path = \"aws/{{service}}\", timeout = \"3s\"{extra} }}",
        fake.url
    )
}

fn versions(fake: &FakeServer) -> Vec<Value> {
    fake.state()["secret/aws/pg"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The key of the current version.
fn current(fake: &FakeServer) -> Option<Key> {
    let data = versions(fake).last()?["data"].clone();
    Some(Key {
        id: data["access_key_id"].as_str()?.into(),
        secret: data["secret_access_key"].as_str()?.into(),
    })
}

fn seed(fake: &FakeServer, key: &Key) {
    fake.seed(json!({"path": "aws/pg", "data": {"access_key_id": key.id, "secret_access_key": key.secret, "region": "eu-west-1"}}));
}

fn write_config(dir: &Path, stores: &str) {
    crate::harness::write_pg_service(dir, USER, stores);
}

#[test]
fn every_write_is_a_check_and_set_and_keeps_the_history() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = vault(&[], None);
    write_config(dir.path(), &vault_store(&fake, ""));
    let run = || {
        moto.credrot(dir.path())
            .env("VAULT_TOKEN", TOKEN)
            .args(["update", "pg"])
            .assert()
            .success()
    };

    run();
    let first = current(&fake).expect("a version was written");
    assert_ne!(first.id, old.id);
    moto.assert_key_works_for(&first, USER);
    let data = &versions(&fake)[0]["data"];
    assert_eq!(data["credrot_iam_user"], USER);
    assert!(data["credrot_rotated_at"].as_str().unwrap().ends_with('Z'));

    run();
    let second = current(&fake).unwrap();
    assert_ne!(second.id, first.id);
    moto.assert_key_works_for(&second, USER);
    moto.assert_key_works_for(&first, USER);
    assert!(moto.whoami(&old).is_none());
    assert_eq!(versions(&fake).len(), 2);
    let writes = fake.calls("POST", "/v1/secret/data/aws/pg");
    let cas: Vec<Value> = writes
        .iter()
        .map(|w| {
            serde_json::from_str::<Value>(w["body"].as_str().unwrap()).unwrap()["options"]["cas"]
                .clone()
        })
        .collect();
    assert_eq!(cas, [json!(0), json!(1)]);
    for r in fake.requests() {
        assert_eq!(r["headers"]["x-vault-token"], TOKEN);
    }

    let out = moto
        .credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["--output", "json", "status", "pg"])
        .assert()
        .success();
    let status: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(status[0]["stores"][0]["store"], "vault:secret/aws/pg");
    assert_eq!(status[0]["stores"][0]["key_id"], second.id.as_str());
}

#[test]
fn approle_login_and_a_token_file() {
    let (moto, _old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = vault(
        &["--approle", "role-1:secret-id-xyz:hvs.approle-token"],
        None,
    );
    std::fs::write(dir.path().join("secret-id"), "secret-id-xyz\n").unwrap();
    write_config(
        dir.path(),
        &vault_store(
            &fake,
            ", approle = { role_id = \"role-1\", secret_id_file = \"secret-id\" }",
        ),
    );
    // VAULT_TOKEN is not used when the store logs in with AppRole.
    moto.credrot(dir.path())
        .env("VAULT_TOKEN", "hvs.other")
        .args(["update", "pg"])
        .assert()
        .success();
    let key = current(&fake).unwrap();
    moto.assert_key_works_for(&key, USER);
    assert_eq!(fake.calls("POST", "/v1/auth/approle/login").len(), 1);
    assert!(fake
        .calls("GET", "/data/")
        .iter()
        .all(|r| r["headers"]["x-vault-token"] == "hvs.approle-token"));

    // The token file, when VAULT_TOKEN is not set.
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    write_config(dir.path(), &vault_store(&fake, ", token_file = \"token\""));
    moto.credrot(dir.path())
        .args(["update", "pg", "--force"])
        .assert()
        .success();
    assert_ne!(current(&fake).unwrap(), key);

    // Neither: the store says where a token comes from, before any IAM change.
    write_config(dir.path(), &vault_store(&fake, ""));
    let keys = moto.keys(USER);
    let out = moto
        .credrot(dir.path())
        .env("HOME", dir.path())
        .args(["update", "pg", "--force"])
        .assert()
        .code(1);
    assert!(shown(&out).contains("no Vault token"), "{}", shown(&out));
    assert_eq!(moto.keys(USER), keys);
}

/// A fault on Vault while the key is handed out to a file, SSM and Vault: the run fails,
/// every store holds the old key again, IAM has only the old key; a rerun converges.
fn rolls_back(rule: Value, says: &str, after: impl Fn(&FakeServer, &Key)) {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = vault(&[], None);
    seed(&fake, &old);
    write_key_file(&dir.path().join("pg.json"), &old);
    moto.put_ssm_key("/pg/aws", &old);
    write_config(
        dir.path(),
        &format!("{{ kind = \"file\", path = \"pg.json\" }},\n{{ kind = \"ssm\", prefix = \"/pg/aws\" }},\n{}", vault_store(&fake, "")),
    );
    fake.fail(rule);
    let out = moto
        .credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let err = shown(&out);
    assert!(err.contains(says) && err.contains("rolled back"), "{err}");
    assert!(!err.contains(&old.secret) && !err.contains(TOKEN), "{err}");
    assert_eq!(key_of(&read_json(&dir.path().join("pg.json"))), old);
    assert_eq!(moto.ssm_key("/pg/aws").unwrap().0, old);
    moto.assert_only_key(USER, &old);
    after(&fake, &old);

    moto.credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .success();
    let new = current(&fake).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(key_of(&read_json(&dir.path().join("pg.json"))), new);
    assert_eq!(moto.ssm_key("/pg/aws").unwrap().0, new);
    moto.assert_key_works_for(&new, USER);
    assert_eq!(
        versions(&fake).last().unwrap()["data"]["region"],
        "eu-west-1",
        "other fields kept"
    );
}

fn holds_old(fake: &FakeServer, old: &Key) {
    assert_eq!(current(fake).as_ref(), Some(old));
}

#[test]
fn a_denied_write_rolls_back() {
    rolls_back(
        json!({"method": "POST", "path": "/data/aws/pg", "status": 403}),
        "permission denied",
        |fake, old| {
            holds_old(fake, old);
            assert_eq!(versions(fake).len(), 1, "nothing written");
        },
    );
}

#[test]
fn a_check_and_set_mismatch_overwrites_nothing() {
    rolls_back(
        json!({"method": "POST", "path": "/data/aws/pg", "interfere": {"path": "aws/pg", "set": {"region": "eu-west-1", "note": "other writer"}}}),
        "another writer changed the secret",
        |fake, old| {
            holds_old(fake, old);
            assert_eq!(versions(fake).len(), 2, "only the other writer's version");
            assert_eq!(versions(fake)[1]["data"]["note"], "other writer");
        },
    );
}

#[test]
fn a_write_whose_answer_never_comes_is_written_back() {
    rolls_back(
        json!({"method": "POST", "path": "/data/aws/pg", "hang": "after"}),
        "did not answer within 3s",
        |fake, old| {
            holds_old(fake, old);
            assert_eq!(
                versions(fake).len(),
                3,
                "the seed, credrot's version, and the old data written back"
            );
        },
    );
}

#[test]
fn a_malformed_answer_is_undone() {
    rolls_back(
        json!({"method": "POST", "path": "/data/aws/pg", "garble": true}),
        "names no version",
        |fake, old| {
            holds_old(fake, old);
            assert_eq!(versions(fake).len(), 3);
        },
    );
}

#[test]
fn a_malformed_read_stops_the_user_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = vault(&[], None);
    write_config(dir.path(), &vault_store(&fake, ""));
    fake.fail(json!({"method": "GET", "path": "/data/aws/pg", "garble": true}));
    let out = moto
        .credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .code(1);
    assert!(
        shown(&out).contains("not a KV v2 secret"),
        "{}",
        shown(&out)
    );
    moto.assert_only_key(USER, &old);
    assert!(versions(&fake).is_empty());
}

#[test]
fn https_with_the_vault_ca() {
    let Some(ca) = TestCa::make() else {
        eprintln!("openssl is not installed: the HTTPS test is skipped");
        return;
    };
    let (moto, _old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = vault(&[], Some(&ca));
    std::fs::copy(ca.path("ca.pem"), dir.path().join("vault-ca.pem")).unwrap();
    write_config(
        dir.path(),
        &vault_store(&fake, ", ca_cert = \"vault-ca.pem\""),
    );
    moto.credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .success();
    moto.assert_key_works_for(&current(&fake).unwrap(), USER);
    // VAULT_CACERT works too; without a CA the server is not trusted.
    write_config(dir.path(), &vault_store(&fake, ""));
    moto.credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .env("VAULT_CACERT", ca.path("ca.pem"))
        .args(["update", "pg", "--force"])
        .assert()
        .success();
    let out = moto
        .credrot(dir.path())
        .env("VAULT_TOKEN", TOKEN)
        .args(["update", "pg", "--force"])
        .assert()
        .code(1);
    assert!(
        shown(&out).contains("vault:secret/aws/pg: cannot read"),
        "{}",
        shown(&out)
    );
}
