//! What a person reads: each failure said once, durations and counts in words that read
//! well, placeholders expanded, and errors that say what to do.

use crate::harness::{credrot_command, Moto};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_failed_user_is_reported_once() {
    let moto = Moto::start();
    for user in ["ok-user", "bad-user"] {
        moto.create_user(user, "/Once/");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Once]\nstores = [{ kind = \"file\", path = \"{user}.json\" }]\n",
    )
    .unwrap();
    // A directory where bad-user's key file should be: its store cannot be read.
    std::fs::create_dir(dir.path().join("bad-user.json")).unwrap();
    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", "Once"])
        .assert()
        .code(1);
    let (stdout, stderr) = (
        text(&out.get_output().stdout),
        text(&out.get_output().stderr),
    );
    let reason = "not a regular file";
    assert_eq!(
        stdout.matches(reason).count() + stderr.matches(reason).count(),
        1,
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("1 of 2 users failed"), "{stderr}");
}

#[test]
fn no_credentials_are_said_once_not_per_user() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for name in ["a", "b", "c"] {
        toml.push_str(&format!(
            "[services.{name}]\niam_user = \"{name}-user\"\nstores = [{{ kind = \"file\", path = \"{name}.json\" }}]\n"
        ));
    }
    std::fs::write(dir.path().join("services.toml"), toml).unwrap();
    let out = credrot_command(dir.path())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .args(["status"])
        .assert()
        .code(1);
    let (stdout, stderr) = (
        text(&out.get_output().stdout),
        text(&out.get_output().stderr),
    );
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("no AWS credentials found").count(), 1, "{all}");
    assert!(
        stdout.is_empty(),
        "no table of three identical errors: {stdout}"
    );
}
