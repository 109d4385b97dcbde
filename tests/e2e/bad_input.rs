//! Bad input, table-driven: each case gets a message that says what to do, the right exit
//! code, and changes nothing in AWS or the stores.

use crate::harness::{free_port, Moto};
use std::path::Path;

const GOOD_CONFIG: &str =
    "[services.app]\niam_user = \"app\"\nstores = [{ kind = \"file\", path = \"app.json\" }]\n";

/// What one case changes before running credrot.
enum Setup {
    Config(&'static str),
    Env(&'static str, EnvValue),
    Args,
}

/// An environment value, possibly computed from the running emulator.
enum EnvValue {
    Fixed(&'static str),
    ClosedPort,
    RestrictedIdentity,
}

struct Case {
    name: &'static str,
    setup: Setup,
    args: &'static [&'static str],
    code: i32,
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "clock offset that is not a duration",
        setup: Setup::Env("CREDROT_CLOCK_OFFSET", EnvValue::Fixed("soon")),
        args: &["update", "app"],
        code: 2,
        expect: &["CREDROT_CLOCK_OFFSET=\"soon\" is not a duration", "examples: 2h"],
    },
    Case {
        name: "AWS timeout that is not a duration",
        setup: Setup::Env("CREDROT_AWS_TIMEOUT", EnvValue::Fixed("forever")),
        args: &["update", "app"],
        code: 2,
        expect: &["CREDROT_AWS_TIMEOUT=\"forever\"", "e.g. CREDROT_AWS_TIMEOUT=30s"],
    },
    Case {
        name: "malformed TOML",
        setup: Setup::Config("[services.app\niam_user = \"app\"\n"),
        args: &["update", "app"],
        code: 2,
        expect: &["services.toml:1:", "hint:"],
    },
    Case {
        name: "wrong type",
        setup: Setup::Config("[services.app]\niam_user = 5\n"),
        args: &["update", "app"],
        code: 2,
        expect: &["services.toml:2:", "invalid type", "strings need quotes"],
    },
    Case {
        name: "unknown key",
        setup: Setup::Config("[services.app]\niam_user = \"app\"\nrotate_every = \"1d\"\n"),
        args: &["update", "app"],
        code: 2,
        expect: &["services.toml:3:1", "unknown field `rotate_every`", "remove that key"],
    },
    Case {
        name: "nonexistent user",
        setup: Setup::Config("[services.app]\niam_user = \"ghost\"\nstores = [{ kind = \"file\", path = \"app.json\" }]\n"),
        args: &["update", "app"],
        code: 1,
        expect: &["IAM user 'ghost' does not exist", "check iam_user"],
    },
    Case {
        name: "path with no users",
        setup: Setup::Args,
        args: &["rotate", "--path", "NoSuchPath", "--print-secrets"],
        code: 2,
        expect: &["no IAM user has the path /NoSuchPath/", "case-sensitive"],
    },
    Case {
        name: "unreachable endpoint",
        setup: Setup::Env("AWS_ENDPOINT_URL", EnvValue::ClosedPort),
        args: &["update", "app"],
        code: 1,
        expect: &["cannot reach the AWS endpoint", "--endpoint-url"],
    },
    Case {
        name: "wrong credentials",
        setup: Setup::Env("AWS_SECRET_ACCESS_KEY", EnvValue::Fixed("not-the-secret")),
        args: &["update", "app"],
        code: 1,
        expect: &["SignatureDoesNotMatch", "credentials in use were rejected"],
    },
    Case {
        name: "denied IAM action",
        setup: Setup::Env("AWS_ACCESS_KEY_ID", EnvValue::RestrictedIdentity),
        args: &["update", "app"],
        code: 1,
        expect: &["iam:CreateAccessKey", "grant the identity credrot runs as this permission"],
    },
    Case {
        name: "op missing",
        setup: Setup::Config("[services.app]\niam_user = \"app\"\nstores = [{ kind = \"file\", path = \"app.json\" }, { kind = \"1password\" }]\n"),
        args: &["update", "app"],
        code: 1,
        expect: &["1Password CLI", "was not found", "set CREDROT_OP"],
    },
    Case {
        name: "unwritable outfile",
        setup: Setup::Args,
        args: &["update", "app", "-o", "/proc/credrot-no-such-dir/keys.json"],
        code: 2,
        expect: &["/proc/credrot-no-such-dir/keys.json", "choose a writable -o path"],
    },
    Case {
        name: "verify timeout too long to add to a clock",
        setup: Setup::Args,
        args: &["update", "app", "--force", "--verify-timeout", "500000000000y"],
        code: 2,
        expect: &["--verify-timeout", "1s to 1h"],
    },
    Case {
        name: "lock ttl too long to print as a date",
        setup: Setup::Args,
        args: &["update", "app", "--force", "--lock-ttl", "999999999d"],
        code: 2,
        expect: &["--lock-ttl", "0s to 7d"],
    },
    Case {
        name: "IAM path with a space",
        setup: Setup::Args,
        args: &["rotate", "--path", "a b", "--print-secrets"],
        code: 2,
        expect: &["'a b' is not a valid IAM path"],
    },
    Case {
        name: "max_age too long",
        setup: Setup::Config("[services.app]\niam_user = \"app\"\nmax_age = \"500000000000y\"\nstores = [{ kind = \"file\", path = \"app.json\" }]\n"),
        args: &["update", "app", "--force"],
        code: 2,
        expect: &["services.toml:3:", "max_age:", "3650d"],
    },
];

/// Everything except creating keys: the run gets as far as it can and is then refused.
const ALL_BUT_CREATE: &[&str] = &[
    "iam:ListAccessKeys",
    "iam:ListUserTags",
    "iam:TagUser",
    "iam:UntagUser",
    "iam:GetAccessKeyLastUsed",
    "iam:DeleteAccessKey",
    "sts:GetCallerIdentity",
];

fn snapshot(moto: &Moto, dir: &Path) -> (Vec<(String, bool)>, String) {
    (
        moto.keys("app"),
        std::fs::read_to_string(dir.join("app.json")).unwrap(),
    )
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let (moto, key) = Moto::start_with_user("app");
    let restricted = moto.create_identity("restricted", ALL_BUT_CREATE);
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let config = match case.setup {
            Setup::Config(text) => text,
            _ => GOOD_CONFIG,
        };
        std::fs::write(dir.path().join("services.toml"), config).unwrap();
        crate::harness::write_key_file(&dir.path().join("app.json"), &key);
        let before = snapshot(&moto, dir.path());
        let mut cmd = moto.credrot_process(dir.path());
        cmd.env("CREDROT_OP", dir.path().join("no-such-op"));
        // One attempt per call: the unreachable case must not wait through the retries.
        cmd.env("AWS_MAX_ATTEMPTS", "1").args(case.args);
        if let Setup::Env(name, value) = &case.setup {
            match value {
                EnvValue::Fixed(v) => cmd.env(name, v),
                EnvValue::ClosedPort => cmd.env(name, format!("http://127.0.0.1:{}", free_port())),
                EnvValue::RestrictedIdentity => cmd
                    .env("AWS_ACCESS_KEY_ID", &restricted.id)
                    .env("AWS_SECRET_ACCESS_KEY", &restricted.secret),
            };
        }
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(case.code), "{}: {all}", case.name);
        for needle in case.expect {
            assert!(
                all.contains(needle),
                "{}: expected {needle:?} in:\n{all}",
                case.name
            );
        }
        assert!(
            !all.contains(&key.secret) && !all.contains(&moto.admin.secret),
            "{}: a secret was printed",
            case.name
        );
        assert_eq!(
            snapshot(&moto, dir.path()),
            before,
            "{}: something changed",
            case.name
        );
    }
}
