//! `credrot rotate-profile P` against moto with IAM authentication on, through a proxy that
//! records who signed each call and breaks one step at a time.

use crate::harness::{Key, Moto};
use crate::home::{credential_process, stderr_of, stdout_of, Home, PASSPHRASE};
use crate::proxy::{Fault, FaultProxy, Signer};

/// Other profiles and comments that must survive every rotation byte for byte.
fn credentials_text(key: &Key) -> String {
    format!(
        "# my keys\n[default]\nregion = us-east-1\n\n[frank]\naws_access_key_id = {}\naws_secret_access_key = {}  ; personal\n\n[other]\naws_access_key_id = AKIAOTHEREXAMPLE\naws_secret_access_key = other-secret\n",
        key.id, key.secret
    )
}

/// Everything but the values of [frank]'s key.
fn outside_frank(text: &str) -> String {
    let mut in_frank = false;
    text.lines()
        .filter(|line| {
            if line.starts_with('[') {
                in_frank = *line == "[frank]";
            }
            !(in_frank && line.starts_with("aws_"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Setup {
    moto: Moto,
    proxy: FaultProxy,
    home: Home,
    old: Key,
}

fn setup(encrypted: bool) -> Setup {
    let moto = Moto::start();
    moto.create_user("frank", "/people/");
    // What a person needs to rotate their own key (and make sessions).
    moto.allow(
        "frank",
        &[
            "iam:ListAccessKeys",
            "iam:CreateAccessKey",
            "iam:DeleteAccessKey",
            "sts:GetSessionToken",
        ],
    );
    let old = moto.create_key("frank", true);
    let proxy = FaultProxy::start(&moto.endpoint);
    let home = Home::new();
    home.protected_key();
    home.write_credentials(&credentials_text(&old));
    if encrypted {
        home.credrot()
            .env("CREDROT_SSH_PASSPHRASE", PASSPHRASE)
            .args(["profile", "encrypt", "frank"])
            .assert()
            .success();
    }
    Setup {
        moto,
        proxy,
        home,
        old,
    }
}

impl Setup {
    fn rotate(&self) -> assert_cmd::assert::Assert {
        self.home
            .credrot_at(&self.proxy.endpoint)
            // Injected failures should fail at once, not after the SDK's retries.
            .env("AWS_MAX_ATTEMPTS", "1")
            .args(["rotate-profile", "frank", "--verify-timeout", "3s"])
            .assert()
    }

    /// Calls of `action` as (signer) in order.
    fn signers(&self, action: &str) -> Vec<String> {
        self.proxy
            .seen()
            .into_iter()
            .filter(|s| s.action == action)
            .map(|s| s.signer)
            .collect()
    }
}

#[test]
fn rotate_profile_replaces_the_key_and_the_new_key_deletes_the_old() {
    for encrypted in [false, true] {
        let s = setup(encrypted);
        // A cached session of the profile, made from the old key.
        s.home
            .credrot_at(&s.proxy.endpoint)
            .args(["session", "--profile", "frank", "--format", "json"])
            .assert()
            .success();
        assert_eq!(
            std::fs::read_dir(s.home.session_cache()).unwrap().count(),
            1
        );
        let before = s.home.read_credentials();

        let out = s.rotate().success();
        let new = credential_process(&s.home, "frank");
        assert_ne!(new.id, s.old.id);
        assert!(
            stdout_of(&out).contains(&format!("rotated {} -> {}", s.old.id, new.id)),
            "{}",
            stdout_of(&out)
        );
        s.moto.assert_key_works_for(&new, "frank");
        assert!(s.moto.whoami(&s.old).is_none(), "the old key is deleted");
        assert_eq!(s.moto.keys("frank"), [(new.id.clone(), true)]);
        assert_eq!(s.signers("CreateAccessKey"), [s.old.id.as_str()]);
        assert_eq!(
            s.signers("DeleteAccessKey"),
            [new.id.as_str()],
            "the old key is deleted with the new key"
        );

        let after = s.home.read_credentials();
        assert_eq!(outside_frank(&after), outside_frank(&before));
        assert!(after.contains("  ; personal\n"), "{after}");
        assert!(!after.contains(&s.old.secret));
        assert_eq!(
            after.contains(&new.secret),
            !encrypted,
            "an encrypted profile is encrypted again"
        );
        assert_eq!(crate::harness::mode_of(&s.home.credentials()), 0o600);
        assert_eq!(
            std::fs::read_dir(s.home.session_cache()).unwrap().count(),
            0,
            "sessions of the old key are forgotten"
        );
    }
}

#[test]
fn rotate_profile_keeps_a_working_key_when_any_step_fails() {
    for step in ["create", "write", "verify", "delete"] {
        let s = setup(true);
        let before = s.home.read_credentials();
        let aws_dir = s.home.path().join(".aws");
        let moved = s.home.path().join(".aws-moved");
        match step {
            "create" => s.proxy.on(
                "CreateAccessKey",
                Signer::Any,
                Fault::Refuse {
                    status: 403,
                    code: "AccessDenied",
                },
            ),
            // When IAM creates the key, ~/.aws stops being a directory: the write that
            // follows fails for real (root ignores permission bits, not a missing directory).
            "write" => {
                let (aws_dir, moved) = (aws_dir.clone(), moved.clone());
                s.proxy.on(
                    "CreateAccessKey",
                    Signer::Any,
                    Fault::Before(Box::new(move || {
                        std::fs::rename(&aws_dir, &moved).unwrap();
                        std::fs::write(&aws_dir, "not a directory").unwrap();
                    })),
                );
            }
            // STS refuses every key but the old one.
            "verify" => s.proxy.on(
                "GetCallerIdentity",
                Signer::Not(s.old.id.clone()),
                Fault::Refuse {
                    status: 403,
                    code: "InvalidClientTokenId",
                },
            ),
            "delete" => s.proxy.on(
                "DeleteAccessKey",
                Signer::Any,
                Fault::Refuse {
                    status: 403,
                    code: "AccessDenied",
                },
            ),
            _ => unreachable!(),
        }

        let out = s.rotate().code(1);
        let err = stderr_of(&out);
        if step == "write" {
            std::fs::remove_file(&aws_dir).unwrap();
            std::fs::rename(&moved, &aws_dir).unwrap();
        }
        assert!(!err.contains(&s.old.secret), "{step}: {err}");

        let now = credential_process(&s.home, "frank");
        s.moto.assert_key_works_for(&now, "frank");
        match step {
            "create" | "write" | "verify" => {
                assert_eq!(now, s.old, "{step}: the profile keeps its key");
                assert_eq!(
                    s.home.read_credentials(),
                    before,
                    "{step}: the file is byte for byte as before"
                );
                assert_eq!(
                    s.moto.keys("frank"),
                    [(s.old.id.clone(), true)],
                    "{step}: no stray key is left in IAM"
                );
                assert!(err.contains(&s.old.id), "{step}: {err}");
            }
            "delete" => {
                assert_ne!(now.id, s.old.id, "the verified new key is in the profile");
                assert_eq!(s.moto.keys("frank").len(), 2, "the old key is still there");
                assert!(err.contains("aws iam delete-access-key"), "{err}");
                assert!(!err.contains(&now.secret), "{err}");
            }
            _ => unreachable!(),
        }
        match step {
            "create" => assert!(err.contains("nothing was changed"), "{err}"),
            "write" => assert!(
                err.contains("writing the new key to profile [frank] failed")
                    && err.contains("was deleted again"),
                "{err}"
            ),
            "verify" => assert!(
                err.contains("did not pass verification") && err.contains("holds its old key"),
                "{err}"
            ),
            _ => {}
        }
    }
}

#[test]
fn rotate_profile_refuses_a_full_user_and_temporary_credentials() {
    let s = setup(false);
    let second = s.moto.create_key("frank", true);
    let before = s.home.read_credentials();
    let out = s.rotate().code(1);
    let err = stderr_of(&out);
    assert!(
        err.contains("already has two access keys") && err.contains(&second.id),
        "{err}"
    );
    assert_eq!(s.home.read_credentials(), before);
    assert_eq!(s.moto.keys("frank").len(), 2);

    s.home.write_credentials(&format!(
        "[frank]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = tok\n",
        s.old.id, s.old.secret
    ));
    let out = s.rotate().code(2);
    assert!(stderr_of(&out).contains("temporary credentials"));
    assert!(s.proxy.seen().iter().all(|c| c.action != "CreateAccessKey"));
}
