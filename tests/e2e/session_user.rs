//! `credrot session --user NAME` (iam-sorry's `--profile usermanager NAME`): a manager
//! profile creates a short-lived key for NAME, that key makes NAME's session, and the key is
//! deleted again, always; and the session cache of an encrypted profile, sealed with its key.
//!
//! Everything runs with IAM authentication on, so moto checks each signature: who signed
//! what is read from the proxy. moto's session keys themselves are fixed examples it refuses
//! under authentication (see session_exec.rs), so the session's identity is proven by the
//! short-lived key it was made with: moto accepted NAME's key for GetCallerIdentity and
//! GetSessionToken.

use crate::harness::{mode_of, Key, Moto, Tripwire};
use crate::home::{stderr_of, Home, PASSPHRASE};
use crate::proxy::{Fault, FaultProxy, Seen, Signer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// moto with a manager allowed to manage keys and `admin`, a user with one key of its own.
fn setup() -> (Moto, Key, Key) {
    let moto = Moto::start();
    let manager = moto.create_identity(
        "usermanager",
        &[
            "iam:ListAccessKeys",
            "iam:CreateAccessKey",
            "iam:DeleteAccessKey",
            "sts:GetSessionToken",
        ],
    );
    moto.create_user("admin", "/");
    moto.allow("admin", &["sts:GetCallerIdentity", "sts:GetSessionToken"]);
    let own = moto.create_key("admin", true);
    (moto, manager, own)
}

/// A home whose [usermanager] profile holds `manager`, encrypted with the default SSH key.
fn manager_home(manager: &Key) -> Home {
    let home = Home::new();
    home.protected_key();
    home.write_credentials(&format!(
        "[usermanager]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        manager.id, manager.secret
    ));
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "usermanager"])
        .assert()
        .success();
    home
}

fn calls(proxy: &FaultProxy, action: &str) -> Vec<Seen> {
    proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == action)
        .collect()
}

fn key_ids(moto: &Moto, user: &str) -> Vec<String> {
    moto.keys(user).into_iter().map(|(id, _)| id).collect()
}

/// `admin`'s key ids, as IAM lists them, at the moment the hook runs (from the proxy's
/// thread, so with its own runtime and client).
/// A proxy hook, and what it saw.
type Snapshot = (Box<dyn Fn() + Send + Sync>, Arc<Mutex<Vec<String>>>);

fn keys_when_called(moto: &Moto) -> Snapshot {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = moto.sdk_config(&moto.admin);
    let hook = {
        let seen = seen.clone();
        Box::new(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let out = rt
                .block_on(
                    aws_sdk_iam::Client::new(&config)
                        .list_access_keys()
                        .user_name("admin")
                        .send(),
                )
                .unwrap();
            *seen.lock().unwrap() = out
                .access_key_metadata()
                .iter()
                .map(|k| k.access_key_id().unwrap().to_string())
                .collect();
        }) as Box<dyn Fn() + Send + Sync>
    };
    (hook, seen)
}

#[test]
fn session_user_is_made_by_a_short_lived_key_of_the_user_which_is_then_deleted() {
    let (moto, manager, own) = setup();
    let home = manager_home(&manager);
    let proxy = FaultProxy::start(&moto.endpoint);
    let (hook, keys_during) = keys_when_called(&moto);
    proxy.on("GetSessionToken", Signer::Any, Fault::Before(hook));

    let session = || {
        home.credrot_at(&proxy.endpoint)
            .args(["session", "--profile", "usermanager", "--user", "admin"])
            .args(["--format", "json"])
            .assert()
            .success()
    };
    let out = session();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    // iam-sorry's default: 36 hours.
    let expires = humantime::parse_rfc3339(doc["Expiration"].as_str().unwrap()).unwrap();
    let lasts = expires.duration_since(SystemTime::now()).unwrap();
    assert!(lasts > Duration::from_secs(36 * 3600 - 300), "{lasts:?}");
    let params = |s: &Seen| s.body.split('&').map(str::to_string).collect::<Vec<_>>();

    let created = calls(&proxy, "CreateAccessKey");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].signer, manager.id, "the manager creates the key");
    let sessions = calls(&proxy, "GetSessionToken");
    assert_eq!(sessions.len(), 1);
    let short_lived = sessions[0].signer.clone();
    assert!(
        params(&sessions[0]).contains(&"DurationSeconds=129600".to_string()),
        "{:?}",
        sessions[0]
    );
    assert!(short_lived != manager.id && short_lived != own.id);
    let during = keys_during.lock().unwrap().clone();
    assert!(
        during.contains(&short_lived) && during.contains(&own.id),
        "the session was signed by a key of admin: {during:?}"
    );
    let identities = calls(&proxy, "GetCallerIdentity");
    assert!(
        identities.iter().any(|s| s.signer == short_lived),
        "the key proved it is admin's first"
    );
    let deleted = calls(&proxy, "DeleteAccessKey");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].signer, manager.id);
    assert!(params(&deleted[0]).contains(&format!("AccessKeyId={short_lived}")));
    assert_eq!(
        key_ids(&moto, "admin"),
        vec![own.id.clone()],
        "only its own key is left"
    );
    moto.assert_key_works_for(&own, "admin");
    let stderr = stderr_of(&out);
    assert!(!stderr.contains(&manager.secret), "{stderr}");

    // At the most verbose level stderr holds no secret either: neither the manager's nor the
    // session's (the short-lived key's secret is gone with the key; its id is logged).
    let traced = home
        .credrot_at(&proxy.endpoint)
        .args([
            "-vvv",
            "session",
            "--profile",
            "usermanager",
            "--user",
            "admin",
        ])
        .args(["--no-cache", "--format", "json"])
        .assert()
        .success();
    let traced_doc: serde_json::Value =
        serde_json::from_slice(&traced.get_output().stdout).unwrap();
    let trace = stderr_of(&traced);
    assert!(
        trace.contains("created a short-lived access key"),
        "{trace}"
    );
    for secret in [
        manager.secret.as_str(),
        traced_doc["SecretAccessKey"].as_str().unwrap(),
        traced_doc["SessionToken"].as_str().unwrap(),
    ] {
        assert!(!trace.contains(secret), "a secret on stderr at -vvv");
    }
    assert_eq!(key_ids(&moto, "admin"), vec![own.id.clone()]);
    let created_before = calls(&proxy, "CreateAccessKey").len();
    let sessions_before = calls(&proxy, "GetSessionToken").len();

    // The session is cached (sealed with the manager profile's key): no new key next time.
    let again = session();
    assert_eq!(again.get_output().stdout, out.get_output().stdout);
    assert_eq!(calls(&proxy, "CreateAccessKey").len(), created_before);
    assert_eq!(calls(&proxy, "GetSessionToken").len(), sessions_before);
    // The manager's own session is another entry.
    home.credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "usermanager", "--format", "json"])
        .assert()
        .success();
    assert_eq!(calls(&proxy, "GetSessionToken").len(), sessions_before + 1);
    assert_eq!(
        calls(&proxy, "GetSessionToken")[sessions_before].signer,
        manager.id,
        "without --user the manager's own session"
    );
}

#[test]
fn session_user_deletes_the_short_lived_key_when_a_later_step_fails() {
    let (moto, manager, own) = setup();
    let home = manager_home(&manager);
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.on(
        "GetSessionToken",
        Signer::Any,
        Fault::Refuse {
            status: 403,
            code: "AccessDenied",
        },
    );
    let out = home
        .credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "usermanager", "--user", "admin"])
        .assert()
        .code(1);
    let created = calls(&proxy, "CreateAccessKey");
    assert_eq!(created.len(), 1);
    let deleted = calls(&proxy, "DeleteAccessKey");
    assert_eq!(deleted.len(), 1, "deleted although the session failed");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("GetSessionToken"), "{stderr}");
    assert!(stderr.contains("was deleted again"), "{stderr}");
    assert!(out.get_output().stdout.is_empty());
    assert_eq!(key_ids(&moto, "admin"), vec![own.id.clone()]);
    assert!(
        !home.session_cache().exists()
            || std::fs::read_dir(home.session_cache()).unwrap().count() == 0,
        "nothing cached"
    );
}

#[test]
fn session_user_with_two_keys_is_refused_and_left_unchanged() {
    let (moto, manager, own) = setup();
    let second = moto.create_key("admin", false);
    let home = manager_home(&manager);
    let proxy = FaultProxy::start(&moto.endpoint);
    let out = home
        .credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "usermanager", "--user", "admin"])
        .assert()
        .code(2);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("already has two access keys"), "{stderr}");
    assert!(
        stderr.contains(&own.id) && stderr.contains(&second.id),
        "{stderr}"
    );
    assert!(calls(&proxy, "CreateAccessKey").is_empty());
    assert!(calls(&proxy, "DeleteAccessKey").is_empty());
    let mut expected = vec![(own.id.clone(), true), (second.id.clone(), false)];
    expected.sort();
    assert_eq!(moto.keys("admin"), expected);

    let out = home
        .credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "usermanager", "--user", "nobody"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("IAM user nobody does not exist"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn session_user_bad_input_is_refused_before_any_call() {
    let home = Home::new();
    home.write_credentials("[usermanager]\naws_access_key_id = AKIAM\naws_secret_access_key = s\n");
    let tripwire = Tripwire::new();
    for (args, expected) in [
        (vec!["--duration", "37h"], "from 15m to 1d 12h"),
        (vec!["--duration", "10m"], "from 15m to 1d 12h"),
        (
            vec!["--role-arn", "arn:aws:iam::123456789012:role/r"],
            "cannot be used with",
        ),
    ] {
        let out = home
            .credrot_at(&tripwire.endpoint)
            .args(["session", "--profile", "usermanager", "--user", "admin"])
            .args(&args)
            .assert()
            .code(2);
        assert!(
            stderr_of(&out).contains(expected),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    let out = home
        .credrot_at(&tripwire.endpoint)
        .args(["session", "--profile", "usermanager", "--user", "a/b"])
        .assert()
        .code(2);
    assert!(
        stderr_of(&out).contains("is not an IAM user name"),
        "{}",
        stderr_of(&out)
    );
    assert!(!tripwire.tripped(), "no AWS call was made");
}

#[test]
fn session_cache_of_an_encrypted_profile_is_sealed_reused_and_a_miss_under_another_key() {
    let moto = Moto::start();
    let (key, proxy, home) = super::session_exec::encrypted_profile_of_erin(&moto);
    let sts_calls = || calls(&proxy, "GetSessionToken").len();
    let session = |extra: &[&str]| {
        let out = home
            .credrot_at(&proxy.endpoint)
            .args(["session", "--profile", "work", "--format", "json"])
            .args(extra)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };

    let first = session(&[]);
    assert_eq!(sts_calls(), 1);
    let entries: Vec<_> = std::fs::read_dir(home.session_cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(mode_of(&entries[0]), 0o600);
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    for field in ["AccessKeyId", "SecretAccessKey", "SessionToken"] {
        let value = first[field].as_str().unwrap();
        assert!(!text.contains(value), "{field} in plain text: {text}");
    }
    assert!(!text.contains(&key.secret));
    assert!(text.contains("__encrypted__:"), "{text}");

    assert_eq!(session(&[]), first, "reused");
    assert_eq!(sts_calls(), 1, "no second STS call");

    // The profile moves to another SSH key: the old entry does not open, which is a miss
    // (a new session), not a failure; the new entry is sealed with the new key.
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "decrypt", "work"])
        .assert()
        .success();
    let other = home.keygen("ed25519", PASSPHRASE, &home.path().join(".ssh/other"));
    let other = other.to_str().unwrap();
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work", "--ssh-key", other])
        .assert()
        .success();
    session(&["--ssh-key", other]);
    assert_eq!(sts_calls(), 2, "the old entry was a miss");
    session(&["--ssh-key", other]);
    assert_eq!(sts_calls(), 2, "the new entry is reused");
    assert_eq!(std::fs::read_dir(home.session_cache()).unwrap().count(), 1);
}

#[test]
fn session_user_killed_after_creating_the_key_leaves_it_for_the_next_run_to_delete() {
    let (moto, manager, own) = setup();
    let home = manager_home(&manager);
    let proxy = FaultProxy::start(&moto.endpoint);
    let out = home
        .credrot_at(&proxy.endpoint)
        .env("FAILPOINTS", "user-session-after-create=return")
        .args(["session", "--profile", "usermanager", "--user", "admin"])
        .assert()
        .failure();
    assert!(out.get_output().stdout.is_empty());
    let left: Vec<String> = key_ids(&moto, "admin")
        .into_iter()
        .filter(|k| *k != own.id)
        .collect();
    assert_eq!(left.len(), 1, "SIGKILLed with the short-lived key in IAM");
    // One directory per manager profile, one empty file per key.
    let records = || -> Vec<String> {
        let managers = home.path().join(".credrot-state/user-sessions");
        std::fs::read_dir(managers)
            .unwrap()
            .flat_map(|m| std::fs::read_dir(m.unwrap().path()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect()
    };
    assert_eq!(
        records(),
        [format!("admin.{}", left[0])],
        "a record with no secret"
    );

    // admin has two keys now, its own and the left one: the next run deletes the left one
    // first (only that one) and goes on.
    let out = home
        .credrot_at(&proxy.endpoint)
        .args(["session", "--profile", "usermanager", "--user", "admin"])
        .args(["--format", "json"])
        .assert()
        .success();
    assert!(
        stderr_of(&out).contains("interrupted run left"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(key_ids(&moto, "admin"), vec![own.id.clone()]);
    let deleted: Vec<String> = calls(&proxy, "DeleteAccessKey")
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(
        deleted[0].contains(&format!("AccessKeyId={}", left[0])),
        "{deleted:?}"
    );
    assert!(records().is_empty(), "the record is settled");
}
