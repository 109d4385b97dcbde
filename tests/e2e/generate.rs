//! `credrot generate`: scripted by flags and interactive on a terminal; the existing file is
//! kept byte for byte, the result validates, and the Terraform parses.

use crate::harness::credrot_command;
use std::path::Path;

const EXISTING: &str = "# Our services. Keep this comment.\n[defaults]\nregion = \"us-west-2\"   # aligned on purpose\n\n[services.pg]\niam_user = \"pg-backup\"\nstores = [{ kind = \"file\", path = \"pg.json\" }]\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), EXISTING).unwrap();
    dir
}

/// The HCL parses: `terraform fmt` reads it (no provider needed) where terraform exists.
fn assert_hcl_parses(hcl: &str) {
    let Ok(terraform) = which::which("terraform") else {
        eprintln!("terraform is not installed here: the HCL syntax check is skipped");
        return;
    };
    let mut child = std::process::Command::new(terraform)
        .args(["fmt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hcl.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "terraform cannot parse:\n{hcl}"
    );
}

fn config(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("services.toml")).unwrap()
}

#[test]
fn flags_add_a_service_and_print_terraform() {
    let dir = setup();
    let out = credrot_command(dir.path())
        .args([
            "generate",
            "--name",
            "redis",
            "--iam-user",
            "redis-backup",
            "--bucket",
            "redis-backup-home-ops",
        ])
        .args([
            "--store",
            "1password",
            "--vault",
            "Automation",
            "--tags",
            "aws,redis",
            "--no-input",
        ])
        .assert()
        .success();
    let text = config(dir.path());
    assert!(
        text.starts_with(EXISTING),
        "the existing file must stay byte for byte:\n{text}"
    );
    let shown = credrot_command(dir.path())
        .args(["--output", "json", "show", "redis"])
        .assert()
        .success();
    let service: serde_json::Value = serde_json::from_slice(&shown.get_output().stdout).unwrap();
    assert_eq!(service["iam_user"], "redis-backup");
    assert_eq!(service["stores"][0]["kind"], "1password");
    assert_eq!(service["stores"][0]["vault"], "Automation");
    assert_eq!(service["tags"], serde_json::json!(["aws", "redis"]));

    let hcl = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for needle in [
        "resource \"aws_iam_user\" \"redis\"",
        "name = \"redis-backup\"",
        "arn:aws:s3:::redis-backup-home-ops/*",
        "resource \"aws_iam_user_policy_attachment\" \"redis_s3\"",
    ] {
        assert!(hcl.contains(needle), "missing {needle:?} in:\n{hcl}");
    }
    // credrot makes the keys: Terraform must not make its own for the same user.
    for absent in [
        "resource \"aws_iam_access_key\"",
        "time_rotating",
        "output \"",
    ] {
        assert!(!hcl.contains(absent), "{absent} in:\n{hcl}");
    }
    assert_hcl_parses(&hcl);
}

#[test]
fn bad_or_missing_values_change_nothing() {
    let dir = setup();
    for (args, expect) in [
        (
            vec!["--name", "pg", "--bucket", "pg-bucket"],
            "service 'pg' already exists",
        ),
        (vec!["--name", "redis"], "--bucket is required"),
        (
            vec!["--name", "redis", "--bucket", "Bad_Bucket"],
            "not a valid S3 bucket name",
        ),
        (
            vec![
                "--name",
                "redis",
                "--bucket",
                "ok-bucket",
                "--max-age",
                "soon",
            ],
            "invalid duration",
        ),
    ] {
        let out = credrot_command(dir.path())
            .arg("generate")
            .args(&args)
            .arg("--no-input")
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(config(dir.path()), EXISTING, "{args:?} changed the file");
    }
    credrot_command(dir.path())
        .args([
            "generate",
            "--name",
            "redis",
            "--bucket",
            "ok-bucket",
            "--no-input",
            "--dry-run",
        ])
        .assert()
        .success();
    assert_eq!(config(dir.path()), EXISTING, "--dry-run changed the file");
}

#[test]
fn a_person_at_a_terminal_is_prompted_with_defaults_and_validation() {
    let dir = setup();
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_drive.py");
    let out = crate::harness::isolated_command("python3", dir.path())
        .arg(driver)
        .args([
            "Service name=valkey",
            "IAM user=",
            "S3 bucket=Not_A_Bucket",
            "S3 bucket=valkey-dumps",
            "Description=",
            "Maximum key age=90d",
            "Store for the key=",
            "Store location=",
            "--",
            env!("CARGO_BIN_EXE_credrot"),
            "generate",
        ])
        .assert()
        .success();
    let screen = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        screen.contains("not a valid S3 bucket name"),
        "the invalid bucket was not refused:\n{screen}"
    );
    let text = config(dir.path());
    assert!(text.starts_with(EXISTING));
    assert!(
        text.contains("iam_user = \"valkey-backup\""),
        "the default IAM user was not used:\n{text}"
    );
    assert!(
        text.contains("max_age = \"90d\"") && text.contains("path = \"secrets/{service}.json\""),
        "{text}"
    );
    assert!(!screen.contains("rotation_days"), "{screen}");
}
