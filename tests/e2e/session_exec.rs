//! `credrot session` and `credrot exec`: temporary credentials from STS, their formats, the
//! cache, and a command run with them.
//!
//! moto hands out one fixed example session key and, with IAM authentication on, refuses it
//! itself; so the tests that *use* session credentials run against a moto without
//! authentication, and the one that shows an encrypted long-lived key calling STS runs with
//! authentication on.

use crate::harness::{mode_of, Key, Moto, Tripwire};
use crate::home::{stderr_of, stdout_of, Home, PASSPHRASE};
use crate::proxy::FaultProxy;
use aws_credential_types::Credentials;
use std::time::{Duration, SystemTime};

const WORK: &str = "\
# personal keys
[work]
aws_access_key_id = AKIAWORKEXAMPLE
aws_secret_access_key = work/secret

[other]
aws_access_key_id = AKIAOTHEREXAMPLE
aws_secret_access_key = other-secret
";

fn home() -> Home {
    let home = Home::new();
    home.write_credentials(WORK);
    home
}

/// The session document `--format json` printed.
fn session_json(out: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&out.get_output().stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stdout_of(out)))
}

fn expiration_of(doc: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(doc["Expiration"].as_str().unwrap()).unwrap()
}

fn assert_expires_in(doc: &serde_json::Value, duration: Duration) {
    let expected = SystemTime::now() + duration;
    let got = expiration_of(doc);
    let skew = Duration::from_secs(120);
    assert!(
        got > expected - skew && got < expected + skew,
        "expires at {:?}, expected about {expected:?}",
        doc["Expiration"]
    );
}

/// The caller ARN of session credentials, through the SDK.
fn whoami_with_session(moto: &Moto, doc: &serde_json::Value) -> String {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(credrot::aws::http_client())
        .region(aws_config::Region::new(crate::harness::REGION))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                doc["AccessKeyId"].as_str().unwrap(),
                doc["SecretAccessKey"].as_str().unwrap(),
                Some(doc["SessionToken"].as_str().unwrap().to_string()),
                None,
                "test",
            )),
        )
        .build();
    let out = moto
        .rt
        .block_on(
            aws_sdk_sts::Client::new(&config)
                .get_caller_identity()
                .send(),
        )
        .unwrap();
    out.arn().unwrap().to_string()
}

#[test]
fn session_prints_env_json_and_credential_process_formats() {
    let moto = Moto::start_without_auth();
    let home = home();

    let out = home
        .credrot_at(&moto.endpoint)
        .args([
            "session",
            "--profile",
            "work",
            "--duration",
            "2h",
            "--format",
            "json",
        ])
        .assert()
        .success();
    let json = session_json(&out);
    for field in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(
            json[field].as_str().is_some_and(|v| !v.is_empty()),
            "{json}"
        );
    }
    assert_expires_in(&json, Duration::from_secs(7200));
    // The credentials are accepted by STS (authentication is off: see the module doc).
    assert!(!whoami_with_session(&moto, &json).is_empty());

    // The same request again comes from the cache: eval'd env lines carry the same values.
    let script = format!(
        "eval \"$('{}' session --profile work --duration 2h)\" && printf '%s\\n%s\\n%s\\n%s' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\" \"$AWS_SESSION_TOKEN\" \"$AWS_CREDENTIAL_EXPIRATION\"",
        env!("CARGO_BIN_EXE_credrot")
    );
    let printed = home
        .at(home.command("sh"), &moto.endpoint)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let values: Vec<String> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        values,
        [
            json["AccessKeyId"].as_str().unwrap(),
            json["SecretAccessKey"].as_str().unwrap(),
            json["SessionToken"].as_str().unwrap(),
            json["Expiration"].as_str().unwrap(),
        ]
    );

    let out = home
        .credrot_at(&moto.endpoint)
        .args(["session", "--profile", "work", "--duration", "2h"])
        .args(["--format", "credential-process"])
        .assert()
        .success();
    let process = session_json(&out);
    assert_eq!(process["Version"], 1);
    assert_eq!(process["SessionToken"], json["SessionToken"]);
    assert_eq!(process["Expiration"], json["Expiration"]);
}

#[test]
fn sessions_are_cached_per_profile_until_shortly_before_expiry() {
    let moto = Moto::start_without_auth();
    let proxy = FaultProxy::start(&moto.endpoint);
    let home = home();
    let sts_calls = || {
        proxy
            .seen()
            .iter()
            .filter(|s| s.action == "GetSessionToken")
            .count()
    };
    let session = |extra: &[&str]| {
        let out = home
            .credrot_at(&proxy.endpoint)
            .args(["session", "--profile", "work", "--format", "json"])
            .args(extra)
            .assert()
            .success();
        session_json(&out)
    };

    let first = session(&[]);
    assert_eq!(sts_calls(), 1);
    assert_expires_in(&first, Duration::from_secs(12 * 3600));
    let entries: Vec<_> = std::fs::read_dir(home.session_cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(mode_of(&entries[0]), 0o600);
    assert_eq!(mode_of(&home.session_cache()), 0o700);

    assert_eq!(session(&[]), first);
    assert_eq!(sts_calls(), 1, "the second run used the cache");

    session(&["--no-cache"]);
    assert_eq!(sts_calls(), 2, "--no-cache asks STS");
    session(&["--duration", "1h"]);
    assert_eq!(sts_calls(), 3, "another request is another entry");
    home.credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "other", "--format", "json"])
        .assert()
        .success();
    assert_eq!(sts_calls(), 4, "another profile is another entry");

    // An entry about to expire is fetched anew and replaced.
    let entry = &entries[0];
    let mut cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
    let soon = SystemTime::now() + Duration::from_secs(120);
    cached["Expiration"] = humantime::format_rfc3339_seconds(soon).to_string().into();
    std::fs::write(entry, cached.to_string()).unwrap();
    let refreshed = session(&[]);
    assert_eq!(sts_calls(), 5);
    assert_expires_in(&refreshed, Duration::from_secs(12 * 3600));
    session(&[]);
    assert_eq!(sts_calls(), 5, "the refreshed entry is used again");
}

#[test]
fn the_duration_and_the_mfa_code_reach_sts() {
    let moto = Moto::start_without_auth();
    let proxy = FaultProxy::start(&moto.endpoint);
    let home = home();
    home.credrot_at(&proxy.endpoint)
        .args([
            "session",
            "--profile",
            "work",
            "--duration",
            "90m",
            "--format",
            "json",
        ])
        .args([
            "--mfa-serial",
            "arn:aws:iam::123456789012:mfa/me",
            "--token-code",
            "123456",
        ])
        .assert()
        .success();
    let calls: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "GetSessionToken")
        .collect();
    assert_eq!(calls.len(), 1);
    let params: Vec<&str> = calls[0].body.split('&').collect();
    for expected in [
        "DurationSeconds=5400",
        "SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Fme",
        "TokenCode=123456",
    ] {
        assert!(params.contains(&expected), "{expected} not in {params:?}");
    }
    assert_eq!(calls[0].signer, "AKIAWORKEXAMPLE");
}

#[test]
fn durations_outside_what_sts_allows_are_refused_before_any_call() {
    let home = home();
    let tripwire = Tripwire::new();
    for (args, expected) in [
        (vec!["--duration", "10m"], "from 15m to 1d 12h"),
        (vec!["--duration", "37h"], "from 15m to 1d 12h"),
        (
            vec![
                "--duration",
                "13h",
                "--role-arn",
                "arn:aws:iam::123456789012:role/r",
            ],
            "AssumeRole allows: give a duration from 15m to 12h",
        ),
        (
            vec![
                "--mfa-serial",
                "arn:aws:iam::123456789012:mfa/me",
                "--token-code",
                "12345",
            ],
            "6 digits",
        ),
        (vec!["--token-code", "123456"], "--mfa-serial"),
        (vec!["--duration", "soon"], "examples: 30s, 2m"),
    ] {
        let out = home
            .credrot_at(&tripwire.endpoint)
            .args(["session", "--profile", "work"])
            .args(&args)
            .assert()
            .code(2);
        assert!(
            stderr_of(&out).contains(expected),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    assert!(!tripwire.tripped(), "no AWS call was made");
}

#[test]
fn assume_role_gives_the_roles_credentials() {
    let moto = Moto::start_without_auth();
    let role = moto
        .rt
        .block_on(
            moto.iam()
                .create_role()
                .role_name("deployer")
                .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#)
                .send(),
        )
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_string();
    let home = home();
    let out = home
        .credrot_at(&moto.endpoint)
        .args([
            "session",
            "--profile",
            "work",
            "--format",
            "json",
            "--role-arn",
            &role_arn,
        ])
        .args(["--role-session-name", "ci-run"])
        .assert()
        .success();
    let json = session_json(&out);
    assert_expires_in(&json, Duration::from_secs(3600));
    let arn = whoami_with_session(&moto, &json);
    assert!(arn.contains("assumed-role/deployer/ci-run"), "{arn}");
}

#[test]
fn exec_runs_the_command_with_the_credentials_and_its_exit_code() {
    let moto = Moto::start_without_auth();
    let home = home();
    let before = home.read_credentials();
    let out = home
        .credrot_at(&moto.endpoint)
        .env("AWS_PROFILE", "work")
        .args(["exec", "--no-cache", "--", "sh", "-c"])
        .arg("printf '%s|%s|%s|%s|%s' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\" \"$AWS_SESSION_TOKEN\" \"${AWS_PROFILE-unset}\" \"${CREDROT_SSH_PASSPHRASE-unset}\"; exit 7")
        .assert()
        .code(7);
    let fields: Vec<String> = stdout_of(&out).split('|').map(str::to_string).collect();
    assert_eq!(fields.len(), 5, "{fields:?}");
    assert!(fields[..3].iter().all(|f| !f.is_empty()), "{fields:?}");
    assert_ne!(
        fields[0], "AKIAWORKEXAMPLE",
        "temporary, not the profile's key"
    );
    assert_eq!(fields[3], "unset", "AWS_PROFILE is not passed on");
    assert_eq!(fields[4], "unset", "the SSH passphrase is not passed on");
    assert_eq!(
        home.read_credentials(),
        before,
        "nothing written to the credentials file"
    );
    assert!(!home.session_cache().exists(), "--no-cache writes no cache");

    // A real AWS client in the child signs with them.
    let out = home
        .credrot_at(&moto.endpoint)
        .args([
            "exec",
            "--profile",
            "work",
            "--",
            "aws",
            "sts",
            "get-caller-identity",
        ])
        .args([
            "--endpoint-url",
            &moto.endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .assert()
        .success();
    assert!(stdout_of(&out).contains("\"Arn\""), "{}", stdout_of(&out));

    let out = home
        .credrot_at(&moto.endpoint)
        .args(["exec", "--profile", "work", "--", "no-such-command-credrot"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("cannot run no-such-command-credrot"));
}

#[test]
fn write_profile_adds_temporary_credentials_and_keeps_the_rest() {
    let moto = Moto::start_without_auth();
    let home = home();
    let out = home
        .credrot_at(&moto.endpoint)
        .args([
            "session",
            "--profile",
            "work",
            "--write-profile",
            "work-session",
        ])
        .assert()
        .success();
    assert!(out.get_output().stdout.is_empty(), "no secret on stdout");
    assert!(stderr_of(&out).contains("to profile [work-session]"));
    let text = home.read_credentials();
    assert!(
        text.starts_with(WORK),
        "every earlier byte is kept:\n{text}"
    );
    let added = &text[WORK.len()..];
    assert!(
        added.starts_with("\n[work-session]\naws_access_key_id = "),
        "{added}"
    );
    assert!(added.contains("aws_session_token = "), "{added}");
    assert_eq!(mode_of(&home.credentials()), 0o600);

    // Writing again replaces the temporary values in place.
    home.credrot_at(&moto.endpoint)
        .args([
            "session",
            "--profile",
            "work",
            "--no-cache",
            "--write-profile",
            "work-session",
        ])
        .assert()
        .success();
    assert_eq!(home.read_credentials().matches("[work-session]").count(), 1);

    // Profiles holding long-lived keys are never overwritten.
    let before = home.read_credentials();
    for target in ["work", "other"] {
        let out = home
            .credrot_at(&moto.endpoint)
            .args(["session", "--profile", "work", "--write-profile", target])
            .assert()
            .code(2);
        assert!(stderr_of(&out).contains("overwrite"), "{}", stderr_of(&out));
    }
    assert_eq!(home.read_credentials(), before);
}

/// User erin (allowed GetSessionToken) and her key in profile [work] of a fresh home,
/// encrypted with the home's passphrase-protected SSH key; the proxy in front of moto
/// records who signs each call.
pub(crate) fn encrypted_profile_of_erin(moto: &Moto) -> (Key, FaultProxy, Home) {
    moto.create_user("erin", "/");
    moto.allow("erin", &["sts:GetSessionToken"]);
    let key = moto.create_key("erin", true);
    let proxy = FaultProxy::start(&moto.endpoint);
    let home = Home::new();
    home.protected_key();
    home.write_credentials(&format!(
        "[work]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.id, key.secret
    ));
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    (key, proxy, home)
}

#[test]
fn a_session_is_made_from_an_encrypted_profile_under_iam_auth() {
    let moto = Moto::start();
    let (key, proxy, home) = encrypted_profile_of_erin(&moto);
    let out = home
        .credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "work", "--format", "json"])
        .assert()
        .success();
    let json = session_json(&out);
    assert!(json["SessionToken"].as_str().is_some());
    let calls: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "GetSessionToken")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].signer, key.id, "signed with the decrypted key");
}
