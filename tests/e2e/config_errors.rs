//! Bad configurations: exit 2, a message naming file, line and fix, and no AWS call.

use crate::harness::{credrot_command, Tripwire};

struct Case {
    name: &'static str,
    toml: Option<&'static str>,
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\ncolour = \"red\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:4:1", "unknown field `colour`", "hint:"],
    },
    Case {
        name: "missing iam_user",
        toml: Some("[services.a]\ndescription = \"x\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:1:", "iam_user", "add iam_user"],
    },
    Case {
        name: "bad duration",
        toml: Some("[services.a]\niam_user = \"u\"\nmax_age = \"a month\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:3:", "invalid duration 'a month'", "30d"],
    },
    Case {
        name: "unknown store kind",
        toml: Some("[services.a]\niam_user = \"u\"\n\n[[services.a.stores]]\nkind = \"vault\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:5:8", "unknown variant `vault`", "file, 1password, secrets-manager, ssm"],
    },
    Case {
        name: "missing file",
        toml: None,
        args: &["update", "a"],
        expect: &["services.toml not found", "--config"],
    },
    Case {
        name: "path store shared by every user",
        toml: Some("[paths.PSK]\nstores = [{ kind = \"file\", path = \"keys.json\" }]\n"),
        args: &["rotate", "--path", "PSK"],
        expect: &["services.toml:2:", "{user}"],
    },
    Case {
        name: "no store for the service",
        toml: Some("[services.a]\niam_user = \"u\"\n"),
        args: &["update", "a"],
        expect: &["no store configured", "-o FILE or --print-secrets"],
    },
    Case {
        name: "ssm prefix that SSM would refuse",
        toml: Some("[services.a]\niam_user = \"u\"\n\n[[services.a.stores]]\nkind = \"ssm\"\nprefix = \"home-ops/a\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:4:", "must start with '/'", "hint:"],
    },
    Case {
        name: "1password title shared by every user of a path",
        toml: Some("[paths.PSK]\nstores = [{ kind = \"1password\", title = \"AWS Access Key\" }]\n"),
        args: &["rotate", "--path", "PSK"],
        expect: &["services.toml:2:", "{user}"],
    },
    Case {
        name: "audit section without destination",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\n\n[audit]\n"),
        args: &["update", "a"],
        expect: &["services.toml:5:1", "[audit] names no destination", "cloudwatch_log_group"],
    },
    Case {
        name: "unknown audit key",
        toml: Some("[audit]\npath = \"a.log\"\nfile = \"b.log\"\n"),
        args: &["rotate", "--path", "PSK", "-o", "k.json"],
        expect: &["services.toml:3:1", "unknown field `file`"],
    },
    Case {
        name: "webhook that is not an http URL",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\n\n[notify]\nwebhook = \"hooks.example.com/x\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:6:11", "http:// or https://"],
    },
    Case {
        name: "no store for the path",
        toml: None,
        args: &["rotate", "--path", "PSK"],
        expect: &["IAM path /PSK/ has no store", "-o FILE or --print-secrets"],
    },
];

#[test]
fn bad_configurations_exit_2_with_a_clear_message_and_no_aws_call() {
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        if let Some(toml) = case.toml {
            std::fs::write(dir.path().join("services.toml"), toml).unwrap();
        }
        let tripwire = Tripwire::new();
        let out = credrot_command(dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example")
            .args(["--endpoint-url", &tripwire.endpoint])
            .args(case.args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.name);
        for needle in case.expect {
            assert!(
                stderr.contains(needle),
                "{}: expected {needle:?} in {stderr}",
                case.name
            );
        }
        assert!(!tripwire.tripped(), "{}: an AWS call was made", case.name);
    }
}

#[test]
fn an_explicit_missing_config_is_an_error_even_for_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let out = credrot_command(dir.path())
        .args([
            "--config",
            "nope.toml",
            "rotate",
            "--path",
            "PSK",
            "--print-secrets",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml not found"));
}
