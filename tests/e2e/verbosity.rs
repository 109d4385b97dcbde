//! What `-v`, `-vv` and `-vvv` add on stderr, and that none of it is ever a secret.

use crate::harness::{assert_no_secret, key_of, read_json, Key, Moto};
use std::path::Path;

const SERVICE_TOML: &str = r#"
[services.pg]
iam_user = "pg-backup"
stores = [
  { kind = "file", path = "secrets/pg.json" },
  { kind = "ssm", prefix = "/pg" },
]
"#;

/// `credrot [flags] update pg`: stderr, and the key the run stored.
fn update(moto: &Moto, dir: &Path, flags: &[&str], rust_log: Option<&str>) -> (String, Key) {
    let mut cmd = moto.credrot(dir);
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let out = cmd.args(flags).args(["update", "pg"]).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("1 rotated, 0 failed"), "{stdout}");
    (stderr, key_of(&read_json(&dir.join("secrets/pg.json"))))
}

/// The per-request lines of `-vv` (see src/aws/wait.rs).
fn call_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            ["AWS IAM:", "AWS STS:", "AWS SSM:"]
                .iter()
                .any(|a| l.contains(a))
        })
        .collect()
}

#[test]
fn each_verbosity_adds_its_layer_and_never_a_secret() {
    let moto = Moto::start();
    moto.create_user("pg-backup", "/");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), SERVICE_TOML).unwrap();
    let mut keys = vec![moto.admin.clone()];

    // No -v: warnings only; nothing of what the run does, no request.
    let (quiet, key) = update(&moto, dir.path(), &[], None);
    keys.push(key.clone());
    assert!(call_lines(&quiet).is_empty(), "{quiet}");
    assert!(!quiet.contains("created new key"), "{quiet}");
    assert!(!quiet.contains("beginning attempt"), "{quiet}");

    // -v: what credrot does for the user, no request.
    let (info, key) = update(&moto, dir.path(), &["-v"], None);
    keys.push(key.clone());
    assert!(
        info.contains("created new key") && info.contains(&key.id),
        "{info}"
    );
    assert!(
        info.contains("pg-backup") && info.contains("rotated"),
        "{info}"
    );
    assert!(call_lines(&info).is_empty(), "{info}");

    // -vv: also one line per request, with its action, status, duration and attempt.
    let (debug, key) = update(&moto, dir.path(), &["-vv"], None);
    keys.push(key.clone());
    let calls = call_lines(&debug);
    for action in [
        "IAM:ListAccessKeys",
        "IAM:DeleteAccessKey",
        "IAM:CreateAccessKey",
        "SSM:GetParameters",
        "SSM:PutParameter",
        "STS:GetCallerIdentity",
    ] {
        let line = calls
            .iter()
            .find(|l| l.contains(&format!("AWS {action}: HTTP 200 in ")))
            .unwrap_or_else(|| panic!("no line for {action}:\n{debug}"));
        assert!(line.contains(" ms (attempt 1, http://127.0.0.1:"), "{line}");
    }
    // The three SSM parameters are written one by one: a line each.
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.contains("AWS SSM:PutParameter:"))
            .count(),
        3,
        "{debug}"
    );
    assert!(
        !debug.contains("beginning attempt"),
        "SDK detail at -vv:\n{debug}"
    );

    // -vvv: the SDK's own debug detail too.
    let (trace, key) = update(&moto, dir.path(), &["-vvv"], None);
    keys.push(key.clone());
    assert!(
        trace.contains("beginning attempt #1"),
        "no SDK detail:\n{trace}"
    );
    assert!(!call_lines(&trace).is_empty(), "{trace}");

    // RUST_LOG replaces what -v asks for.
    let (overridden, key) = update(&moto, dir.path(), &["-vvv"], Some("error"));
    keys.push(key);
    assert!(call_lines(&overridden).is_empty(), "{overridden}");
    assert!(!overridden.contains("beginning attempt"), "{overridden}");

    let all = [quiet, info, debug, trace, overridden].join("\n");
    let refs: Vec<&Key> = keys.iter().collect();
    assert_no_secret(&all, &refs, "stderr at -v, -vv and -vvv");
    // Nor a header: no signature, no session token.
    assert!(!all.contains("Authorization"), "a header is logged");
    assert!(!all.contains("x-amz-security-token"), "a header is logged");
}
