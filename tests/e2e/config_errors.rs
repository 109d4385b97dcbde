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
        toml: Some("[services.a]\niam_user = \"u\"\n\n[[services.a.stores]]\nkind = \"consul\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:5:8", "unknown variant `consul`", "file, 1password, secrets-manager, ssm"],
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
        name: "inconsistent [defaults] that no section uses",
        toml: Some("[defaults]\nmax_age = \"10d\"\nrotate_after = \"20d\"\n"),
        args: &["list"],
        expect: &["services.toml:1:", "[defaults]: rotate_after (20d) is longer than max_age (10d)"],
    },
    Case {
        name: "store without kind",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ path = \"a.json\" }]\n"),
        args: &["list"],
        expect: &["services.toml:3:", "missing field `kind`", "every store needs a kind"],
    },
    Case {
        name: "unknown file format gets a hint about the format",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\", format = \"yaml\" }]\n"),
        args: &["list"],
        expect: &["unknown variant `yaml`", "hint: use one of the values listed above"],
    },
    Case {
        name: "two services of one IAM user",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\n\n[services.b]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"b.json\" }]\n"),
        args: &["update", "a"],
        expect: &["services.toml:6:", "services 'a' (line 2) and 'b' both name iam_user 'u'", "put all stores of IAM user 'u' in one service"],
    },
    Case {
        name: "two services sharing one file",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"k.json\" }]\n\n[services.b]\niam_user = \"v\"\nstores = [{ kind = \"file\", path = \"./k.json\" }]\n"),
        args: &["update", "a"],
        expect: &["services.toml:7:", "store file:./k.json of service 'b' is the same location as a store of service 'a' (line 3)"],
    },
    Case {
        name: "two services sharing one SSM prefix",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"ssm\", prefix = \"/k/{service}\" }]\n\n[services.b]\niam_user = \"v\"\nstores = [{ kind = \"ssm\", prefix = \"/k/a\" }]\n"),
        args: &["update", "b"],
        expect: &["services.toml:7:", "same location as a store of service 'a'"],
    },
    Case {
        name: "service name that leaves the store directory",
        toml: Some("[services.\"../../x\"]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"secrets/{service}.json\" }]\n"),
        args: &["list"],
        expect: &["services.toml:1:", "\"../../x\" is not a usable service name", "starting with a letter or digit"],
    },
    Case {
        name: "stray brace in a template",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"secrets/a}.json\" }]\n"),
        args: &["list"],
        expect: &["services.toml:3:", "'}' without an opening '{'"],
    },
    Case {
        name: "duration setting out of range",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\nmax_age = \"500000000000y\"\n"),
        args: &["update", "a"],
        expect: &["services.toml:4:", "max_age: duration '500000000000y' is out of range", "3650d"],
    },
    Case {
        name: "verify timeout out of range",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\n"),
        args: &["update", "a", "--verify-timeout", "500000000000y"],
        expect: &["--verify-timeout", "1s to 1h"],
    },
    Case {
        name: "lock ttl out of range",
        toml: None,
        args: &["rotate", "--path", "PSK", "-o", "k.json", "--lock-ttl", "999999999d"],
        expect: &["--lock-ttl", "0s to 7d"],
    },
    Case {
        name: "--no-lock with --lock-ttl",
        toml: Some("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\" }]\n"),
        args: &["update", "a", "--no-lock", "--lock-ttl", "1m"],
        expect: &["--lock-ttl", "cannot be used with", "--no-lock"],
    },
    Case {
        name: "invalid IAM path on the command line",
        toml: None,
        args: &["rotate", "--path", "a b"],
        expect: &["'a b' is not a valid IAM path"],
    },
    Case {
        name: "no store for the path",
        toml: None,
        args: &["rotate", "--path", "PSK"],
        expect: &["IAM path /PSK/: no configuration file services.toml", "-o FILE or --print-secrets", "credrot generate"],
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
