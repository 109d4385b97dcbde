//! Encrypted profiles: `credrot profile ...` and `credrot credential-process` through the
//! built binary, with keys made by the real ssh-keygen, the real ssh-agent, the real AWS CLI
//! and values written by the real iam-sorry package.

use crate::harness::{mode_of, Key, Moto};
use crate::home::{credential_process, stderr_of, stdout_of, Agent, Home, PASSPHRASE};
use base64::Engine;
use std::path::{Path, PathBuf};

/// A credentials file with comments, odd spacing and profiles credrot must not touch.
fn credentials_text(work: &Key) -> String {
    format!(
        "# Managed by hand. Do not reorder.\n\
         [default]\n\
         aws_access_key_id = AKIADEFAULTEXAMPLE\n\
         aws_secret_access_key = default/secret\n\
         \n\
         ; the work account\n\
         [work]\n\
         region=eu-west-1\n\
         aws_access_key_id   =   {}\n\
         aws_secret_access_key = {}   # since May\n\
         \n\
         [other]\r\n\
         aws_access_key_id = AKIAOTHEREXAMPLE\r\n\
         aws_secret_access_key = other-secret\r\n",
        work.id, work.secret
    )
}

/// `text` with the values of `profile`'s key replaced by placeholders: what must be equal
/// before and after encryption.
fn masked(text: &str, profile: &str) -> String {
    let mut current = String::new();
    text.split_inclusive('\n')
        .map(|line| {
            if let Some(name) = line
                .trim()
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
            {
                current = name.to_string();
            }
            let key = line.split('=').next().unwrap_or_default().trim();
            if current == profile && (key == "aws_access_key_id" || key == "aws_secret_access_key")
            {
                format!("{key} = <value>\n")
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// A moto user `name` with one key, stored in profile [work] of a fresh home.
fn setup(moto: &Moto, name: &str) -> (Home, Key) {
    let home = Home::new();
    moto.create_user(name, "/");
    let key = moto.create_key(name, true);
    home.write_credentials(&credentials_text(&key));
    (home, key)
}

#[test]
fn encrypt_and_decrypt_round_trip_and_keep_every_other_byte() {
    let moto = Moto::start();
    let (home, key) = setup(&moto, "alice");
    home.protected_key();
    let before = home.read_credentials();

    let out = home
        .credrot_at(&moto.endpoint)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    assert!(
        stdout_of(&out).contains("credential_process = credrot credential-process --profile work"),
        "{}",
        stdout_of(&out)
    );
    let encrypted = home.read_credentials();
    assert!(!encrypted.contains(&key.secret) && !encrypted.contains(&key.id));
    assert_eq!(
        encrypted.matches("__encrypted__:").count(),
        2,
        "{encrypted}"
    );
    assert_eq!(masked(&encrypted, "work"), masked(&before, "work"));
    assert!(encrypted.contains("   # since May\n"), "the comment stays");
    assert_eq!(mode_of(&home.credentials()), 0o600);

    // Through credential-process the encrypted key still works under IAM auth.
    let decrypted = credential_process(&home, "work");
    assert_eq!(decrypted, key);
    moto.assert_key_works_for(&decrypted, "alice");

    // list needs no passphrase; show hides the secret unless asked.
    let out = home.credrot().args(["profile", "list"]).assert().success();
    let listing = stdout_of(&out);
    assert!(
        listing.contains("work") && listing.contains("encrypted"),
        "{listing}"
    );
    assert!(listing.contains("AKIADEFAULTEXAMPLE"), "{listing}");
    let out = home
        .credrot_at(&moto.endpoint)
        .args(["profile", "show", "work"])
        .assert()
        .success();
    assert!(stdout_of(&out).contains(&key.id));
    assert!(!stdout_of(&out).contains(&key.secret));
    let out = home
        .credrot_at(&moto.endpoint)
        .args(["--output", "json", "profile", "show", "work", "--reveal"])
        .assert()
        .success();
    let shown: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(shown["aws_secret_access_key"], key.secret.as_str());
    assert_eq!(shown["stored"], "encrypted");

    home.credrot_at(&moto.endpoint)
        .args(["profile", "decrypt", "work"])
        .assert()
        .success();
    assert_eq!(
        home.read_credentials(),
        before,
        "decrypt restores every byte"
    );
}

#[test]
fn values_moved_to_another_profile_or_field_do_not_decrypt() {
    let home = Home::new();
    home.protected_key();
    let work = Key {
        id: "AKIAWORKEXAMPLE".into(),
        secret: "work-secret".into(),
    };
    home.write_credentials(&credentials_text(&work));
    for profile in ["work", "other"] {
        home.credrot()
            .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
            .args(["profile", "encrypt", profile])
            .assert()
            .success();
    }
    let text = home.read_credentials();
    let value = |profile: &str, field: &str| -> String {
        let section = text.split(&format!("[{profile}]")).nth(1).unwrap();
        section
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_once('=').map(|(_, v)| v))
            .map(|v| v.split_whitespace().next().unwrap().to_string())
            .unwrap()
    };
    // [work]'s secret into [other]; [work]'s id into [work]'s secret field.
    let work_secret = value("work", "aws_secret_access_key");
    let work_id = value("work", "aws_access_key_id");
    let other_secret = value("other", "aws_secret_access_key");
    home.write_credentials(
        &text
            .replace(&other_secret, "OTHER")
            .replace(&work_secret, &work_id)
            .replace("OTHER", &work_secret),
    );
    for profile in ["work", "other"] {
        let out = home
            .credrot()
            .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
            .args(["credential-process", "--profile", profile])
            .assert()
            .code(2);
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!(
                "cannot decrypt aws_secret_access_key of profile [{profile}]"
            )) && err.contains("another profile or field"),
            "{err}"
        );
        assert!(out.get_output().stdout.is_empty());
    }
}

#[test]
fn unprotected_rsa_and_missing_keys_are_refused_with_the_fix() {
    let home = Home::new();
    home.write_credentials(&credentials_text(&Key {
        id: "AKIAWORKEXAMPLE".into(),
        secret: "work-secret".into(),
    }));
    let before = home.read_credentials();
    let refused = |key: Option<&Path>, expected: &[&str]| {
        let mut cmd = home.credrot();
        cmd.env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
            .args(["profile", "encrypt", "work"]);
        if let Some(key) = key {
            cmd.arg("--ssh-key").arg(key);
        }
        let err = stderr_of(&cmd.assert().code(2));
        for part in expected {
            assert!(err.contains(part), "{err}");
        }
        assert!(!err.contains("work-secret"));
    };
    refused(None, &["id_ed25519 not found", "ssh-keygen -t ed25519"]);
    let plain = home.keygen("ed25519", "", &home.path().join(".ssh/plain"));
    refused(Some(&plain), &["has no passphrase", "ssh-keygen -p -f"]);
    let rsa = home.keygen("rsa", PASSPHRASE, &home.path().join(".ssh/id_rsa"));
    refused(
        Some(&rsa),
        &["is ssh-rsa", "needs ED25519", "ssh-keygen -t ed25519"],
    );
    refused(
        Some(&home.path().join(".ssh/id_rsa.pub")),
        &["not an OpenSSH private key"],
    );
    assert_eq!(home.read_credentials(), before, "nothing was written");

    // The default profile is refused even with a good key.
    home.protected_key();
    let out = home
        .credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "default"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("refusing to encrypt the default profile"));
    assert_eq!(home.read_credentials(), before);
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error() {
    let home = Home::new();
    home.protected_key();
    home.write_credentials(&credentials_text(&Key {
        id: "AKIAWORKEXAMPLE".into(),
        secret: "work-secret".into(),
    }));
    let before = home.read_credentials();
    let out = home
        .credrot()
        .env("CREDROT_SSH_PASSPHRASE", "not the passphrase")
        .args(["profile", "encrypt", "work"])
        .assert()
        .code(2);
    let err = stderr_of(&out);
    assert!(err.contains("wrong passphrase for SSH key"), "{err}");
    assert!(!err.contains("not the passphrase"), "{err}");
    assert_eq!(home.read_credentials(), before);

    // No agent, no passphrase variable, no terminal: say how to provide one.
    let out = home
        .credrot()
        .args(["profile", "encrypt", "work"])
        .assert()
        .code(2);
    let err = stderr_of(&out);
    assert!(
        err.contains("ssh-add") && err.contains("CREDROT_SSH_PASSPHRASE"),
        "{err}"
    );
}

#[test]
fn the_agent_and_the_passphrase_derive_the_same_key() {
    let home = Home::new();
    let ssh_key = home.protected_key();
    let work = Key {
        id: "AKIAWORKEXAMPLE".into(),
        secret: "work/secret+agent".into(),
    };
    home.write_credentials(&credentials_text(&work));
    // Encrypted through the passphrase...
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    // ...decrypted through the agent, with no passphrase anywhere.
    let agent = Agent::start();
    agent.add(&home, &ssh_key);
    let out = home
        .credrot()
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["credential-process", "--profile", "work"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(crate::harness::key_of(&doc), work);
    // An agent without the key is passed over for the passphrase.
    let empty = Agent::start();
    home.credrot()
        .env("SSH_AUTH_SOCK", &empty.socket)
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["credential-process", "--profile", "work"])
        .assert()
        .success();
}

/// The AWS CLI: `CREDROT_TEST_AWS_CLI`, else .venv's, else `aws` on PATH.
fn aws_cli() -> String {
    std::env::var("CREDROT_TEST_AWS_CLI").unwrap_or_else(|_| crate::harness::test_tool("aws"))
}

#[test]
fn the_aws_cli_signs_with_an_encrypted_profile_through_credential_process() {
    let moto = Moto::start();
    let (home, key) = setup(&moto, "carol");
    let ssh_key = home.protected_key();
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    // A config profile of another name: the CLI reads [work] of the credentials file before
    // any credential_process, and would sign with the ciphertext.
    std::fs::write(
        home.config(),
        format!(
            "[profile work-credrot]\nregion = us-east-1\ncredential_process = {} credential-process --profile work --ssh-key {}\n",
            env!("CARGO_BIN_EXE_credrot"),
            ssh_key.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(aws_cli())
        .args(["sts", "get-caller-identity", "--output", "json", "--profile", "work-credrot"])
        .args(["--endpoint-url", &moto.endpoint])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.config())
        .env("AWS_SHARED_CREDENTIALS_FILE", home.credentials())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the AWS CLI ({e}); install it with: pip install -r requirements-profiles.txt"));
    assert!(
        out.status.success(),
        "aws failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let identity: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        identity["Arn"].as_str().unwrap().ends_with("/carol"),
        "{identity}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&key.secret));
}

/// A Python with the real iam-sorry package: `CREDROT_IAM_SORRY_PYTHON`, else a venv under
/// target/ made once from requirements-profiles.txt.
fn iam_sorry_python() -> PathBuf {
    if let Ok(python) = std::env::var("CREDROT_IAM_SORRY_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("iam-sorry-venv");
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    // Built aside and renamed, so an interrupted build is never mistaken for a venv (the
    // interpreter of a moved venv still finds its packages; only pip's scripts would not).
    let building = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let staged = building.path().join("venv");
    let run = |program: &Path, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    run(
        Path::new("python3"),
        &["-m", "venv", staged.to_str().unwrap()],
    );
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("requirements-profiles.txt");
    run(
        &staged.join("bin/python"),
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "-r",
            requirements.to_str().unwrap(),
        ],
    );
    std::fs::rename(&staged, &venv).unwrap();
    python
}

/// Encrypt `value` with the real iam-sorry package and `ssh_key` (the value goes on stdin).
fn iam_sorry_encrypt(python: &Path, ssh_key: &Path, value: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            "import sys; from iamsorry.core import encrypt_credential; print(encrypt_credential(sys.stdin.read(), sys.argv[1]))",
        ])
        .arg(ssh_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "iam-sorry failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_iam_sorry_profile_is_imported_into_credrots_scheme() {
    let (moto, key) = Moto::start_with_user("dave");
    let home = Home::new();
    let ssh_key = home.protected_key();
    let python = iam_sorry_python();
    let id = iam_sorry_encrypt(&python, &ssh_key, &key.id);
    let secret = iam_sorry_encrypt(&python, &ssh_key, &key.secret);
    assert!(id.starts_with("__encrypted__:"), "{id}");
    let text = format!(
        "# iam-sorry wrote this\n[iam-sorry]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n[default]\nregion = us-east-1\n"
    );
    home.write_credentials(&text);

    // Before the import credrot recognises the values as another tool's.
    let out = home
        .credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["credential-process", "--profile", "iam-sorry"])
        .assert()
        .code(2);
    assert!(stderr_of(&out).contains("credrot profile import-iam-sorry iam-sorry"));

    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "import-iam-sorry", "iam-sorry"])
        .assert()
        .success();
    let imported = home.read_credentials();
    assert!(!imported.contains(&id) && !imported.contains(&secret));
    assert_eq!(masked(&imported, "iam-sorry"), masked(&text, "iam-sorry"));
    for line in imported.lines().filter(|l| l.contains("__encrypted__:")) {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(line.split("__encrypted__:").nth(1).unwrap())
            .unwrap();
        assert!(payload.starts_with(b"crd\x01"), "credrot's format: {line}");
    }
    let decrypted = credential_process(&home, "iam-sorry");
    assert_eq!(decrypted, key);
    moto.assert_key_works_for(&decrypted, "dave");
}

#[test]
fn profile_env_exports_an_encrypted_long_lived_key_for_eval() {
    let moto = Moto::start();
    let (home, key) = setup(&moto, "dave");
    home.protected_key();
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    // iam-sorry's `eval $(iam-sorry --eval work)`: the key reaches a shell and the real AWS
    // CLI signs with it; a stale session token from earlier is unset.
    let script = format!(
        "export AWS_SESSION_TOKEN=stale; eval \"$('{}' profile env work)\" && printf '%s|%s|%s\\n' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\" \"${{AWS_SESSION_TOKEN-unset}}\" && '{}' sts get-caller-identity --output json --endpoint-url '{}'",
        env!("CARGO_BIN_EXE_credrot"),
        aws_cli(),
        moto.endpoint
    );
    let out = home
        .command("sh")
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["-c", &script])
        .assert()
        .success();
    let stdout = stdout_of(&out);
    let (vars, identity) = stdout.split_once('\n').unwrap();
    assert_eq!(vars, format!("{}|{}|unset", key.id, key.secret));
    let identity: serde_json::Value = serde_json::from_str(identity).unwrap();
    assert!(
        identity["Arn"].as_str().unwrap().ends_with("/dave"),
        "{identity}"
    );
    assert!(!stderr_of(&out).contains(&key.secret));

    // Values that need quoting survive eval.
    home.write_credentials(
        "[odd]\naws_access_key_id = AKIAODD\naws_secret_access_key = it's $HOME `x`\n",
    );
    let out = home
        .command("sh")
        .args(["-c"])
        .arg(format!(
            "eval \"$('{}' profile env odd)\" && printf '%s' \"$AWS_SECRET_ACCESS_KEY\"",
            env!("CARGO_BIN_EXE_credrot")
        ))
        .assert()
        .success();
    assert_eq!(stdout_of(&out), "it's $HOME `x`");
}

#[test]
fn profile_env_refuses_a_terminal_unless_forced() {
    let home = Home::new();
    home.write_credentials(
        "[work]\naws_access_key_id = AKIATTY\naws_secret_access_key = tty-secret\n",
    );
    let at_a_terminal = |extra: &str| {
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_drive.py");
        let out = home
            .command("python3")
            .args([
                driver,
                "--",
                env!("CARGO_BIN_EXE_credrot"),
                "profile",
                "env",
                "work",
            ])
            .args(extra.split_whitespace())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            out.status.code(),
        )
    };
    let (screen, code) = at_a_terminal("");
    assert_eq!(code, Some(2), "{screen}");
    assert!(
        screen.contains("refusing to print the secret of profile [work] to a terminal"),
        "{screen}"
    );
    assert!(screen.contains("--force-tty"), "{screen}");
    assert!(!screen.contains("tty-secret"), "{screen}");
    let (screen, code) = at_a_terminal("--force-tty");
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("export AWS_SECRET_ACCESS_KEY='tty-secret'"),
        "{screen}"
    );
}

#[test]
fn profile_show_stored_prints_the_ciphertext_without_the_ssh_key() {
    let moto = Moto::start();
    let (home, key) = setup(&moto, "erin");
    // A plain-text secret's stored form is the secret: --stored does not print it.
    let out = home
        .credrot()
        .args(["profile", "show", "work", "--stored"])
        .assert()
        .success();
    let shown = stdout_of(&out);
    assert!(
        shown.contains(&key.id) && !shown.contains(&key.secret),
        "{shown}"
    );
    assert!(
        shown.contains("aws_secret_access_key = (plain text, not shown: --reveal prints it"),
        "{shown}"
    );
    home.protected_key();
    home.credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "encrypt", "work"])
        .assert()
        .success();
    let text = home.read_credentials();
    let stored = |field: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(field) && l.contains("__encrypted__:"))
            .and_then(|l| l.split_once('='))
            .map(|(_, v)| v.split_whitespace().next().unwrap().to_string())
            .unwrap()
    };
    // iam-sorry's --show-encrypted: no passphrase, no agent, nothing decrypted.
    let out = home
        .credrot()
        .args(["profile", "show", "work", "--stored"])
        .assert()
        .success();
    assert_eq!(
        stdout_of(&out),
        format!(
            "[work]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            stored("aws_access_key_id"),
            stored("aws_secret_access_key")
        )
    );
    assert!(!stdout_of(&out).contains(&key.id) && !stdout_of(&out).contains(&key.secret));
    let out = home
        .credrot()
        .args(["--output", "json", "profile", "show", "work", "--stored"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["stored"], "encrypted");
    assert_eq!(
        doc["aws_secret_access_key"],
        stored("aws_secret_access_key")
    );

    // --show-decrypted is --reveal; both at once is a usage error.
    let out = home
        .credrot()
        .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
        .args(["profile", "show", "work", "--reveal"])
        .assert()
        .success();
    assert!(stdout_of(&out).contains(&key.secret));
    home.credrot()
        .args(["profile", "show", "work", "--reveal", "--stored"])
        .assert()
        .code(2);
}
