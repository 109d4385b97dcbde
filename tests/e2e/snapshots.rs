//! Snapshots of what users read, as trycmd case files under tests/cmd/: the `--help` of
//! every command, the error of each bad-input and bad-configuration case, and the summary
//! (table and JSON) of a sandbox-like dry run against moto.
//!
//! A change to any of them fails here with a diff. When the change is meant, update the
//! files and review them like code:
//!
//!     TRYCMD=overwrite cargo test --locked --features failpoints --test e2e -- snapshots
//!
//! (tests/cmd/README.md says the same.) Values that differ per run (key ids, the moto
//! endpoint) are written as [NAMES] and substituted here; a key id's name is 20 characters
//! long, as the id is, so tables keep their columns.

use crate::harness::{Key, Moto, REGION};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cmd")
        .join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no cases in {}", root.display());
    found
}

/// The `[env.add]` keys of a case: they win over the defaults (trycmd itself lets the
/// defaults win).
fn own_env(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case).unwrap();
    let doc: toml::Value = toml::from_str(&text).unwrap();
    doc.get("env")
        .and_then(|e| e.get("add"))
        .and_then(|a| a.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// The environment every case starts from: nothing of this machine's (cases say
/// `env.inherit = false`), no AWS files, a fixed help width.
fn base_env(state: &Path) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config".to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials".to_string(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_REGION", REGION.to_string()),
        ("CREDROT_STATE_DIR", state.display().to_string()),
        ("HOME", state.display().to_string()),
        ("COLUMNS", "100".to_string()),
        ("NO_COLOR", "1".to_string()),
    ])
}

/// Run each case of `dir` with `env` as defaults (a case's own keys win) and `vars`
/// substituted for [NAMES].
fn run(dir: &str, env: &BTreeMap<&'static str, String>, vars: &[(&'static str, String)]) {
    for case in cases(dir) {
        let own = own_env(&case);
        let t = trycmd::TestCases::new();
        t.register_bin("credrot", Path::new(env!("CARGO_BIN_EXE_credrot")));
        for (k, v) in env.iter().filter(|(k, _)| !own.iter().any(|o| o == *k)) {
            t.env(*k, v.clone());
        }
        for (name, value) in vars {
            t.insert_var(name, value.clone()).unwrap();
        }
        t.case(&case);
        t.run();
    }
}

#[test]
fn help_of_every_command() {
    let state = tempfile::tempdir().unwrap();
    run("help", &base_env(state.path()), &[]);
}

#[test]
fn offline_errors_of_bad_input_and_bad_configurations() {
    let state = tempfile::tempdir().unwrap();
    run("config", &base_env(state.path()), &[]);
    run("offline", &base_env(state.path()), &[]);
}

/// The sandbox's users, with the ids of their keys as [NAMES].
fn seed(moto: &Moto) -> Vec<(&'static str, String)> {
    let path = "/PSKServiceAccounts/";
    let mut vars = Vec::new();
    let mut key = |user: &str, active: bool, var: &'static str| {
        let k: Key = moto.create_key(user, active);
        vars.push((var, k.id));
    };
    moto.create_user("psk-no-key", path);
    moto.create_user("psk-one-key", path);
    key("psk-one-key", true, "[ONE_KEY___________]");
    moto.create_user("psk-one-inactive", path);
    key("psk-one-inactive", false, "[ONE_INACTIVE______]");
    moto.create_user("psk-two-active", path);
    key("psk-two-active", true, "[TWO_ACTIVE_OLD____]");
    key("psk-two-active", true, "[TWO_ACTIVE_NEW____]");
    moto.create_user("psk-inactive-then-active", path);
    key("psk-inactive-then-active", false, "[INACT_THEN_ACT_OLD]");
    key("psk-inactive-then-active", true, "[INACT_THEN_ACT_NEW]");
    vars
}

#[test]
fn errors_and_summaries_against_moto() {
    let moto = Moto::start();
    moto.create_user("app", "/");
    let app = moto.create_key("app", true);
    let restricted = moto.create_identity(
        "restricted",
        &[
            "iam:ListAccessKeys",
            "iam:ListUserTags",
            "iam:GetAccessKeyLastUsed",
            "sts:GetCallerIdentity",
        ],
    );
    let mut vars = seed(&moto);
    vars.push(("[APP_KEY___________]", app.id.clone()));
    vars.push(("[ENDPOINT]", moto.endpoint.clone()));
    vars.push(("[ADMIN_KEY_ID]", moto.admin.id.clone()));
    vars.push(("[RESTRICTED_KEY_ID]", restricted.id.clone()));
    let state = tempfile::tempdir().unwrap();
    let mut env = base_env(state.path());
    env.insert("AWS_ENDPOINT_URL", moto.endpoint.clone());
    env.insert("AWS_ACCESS_KEY_ID", moto.admin.id.clone());
    env.insert("AWS_SECRET_ACCESS_KEY", moto.admin.secret.clone());
    run("aws", &env, &vars);
    env.insert("AWS_ACCESS_KEY_ID", restricted.id.clone());
    env.insert("AWS_SECRET_ACCESS_KEY", restricted.secret.clone());
    run("aws-restricted", &env, &vars);
}
