//! Key-use monitoring in `status` and `status --alert`, from what moto's
//! GetAccessKeyLastUsed records of real calls made with each key (service and region), and
//! age verdicts by credrot's clock (CREDROT_CLOCK_OFFSET), never by sleeping.

use crate::harness::{credrot_command, write_key_file, Key, Moto, Tripwire, WebhookServer};
use aws_config::Region;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn write_config(dir: &Path, policy: &str, extra: &str) {
    std::fs::write(
        dir.join("services.toml"),
        format!("[services.app]\niam_user = \"app\"\n{policy}\nstores = [{{ kind = \"file\", path = \"app.json\" }}]\n{extra}"),
    )
    .unwrap();
}

/// Record, as credrot's verification does, that `key` was verified now; a use after this
/// tag is the consumer's, not credrot's own check. Returns once a later use is certain to
/// come after the tag (the tag holds whole seconds, rounded up).
fn mark_verified(moto: &Moto, key: &Key) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let value = (now.as_secs() + 1).to_string();
    moto.rt
        .block_on(
            moto.iam()
                .tag_user()
                .user_name("app")
                .tags(
                    aws_sdk_iam::types::Tag::builder()
                        .key(format!("credrot:verified:{}", key.id))
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .send(),
        )
        .unwrap();
    // A lower bound only: a slower machine makes the gap longer, never shorter.
    std::thread::sleep(Duration::from_millis(2100));
}

/// Call STS GetCallerIdentity with `key` in `region`: moto records sts/REGION as its last use.
fn use_key(moto: &Moto, key: &Key, region: &'static str) {
    let config = moto
        .sdk_config(key)
        .into_builder()
        .region(Region::new(region))
        .build();
    moto.rt
        .block_on(
            aws_sdk_sts::Client::new(&config)
                .get_caller_identity()
                .send(),
        )
        .unwrap();
}

/// `status` as JSON: (exit code, the user's entry).
fn status(moto: &Moto, dir: &Path, offset: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = moto
        .credrot_process(dir)
        .env("CREDROT_CLOCK_OFFSET", offset)
        .args(["--output", "json", "status"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), parsed[0].clone())
}

fn verdicts(user: &serde_json::Value) -> Vec<String> {
    user["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_last_key_still_used_after_its_successor_was_stored_names_who_used_it() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "pickup_within = \"1s\"", "");
    moto.create_user("app", "/");
    let old = moto.create_key("app", true);
    mark_verified(&moto, &old);
    use_key(&moto, &old, "eu-west-1");

    // The rotation: a successor is created and stored; the old key was last used before.
    let new = moto.create_key("app", true);
    write_key_file(&dir.path().join("app.json"), &new);
    let (code, user) = status(&moto, dir.path(), "0s", &["--fail-on", "last-in-use"]);
    assert_eq!((code, user["verdict"].as_str()), (0, Some("ok")), "{user}");

    // A consumer that never picked the new key up keeps calling with the old one.
    std::thread::sleep(Duration::from_millis(2100));
    use_key(&moto, &old, "eu-west-1");
    let (code, user) = status(&moto, dir.path(), "0s", &["--fail-on", "last-in-use"]);
    assert_eq!(code, 3, "{user}");
    assert_eq!(user["verdict"], "last-in-use", "{user}");
    let finding = &user["findings"][0];
    assert_eq!(finding["key_id"], old.id.as_str());
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("LAST {} was used at", old.id))
            && message.contains("by sts in eu-west-1")
            && message.contains(&format!("its successor {}", new.id)),
        "{message}"
    );
    assert_eq!(user["keys"][1]["last_used"]["region"], "eu-west-1");
}

#[test]
fn use_outside_the_expected_regions_and_services_is_alerted_to_the_webhook() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookServer::start(200);
    write_config(
        dir.path(),
        "policy = \"backups\"",
        &format!(
            "[policies.backups]\nexpect_regions = [\"eu-west-1\"]\nexpect_services = [\"s3\"]\n\n[notify]\nwebhook = \"{}/hooks/TOKEN42\"\n",
            hook.url
        ),
    );
    moto.create_user("app", "/");
    let key = moto.create_key("app", true);
    write_key_file(&dir.path().join("app.json"), &key);

    // credrot's own check right after creation (within 10 minutes, no tag) is not a use.
    use_key(&moto, &key, "ap-south-1");
    let (code, user) = status(&moto, dir.path(), "0s", &["--alert"]);
    assert_eq!((code, user["verdict"].as_str()), (0, Some("ok")), "{user}");
    assert!(hook.received().is_empty(), "no findings, no alert");

    // From an expected region, to an unexpected service.
    mark_verified(&moto, &key);
    use_key(&moto, &key, "eu-west-1");
    let (_, user) = status(&moto, dir.path(), "0s", &[]);
    assert_eq!(verdicts(&user), vec!["unexpected-use"], "{user}");
    assert!(
        user["reasons"][0]
            .as_str()
            .unwrap()
            .contains("called service sts (eu-west-1 at"),
        "{user}"
    );

    // From an unexpected region too: two findings, an alert, and the gate.
    use_key(&moto, &key, "us-east-1");
    let (code, user) = status(
        &moto,
        dir.path(),
        "0s",
        &["--alert", "--fail-on", "unexpected-use"],
    );
    assert_eq!(code, 3, "{user}");
    assert_eq!(verdicts(&user), vec!["unexpected-use", "unexpected-use"]);
    let reasons = user["reasons"].to_string();
    assert!(
        reasons.contains("used from region us-east-1 (sts at")
            && reasons.contains("outside expect_regions [eu-west-1]"),
        "{reasons}"
    );
    let received = hook.received();
    assert_eq!(received.len(), 1, "one alert per run");
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/hooks/TOKEN42");
    let alert = received[0].json();
    assert_eq!(alert["kind"], "status-alert");
    assert_eq!(alert["threshold"], "unexpected-use");
    assert_eq!(alert["users"][0]["user"], "app");
    assert_eq!(alert["users"][0]["service"], "app");
    assert_eq!(alert["users"][0]["verdict"], "unexpected-use");
    assert!(alert["users"][0]["policy"]
        .as_str()
        .unwrap()
        .starts_with("backups:"));
    assert_eq!(alert["users"][0]["findings"].as_array().unwrap().len(), 2);
    let body = String::from_utf8(received[0].body.clone()).unwrap();
    assert!(!body.contains(&key.secret) && !body.contains(&moto.admin.secret));
}

#[test]
fn unused_and_overdue_keys_name_their_controls_by_credrots_clock() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "max_age = \"90d\"\nrotate_after = \"80d\"", "");
    moto.create_user("app", "/");
    let key = moto.create_key("app", true);
    write_key_file(&dir.path().join("app.json"), &key);

    let (code, user) = status(&moto, dir.path(), "44d", &["--fail-on", "unused"]);
    assert_eq!((code, user["verdict"].as_str()), (0, Some("ok")), "{user}");
    // unused_after defaults to 45 days.
    let (code, user) = status(&moto, dir.path(), "46d", &["--fail-on", "unused"]);
    assert_eq!(
        (code, user["verdict"].as_str()),
        (3, Some("unused")),
        "{user}"
    );
    let finding = &user["findings"][0];
    assert_eq!(
        finding["control"],
        "CIS AWS Foundations 1.12, Security Hub IAM.8/IAM.22"
    );
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("has not been used for 46d (unused_after 45d), never used"),
        "{finding}"
    );
    // --unused-after overrides the policy for one run.
    let (_, user) = status(&moto, dir.path(), "46d", &["--unused-after", "50d"]);
    assert_eq!(user["verdict"], "ok", "{user}");

    let (_, user) = status(&moto, dir.path(), "91d", &[]);
    assert_eq!(user["verdict"], "overdue", "{user}");
    let overdue = user["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["verdict"] == "overdue")
        .unwrap()
        .clone();
    assert_eq!(
        overdue["control"],
        "Security Hub IAM.3, AWS Config access-keys-rotated, CIS AWS Foundations 1.14"
    );
    assert_eq!(overdue["key_id"], key.id.as_str());
}

#[test]
fn alert_needs_a_webhook_and_a_failed_alert_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "", "");
    let tripwire = Tripwire::new();
    let out = credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "example")
        .args(["--endpoint-url", &tripwire.endpoint, "status", "--alert"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--alert needs a [notify] webhook"),
        "{stderr}"
    );
    assert!(!tripwire.tripped());

    let moto = Moto::start();
    let hook = WebhookServer::start(500);
    write_config(
        dir.path(),
        "",
        &format!("[notify]\nwebhook = \"{}/hooks/TOKEN42\"\n", hook.url),
    );
    moto.create_user("app", "/");
    // No key in the store: drift, a finding to alert on.
    let out = moto
        .credrot(dir.path())
        .args(["status", "--alert"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not send the status alert: webhook")
            && stderr.contains("answered HTTP 500")
            && !stderr.contains("TOKEN42"),
        "{stderr}"
    );
    assert_eq!(hook.received().len(), 1);
}
