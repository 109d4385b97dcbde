//! The audit log (file and CloudWatch Logs), `credrot audit verify`, and the run webhook,
//! through the built binary against moto with IAM authentication on.

use crate::harness::{
    assert_no_secret, credrot_command, key_of, mode_of, read_json, Key, Moto, Tripwire,
    WebhookServer,
};
use serde_json::Value;
use std::path::Path;

const USER: &str = "postgresql-backup";
const AUDIT: &str = "audit/credrot.log";

/// A service with one file store, plus `extra` (more sections) at the end.
fn write_config(dir: &Path, store_path: &str, extra: &str) {
    let toml = format!(
        "[services.postgresql]\niam_user = \"{USER}\"\n\n[[services.postgresql.stores]]\nkind = \"file\"\npath = \"{store_path}\"\n\n{extra}\n"
    );
    std::fs::write(dir.join("services.toml"), toml).unwrap();
}

/// Write the configuration, create the user and give it one key, which is returned.
fn seed(moto: &Moto, dir: &Path, store_path: &str, extra: &str) -> Key {
    write_config(dir, store_path, extra);
    moto.create_user(USER, "/");
    moto.create_key(USER, true)
}

fn stored_key(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("secrets/pg.json")))
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(AUDIT))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn actions(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_string(),
                l["key_id"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).to_string()
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
}

#[test]
fn a_rotation_writes_chained_audit_lines_with_the_caller_and_no_secret() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!("[audit]\npath = \"{AUDIT}\"\n"),
    );
    moto.create_user(USER, "/");
    let last = moto.create_key(USER, false);
    let current = moto.create_key(USER, true);

    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let new = stored_key(dir.path());
    let admin_arn = moto.whoami(&moto.admin).unwrap();
    assert!(admin_arn.ends_with(":user/credrot-admin"), "{admin_arn}");

    let lines = audit_lines(dir.path());
    assert_eq!(
        actions(&lines),
        vec![
            ("delete-key".to_string(), last.id.clone()),
            ("create-key".to_string(), new.id.clone()),
            ("store-write".to_string(), new.id.clone()),
            ("verify-key".to_string(), new.id.clone()),
            ("store-promote".to_string(), new.id.clone()),
        ]
    );
    let run = lines[0]["run"].as_str().unwrap();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], i as u64 + 1);
        assert_eq!(
            line["caller"],
            admin_arn.as_str(),
            "the caller is the run's identity"
        );
        assert_eq!(line["user"], USER);
        assert_eq!(line["service"], "postgresql");
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["run"], run, "one run id for the whole run");
        humantime::parse_rfc3339(line["time"].as_str().unwrap()).expect("RFC 3339 time");
    }
    assert!(
        lines[2]["store"]
            .as_str()
            .unwrap()
            .ends_with("secrets/pg.json"),
        "{}",
        lines[2]
    );
    let text = std::fs::read_to_string(dir.path().join(AUDIT)).unwrap();
    assert_no_secret(
        &text,
        &[&new, &current, &last, &moto.admin],
        "the audit log",
    );
    assert_eq!(mode_of(&dir.path().join(AUDIT)), 0o600);

    // A second run continues the same chain.
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let lines = audit_lines(dir.path());
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[5]["prev"], lines[4]["hash"]);
    assert_ne!(lines[5]["run"], lines[4]["run"]);

    let out = credrot_command(dir.path())
        .args(["audit", "verify"])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    assert!(stdout.contains("10 lines, chain intact"), "{stdout}");
    assert!(
        stdout.contains(lines[9]["hash"].as_str().unwrap()),
        "the head is shown: {stdout}"
    );
}

#[test]
fn audit_verify_names_the_edited_or_removed_line() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!("[audit]\npath = \"{AUDIT}\"\n"),
    );
    moto.create_user(USER, "/");
    moto.create_key(USER, true);
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let original = std::fs::read_to_string(dir.path().join(AUDIT)).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 4, "create, write, verify, promote");
    let verify = |text: &str| {
        let path = dir.path().join("copy.log");
        std::fs::write(&path, text).unwrap();
        credrot_command(dir.path())
            .args(["audit", "verify", "--path", "copy.log"])
            .assert()
    };
    verify(&original).success();

    // Someone hides that the key was written to a store.
    let edited: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| match i {
            1 => format!(
                "{}\n",
                l.replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"")
            ),
            _ => format!("{l}\n"),
        })
        .collect();
    assert_ne!(edited, original);
    let out = verify(&edited).code(1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("line 2: was edited"), "{stderr}");

    // Someone removes the verification line.
    let removed: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let out = verify(&removed).code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("line 3: breaks the chain: 1 line(s) are missing before it"),
        "{stderr}"
    );

    // Swapped lines.
    let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
    let out = verify(&swapped).code(1);
    assert!(stderr_of(&out).contains("line 2: breaks the chain"));

    // The configured file itself, by default, in JSON.
    let out = credrot_command(dir.path())
        .args(["--output", "json", "audit", "verify"])
        .assert()
        .success();
    let json: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json["intact"], true);
    assert_eq!(json["lines"], 4);

    // The first line's edit is caught too, and the JSON names it.
    std::fs::write(
        dir.path().join(AUDIT),
        original.replacen(USER, "someone-else", 1),
    )
    .unwrap();
    let out = credrot_command(dir.path())
        .args(["--output", "json", "audit", "verify"])
        .assert()
        .code(1);
    let json: Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(json["intact"], false);
    assert_eq!(json["line"], 1);
}

#[test]
fn audit_verify_without_a_log_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "secrets/pg.json", "");
    let out = credrot_command(dir.path())
        .args(["audit", "verify"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("has no [audit] path"));
    let out = credrot_command(dir.path())
        .args(["audit", "verify", "--path", "nope.log"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("no audit log at nope.log"));
}

#[test]
fn an_audit_log_that_cannot_be_written_stops_the_run_before_any_aws_call() {
    let tripwire = Tripwire::new();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "secrets/pg.json",
        "[audit]\npath = \"/proc/credrot-cannot-write/audit.log\"\n",
    );
    let out = credrot_command(dir.path())
        .args(["--endpoint-url", &tripwire.endpoint, "update", "postgresql"])
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "example")
        .assert()
        .code(2);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("cannot open the audit log /proc/credrot-cannot-write/audit.log"),
        "{stderr}"
    );
    assert!(!tripwire.tripped(), "an AWS call was made");
}

#[test]
fn a_failed_store_write_is_audited_and_the_run_still_rolls_back() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookServer::start(204);
    let old = seed(
        &moto,
        dir.path(),
        "/proc/credrot-cannot-write/pg.json",
        &format!(
            "[audit]\npath = \"{AUDIT}\"\n\n[notify]\nwebhook = \"{}/hook\"\n",
            hook.url
        ),
    );

    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .code(1);
    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)], "rolled back");
    let lines = audit_lines(dir.path());
    let write = lines
        .iter()
        .find(|l| l["action"] == "store-write")
        .expect("the failed write is audited");
    assert_eq!(write["outcome"], "failed");
    assert!(
        write["error"].as_str().unwrap().contains("cannot write"),
        "{write}"
    );
    let new_id = write["key_id"].as_str().unwrap();
    let last = lines.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["key_id"].as_str()),
        (Some("delete-key"), Some(new_id)),
        "the rollback's deletion of the new key is audited"
    );

    let received = hook.received();
    assert_eq!(received.len(), 1, "one notice per run");
    let notice = received[0].json();
    assert_eq!(notice["counts"]["failed"], 1);
    assert_eq!(notice["failures"][0]["user"], USER);
    assert!(notice["failures"][0]["error"]
        .as_str()
        .unwrap()
        .contains("rolled back"));
}

#[test]
fn cloudwatch_logs_receives_the_same_lines() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!(
            "[audit]\npath = \"{AUDIT}\"\ncloudwatch_log_group = \"/credrot/audit\"\ncloudwatch_log_stream = \"e2e\"\n"
        ),
    );
    moto.create_user(USER, "/");
    moto.create_key(USER, true);
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();

    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config(&moto.admin));
    let messages = |stream: &str| -> Vec<String> {
        let out = moto
            .rt
            .block_on(
                logs.get_log_events()
                    .log_group_name("/credrot/audit")
                    .log_stream_name(stream)
                    .start_from_head(true)
                    .send(),
            )
            .unwrap();
        out.events()
            .iter()
            .map(|e| e.message().unwrap().to_string())
            .collect()
    };
    let file: Vec<String> = std::fs::read_to_string(dir.path().join(AUDIT))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(file.len(), 4);
    assert_eq!(
        messages("e2e"),
        file,
        "CloudWatch holds the file's lines byte for byte"
    );

    // CloudWatch alone: one stream per run, named by the run id, its own chain.
    write_config(
        dir.path(),
        "secrets/pg.json",
        "[audit]\ncloudwatch_log_group = \"/credrot/audit\"\n",
    );
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let streams = moto
        .rt
        .block_on(
            logs.describe_log_streams()
                .log_group_name("/credrot/audit")
                .send(),
        )
        .unwrap();
    let names: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .filter(|n| *n != "e2e")
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let lines = messages(names[0]);
    assert!(
        lines.len() >= 5,
        "delete, create, write, verify, promote: {lines:?}"
    );
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["run"], names[0]);
    let cut = dir.path().join("cw.log");
    std::fs::write(
        &cut,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    credrot_command(dir.path())
        .args(["audit", "verify", "--path", "cw.log"])
        .assert()
        .success();
}

#[test]
fn the_webhook_gets_one_notice_with_the_summary_and_no_secret() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookServer::start(200);
    let old = seed(
        &moto,
        dir.path(),
        "secrets/pg.json",
        &format!(
            "[audit]\npath = \"{AUDIT}\"\n\n[notify]\nwebhook = \"{}/services/T0/B0/TOKEN123\"\n",
            hook.url
        ),
    );

    let out = moto
        .credrot(dir.path())
        .args(["-vv", "update", "postgresql"])
        .assert()
        .success();
    let new = stored_key(dir.path());
    assert!(
        !stderr_of(&out).contains("TOKEN123"),
        "the webhook's token is never printed"
    );

    let received = hook.received();
    assert_eq!(received.len(), 1, "one POST per run");
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/services/T0/B0/TOKEN123");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = String::from_utf8(request.body.clone()).unwrap();
    assert_no_secret(&body, &[&new, &old, &moto.admin], "the notice");
    let notice = request.json();
    assert_eq!(notice["command"], "update postgresql");
    assert_eq!(notice["dry_run"], false);
    assert_eq!(notice["counts"]["rotated"], 1);
    assert_eq!(notice["counts"]["failed"], 0);
    assert_eq!(notice["failures"], serde_json::json!([]));
    assert_eq!(notice["users"][0]["user"], USER);
    assert_eq!(notice["users"][0]["created"], new.id.as_str());
    assert_eq!(notice["users"][0]["current_before"], old.id.as_str());
    // The notice anchors the audit chain: its head is the file's last line.
    let lines = audit_lines(dir.path());
    let last = lines.last().unwrap();
    assert_eq!(notice["audit"]["head"]["hash"], last["hash"]);
    assert_eq!(notice["audit"]["head"]["seq"], last["seq"]);
    assert_eq!(notice["run_id"], last["run"]);
}

#[test]
fn a_failing_webhook_is_a_warning_not_a_failed_run() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    moto.create_user(USER, "/");
    moto.create_key(USER, true);

    let hook = WebhookServer::start(500);
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!("[notify]\nwebhook = \"{}/hook/TOKEN123\"\n", hook.url),
    );
    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql", "--force"])
        .assert()
        .success();
    let stderr = stderr_of(&out);
    assert!(stderr.contains("answered HTTP 500"), "{stderr}");
    assert!(!stderr.contains("TOKEN123"), "{stderr}");
    assert_eq!(hook.received().len(), 1);

    // Nobody listening.
    let port = crate::harness::free_port();
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!("[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\ntimeout = \"5s\"\n"),
    );
    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql", "--force"])
        .assert()
        .success();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!(
            "could not send the run notice: webhook http://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
}

#[test]
fn a_run_that_stops_early_still_notifies() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookServer::start(200);
    std::fs::write(
        dir.path().join("services.toml"),
        format!("[notify]\nwebhook = \"{}/hook\"\n", hook.url),
    )
    .unwrap();
    moto.credrot(dir.path())
        .args(["rotate", "--path", "Nobody", "-o", "keys.json"])
        .assert()
        .code(2);
    let received = hook.received();
    assert_eq!(received.len(), 1);
    let notice = received[0].json();
    assert_eq!(notice["command"], "rotate --path /Nobody/");
    assert!(
        notice["errors"][0]
            .as_str()
            .unwrap()
            .contains("no IAM user has the path /Nobody/"),
        "{notice}"
    );
}

#[test]
fn a_cloudwatch_failure_mid_run_is_reported_without_stopping_the_rotation() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    // CloudWatch Logs is a fake that accepts CreateLogGroup and CreateLogStream, then
    // fails every PutLogEvents.
    let logs = WebhookServer::start_with(vec![200, 200, 500]);
    let hook = WebhookServer::start(200);
    let old = seed(
        &moto,
        dir.path(),
        "secrets/pg.json",
        &format!(
            "[audit]\npath = \"{AUDIT}\"\ncloudwatch_log_group = \"g\"\n\n[notify]\nwebhook = \"{}/hook\"\n",
            hook.url
        ),
    );

    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql"])
        .env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", &logs.url)
        .env("AWS_MAX_ATTEMPTS", "1")
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("audit lines could not be sent to CloudWatch Logs group 'g'"),
        "{stderr}"
    );
    // The rotation itself went through, and the file has every line.
    let new = stored_key(dir.path());
    assert_ne!(new.id, old.id);
    moto.assert_key_works_for(&new, USER);
    assert!(stdout_of(&out).contains("1 rotated, 0 failed"));
    assert_eq!(audit_lines(dir.path()).len(), 4);
    credrot_command(dir.path())
        .args(["audit", "verify"])
        .assert()
        .success();
    let received = logs.received();
    assert_eq!(received.len(), 3, "group, stream, one batch");
    assert!(received[2]
        .header("x-amz-target")
        .unwrap()
        .ends_with("PutLogEvents"));
    let notice = hook.received()[0].json();
    assert!(
        notice["errors"][0].as_str().unwrap().contains("CloudWatch"),
        "{notice}"
    );
}

#[test]
fn a_cloudwatch_group_that_cannot_be_created_stops_the_run_before_iam() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = WebhookServer::start(500);
    let old = seed(
        &moto,
        dir.path(),
        "secrets/pg.json",
        &format!("[audit]\npath = \"{AUDIT}\"\ncloudwatch_log_group = \"g\"\n"),
    );

    let out = moto
        .credrot(dir.path())
        .args(["update", "postgresql"])
        .env("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", &logs.url)
        .env("AWS_MAX_ATTEMPTS", "1")
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("cannot prepare CloudWatch Logs group 'g'")
            && stderr.contains("nothing was rotated"),
        "{stderr}"
    );
    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)]);
    assert!(!dir.path().join("secrets/pg.json").exists());
    assert!(audit_lines(dir.path()).is_empty());
}

#[cfg(feature = "failpoints")]
#[test]
fn a_killed_run_keeps_its_audit_lines_and_the_next_run_continues_the_chain() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "secrets/pg.json",
        &format!("[audit]\npath = \"{AUDIT}\"\n"),
    );
    moto.create_user(USER, "/");
    moto.create_key(USER, true);

    // SIGKILL right after the new key was written to the store: no destructor, no flush.
    let crashed = moto
        .credrot(dir.path())
        .args(["update", "postgresql", "--lock-ttl", "1s"])
        .env("FAILPOINTS", "after-store-write=return")
        .output()
        .unwrap();
    assert_eq!(crashed.status.code(), None, "credrot was not killed");
    let written = stored_key(dir.path());
    let lines = audit_lines(dir.path());
    assert_eq!(
        actions(&lines),
        vec![
            ("create-key".to_string(), written.id.clone()),
            ("store-write".to_string(), written.id.clone()),
        ],
        "every action before the kill is in the log"
    );

    std::thread::sleep(std::time::Duration::from_millis(2100));
    moto.credrot(dir.path())
        .args(["update", "postgresql"])
        .assert()
        .success();
    let lines = audit_lines(dir.path());
    assert!(lines.len() > 2);
    assert_eq!(lines[2]["prev"], lines[1]["hash"]);
    assert_ne!(lines[2]["run"], lines[1]["run"]);
    credrot_command(dir.path())
        .args(["audit", "verify"])
        .assert()
        .success();
}
