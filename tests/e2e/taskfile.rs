//! The Taskfile (Taskfile.yml + taskfiles/creds.yml) through the real `task` binary
//! (go-task, from requirements-test.txt), running the credrot binary cargo just built.

use crate::harness::{
    credrot_command, key_of, mode_of, read_json, test_tool, tool_path, Moto, Tripwire, REGION,
};
use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// The repository root, where Taskfile.yml is.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `task` in the repository root, running the credrot binary under test, with the machine's
/// AWS configuration and any ambient CREDROT/CREDROT_CONFIG kept out. Fails (does not skip)
/// when go-task is not installed.
pub(crate) fn task(dir: &Path) -> Command {
    let found = std::process::Command::new(test_tool("task"))
        .arg("--version")
        .output();
    match found {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the go-task binary `task` is not on PATH; install the test requirements with: \
             pip install -r requirements-test.txt (or run bash scripts/test, which does)"
        ),
    }
    let mut cmd = Command::new(test_tool("task"));
    cmd.current_dir(repo_root()).env("PATH", tool_path());
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "CREDROT",
        "CREDROT_CONFIG",
        "IAM_PATH",
        "SERVICE",
        "RUST_LOG",
        "CLICOLOR_FORCE",
        "FORCE_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CREDROT", env!("CARGO_BIN_EXE_credrot"))
        .env("CREDROT_CONFIG", dir.join("services.toml"))
        .env("AWS_REGION", REGION)
        .env("AWS_CONFIG_FILE", dir.join(".no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join(".no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1");
    cmd
}

/// `task` signing as the moto admin. The tests pass `--endpoint-url` after `--` to prove the
/// pass-through; AWS_ENDPOINT_URL is the safety net that keeps a broken Taskfile on moto.
pub(crate) fn task_against(moto: &Moto, dir: &Path) -> Command {
    let mut cmd = task(dir);
    cmd.env("AWS_ACCESS_KEY_ID", &moto.admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint);
    cmd
}

pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub(crate) const SERVICES_TOML: &str = r#"
[services.postgresql]
description = "PostgreSQL S3 backups"
iam_user = "postgresql-backup"
max_age = "30d"

[[services.postgresql.stores]]
kind = "file"
path = "secrets/postgresql.json"

[services.longhorn]
description = "Longhorn volume backups"
iam_user = "longhorn-backup"
max_age = "90d"

[[services.longhorn.stores]]
kind = "file"
path = "secrets/longhorn.env"
format = "env"

[paths.PSKServiceAccounts]
stores = [{ kind = "file", path = "secrets/psk/{user}.json" }]
"#;

pub(crate) fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("services.toml"), SERVICES_TOML).unwrap();
    dir
}

#[test]
fn task_list_shows_the_creds_tasks_with_descriptions() {
    let dir = config_dir();
    let out = run(task(dir.path()).arg("--list"));
    assert_eq!(out.code, Some(0), "{out}");
    for name in [
        "creds:list",
        "creds:show",
        "creds:update",
        "creds:rotate",
        "creds:postgresql",
        "creds:longhorn",
        "test",
        "sandbox",
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("* {name}:")))
            .unwrap_or_else(|| panic!("task --list does not show {name}\n{out}"));
        let desc = line.split_once(&format!("{name}:")).unwrap().1.trim();
        assert!(!desc.is_empty(), "{name} has no description: {line}");
    }
}

#[test]
fn creds_list_and_show_run_credrot_with_the_given_config() {
    let dir = config_dir();
    let out = run(task(dir.path()).arg("creds:list"));
    assert_eq!(out.code, Some(0), "{out}");
    for expected in [
        "postgresql",
        "postgresql-backup",
        "longhorn",
        "longhorn-backup",
        "90d",
    ] {
        assert!(out.stdout.contains(expected), "no {expected} in\n{out}");
    }
    // The task adds nothing to credrot's own output.
    let direct = credrot_command(dir.path()).arg("list").output().unwrap();
    assert_eq!(out.stdout, String::from_utf8(direct.stdout).unwrap());

    let out = run(task(dir.path()).args(["creds:show", "SERVICE=longhorn"]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("iam_user:     longhorn-backup"),
        "{out}"
    );

    // Arguments after `--` reach credrot.
    let out = run(task(dir.path()).args(["creds:list", "--", "--output", "json"]));
    assert_eq!(out.code, Some(0), "{out}");
    let services: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(services.as_array().unwrap().len(), 2, "{out}");
}

#[test]
fn a_missing_required_variable_is_go_tasks_requires_error() {
    let dir = config_dir();
    for task_name in ["creds:show", "creds:update"] {
        let out = run(task(dir.path()).arg(task_name));
        assert_eq!(out.code, Some(206), "{task_name}: {out}");
        assert!(
            out.stderr.contains("missing required variables: SERVICE"),
            "{task_name}: {out}"
        );
    }
}

#[test]
fn task_exit_code_passes_credrot_exit_code_through_only_with_dash_x() {
    // A failed command is go-task's 201 ("task failed"); `task -x` gives credrot's own code.
    let dir = config_dir();
    let out = run(task(dir.path()).args(["creds:show", "SERVICE=nosuch"]));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(out.stderr.contains("service 'nosuch' is not in"), "{out}");
    let out = run(task(dir.path()).args(["-x", "creds:show", "SERVICE=nosuch"]));
    assert_eq!(out.code, Some(2), "{out}");
}

#[test]
fn creds_rotate_without_path_stops_before_credrot_runs() {
    // go-task sees the environment's PATH as the variable PATH, so "not given" is detected by
    // a precondition rather than by `requires`. The tripwire proves credrot made no AWS call.
    let dir = config_dir();
    let tripwire = Tripwire::new();
    let out =
        run(task(dir.path()).args(["creds:rotate", "--", "--endpoint-url", &tripwire.endpoint]));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(
        out.stderr
            .contains("task creds:rotate PATH=PSKServiceAccounts"),
        "{out}"
    );
    assert!(
        !tripwire.tripped(),
        "credrot called AWS although the precondition failed"
    );
}

#[test]
fn a_credrot_that_is_not_executable_fails_the_precondition() {
    let dir = config_dir();
    let missing = dir.path().join("no-such-credrot");
    // From the environment ...
    let out = run(task(dir.path()).env("CREDROT", &missing).arg("creds:list"));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(out.stderr.contains("is not an executable file"), "{out}");
    assert!(out.stderr.contains(missing.to_str().unwrap()), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    // ... and from the task command line, which wins over the environment.
    let out = run(task(dir.path()).args([
        "creds:update",
        "SERVICE=postgresql",
        &format!("CREDROT={}", missing.display()),
    ]));
    assert_eq!(out.code, Some(201), "{out}");
    assert!(out.stderr.contains("is not an executable file"), "{out}");
}

/// A copy of the Taskfile in a fresh root, with fake credrot binaries that say which they
/// are, so the lookup order is seen without touching the repository's target/.
fn taskfile_copy() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Taskfile.yml"),
        root.path().join("Taskfile.yml"),
    )
    .unwrap();
    std::fs::create_dir(root.path().join("taskfiles")).unwrap();
    std::fs::copy(
        repo_root().join("taskfiles/creds.yml"),
        root.path().join("taskfiles/creds.yml"),
    )
    .unwrap();
    root
}

fn fake_credrot(path: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\necho \"{name} credrot $*\"\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn creds_tasks_find_credrot_on_path_then_release_then_debug_then_build_it() {
    let root = taskfile_copy();
    let bin = tempfile::tempdir().unwrap();
    // A PATH with the tools task needs and no credrot.
    let path = tool_path().to_string_lossy().to_string();
    let path_without_credrot: Vec<&str> = path
        .split(':')
        .filter(|d| !Path::new(d).join("credrot").exists())
        .collect();
    let list = |extra: Option<&Path>| {
        let mut dirs: Vec<String> = extra.iter().map(|p| p.display().to_string()).collect();
        dirs.extend(path_without_credrot.iter().map(|d| d.to_string()));
        let mut cmd = task(root.path());
        cmd.current_dir(root.path())
            .env_remove("CREDROT")
            .env("PATH", dirs.join(":"))
            .arg("creds:list");
        run(&mut cmd)
    };
    fake_credrot(&root.path().join("target/debug/credrot"), "debug");
    let out = list(None);
    assert!(out.stdout.contains("debug credrot list"), "{out}");
    fake_credrot(&root.path().join("target/release/credrot"), "release");
    let out = list(None);
    assert!(out.stdout.contains("release credrot list"), "{out}");
    fake_credrot(&bin.path().join("credrot"), "path");
    let out = list(Some(bin.path()));
    assert!(out.stdout.contains("path credrot list"), "{out}");
    // Nothing anywhere: it says it builds (here cargo fails: the copy has no Cargo.toml).
    std::fs::remove_dir_all(root.path().join("target")).unwrap();
    let out = list(None);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("building it (cargo build --locked"),
        "{out}"
    );
    // `task --list` never builds or runs anything.
    let mut cmd = task(root.path());
    cmd.current_dir(root.path())
        .env_remove("CREDROT")
        .env("PATH", path_without_credrot.join(":"))
        .arg("--list");
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stderr.contains("building"), "{out}");
}

#[test]
fn creds_update_dry_run_through_task_changes_nothing() {
    let moto = Moto::start();
    let dir = config_dir();
    moto.create_user("postgresql-backup", "/");
    moto.create_key("postgresql-backup", false);
    moto.create_key("postgresql-backup", true);
    let before = moto.keys("postgresql-backup");

    let args = ["--dry-run", "--endpoint-url", moto.endpoint.as_str()];
    let out = run(task_against(&moto, dir.path())
        .args(["creds:update", "SERVICE=postgresql", "--"])
        .args(args));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("planned"), "{out}");
    assert!(out.stdout.contains("nothing changed"), "{out}");
    // The task's output is credrot's: the same as running it directly.
    let direct = moto
        .credrot(dir.path())
        .args([
            "--config",
            dir.path().join("services.toml").to_str().unwrap(),
        ])
        .args(["update", "postgresql"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.stdout, String::from_utf8(direct.stdout).unwrap());

    // The per-service shortcut passes `--` arguments on as well.
    let out = run(task_against(&moto, dir.path())
        .args(["creds:postgresql", "--"])
        .args(args));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("postgresql-backup"), "{out}");
    assert!(out.stdout.contains("nothing changed"), "{out}");

    assert_eq!(
        moto.keys("postgresql-backup"),
        before,
        "a dry run changed the keys"
    );
    assert!(
        !dir.path().join("secrets").exists(),
        "a dry run wrote a store"
    );
}

#[test]
fn creds_rotate_with_path_rotates_every_user_under_it() {
    let moto = Moto::start();
    let dir = config_dir();
    moto.create_user("svc-a", "/PSKServiceAccounts/");
    moto.create_user("svc-b", "/PSKServiceAccounts/");
    let old_b = moto.create_key("svc-b", true);
    moto.create_user("bystander", "/Other/");
    let bystander_key = moto.create_key("bystander", true);

    let outfile = dir.path().join("keys.json");
    let out = run(task_against(&moto, dir.path())
        .args(["creds:rotate", "PATH=PSKServiceAccounts", "--", "-o"])
        .arg(&outfile)
        .args(["--endpoint-url", &moto.endpoint]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("2 rotated, 0 failed"), "{out}");

    let keys = read_json(&outfile);
    assert_eq!(mode_of(&outfile), 0o600);
    for user in ["svc-a", "svc-b"] {
        let new_key = key_of(&keys[user]);
        moto.assert_key_works_for(&new_key, user);
        // The per-user store of [paths.PSKServiceAccounts] got the same key.
        let stored = key_of(&read_json(
            &dir.path().join(format!("secrets/psk/{user}.json")),
        ));
        assert_eq!(stored, new_key);
    }
    // CURRENT/LAST: svc-b's old key stays as LAST for jobs in flight.
    assert!(
        moto.whoami(&old_b).is_some(),
        "the previous key of svc-b stopped working"
    );
    assert_eq!(moto.keys("svc-b").len(), 2);
    // Users under other paths are untouched.
    assert_eq!(
        moto.keys("bystander"),
        vec![(bystander_key.id.clone(), true)]
    );
    assert!(keys.get("bystander").is_none());

    // IAM_PATH is the same as PATH, for shells where PATH=... reads badly.
    let out = run(task_against(&moto, dir.path())
        .args([
            "creds:rotate",
            "IAM_PATH=/PSKServiceAccounts/",
            "--",
            "--dry-run",
        ])
        .args(["--endpoint-url", &moto.endpoint]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("dry run: 2 planned"), "{out}");
}

#[test]
fn creds_rotate_of_a_terraform_service_runs_terraform_apply() {
    // The Taskfile runs `credrot update redis --terraform-apply`: first Terraform's key is
    // handed on, then (forced, since rotate_after is 30d) Terraform makes the next one.
    use crate::terraform_apply::{calls, fake_terraform, ids, Project};
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    let rotate = |extra: &[&str]| {
        run(task_against(&moto, project.path())
            .env("FAKE_TERRAFORM_LOG", &project.log)
            .args(["creds:rotate", "SERVICE=redis", "--", "--terraform-bin"])
            .arg(fake_terraform())
            .args(["--endpoint-url", &moto.endpoint])
            .args(extra))
    };
    let out = rotate(&[]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("1 rotated"), "{out}");
    assert_eq!(project.stored(), k0);

    let out = rotate(&["--force"]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("1 rotated"), "{out}");
    let k1 = project.outputs(&moto);
    assert_ne!(k1, k0);
    assert_eq!(project.stored(), k1);
    moto.assert_key_works_for(&k1, "redis-backup");
    assert!(moto.whoami(&k0).is_some(), "the old key stays as LAST");
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0, &k1]));
    let calls = calls(&project);
    assert!(
        calls
            .iter()
            .any(|c| c == "state rm aws_iam_access_key.redis")
            && calls.iter().any(|c| c
                == "apply -target=aws_iam_access_key.redis -auto-approve -input=false -no-color"),
        "{calls:?}"
    );
}
