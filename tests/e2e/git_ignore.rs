//! Key files inside a git work tree: warned about (once per path) unless git ignores them,
//! and the repository's own .gitignore covers credrot's default secret locations.

use crate::harness::Moto;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git is needed by this test (apt-get install git)")
}

const WARNING: &str = "inside a git work tree without being ignored";

#[test]
fn key_files_that_git_would_commit_are_warned_about_once_each() {
    let moto = Moto::start();
    for user in ["u1", "u2"] {
        moto.create_user(user, "/Team/");
        moto.create_key(user, true);
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(git(dir.path(), &["init", "-q"]).status.success());
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Team]\nstores = [{ kind = \"file\", path = \"secrets/{user}.json\" }]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = moto.credrot(dir.path()).args(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stderr).to_string()
    };
    let stderr = run(&["rotate", "--path", "Team", "-o", "keys.json", "--force"]);
    assert_eq!(stderr.matches(WARNING).count(), 3, "{stderr}");
    for path in ["secrets/u1.json", "secrets/u2.json", "keys.json"] {
        assert_eq!(
            stderr
                .matches(&format!("{path} will hold secret keys"))
                .count(),
            1,
            "{path}: {stderr}"
        );
    }

    // Ignored, they are not mentioned (a negated pattern un-ignores, and is warned about).
    std::fs::write(
        dir.path().join(".gitignore"),
        "secrets/\nkeys.json\n!secrets/u2.json\n",
    )
    .unwrap();
    let stderr = run(&["rotate", "--path", "Team", "-o", "keys.json", "--force"]);
    assert_eq!(stderr.matches(WARNING).count(), 0, "{stderr}");
    std::fs::write(
        dir.path().join(".gitignore"),
        "keys.json\nsecrets/*\n!secrets/u2.json\n",
    )
    .unwrap();
    let stderr = run(&["rotate", "--path", "Team", "-o", "keys.json", "--dry-run"]);
    assert!(
        stderr.contains("secrets/u2.json will hold") && stderr.matches(WARNING).count() == 1,
        "{stderr}"
    );

    // Outside a work tree nothing is said.
    let plain = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("services.toml"),
        plain.path().join("services.toml"),
    )
    .unwrap();
    let out = moto
        .credrot(plain.path())
        .args(["rotate", "--path", "Team", "-o", "keys.json", "--force"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(!stderr.contains(WARNING), "{stderr}");
}

#[test]
fn the_repository_ignores_credrots_default_secret_locations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !git(root, &["rev-parse", "--is-inside-work-tree"])
        .status
        .success()
    {
        eprintln!("not a git checkout: nothing to check");
        return;
    }
    for path in [
        "secrets/postgresql.json",
        "keys.json",
        "sandbox-work/run.abc/keys.json",
        ".venv/bin/moto_server",
    ] {
        let out = git(root, &["check-ignore", "-q", "--no-index", path]);
        assert!(out.status.success(), "{path} is not ignored by .gitignore");
    }
    // What belongs in the repository is not.
    let out = git(root, &["check-ignore", "-q", "--no-index", "services.toml"]);
    assert!(!out.status.success());
}
