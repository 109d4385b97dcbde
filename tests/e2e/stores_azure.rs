//! The azure-key-vault store against the Key Vault fake (tests/fake-cloud), with client
//! credentials, the instance metadata service and App Service's identity endpoint, next to
//! file and SSM stores on moto: versions, tags, and every failure path rolled back.
use crate::harness::shown;

use crate::fake_cloud::FakeCloud;
use crate::harness::{assert_no_secret, key_of, read_json, Key, Moto};
use serde_json::{json, Value};
use std::path::Path;

const USER: &str = "pg-backup";
const NAME: &str = "pg-backup-aws";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const SECRET: &str = "azure-client-secret~test";

struct Azure {
    fake: FakeCloud,
    _dir: tempfile::TempDir,
}

fn start() -> Azure {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fake.json");
    std::fs::write(
        &config,
        json!({"tenant": TENANT, "client_id": CLIENT, "client_secret": SECRET,
               "identity_header": "app-service-header"})
        .to_string(),
    )
    .unwrap();
    let fake = FakeCloud::start("azure", &["--config", config.to_str().unwrap()]);
    Azure { fake, _dir: dir }
}

fn store(az: &Azure) -> String {
    format!(
        "{{ kind = \"azure-key-vault\", vault_url = \"{}\", name = \"{NAME}\" }}",
        az.fake.url
    )
}

/// credrot with client credentials pointed at the fake.
fn credrot(moto: &Moto, az: &Azure, dir: &Path) -> assert_cmd::Command {
    let mut cmd = moto.credrot(dir);
    cmd.env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_AUTHORITY_HOST", &az.fake.url)
        .env("CREDROT_AWS_TIMEOUT", "5s");
    cmd
}

fn run(moto: &Moto, az: &Azure, dir: &Path) -> assert_cmd::assert::Assert {
    credrot(moto, az, dir).args(["update", "pg"]).assert()
}

/// Each version's (enabled, key, tags), oldest first.
fn versions(az: &Azure) -> Vec<(bool, Option<Key>, Value)> {
    let state = az.fake.state();
    state["secrets"][NAME]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let key = serde_json::from_str::<Value>(v["value"].as_str().unwrap())
                .ok()
                .map(|d| key_of(&d));
            (v["enabled"].as_bool().unwrap(), key, v["tags"].clone())
        })
        .collect()
}

/// What a GET without a version hands out: the newest version, if enabled.
fn current(az: &Azure) -> Option<Key> {
    versions(az).pop().filter(|v| v.0).and_then(|v| v.1)
}

fn file_key(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("pg.json")))
}

#[test]
fn client_credentials_add_a_tagged_version_per_rotation() {
    let (moto, _) = Moto::start_with_user(USER);
    let az = start();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            store(&az)
        ),
    );
    let mut keys = Vec::new();
    for _ in 0..2 {
        let out = run(&moto, &az, dir.path()).success();
        let key = file_key(dir.path());
        assert_eq!(current(&az), Some(key.clone()));
        assert_eq!(
            moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
            Some(key.clone())
        );
        moto.assert_key_works_for(&key, USER);
        keys.push(key);
        assert_no_secret(&shown(&out), &keys.iter().collect::<Vec<_>>(), "the output");
    }
    let v = versions(&az);
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].2["AccessKeyId"], json!(keys[1].id));
    assert_eq!(v[1].2["managed-by"], "credrot");
    let state = az.fake.state();
    assert_eq!(
        state["grants"],
        json!(["client_credentials", "client_credentials"])
    );
    let status = credrot(&moto, &az, dir.path())
        .args(["--output", "json", "status"])
        .assert();
    let text = shown(&status);
    assert!(
        text.contains(&format!("azure-key-vault:{}/secrets/{NAME}", az.fake.url))
            && text.contains(&keys[1].id),
        "{text}"
    );
}

#[test]
fn managed_identity_through_imds_or_app_service() {
    let (moto, _) = Moto::start_with_user(USER);
    let az = start();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(dir.path(), USER, &store(&az));
    moto.credrot(dir.path())
        .env(
            "CREDROT_AZURE_IMDS_ENDPOINT",
            format!("{}/metadata/identity/oauth2/token", az.fake.url),
        )
        .args(["update", "pg"])
        .assert()
        .success();
    let first = current(&az).expect("a version");
    moto.assert_key_works_for(&first, USER);
    // Azure Key Vault can give a secret back: the second rotation needs no other store.
    moto.credrot(dir.path())
        .env("IDENTITY_ENDPOINT", format!("{}/msi/token", az.fake.url))
        .env("IDENTITY_HEADER", "app-service-header")
        .args(["update", "pg", "--force"])
        .assert()
        .success();
    let second = current(&az).unwrap();
    assert_ne!(second, first);
    moto.assert_key_works_for(&second, USER);
    assert_eq!(az.fake.state()["grants"], json!(["imds", "app_service"]));
}

#[test]
fn refused_credentials_fail_before_any_iam_change() {
    let (moto, _) = Moto::start_with_user(USER);
    let az = start();
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(dir.path(), USER, &store(&az));
    let keys = moto.keys(USER);
    let out = credrot(&moto, &az, dir.path())
        .env("AZURE_CLIENT_SECRET", "wrong")
        .args(["update", "pg"])
        .assert()
        .code(1);
    let text = shown(&out);
    assert!(
        text.contains("refused the credentials: HTTP 401") && text.contains("AADSTS7000215"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "the secret is not shown: {text}");
    assert_eq!(moto.keys(USER), keys);
    assert!(versions(&az).is_empty());
}

fn three_stores(moto: &Moto, az: &Azure, dir: &Path) -> Key {
    crate::harness::write_pg_service(
        dir,
        USER,
        &format!(
            "{{ kind = \"file\", path = \"pg.json\" }},\n{},\n{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }}",
            store(az)
        ),
    );
    run(moto, az, dir).success();
    let key = file_key(dir);
    assert_eq!(current(az), Some(key.clone()));
    key
}

fn assert_rolled_back_then_converges(moto: &Moto, az: &Azure, dir: &Path, key: &Key) {
    assert_eq!(file_key(dir), *key, "file restored");
    assert_eq!(
        current(az),
        Some(key.clone()),
        "the vault hands out the old key: {:?}",
        versions(az)
    );
    assert_eq!(
        moto.ssm_key("/home-ops/pg").map(|(k, _)| k),
        Some(key.clone()),
        "ssm restored"
    );
    moto.assert_only_key(USER, key);
    run(moto, az, dir).success();
    let new = file_key(dir);
    assert_ne!(new, *key);
    assert_eq!(current(az), Some(new.clone()));
    moto.assert_key_works_for(&new, USER);
}

fn failing(rule: Value, expect: &[&str]) -> Vec<(bool, Option<Key>, Value)> {
    let (moto, _) = Moto::start_with_user(USER);
    let az = start();
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &az, dir.path());
    az.fake.fail(rule);
    let out = run(&moto, &az, dir.path()).code(1);
    let text = shown(&out);
    for part in expect {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(text.contains("rolled back"), "{text}");
    assert_no_secret(&text, &[&key], "the output");
    let after = versions(&az);
    assert_rolled_back_then_converges(&moto, &az, dir.path(), &key);
    after
}

#[test]
fn a_denied_put_rolls_everything_back() {
    let after = failing(
        json!({"method": "PUT", "path": "^/secrets/", "status": 403}),
        &["cannot write: PUT secret: HTTP 403: Forbidden"],
    );
    assert_eq!(after.len(), 1, "nothing was written: {after:?}");
}

#[test]
fn a_conflict_on_the_put_rolls_everything_back() {
    failing(
        json!({"method": "PUT", "path": "^/secrets/", "status": 409}),
        &["PUT secret: HTTP 409: Conflict"],
    );
}

#[test]
fn a_put_that_never_answers_rolls_everything_back() {
    failing(
        json!({"method": "PUT", "path": "^/secrets/", "status": "hang"}),
        &["PUT secret", "did not answer within 5s"],
    );
}

#[test]
fn a_garbled_answer_to_a_put_that_landed_is_undone() {
    // The version is written but the answer is not JSON: credrot finds it by its tag,
    // writes the old key again and disables the version it wrote.
    let after = failing(
        json!({"method": "PUT", "path": "^/secrets/", "status": "garble"}),
        &["PUT secret: unexpected answer"],
    );
    let enabled: Vec<bool> = after.iter().map(|v| v.0).collect();
    assert_eq!(enabled, [true, false, true], "{after:?}");
}

#[test]
fn a_later_store_failing_puts_the_old_key_back_and_disables_the_new_version() {
    let (moto, _) = Moto::start_with_user(USER);
    let az = start();
    let dir = tempfile::tempdir().unwrap();
    let key = three_stores(&moto, &az, dir.path());
    let rotator = moto.create_identity("rotator", &["iam:*", "sts:*", "ssm:GetParameter*"]);
    let out = crate::harness::credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", &rotator.id)
        .env("AWS_SECRET_ACCESS_KEY", &rotator.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_AUTHORITY_HOST", &az.fake.url)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let text = shown(&out);
    assert!(
        text.contains("ssm:PutParameter") && text.contains("rolled back"),
        "{text}"
    );
    let v = versions(&az);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(!v[1].0, "the undone key's version is disabled");
    assert_eq!(v[2].1.as_ref(), Some(&key));
    assert_rolled_back_then_converges(&moto, &az, dir.path(), &key);
}

#[test]
fn a_vault_url_in_plain_http_off_loopback_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    crate::harness::write_pg_service(
        dir.path(),
        USER,
        &format!("{{ kind = \"azure-key-vault\", vault_url = \"http://my-vault.vault.azure.net\", name = \"{NAME}\" }}"),
    );
    let out = crate::harness::credrot_command(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(2);
    let text = shown(&out);
    assert!(
        text.contains("services.toml:5:") && text.contains("in the clear"),
        "{text}"
    );
}
