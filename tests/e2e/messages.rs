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

#[test]
fn durations_and_counts_read_as_words() {
    let moto = Moto::start();
    moto.create_user("old-user", "/");
    moto.create_key("old-user", true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.s]\niam_user = \"old-user\"\nmax_age = \"90d\"\nstores = [{ kind = \"file\", path = \"s.json\" }]\n",
    )
    .unwrap();
    // rotate_after defaults to half of max_age less a day: 44 days, said as such.
    let out = moto
        .credrot(dir.path())
        .args(["show", "s"])
        .assert()
        .success();
    let shown = text(&out.get_output().stdout);
    assert!(shown.contains("rotate_after: 44d"), "{shown}");
    assert!(!shown.contains("month"), "{shown}");

    // 100 days later by credrot's clock the key is past max_age.
    let out = moto
        .credrot(dir.path())
        .env("CREDROT_CLOCK_OFFSET", "100d")
        .args(["status", "--fail-on", "overdue"])
        .assert()
        .code(3);
    let stdout = text(&out.get_output().stdout);
    let stderr = text(&out.get_output().stderr);
    assert!(
        stdout.contains(" is 100d old, past max_age (90d)"),
        "{stdout}"
    );
    assert!(stdout.contains("has not been used for 100d"), "{stdout}");
    assert!(!stdout.contains("days"), "{stdout}");
    assert!(stderr.contains("1 user is overdue or worse"), "{stderr}");
}

#[test]
fn list_and_show_print_where_keys_actually_go() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.redis]\niam_user = \"redis-backup\"\nmode = \"staged\"\nstores = [\n  { kind = \"file\", path = \"secrets/{service}.json\" },\n  { kind = \"1password\", vault = \"Ops\" },\n  { kind = \"ssm\", prefix = \"/app/{user}\" },\n]\n",
    )
    .unwrap();
    let out = credrot_command(dir.path()).arg("list").assert().success();
    let list = text(&out.get_output().stdout);
    assert!(
        list.contains("file:secrets/redis.json")
            && list.contains("1password:Ops/AWS Access Key - redis")
            && list.contains("ssm:/app/redis-backup"),
        "{list}"
    );
    assert!(
        !list.contains('{') && !list.contains("(default title)"),
        "{list}"
    );
    let out = credrot_command(dir.path())
        .args(["show", "redis"])
        .assert()
        .success();
    let show = text(&out.get_output().stdout);
    assert!(
        show.contains("path=secrets/redis.json")
            && show.contains("title=AWS Access Key - redis")
            && show.contains("prefix=/app/redis-backup"),
        "{show}"
    );
    assert!(show.contains("rotate_after: "), "{show}");
    assert!(show.contains("mode:         staged"), "{show}");
}

#[test]
fn a_fresh_user_with_two_keys_shows_its_last_key() {
    let moto = Moto::start();
    moto.create_user("fresh-user", "/");
    let last = moto.create_key("fresh-user", true);
    let current = moto.create_key("fresh-user", true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.f]\niam_user = \"fresh-user\"\nmax_age = \"90d\"\nstores = [{ kind = \"file\", path = \"f.json\" }]\n",
    )
    .unwrap();
    crate::harness::write_key_file(&dir.path().join("f.json"), &current);
    for dry_run in [false, true] {
        let mut cmd = moto.credrot(dir.path());
        cmd.args(["--output", "json", "update", "f"]);
        if dry_run {
            cmd.arg("--dry-run");
        }
        let out = cmd.assert().success();
        let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let user = &summary["users"][0];
        assert_eq!(user["outcome"], "fresh", "{summary}");
        assert_eq!(user["current_before"], current.id.as_str(), "{summary}");
        assert_eq!(user["last_before"], last.id.as_str(), "{summary}");
        assert_eq!(summary["fresh"], 1, "{summary}");
    }
    let out = moto
        .credrot(dir.path())
        .args(["update", "f"])
        .assert()
        .success();
    let table = text(&out.get_output().stdout);
    assert!(table.contains(&last.id), "{table}");
}

#[test]
fn no_services_toml_names_the_file_and_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["list"],
        vec!["update", "x"],
        vec!["rotate", "--path", "P"],
    ] {
        let out = credrot_command(dir.path()).args(&args).assert().code(2);
        let stderr = text(&out.get_output().stderr);
        assert!(
            stderr.contains("services.toml") && stderr.contains("credrot generate"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("no store configured"),
            "{args:?}: {stderr}"
        );
    }
}
