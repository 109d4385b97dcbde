//! Output that cannot be written: a key printed into a closed pipe is rolled back (exit 1),
//! a summary into a closed pipe is not (exit 0), and the printed document stays one JSON
//! document however many users print at once. And waiting that is explained: an endpoint
//! that never answers, and no credentials at all.

use crate::harness::{
    credrot_command, key_of, read_json, write_key_file, write_pg_service, Key, Moto,
};
use std::path::Path;
use std::process::{Output, Stdio};

const USER: &str = "pg-pipe";

/// A stdout whose reader is gone before the process starts: every write fails with EPIPE,
/// deterministically (`credrot ... | true` races `true`'s exit against the first write).
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

fn run_into_closed_pipe(mut cmd: std::process::Command) -> Output {
    cmd.stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A service `pg` with one file store that holds `USER`'s only key.
fn service_with_stored_key(moto: &Moto) -> (tempfile::TempDir, Key) {
    let dir = tempfile::tempdir().unwrap();
    moto.create_user(USER, "/");
    let key = moto.create_key(USER, true);
    write_pg_service(dir.path(), USER, r#"{ kind = "file", path = "pg.json" }"#);
    write_key_file(&dir.path().join("pg.json"), &key);
    (dir, key)
}

fn stored(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("pg.json")))
}

#[test]
fn print_secrets_into_a_closed_pipe_fails_and_rolls_the_rotation_back() {
    let moto = Moto::start();
    let (dir, old) = service_with_stored_key(&moto);
    let mut cmd = moto.credrot_process(dir.path());
    cmd.args(["update", "pg", "--print-secrets"]);
    let out = run_into_closed_pipe(cmd);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stdout") && stderr.contains("new key") && stderr.contains("deleted"),
        "{stderr}"
    );
    // The new key is gone, the store and the old key are as they were.
    moto.assert_only_key(USER, &old);
    assert_eq!(stored(dir.path()), old);

    // The next run, with a reader, rotates normally and keeps the old key as LAST.
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg", "--print-secrets"])
        .assert()
        .success();
    let printed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let new = key_of(&printed[USER]);
    assert_eq!(stored(dir.path()), new);
    moto.assert_key_works_for(&new, USER);
    moto.assert_key_works_for(&old, USER);
    assert_eq!(moto.keys(USER).len(), 2);
}

#[test]
fn printed_keys_with_no_other_copy_are_not_lost_in_a_closed_pipe() {
    let moto = Moto::start();
    let path = "/PipeOnly/";
    let users = ["pipe-a", "pipe-b", "pipe-c"];
    let olds: Vec<Key> = users
        .iter()
        .map(|user| {
            moto.create_user(user, path);
            moto.create_key(user, true)
        })
        .collect();
    // No services.toml: stdout is the only place the new keys go.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = moto.credrot_process(dir.path());
    cmd.args(["rotate", "--path", path, "--print-secrets"]);
    let out = run_into_closed_pipe(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    for (user, old) in users.iter().zip(&olds) {
        moto.assert_only_key(user, old);
    }

    let out = moto
        .credrot(dir.path())
        .args(["rotate", "--path", path, "--print-secrets"])
        .assert()
        .success();
    let printed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    for (user, old) in users.iter().zip(&olds) {
        moto.assert_key_works_for(&key_of(&printed[*user]), user);
        moto.assert_key_works_for(old, user);
    }
}

#[test]
fn a_summary_into_a_closed_pipe_keeps_the_rotation_and_exits_0() {
    let moto = Moto::start();
    let (dir, old) = service_with_stored_key(&moto);
    let mut cmd = moto.credrot_process(dir.path());
    cmd.args(["update", "pg"]);
    let out = run_into_closed_pipe(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let new = stored(dir.path());
    assert_ne!(new.id, old.id, "rotated");
    moto.assert_key_works_for(&new, USER);
    moto.assert_key_works_for(&old, USER);
    assert_eq!(moto.keys(USER).len(), 2);
}

/// A guard rather than a regression test (printing was already serialized): 32 users
/// printing at once, one of them failing, still make one well-formed document.
#[test]
fn concurrent_users_print_one_document_even_when_one_fails() {
    let moto = Moto::start();
    let path = "/PipeMany/";
    let users: Vec<String> = (0..40).map(|i| format!("many-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, path);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.PipeMany]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n",
    )
    .unwrap();
    // A directory where one user's key file should be: that user fails before any change.
    std::fs::create_dir_all(dir.path().join("keys/many-07.json")).unwrap();
    let out = moto
        .credrot(dir.path())
        .args([
            "rotate",
            "--path",
            path,
            "--concurrency",
            "32",
            "--print-secrets",
        ])
        .assert()
        .code(1);
    let printed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let entries = printed.as_object().unwrap();
    assert_eq!(entries.len(), users.len() - 1, "{printed}");
    assert!(!entries.contains_key("many-07"));
    for (user, entry) in entries {
        let key = key_of(entry);
        let file = read_json(&dir.path().join(format!("keys/{user}.json")));
        assert_eq!(key_of(&file), key, "{user}");
    }
    moto.assert_key_works_for(&key_of(&printed["many-31"]), "many-31");
}

#[test]
fn an_endpoint_that_never_answers_fails_the_call_and_is_named() {
    // Accepts every connection and never answers; the connections stay open until the
    // test process ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", "AKIAHANGINGENDPOINT1")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
        .env("AWS_ENDPOINT_URL", &endpoint)
        // Short attempts keep the test quick; the default is 30s.
        .env("CREDROT_AWS_TIMEOUT", "500ms")
        .args(["rotate", "--path", "Hanging", "--print-secrets"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("credrot: error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error.contains(&endpoint)
            && error.contains("did not answer")
            && error.contains("iam:ListUsers"),
        "{stderr}"
    );
    // Each unanswered attempt was said as it happened, not only at the end.
    assert!(
        stderr.contains(&format!("no answer from {endpoint}")),
        "{stderr}"
    );
}

#[test]
fn no_credentials_at_all_is_said_so_with_how_to_provide_them() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // The harness's command has no credentials, no profile, no IMDS.
    let out = credrot_command(dir.path())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .args(["rotate", "--path", "Anyone", "--print-secrets"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("no AWS credentials found")
            && stderr.contains("AWS_ACCESS_KEY_ID")
            && stderr.contains("--profile")
            && stderr.contains("aws sso login"),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

/// With no real store the `-o` file is where the key lives; printing it too must not make
/// that key look like another run's work in progress (`busy`) on the next run.
#[test]
fn printing_next_to_an_outfile_changes_nothing_the_next_run_sees() {
    let moto = Moto::start();
    let path = "/PipeAndFile/";
    moto.create_user("both-a", path);
    let dir = tempfile::tempdir().unwrap();
    let mut printed = Vec::new();
    for _ in 0..2 {
        let out = moto
            .credrot(dir.path())
            .args([
                "rotate",
                "--path",
                path,
                "-o",
                "keys.json",
                "--print-secrets",
            ])
            .assert()
            .success();
        let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let key = key_of(&doc["both-a"]);
        assert_eq!(
            key_of(&read_json(&dir.path().join("keys.json"))["both-a"]),
            key
        );
        printed.push(key);
    }
    assert_ne!(printed[0].id, printed[1].id, "the second run rotated too");
    moto.assert_key_works_for(&printed[1], "both-a");
    moto.assert_key_works_for(&printed[0], "both-a");
}
