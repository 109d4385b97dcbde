//! Unit tests of the whole configuration: each check, with the line it reports.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("services.toml"))
}

fn error_of(text: &str) -> (usize, usize, String) {
    match parse(text).unwrap_err() {
        ConfigError::Invalid {
            line,
            column,
            message,
            ..
        } => (line, column, message),
        other => panic!("unexpected error {other}"),
    }
}

const GOOD: &str = r#"
[defaults]
region = "us-west-2"
max_age = "30d"

[services.postgresql]
description = "backups"
iam_user = "postgresql-backup"
tags = ["aws"]

[[services.postgresql.stores]]
kind = "file"
path = "secrets/postgresql.json"

[paths.PSKServiceAccounts]
stores = [{ kind = "file", path = "secrets/{user}.json", format = "env" }]
"#;

#[test]
fn parses_the_documented_shape() {
    let config = parse(GOOD).unwrap();
    let svc = config.service("postgresql").unwrap();
    assert_eq!(svc.iam_user, "postgresql-backup");
    assert_eq!(
        svc.policy.max_age.as_ref().unwrap().value,
        Duration::from_secs(30 * 86400)
    );
    assert_eq!(svc.region.as_deref(), Some("us-west-2"));
    let policy = config.path_policy("/PSKServiceAccounts/").unwrap();
    assert_eq!(policy.path, "/PSKServiceAccounts/");
    assert!(config.path_policy("PSKServiceAccounts").is_some());
}

#[test]
fn unknown_key_names_line_and_column() {
    let (line, column, message) = error_of("[services.a]\niam_user = \"u\"\ncolour = \"red\"\n");
    assert_eq!((line, column), (3, 1));
    assert!(message.contains("unknown field `colour`"), "{message}");
}

#[test]
fn missing_iam_user_is_reported() {
    let (line, _, message) = error_of("[services.a]\ndescription = \"x\"\n");
    assert_eq!(line, 1);
    assert!(message.contains("iam_user"), "{message}");
}

#[test]
fn bad_duration_is_reported_where_it_is() {
    let (line, _, message) = error_of("[defaults]\nmax_age = \"thirty days\"\n");
    assert_eq!(line, 2);
    assert!(message.contains("invalid duration"), "{message}");
}

#[test]
fn unknown_store_kind_is_reported() {
    let (_, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\n[[services.a.stores]]\nkind = \"consul\"\npath = \"x\"\n",
    );
    assert!(message.contains("unknown variant `consul`"), "{message}");
}

#[test]
fn path_store_without_user_placeholder_is_refused() {
    let (line, _, message) =
        error_of("[paths.X]\nstores = [{ kind = \"file\", path = \"all.json\" }]\n");
    assert_eq!(line, 2);
    assert!(message.contains("{user}"), "{message}");
}

#[test]
fn unknown_placeholder_is_refused() {
    let (_, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"{usr}.json\" }]\n",
    );
    assert!(message.contains("{usr}"), "{message}");
}

#[test]
fn the_new_store_kinds_parse_with_their_defaults() {
    let config = parse(
        r#"
[services.pg]
iam_user = "pg-backup"
tags = ["aws"]
stores = [
  { kind = "1password" },
  { kind = "secrets-manager", name = "home-ops/pg/aws", kms_key_id = "alias/home-ops", region = "us-west-2" },
  { kind = "ssm", prefix = "/home-ops/pg", kms_key_id = "alias/aws/ssm" },
]
[paths.PSK]
stores = [{ kind = "1password", title = "AWS Access Key - {user}" }, { kind = "ssm", prefix = "/psk/{user}" }]
"#,
    )
    .unwrap();
    let stores = &config.service("pg").unwrap().stores;
    match &stores[0] {
        StoreConfig::OnePassword(c) => {
            assert_eq!(c.vault, "Automation");
            assert!(c.title.is_none() && c.tags.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stores[1].summary(), "secrets-manager:home-ops/pg/aws");
    assert_eq!(stores[2].summary(), "ssm:/home-ops/pg");
}

#[test]
fn store_names_aws_would_refuse_are_configuration_errors() {
    for (store, expect) in [
        (
            r#"{ kind = "ssm", prefix = "home-ops/pg" }"#,
            "must start with '/'",
        ),
        (
            r#"{ kind = "ssm", prefix = "/home-ops/pg/" }"#,
            "not end with one",
        ),
        (r#"{ kind = "ssm", prefix = "/home ops" }"#, "contains ' '"),
        (r#"{ kind = "ssm", prefix = "/aws/pg" }"#, "reserves"),
        (
            r#"{ kind = "secrets-manager", name = "pg#aws" }"#,
            "contains '#'",
        ),
        (r#"{ kind = "1password", vault = " " }"#, "empty vault"),
    ] {
        let (line, _, message) = error_of(&format!(
            "[services.a]\niam_user = \"u\"\nstores = [{store}]\n"
        ));
        assert_eq!(line, 3, "{store}");
        assert!(message.contains(expect), "{store}: {message}");
    }
}

#[test]
fn a_path_1password_title_without_user_is_refused() {
    let (_, _, message) =
        error_of("[paths.X]\nstores = [{ kind = \"1password\", title = \"shared\" }]\n");
    assert!(message.contains("{user}"), "{message}");
}

#[test]
fn invalid_user_name_is_refused() {
    let (line, _, _) = error_of("[services.a]\niam_user = \"has space\"\n");
    assert_eq!(line, 2);
}

#[test]
fn audit_and_notify_sections_parse() {
    let config = Config::parse(
        "[audit]\npath = \"logs/audit.log\"\ncloudwatch_log_group = \"/credrot/audit\"\n\n[notify]\nwebhook = \"https://hooks.example.com/x\"\ntimeout = \"3s\"\n",
        Path::new("/etc/credrot/services.toml"),
    )
    .unwrap();
    let audit = config.audit.unwrap();
    assert_eq!(
        audit.path.as_deref(),
        Some(Path::new("/etc/credrot/logs/audit.log")),
        "relative to the configuration's directory"
    );
    assert_eq!(
        audit.cloudwatch,
        Some(CloudWatchTarget {
            group: "/credrot/audit".to_string(),
            stream: None
        })
    );
    let notify = config.notify.unwrap();
    assert_eq!(notify.webhook.target(), "https://hooks.example.com");
    assert_eq!(notify.timeout, Duration::from_secs(3));
    assert!(parse("").unwrap().audit.is_none());
}

#[test]
fn an_audit_section_without_destination_is_refused() {
    let (line, _, message) = error_of("\n[audit]\n");
    assert_eq!(line, 2);
    assert!(message.contains("no destination"), "{message}");
}

#[test]
fn audit_mistakes_are_reported_where_they_are() {
    let (line, _, message) = error_of("[audit]\npath = \"a.log\"\ncolour = 1\n");
    assert_eq!(line, 3);
    assert!(message.contains("unknown field `colour`"), "{message}");
    let (line, _, message) = error_of("[audit]\npath = \"a.log\"\ncloudwatch_log_stream = \"s\"\n");
    assert_eq!(line, 3);
    assert!(
        message.contains("without cloudwatch_log_group"),
        "{message}"
    );
    let (line, _, message) = error_of("[audit]\ncloudwatch_log_group = \"bad name!\"\n");
    assert_eq!(line, 2);
    assert!(
        message.contains("not a valid CloudWatch Logs group"),
        "{message}"
    );
    let (line, _, _) = error_of("[audit]\npath = \"\"\n");
    assert_eq!(line, 2);
}

#[test]
fn a_webhook_must_be_an_http_url() {
    let (line, column, message) = error_of("[notify]\nwebhook = \"ftp://x/y\"\n");
    assert_eq!((line, column), (2, 11));
    assert!(message.contains("http:// or https://"), "{message}");
    let (_, _, message) = error_of("[notify]\n");
    assert!(message.contains("webhook"), "{message}");
    let (line, _, _) = error_of("[notify]\nwebhook = \"https://x/y\"\nretries = 3\n");
    assert_eq!(line, 3);
}

#[test]
fn iam_paths_are_normalized() {
    assert_eq!(normalize_iam_path("PSK"), "/PSK/");
    assert_eq!(normalize_iam_path("/PSK/"), "/PSK/");
    assert_eq!(normalize_iam_path("/a/b"), "/a/b/");
    assert_eq!(normalize_iam_path("/"), "/");
}

/// The hint of the error for `text`.
fn hint_of(text: &str) -> String {
    match parse(text).unwrap_err() {
        ConfigError::Invalid { hint, .. } => hint,
        other => panic!("unexpected error {other}"),
    }
}

const STORE: &str = "stores = [{ kind = \"file\", path = \"x/{service}.json\" }]";

#[test]
fn an_inconsistent_defaults_section_is_a_load_error_even_unused() {
    let (line, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\nmax_age = \"10d\"\n\n[defaults]\nmax_age = \"10d\"\nrotate_after = \"20d\"\n",
    );
    assert_eq!(line, 5, "{message}");
    assert!(message.contains("[defaults]") && message.contains("rotate_after (20d)"));
    // Parsed once: the policy of path users without a [paths] section is the resolved one.
    let config = parse("[defaults]\nmax_age = \"30d\"\n").unwrap();
    assert_eq!(
        config.defaults.policy.rotate_after.unwrap().value,
        Duration::from_secs(14 * 86400)
    );
}

#[test]
fn each_parse_error_gets_its_own_hint() {
    assert!(
        hint_of("[services.a]\niam_user = \"u\"\nstores = [{ path = \"a.json\" }]\n")
            .contains("every store needs a kind")
    );
    assert!(hint_of("[notify]\ntimeout = \"3s\"\n").contains("add webhook"));
    let hint = hint_of(
        "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"file\", path = \"a.json\", format = \"yaml\" }]\n",
    );
    assert!(
        !hint.contains("kind") && hint.contains("values listed above"),
        "{hint}"
    );
    assert!(
        hint_of("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"consul\" }]\n")
            .contains("set kind to one of")
    );
}

#[test]
fn two_services_of_one_iam_user_are_refused_naming_both() {
    let (line, _, message) = error_of(&format!(
        "[services.a]\niam_user = \"u\"\n{STORE}\n\n[services.b]\niam_user = \"u\"\n{STORE}\n"
    ));
    assert_eq!(line, 6);
    assert!(
        message.contains("services 'a' (line 2) and 'b' both name iam_user 'u'"),
        "{message}"
    );
    let hint = hint_of(&format!(
        "[services.a]\niam_user = \"u\"\n{STORE}\n[services.b]\niam_user = \"u\"\n{STORE}\n"
    ));
    assert!(
        hint.contains("put all stores of IAM user 'u' in one service"),
        "{hint}"
    );
}

#[test]
fn two_services_sharing_a_store_location_are_refused_naming_both() {
    for (a, b) in [
        (
            r#"{ kind = "file", path = "k.json" }"#,
            r#"{ kind = "file", path = "./sub/../k.json" }"#,
        ),
        (
            r#"{ kind = "file", path = "{user}.json" }"#,
            r#"{ kind = "file", path = "v.json" }"#,
        ),
        (
            r#"{ kind = "ssm", prefix = "/p" }"#,
            r#"{ kind = "ssm", prefix = "/p" }"#,
        ),
        (
            r#"{ kind = "secrets-manager", name = "s", region = "eu-west-1" }"#,
            r#"{ kind = "secrets-manager", name = "s", region = "eu-west-1" }"#,
        ),
        (
            r#"{ kind = "1password", title = "T" }"#,
            r#"{ kind = "1password", title = "T" }"#,
        ),
        (
            r#"{ kind = "1password", title = "AWS Access Key - b" }"#,
            r#"{ kind = "1password" }"#,
        ),
    ] {
        let (line, _, message) = error_of(&format!(
            "[services.a]\niam_user = \"v\"\nstores = [{a}]\n[services.b]\niam_user = \"w\"\nstores = [{b}]\n"
        ));
        assert_eq!(line, 6, "{b}");
        assert!(
            message
                .contains("of service 'b' is the same location as a store of service 'a' (line 3)"),
            "{b}: {message}"
        );
    }
    // The same name in other regions, vaults or with {service} is another location.
    for (a, b) in [
        (
            r#"{ kind = "ssm", prefix = "/p", region = "us-east-1" }"#,
            r#"{ kind = "ssm", prefix = "/p" }"#,
        ),
        (
            r#"{ kind = "1password", vault = "A" }"#,
            r#"{ kind = "1password", vault = "B", title = "AWS Access Key - a" }"#,
        ),
        (
            r#"{ kind = "file", path = "{service}.json" }"#,
            r#"{ kind = "file", path = "{service}.json" }"#,
        ),
    ] {
        parse(&format!(
            "[services.a]\niam_user = \"v\"\nstores = [{a}]\n[services.b]\niam_user = \"w\"\nstores = [{b}]\n"
        ))
        .unwrap_or_else(|e| panic!("{b}: {e}"));
    }
}

#[test]
fn one_store_listed_twice_is_refused() {
    let (line, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"ssm\", prefix = \"/p\" },\n  { kind = \"ssm\", prefix = \"/p\" }]\n",
    );
    assert_eq!(line, 4);
    assert!(
        message.contains("lists the store ssm:/p twice"),
        "{message}"
    );
    let (_, _, message) = error_of(
        "[paths.P]\nstores = [{ kind = \"file\", path = \"{user}.json\" }, { kind = \"file\", path = \"{user}.json\" }]\n",
    );
    assert!(message.contains("[paths.P] lists the store"), "{message}");
}

#[test]
fn two_paths_with_one_user_template_are_accepted() {
    // IAM user names are unique: two paths with one {user} template never meet.
    parse("[paths.P]\nstores = [{ kind = \"1password\" }]\n[paths.Q]\nstores = [{ kind = \"1password\" }]\n")
        .unwrap();
    // A service of a user under the path may name the path's store: it is one store.
    parse("[services.bob]\niam_user = \"bob\"\nstores = [{ kind = \"file\", path = \"keys/bob.json\" }]\n[paths.P]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n")
        .unwrap();
}

#[test]
fn service_names_are_validated_where_they_are_written() {
    for name in [
        "\"../../x\"",
        "\".\"",
        "\"..\"",
        "\"a/b\"",
        "\"a;b\"",
        "\"a\\nb\"",
        "\"-a\"",
        "\"a b\"",
        "\"\"",
    ] {
        let (line, _, message) =
            error_of(&format!("\n[services.{name}]\niam_user = \"u\"\n{STORE}\n"));
        assert_eq!(line, 2, "{name}");
        assert!(
            message.contains("not a usable service name"),
            "{name}: {message}"
        );
    }
    for name in ["a", "pg.backup", "A_1-b"] {
        parse(&format!(
            "[services.\"{name}\"]\niam_user = \"u\"\n{STORE}\n"
        ))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn stray_braces_in_templates_are_refused() {
    for (template, expect) in [
        ("a}.json", "'}' without an opening '{'"),
        ("{user}}.json", "'}' without an opening '{'"),
        ("{user.json", "'{' without a closing '}'"),
        ("{{user}.json", "'{' without a closing '}'"),
        ("x/{}.json", "unknown placeholder {}"),
    ] {
        let (line, _, message) = error_of(&format!(
            "[services.a]\niam_user = \"u\"\nstores = [{{ kind = \"file\", path = \"{template}\" }}]\n"
        ));
        assert_eq!(line, 3, "{template}");
        assert!(message.contains(expect), "{template}: {message}");
    }
    let (_, _, message) =
        error_of("[paths.P]\nstores = [{ kind = \"ssm\", prefix = \"/p/{user}}\" }]\n");
    assert!(message.contains("without an opening"), "{message}");
}

#[test]
fn a_user_placeholder_that_would_leave_its_directory_is_refused() {
    let (line, _, message) = error_of(
        "[services.a]\niam_user = \"..\"\nstores = [{ kind = \"file\", path = \"keys/{user}/key.json\" }]\n",
    );
    assert_eq!(line, 3);
    assert!(message.contains("leaves its directory"), "{message}");
    // Inside a file name the same user is harmless.
    parse("[services.a]\niam_user = \"..\"\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n")
        .unwrap();
}

#[test]
fn expanded_names_are_checked_as_aws_would() {
    let (_, _, message) = error_of(
        "[services.a]\niam_user = \"a+b\"\nstores = [{ kind = \"ssm\", prefix = \"/k/{user}\" }]\n",
    );
    assert!(message.contains("contains '+'"), "{message}");
}

#[test]
fn duration_settings_are_range_checked_and_named() {
    for setting in [
        "max_age",
        "rotate_after",
        "quiet_period",
        "grace",
        "max_wait",
    ] {
        let (line, _, message) = error_of(&format!(
            "[services.a]\niam_user = \"u\"\n{setting} = \"500000000000y\"\n"
        ));
        assert_eq!(line, 3, "{setting}");
        assert!(
            message.starts_with(&format!("{setting}: ")) && message.contains("3650d"),
            "{message}"
        );
    }
    let (line, _, message) = error_of("[defaults]\ngrace = \"3651d\"\n");
    assert_eq!(line, 2);
    assert!(message.contains("grace"), "{message}");
    let (line, _, message) = error_of("[notify]\nwebhook = \"https://x/y\"\ntimeout = \"1h\"\n");
    assert_eq!(line, 3);
    assert!(message.contains("at most 5m"), "{message}");
}

const KUBE: &str = r#"
[services.pg]
iam_user = "pg-backup"
stores = [
  { kind = "kubernetes", namespace = "apps", name = "aws-{service}", credentials_key = "credentials" },
  { kind = "vault", path = "aws/{service}", address = "https://vault.example:8200" },
]
after_rotate = [
  { command = ["systemctl", "reload", "pg"], timeout = "10s" },
  { kubernetes_restart = "deployment/pg", namespace = "apps" },
  { signal = "sighup", pid_file = "/run/pg.pid" },
]

[paths.Robots]
stores = [{ kind = "vault", mount = "kv", path = "robots/{user}" }]
after_rotate = [{ command = ["/usr/local/bin/reload"], stdin = "key" }]
"#;

#[test]
fn kubernetes_vault_and_hooks_parse() {
    let config = parse(KUBE).unwrap();
    let svc = config.service("pg").unwrap();
    let StoreConfig::Kubernetes(k) = &svc.stores[0] else {
        panic!()
    };
    assert_eq!(
        (k.id_key.as_str(), k.secret_key.as_str()),
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    );
    let StoreConfig::Vault(v) = &svc.stores[1] else {
        panic!()
    };
    assert_eq!(
        (v.mount.as_str(), v.id_field.as_str()),
        ("secret", "access_key_id")
    );
    assert_eq!(svc.after_rotate.len(), 3);
    assert!(
        matches!(&svc.after_rotate[0], Hook::Command(c) if c.timeout == Duration::from_secs(10) && !c.key_on_stdin)
    );
    assert!(
        matches!(&svc.after_rotate[1], Hook::KubernetesRestart(r) if r.kind == WorkloadKind::Deployment && r.name == "pg")
    );
    assert!(matches!(&svc.after_rotate[2], Hook::Signal(s) if s.signal == "HUP"));
    let path = config.path_policy("Robots").unwrap();
    assert!(matches!(&path.after_rotate[0], Hook::Command(c) if c.key_on_stdin));
}

fn store_error(store: &str) -> (usize, usize, String) {
    error_of(&format!(
        "[services.a]\niam_user = \"u\"\nstores = [\n  {store},\n]\n"
    ))
}

#[test]
fn kubernetes_and_vault_settings_are_checked_where_written() {
    for (store, expected) in [
        (
            r#"{ kind = "kubernetes", namespace = "Apps", name = "x" }"#,
            "not a valid namespace name",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "AWS_{service}" }"#,
            "not a valid Secret name",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "x", id_key = "a/b" }"#,
            "not a valid Secret data key",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "x", credentials_key = "AWS_ACCESS_KEY_ID" }"#,
            "are both",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "x", credentials_profile = "p" }"#,
            "without credentials_key",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "x", timeout = "10m" }"#,
            "out of range",
        ),
        (
            r#"{ kind = "kubernetes", namespace = "a", name = "x", colour = "red" }"#,
            "unknown field `colour`",
        ),
        (
            r#"{ kind = "kubernetes", name = "x" }"#,
            "missing field `namespace`",
        ),
        (
            r#"{ kind = "vault", path = "/aws/x" }"#,
            "not a usable secret path",
        ),
        (
            r#"{ kind = "vault", path = "a//b" }"#,
            "not a usable secret path",
        ),
        (
            r#"{ kind = "vault", path = "x", address = "vault:8200" }"#,
            "not an http(s) URL",
        ),
        (
            r#"{ kind = "vault", path = "x", mount = "" }"#,
            "not a mount path",
        ),
        (
            r#"{ kind = "vault", path = "x", id_field = "k", secret_field = "k" }"#,
            "two different",
        ),
        (
            r#"{ kind = "vault", path = "x", token_file = "t", approle = { role_id = "r" } }"#,
            "both token_file and approle",
        ),
        (
            r#"{ kind = "vault", path = "x", approle = { secret_id = "s" } }"#,
            "unknown field `secret_id`",
        ),
        (
            r#"{ kind = "vault", path = "{nope}" }"#,
            "unknown placeholder {nope}",
        ),
    ] {
        let (line, column, message) = store_error(store);
        // serde reads a tagged store as a whole, so its own errors point at the list.
        let serde_error = message.contains("field `");
        assert_eq!(line, if serde_error { 3 } else { 4 }, "{store}: {message}");
        assert!(serde_error || column >= 3, "{store}");
        assert!(message.contains(expected), "{store}: {message}");
    }
}

#[test]
fn hooks_are_checked_where_written() {
    for (hook, expected) in [
        (r#"{ command = [] }"#, "command is empty"),
        (
            r#"{ command = ["x"], stdin = "secret" }"#,
            "stdin = \"secret\" is not known",
        ),
        (
            r#"{ command = ["x"], pid_file = "p" }"#,
            "'pid_file' does not belong",
        ),
        (r#"{ command = ["x"], signal = "HUP" }"#, "exactly one of"),
        (r#"{}"#, "exactly one of"),
        (r#"{ command = ["x"], timeout = "2h" }"#, "out of range"),
        (
            r#"{ kubernetes_restart = "pod/x", namespace = "a" }"#,
            "names no workload",
        ),
        (
            r#"{ kubernetes_restart = "deployment/x" }"#,
            "has no namespace",
        ),
        (
            r#"{ kubernetes_restart = "deployment/X", namespace = "a" }"#,
            "not a valid workload name",
        ),
        (
            r#"{ signal = "KILL", pid_file = "p" }"#,
            "not one credrot sends",
        ),
        (r#"{ signal = "HUP" }"#, "has no pid_file"),
        (
            r#"{ signal = "HUP", pid_file = "p", colour = 1 }"#,
            "unknown field `colour`",
        ),
    ] {
        let text = format!("[services.a]\niam_user = \"u\"\nafter_rotate = [\n  {hook},\n]\n");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, 4, "{hook}: {message}");
        assert!(message.contains(expected), "{hook}: {message}");
    }
}

#[test]
fn two_kubernetes_or_vault_stores_at_one_place_are_refused() {
    let (line, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"kubernetes\", namespace = \"n\", name = \"aws\" }]\n[services.b]\niam_user = \"v\"\nstores = [{ kind = \"kubernetes\", namespace = \"n\", name = \"aws\" }]\n",
    );
    assert_eq!(line, 6);
    assert!(message.contains("same location"), "{message}");
    // Another context is another cluster.
    parse("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"kubernetes\", namespace = \"n\", name = \"aws\" }]\n[services.b]\niam_user = \"v\"\nstores = [{ kind = \"kubernetes\", namespace = \"n\", name = \"aws\", context = \"prod\" }]\n").unwrap();
    let (line, _, message) = error_of(
        "[services.a]\niam_user = \"u\"\nstores = [{ kind = \"vault\", path = \"aws/{user}\" }, { kind = \"vault\", path = \"aws/u\" }]\n",
    );
    assert_eq!(line, 3);
    assert!(message.contains("twice"), "{message}");
    let (_, _, message) = error_of(
        "[paths.X]\nstores = [{ kind = \"vault\", path = \"aws/{user}\" }, { kind = \"vault\", path = \"aws/{user}\", mount = \"secret\" }]\n",
    );
    assert!(message.contains("twice"), "{message}");
    parse("[services.a]\niam_user = \"u\"\nstores = [{ kind = \"vault\", path = \"aws/a\" }, { kind = \"vault\", path = \"aws/a\", mount = \"kv\" }]\n").unwrap();
}

#[test]
fn the_cloud_store_kinds_parse_with_their_defaults() {
    let config = parse(
        r#"
[services.pg]
iam_user = "pg"
stores = [
  { kind = "github", repository = "home-ops/infra" },
  { kind = "github", org = "home-ops", visibility = "selected", selected_repository_ids = [1], key_id_variable = "PG_KEY_ID", access_key_id_secret = "PG_ID", secret_access_key_secret = "PG_SECRET" },
  { kind = "gcp-secret-manager", project = "home-ops", secret = "{service}-aws" },
  { kind = "azure-key-vault", vault_url = "https://v.vault.azure.net", name = "{service}-aws" },
]
"#,
    )
    .unwrap();
    let stores = &config.service("pg").unwrap().stores;
    let StoreConfig::Github(github) = &stores[0] else {
        panic!("{:?}", stores[0]);
    };
    assert_eq!(github.access_key_id_secret, "AWS_ACCESS_KEY_ID");
    assert_eq!(github.secret_access_key_secret, "AWS_SECRET_ACCESS_KEY");
    assert_eq!(github.key_id_variable, "CREDROT_KEY_ID");
    assert_eq!(github.api_url, "https://api.github.com");
    let StoreConfig::GcpSecretManager(gcp) = &stores[2] else {
        panic!("{:?}", stores[2]);
    };
    assert_eq!(gcp.old_versions, OldVersions::Disable);
    assert_eq!(gcp.endpoint, "https://secretmanager.googleapis.com");
}

#[test]
fn cloud_store_mistakes_are_reported_at_the_store() {
    let service =
        |store: &str| format!("[services.pg]\niam_user = \"pg\"\nstores = [\n  {store},\n]\n");
    let cases = [
        ("{ kind = \"github\" }", "names neither a repository nor an org"),
        ("{ kind = \"github\", repository = \"a/b\", org = \"c\" }", "both repository and org"),
        ("{ kind = \"github\", repository = \"infra\" }", "is not OWNER/REPO"),
        ("{ kind = \"github\", org = \"o\", environment = \"prod\" }", "environments belong to a repository"),
        ("{ kind = \"github\", repository = \"a/b\", visibility = \"all\" }", "are for org secrets"),
        ("{ kind = \"github\", org = \"o\", visibility = \"selected\" }", "needs selected_repository_ids"),
        ("{ kind = \"github\", repository = \"a/b\", access_key_id_secret = \"GITHUB_KEY\" }", "starts with GITHUB_"),
        ("{ kind = \"github\", repository = \"a/b\", key_id_variable = \"KEY-ID\" }", "contains '-'"),
        ("{ kind = \"github\", repository = \"a/b\", access_key_id_secret = \"X\", secret_access_key_secret = \"x\" }", "are the same secret"),
        ("{ kind = \"github\", repository = \"a/b\", api_url = \"http://github.example.com\" }", "in the clear"),
        ("{ kind = \"gcp-secret-manager\", project = \"Home Ops\", secret = \"s\" }", "is not a project id"),
        ("{ kind = \"gcp-secret-manager\", project = \"p\", secret = \"a/b\" }", "only letters, digits, - and _"),
        ("{ kind = \"azure-key-vault\", vault_url = \"https://v.vault.azure.net\", name = \"pg_aws\" }", "only letters, digits and -"),
        ("{ kind = \"azure-key-vault\", vault_url = \"http://v.vault.azure.net\", name = \"pg\" }", "in the clear"),
    ];
    for (store, expected) in cases {
        let (line, column, message) = error_of(&service(store));
        assert_eq!((line, column), (4, 3), "{store}: {message}");
        assert!(message.contains(expected), "{store}: {message}");
    }
    let (_, _, message) = error_of(&service(
        "{ kind = \"gcp-secret-manager\", project = \"p\", secret = \"s\", old_versions = \"shred\" }",
    ));
    assert!(message.contains("unknown variant `shred`"), "{message}");
    // Path stores: every user needs its own secrets.
    let (_, _, message) =
        error_of("[paths.ci]\nstores = [{ kind = \"github\", repository = \"a/b\" }]\n");
    assert!(
        message.contains("access_key_id_secret 'AWS_ACCESS_KEY_ID' of a path store has no {user}"),
        "{message}"
    );
}

#[test]
fn two_cloud_stores_at_one_location_conflict() {
    let text = r#"
[services.a]
iam_user = "a"
stores = [{ kind = "github", repository = "home-ops/infra" }]

[services.b]
iam_user = "b"
stores = [{ kind = "github", repository = "Home-Ops/Infra", access_key_id_secret = "B_ID", secret_access_key_secret = "B_SECRET" }]
"#;
    let (line, _, message) = error_of(text);
    assert_eq!(line, 8);
    assert!(message.contains("same location"), "{message}");
    let text = r#"
[services.a]
iam_user = "a"
stores = [{ kind = "azure-key-vault", vault_url = "https://v.vault.azure.net/", name = "{service}" }]

[services.b]
iam_user = "b"
stores = [{ kind = "azure-key-vault", vault_url = "https://V.vault.azure.net", name = "A" }]
"#;
    assert!(error_of(text).2.contains("same location"));
}

const ACCOUNTS: &str =
    "[accounts]\nids = [\"222222222222\", \"333333333333\"]\nrole_name = \"credrot-rotation\"\n";

#[test]
fn accounts_are_read_with_their_defaults_and_sections_scoped_to_them() {
    let config = parse(&format!(
        "{ACCOUNTS}\n[services.a]\niam_user = \"a\"\naccounts = [\"333333333333\"]\nstores = [{{ kind = \"file\", path = \"k/{{account_name}}.json\" }}]\n\n[paths.P]\nstores = [{{ kind = \"ssm\", prefix = \"/c/{{user}}\" }}]\n"
    ))
    .unwrap();
    let accounts = config.accounts.as_ref().unwrap();
    assert_eq!(accounts.session_duration, Duration::from_secs(3600));
    assert_eq!((accounts.concurrency, accounts.max_in_flight), (4, 64));
    assert!(accounts.source_identity && accounts.organization.is_none());
    assert_eq!(config.service("a").unwrap().accounts, ["333333333333"]);
    assert!(config.path_policy("P").unwrap().accounts.is_empty());
}

#[test]
fn account_settings_that_cannot_work_name_their_line() {
    for (text, line, wanted) in [
        (
            "[services.a]\niam_user = \"a\"\nstores = [{ kind = \"file\", path = \"{account}.json\" }]\n".to_string(),
            3,
            "unknown placeholder {account}",
        ),
        (
            "[services.a]\niam_user = \"a\"\naccounts = [\"222222222222\"]\n".to_string(),
            3,
            "no [accounts] section",
        ),
        (
            format!("{ACCOUNTS}[services.a]\niam_user = \"a\"\naccounts = [\"444444444444\"]\n"),
            6,
            "'444444444444' is not in [accounts] ids",
        ),
        (
            format!("{ACCOUNTS}[services.a]\niam_user = \"a\"\nsource = \"terraform\"\nterraform_dir = \"tf\"\noutput_prefix = \"a\"\n"),
            5,
            "takes its key from Terraform",
        ),
        (
            format!("{ACCOUNTS}[paths.P]\nstores = [{{ kind = \"1password\", vault = \"V\" }}]\n"),
            5,
            "has no {account}",
        ),
        (
            "[accounts]\nids = [\"2222\"]\nrole_name = \"r\"\n".to_string(),
            2,
            "'2222' is not an AWS account id",
        ),
        (
            "[accounts]\nids = [\"222222222222\"]\nexclude = [\"333333333333\"]\nrole_name = \"r\"\n".to_string(),
            1,
            "organization is not true",
        ),
        (
            "[accounts]\norganization = true\nrole_name = \"r\"\ninclude_ous = [\"prod\"]\n".to_string(),
            4,
            "'prod' is not an organizational unit",
        ),
        (
            "[accounts]\norganization = true\nrole_name = \"arn:aws:iam::1:role/x\"\n".to_string(),
            3,
            "is not an IAM role name",
        ),
        (
            "[accounts]\norganization = true\nrole_name = \"r\"\nsession_duration = \"13h\"\n".to_string(),
            4,
            "out of range",
        ),
    ] {
        let (got_line, _, message) = error_of(&text);
        assert!(message.contains(wanted), "{text}\n=> {message}");
        assert_eq!(got_line, line, "{text}\n=> {message}");
    }
}

const TERRAFORM: &str = "[services.r]\niam_user = \"r\"\nsource = \"terraform\"\nterraform_dir = \"tf\"\noutput_prefix = \"r\"\n";

#[test]
fn terraform_resource_is_read_with_the_service() {
    for address in [
        "aws_iam_access_key.redis",
        "aws_iam_access_key.this[0]",
        "module.redis.aws_iam_access_key.this",
        "module.keys[\"prod\"].module.inner[2].aws_iam_access_key.k_1[\"a-b\"]",
    ] {
        let config = parse(&format!("{TERRAFORM}terraform_resource = {address:?}\n")).unwrap();
        let tf = config.service("r").unwrap().terraform.clone().unwrap();
        assert_eq!(tf.resource.as_deref(), Some(address));
    }
    let config = parse(TERRAFORM).unwrap();
    assert_eq!(
        config
            .service("r")
            .unwrap()
            .terraform
            .clone()
            .unwrap()
            .resource,
        None
    );
}

#[test]
fn a_terraform_resource_that_cannot_be_used_names_its_line() {
    for address in [
        "",
        "aws_iam_user.redis",
        "aws_iam_access_key",
        "aws_iam_access_key.",
        "aws_iam_access_key.redis.secret",
        "aws_iam_access_key.redis[x]",
        "aws_iam_access_key.redis[\"a\\\"b\"]",
        "module..aws_iam_access_key.redis",
        "-target=aws_iam_access_key.redis",
        "aws_iam_access_key.redis aws_iam_access_key.other",
        "data.aws_iam_access_key.redis",
    ] {
        let text = format!("{TERRAFORM}\n\nterraform_resource = {address:?}\n");
        let (line, _, message) = error_of(&text);
        assert_eq!(line, 8, "{address}: {message}");
        assert!(
            message.contains("is not the address of an aws_iam_access_key resource"),
            "{address}: {message}"
        );
    }
    let text = "[services.r]\niam_user = \"r\"\nterraform_resource = \"aws_iam_access_key.r\"\n";
    let (line, _, message) = error_of(text);
    assert_eq!(line, 3, "{message}");
    assert!(
        message.contains("without source = \"terraform\""),
        "{message}"
    );
}
