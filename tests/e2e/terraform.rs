//! `source = "terraform"`: the key comes from `terraform output -json`, is verified through
//! STS and handed to the stores; IAM is not changed. The real terraform binary is used when
//! the machine has one (its `output -json` reads a local state file the test writes, with no
//! provider download); otherwise tests/fake-terraform stands in with terraform's own output
//! shape, and the test says so.

use crate::harness::{key_of, read_json, Key, Moto};
use std::path::{Path, PathBuf};

fn terraform_bin() -> PathBuf {
    match which::which("terraform") {
        Ok(real) => real,
        Err(_) => {
            eprintln!("terraform is not installed here: using the stand-in tests/fake-terraform/terraform");
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fake-terraform/terraform"
            ))
        }
    }
}

fn write_state(dir: &Path, key: &Key) {
    std::fs::create_dir_all(dir.join("tf")).unwrap();
    let state = serde_json::json!({
        "version": 4, "terraform_version": "1.5.7", "serial": 1, "lineage": "credrot-test",
        "outputs": {
            "redis_access_key_id": {"value": key.id, "type": "string"},
            "redis_secret_access_key": {"value": key.secret, "type": "string", "sensitive": true}
        },
        "resources": [], "check_results": null
    });
    std::fs::write(dir.join("tf/terraform.tfstate"), state.to_string()).unwrap();
}

fn setup(moto: &Moto, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[services.redis]\niam_user = \"redis-backup\"\nsource = \"terraform\"\nterraform_dir = \"tf\"\noutput_prefix = \"{prefix}\"\nstores = [{{ kind = \"file\", path = \"redis.json\" }}]\n"),
    )
    .unwrap();
    moto.create_user("redis-backup", "/");
    dir
}

fn update(moto: &Moto, dir: &Path) -> std::process::Output {
    moto.credrot_process(dir)
        // A key with a wrong secret is retried as if IAM were still propagating it.
        .args([
            "update",
            "redis",
            "--verify-timeout",
            "2s",
            "--terraform-bin",
        ])
        .arg(terraform_bin())
        .output()
        .unwrap()
}

#[test]
fn a_terraform_key_is_verified_and_handed_to_the_stores_without_iam_changes() {
    let moto = Moto::start();
    let dir = setup(&moto, "redis");
    let key = moto.create_key("redis-backup", true);
    write_state(dir.path(), &key);
    let before = moto.keys("redis-backup");

    let out = update(&moto, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(key_of(&read_json(&dir.path().join("redis.json"))), key);
    assert_eq!(moto.keys("redis-backup"), before, "IAM must not change");
    assert!(
        !stdout.contains(&key.secret)
            && !String::from_utf8_lossy(&out.stderr).contains(&key.secret)
    );

    let again = update(&moto, dir.path());
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("fresh"));
}

#[test]
fn a_terraform_key_that_does_not_work_is_not_stored() {
    let moto = Moto::start();
    let dir = setup(&moto, "redis");
    let good = moto.create_key("redis-backup", true);
    crate::harness::write_key_file(&dir.path().join("redis.json"), &good);
    write_state(
        dir.path(),
        &Key {
            id: good.id.clone(),
            secret: "not-the-secret".into(),
        },
    );

    let out = update(&moto, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("did not pass verification") && stdout.contains("IAM was not changed"),
        "{stdout}"
    );
    assert_eq!(
        key_of(&read_json(&dir.path().join("redis.json"))),
        good,
        "store restored"
    );
}

#[test]
fn a_wrong_output_prefix_is_explained() {
    let moto = Moto::start();
    let dir = setup(&moto, "valkey");
    let key = moto.create_key("redis-backup", true);
    write_state(dir.path(), &key);
    let out = update(&moto, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no string output 'valkey_access_key_id'")
            && stderr.contains("output_prefix"),
        "{stderr}"
    );
    assert!(!dir.path().join("redis.json").exists());
}
