//! The Taskfile's full-rotation tasks (creds:rotate SERVICE=, creds:rotate:postgresql,
//! creds:rotate:longhorn), creds:generate, the ENVIRONMENT selection and the aws:auth
//! precondition, through the real `task` binary. The AWS identity check runs the AWS CLI
//! when it is installed; the tests that need it say so and are skipped without it.

use crate::harness::{key_of, read_json, Moto, Tripwire};
use crate::taskfile::{config_dir, run, task, task_against, SERVICES_TOML};

fn aws_cli() -> bool {
    std::process::Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn task_list_shows_the_new_tasks() {
    let dir = config_dir();
    let out = run(task(dir.path()).arg("--list"));
    assert_eq!(out.code, Some(0), "{out}");
    for name in [
        "creds:rotate:postgresql",
        "creds:rotate:longhorn",
        "creds:generate",
        "aws:auth",
    ] {
        assert!(
            out.stdout.contains(&format!("* {name}:")),
            "{name} missing: {out}"
        );
    }
}

#[test]
fn creds_rotate_service_rotates_one_service_and_keeps_last() {
    let moto = Moto::start();
    let dir = config_dir();
    moto.create_user("postgresql-backup", "/");
    let old = moto.create_key("postgresql-backup", true);
    moto.create_user("longhorn-backup", "/");

    let out = run(task_against(&moto, dir.path())
        .args(["creds:rotate", "SERVICE=postgresql", "--", "--force"])
        .args(["--endpoint-url", &moto.endpoint]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("1 rotated, 0 failed"), "{out}");
    let new = key_of(&read_json(&dir.path().join("secrets/postgresql.json")));
    assert_ne!(new, old);
    moto.assert_key_works_for(&new, "postgresql-backup");
    assert!(moto.whoami(&old).is_some(), "the old key stays as LAST");

    let out = run(task_against(&moto, dir.path()).args([
        "creds:rotate:longhorn",
        "--",
        "--endpoint-url",
        &moto.endpoint,
    ]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("1 rotated"), "{out}");
    assert!(dir.path().join("secrets/longhorn.env").exists());

    let out = run(task(dir.path()).args([
        "creds:rotate",
        "SERVICE=postgresql",
        "PATH=PSKServiceAccounts",
    ]));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(out.stderr.contains("not both"), "{out}");
}

#[test]
fn environment_selects_the_configuration_directory() {
    let dir = config_dir();
    let envs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(envs.path().join("staging")).unwrap();
    std::fs::write(
        envs.path().join("staging/services.toml"),
        "[services.staging-only]\niam_user = \"stg\"\nstores = [{ kind = \"file\", path = \"s.json\" }]\n",
    )
    .unwrap();
    let out = run(task(dir.path()).args([
        "creds:list",
        "ENVIRONMENT=staging",
        &format!("ENVIRONMENTS_DIR={}", envs.path().display()),
    ]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("staging-only"), "{out}");
    assert!(
        !out.stdout.contains("postgresql"),
        "CREDROT_CONFIG lost to ENVIRONMENT: {out}"
    );
    // From the environment too.
    let out = run(task(dir.path())
        .env("ENVIRONMENT", "staging")
        .env("ENVIRONMENTS_DIR", envs.path())
        .args(["creds:show", "SERVICE=staging-only"]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("iam_user:     stg"), "{out}");

    let out = run(task(dir.path()).args([
        "creds:list",
        "ENVIRONMENT=prod",
        &format!("ENVIRONMENTS_DIR={}", envs.path().display()),
    ]));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(
        out.stderr.contains("ENVIRONMENT=prod")
            && out.stderr.contains("prod/services.toml does not exist"),
        "{out}"
    );
    assert!(SERVICES_TOML.contains("postgresql"));
}

#[test]
fn without_an_aws_identity_the_aws_tasks_stop_before_credrot_runs() {
    let dir = config_dir();
    if !aws_cli() {
        // Without the AWS CLI the check is skipped and credrot reports the missing
        // credentials itself.
        let out = run(task(dir.path()).args(["creds:update", "SERVICE=postgresql"]));
        assert_eq!(out.code, Some(201), "{out}");
        assert!(
            !out.stderr.contains("no AWS identity") && out.stderr.contains("credrot: error"),
            "{out}"
        );
        return;
    }
    let tripwire = Tripwire::new();
    // No credentials at all (task() clears them); the AWS CLI answers without a network call.
    for args in [
        &["creds:update", "SERVICE=postgresql"][..],
        &["creds:rotate", "SERVICE=postgresql"],
        &["aws:auth"],
    ] {
        let out = run(task(dir.path())
            .env("AWS_ENDPOINT_URL", &tripwire.endpoint)
            .args(args)
            .args(["--", "--endpoint-url", &tripwire.endpoint]));
        assert_eq!(out.code, Some(201), "{args:?}: {out}");
        assert!(out.stderr.contains("no AWS identity"), "{out}");
    }
    assert!(!tripwire.tripped(), "no AWS call without credentials");

    // With an identity the check passes; AWS_AUTH_CHECK=true turns it off.
    let moto = Moto::start();
    let out = run(task_against(&moto, dir.path()).arg("aws:auth"));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("AWS identity: ok"), "{out}");
    let out = run(task(dir.path()).args(["aws:auth", "AWS_AUTH_CHECK=true"]));
    assert_eq!(out.code, Some(0), "{out}");
}

#[test]
fn creds_generate_passes_its_flags_to_credrot() {
    let dir = config_dir();
    let out = run(task(dir.path()).args([
        "creds:generate",
        "--",
        "--name",
        "redis",
        "--bucket",
        "redis-backups",
        "--store",
        "file",
        "--no-input",
        "--dry-run",
    ]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("[services.redis]") || out.stderr.contains("[services.redis]"),
        "{out}"
    );
    assert!(out.stdout.contains("resource \"aws_iam_user\""), "{out}");
    let config = std::fs::read_to_string(dir.path().join("services.toml")).unwrap();
    assert!(!config.contains("redis"), "--dry-run wrote services.toml");
}
