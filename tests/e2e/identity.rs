//! Which identity credrot signs as: an explicit `--profile` wins over keys in the
//! environment (as in the AWS CLI), a missing profile is a usage error before any request,
//! and an encrypted profile is decrypted by every command that takes `--profile`.

use crate::harness::{Key, Moto};
use crate::home::{stderr_of, Home};
use std::net::TcpListener;

/// A credentials file with profile `name` holding `key`.
fn profile_text(name: &str, key: &Key) -> String {
    format!(
        "[{name}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.id, key.secret
    )
}

/// A key moto has never issued: every request signed with it is refused.
fn unknown_key() -> Key {
    Key {
        id: "AKIAUNKNOWNEXAMPLE00".into(),
        secret: "not-a-secret-moto-knows".into(),
    }
}

/// Moto with user `carol` under /team/ (one key), so `status --path team` has a user.
fn team() -> Moto {
    let moto = Moto::start();
    moto.create_user("carol", "/team/");
    moto.create_key("carol", true);
    moto
}

#[test]
fn an_explicit_profile_wins_over_keys_in_the_environment() {
    let moto = team();
    let home = Home::new();
    // The profile holds a key moto refuses, the environment the admin's: the profile must
    // sign, so the run fails.
    home.write_credentials(&profile_text("other", &unknown_key()));
    let out = home
        .credrot_at(&moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", &moto.admin.id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
        .args(["--profile", "other", "-v", "status", "--path", "team"])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("AWS credentials: profile [other] (--profile)"),
        "{stderr}"
    );
    assert!(!stderr.contains(&moto.admin.id), "{stderr}");

    // The other way round: a wrong key in the environment, the admin in the profile.
    home.write_credentials(&profile_text("work", &moto.admin));
    let wrong = unknown_key();
    home.credrot_at(&moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", &wrong.id)
        .env("AWS_SECRET_ACCESS_KEY", &wrong.secret)
        .args(["--profile", "work", "status", "--path", "team"])
        .assert()
        .success();
    home.credrot_at(&moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", &wrong.id)
        .env("AWS_SECRET_ACCESS_KEY", &wrong.secret)
        .args(["--profile", "work", "rotate", "--path", "team", "--dry-run"])
        .arg("--print-secrets")
        .assert()
        .success();
    // Without --profile the environment's keys sign, as in the AWS CLI.
    home.credrot_at(&moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", &wrong.id)
        .env("AWS_SECRET_ACCESS_KEY", &wrong.secret)
        .args(["status", "--path", "team"])
        .assert()
        .failure();
}

#[test]
fn a_missing_profile_is_a_usage_error_before_any_request() {
    let moto = Moto::start();
    let home = Home::new();
    home.write_credentials(&profile_text("work", &moto.admin));
    // A listener that sees every connection credrot would make.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    for (args, env_profile, names) in [
        (
            vec!["--profile", "nosuch", "status", "--path", "team"],
            None,
            "--profile nosuch",
        ),
        (
            vec![
                "--profile",
                "nosuch",
                "rotate",
                "--path",
                "team",
                "-o",
                "k.json",
            ],
            None,
            "--profile nosuch",
        ),
        (
            vec!["--profile", "nosuch", "session"],
            None,
            "--profile nosuch",
        ),
        (
            vec!["status", "--path", "team"],
            Some("nosuch"),
            "AWS_PROFILE=nosuch",
        ),
    ] {
        let mut cmd = home.credrot_at(&endpoint);
        cmd.env("AWS_ACCESS_KEY_ID", &moto.admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
            .current_dir(home.path())
            .args(&args);
        if let Some(p) = env_profile {
            cmd.env("AWS_PROFILE", p);
        }
        let out = cmd.assert().code(2);
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains("The config profile (nosuch) could not be found")
                && stderr.contains(names),
            "{args:?}: {stderr}"
        );
        assert!(
            listener.accept().is_err(),
            "{args:?} sent a request before refusing the profile"
        );
    }
    assert!(!home.path().join("k.json").exists());
    // A profile only in the config file exists too (its credentials come from elsewhere).
    let document = home.path().join("process.json");
    let json = serde_json::json!({"Version": 1, "AccessKeyId": moto.admin.id, "SecretAccessKey": moto.admin.secret});
    std::fs::write(&document, json.to_string()).unwrap();
    std::fs::write(
        home.config(),
        format!(
            "[profile cfg]\nregion = us-east-1\ncredential_process = cat {}\n",
            document.display()
        ),
    )
    .unwrap();
    moto.create_user("carol", "/team/");
    home.credrot_at(&moto.endpoint)
        .args(["--profile", "cfg", "status", "--path", "team"])
        .assert()
        .success();
}

#[test]
fn an_encrypted_profile_is_decrypted_by_status_update_and_rotate() {
    let moto = team();
    let home = Home::new();
    home.protected_key();
    home.write_credentials(&profile_text("work", &moto.admin));
    home.credrot_at(&moto.endpoint)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    assert!(!home.read_credentials().contains(&moto.admin.id));

    home.credrot_at(&moto.endpoint)
        .args(["--profile", "work", "status", "--path", "team"])
        .assert()
        .success();
    home.credrot_at(&moto.endpoint)
        .args(["--profile", "work", "rotate", "--path", "team", "--dry-run"])
        .arg("--print-secrets")
        .assert()
        .success();
    std::fs::write(
        home.path().join("services.toml"),
        "[services.c]\niam_user = \"carol\"\nstores = [{ kind = \"file\", path = \"c.json\" }]\n",
    )
    .unwrap();
    home.credrot_at(&moto.endpoint)
        .current_dir(home.path())
        .args(["--profile", "work", "update", "c", "--dry-run"])
        .assert()
        .success();
    // AWS_PROFILE names it just as well.
    home.credrot_at(&moto.endpoint)
        .env("AWS_PROFILE", "work")
        .args(["status", "--path", "team"])
        .assert()
        .success();

    // No passphrase and no terminal: plainly an encrypted profile, and what to do.
    let out = home
        .credrot()
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .args(["--profile", "work", "status", "--path", "team"])
        .assert()
        .code(2);
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("profile [work] is encrypted")
            && stderr.contains("credrot profile decrypt work")
            && stderr.contains("CREDROT_SSH_PASSPHRASE"),
        "{stderr}"
    );
    assert!(!stderr.contains("__encrypted__"), "{stderr}");
}
