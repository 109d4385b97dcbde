//! The 1Password store through a fake `op` (tests/fake-op/op) that follows the real CLI,
//! with IAM (and, for mixed runs, SSM and Secrets Manager) in moto.

use crate::harness::{fake_op, key_of, read_json, Key, Moto};
use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

const USER: &str = "pg-backup";
const TOKEN: &str = "ops_fake_service_account_token";

/// The fake op's state directory and what it recorded.
struct FakeOp {
    state: tempfile::TempDir,
}

impl FakeOp {
    fn new() -> FakeOp {
        FakeOp {
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Point `cmd` at the fake, signed in as a service account.
    fn signed_in<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        self.signed_out(cmd).env("OP_SERVICE_ACCOUNT_TOKEN", TOKEN)
    }

    /// Point `cmd` at the fake without credentials for it.
    fn signed_out<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("CREDROT_OP", fake_op())
            .env("FAKE_OP_STATE", self.state.path())
    }

    /// Create an item the way a person would, through the fake itself.
    fn seed(&self, title: &str, key: &Key, notes: &str) -> Value {
        self.seed_as("API_CREDENTIAL", title, key, notes)
    }

    fn seed_as(&self, category: &str, title: &str, key: &Key, notes: &str) -> Value {
        let item = serde_json::json!({
            "title": title,
            "category": category,
            "tags": ["seeded"],
            "fields": [
                {"id": "username", "type": "STRING", "label": "username", "value": key.id},
                {"id": "credential", "type": "CONCEALED", "label": "credential", "value": key.secret},
                {"id": "notesPlain", "type": "STRING", "purpose": "NOTES", "label": "notesPlain", "value": notes},
                {"id": "hostname", "type": "STRING", "label": "hostname", "value": "s3.amazonaws.com"}
            ]
        });
        let out = Command::new(fake_op())
            .args([
                "item",
                "create",
                "--vault",
                "Automation",
                "--format",
                "json",
                "-",
            ])
            // As a person would run it, without the test runner's environment.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FAKE_OP_STATE", self.state.path())
            .env("OP_SERVICE_ACCOUNT_TOKEN", TOKEN)
            .write_stdin(item.to_string())
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }

    fn items(&self) -> Vec<Value> {
        let path = self.state.path().join("items.json");
        if !path.exists() {
            return Vec::new();
        }
        read_json(&path)["items"].as_array().unwrap().clone()
    }

    fn item(&self, title: &str) -> Value {
        self.items()
            .into_iter()
            .find(|i| i["title"] == title)
            .unwrap_or_else(|| panic!("no item '{title}' in {:?}", self.items()))
    }

    /// Every argv op was called with.
    fn argv(&self) -> Vec<Vec<String>> {
        self.logged("argv")
    }

    /// The names of the variables in op's environment, per call.
    fn envs(&self) -> Vec<Vec<String>> {
        self.logged("env")
    }

    /// One list of strings per call, from the fake's argv.log.
    fn logged(&self, what: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()[what]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    /// No secret, nor op's own token, ever reached op's command line.
    fn assert_no_secret_in_argv(&self, secrets: &[&str]) {
        let calls = self.argv();
        assert!(!calls.is_empty(), "op was never called");
        for argv in &calls {
            for arg in argv {
                for secret in secrets.iter().chain([&TOKEN]) {
                    assert!(!arg.contains(secret), "a secret is in op's argv: {argv:?}");
                }
            }
        }
    }
}

fn field<'a>(item: &'a Value, id: &str) -> Option<&'a str> {
    item["fields"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)?
        .get("value")?
        .as_str()
}

fn key_in(item: &Value) -> Key {
    Key {
        id: field(item, "username").unwrap().into(),
        secret: field(item, "credential").unwrap().into(),
    }
}

fn write_config(dir: &Path, stores: &str) {
    crate::harness::write_pg_service(dir, USER, stores);
}

fn output(out: &assert_cmd::assert::Assert) -> (String, String) {
    (
        String::from_utf8_lossy(&out.get_output().stdout).to_string(),
        String::from_utf8_lossy(&out.get_output().stderr).to_string(),
    )
}

#[test]
fn the_item_is_created_then_edited_in_place() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{ kind = \"1password\" }");
    let op = FakeOp::new();
    const TITLE: &str = "AWS Access Key - pg";

    op.signed_in(&mut moto.credrot(dir.path()))
        .args(["update", "pg"])
        .assert()
        .success();
    let item = op.item(TITLE);
    let first = key_in(&item);
    assert_ne!(first.id, old.id);
    moto.assert_key_works_for(&first, USER);
    assert_eq!(item["category"], "API_CREDENTIAL");
    assert_eq!(item["vault"]["name"], "Automation");
    assert_eq!(item["tags"], serde_json::json!(["aws", "postgresql"]));
    assert_eq!(item["version"], 1);
    let notes = field(&item, "notesPlain").unwrap();
    for part in [USER, "credrot", old.id.as_str(), "Rotated at"] {
        assert!(notes.contains(part), "notes lack {part}: {notes}");
    }

    op.signed_in(&mut moto.credrot(dir.path()))
        .args(["update", "pg"])
        .assert()
        .success();
    let edited = op.item(TITLE);
    assert_eq!(op.items().len(), 1);
    assert_eq!(edited["id"], item["id"], "edited in place, same id");
    assert_eq!(edited["version"], 2);
    let second = key_in(&edited);
    assert_ne!(second.id, first.id);
    moto.assert_key_works_for(&second, USER);
    moto.assert_key_works_for(&first, USER);
    assert!(moto.whoami(&old).is_none(), "LAST deleted");
    assert!(field(&edited, "notesPlain")
        .unwrap()
        .contains(&format!("Previous access key id: {}", first.id)));

    let calls = op.argv();
    assert!(calls
        .iter()
        .any(|a| a.starts_with(&["item".into(), "create".into()]) && a.last().unwrap() == "-"));
    let id = item["id"].as_str().unwrap();
    assert!(calls.iter().any(
        |a| a.starts_with(&["item".into(), "edit".into(), id.into()]) && a.last().unwrap() == "-"
    ));
    op.assert_no_secret_in_argv(&[
        &old.secret,
        &first.secret,
        &second.secret,
        &moto.admin.secret,
    ]);
}

#[test]
fn a_signed_out_or_missing_op_stops_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{ kind = \"file\", path = \"pg.json\" },\n{ kind = \"1password\" }",
    );
    let op = FakeOp::new();

    let out = op
        .signed_out(&mut moto.credrot(dir.path()))
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (_, stderr) = output(&out);
    assert!(
        stderr.contains("op is not signed in")
            && stderr.contains("You are not currently signed in")
            && stderr.contains("OP_SERVICE_ACCOUNT_TOKEN")
            && stderr.contains("OP_ACCOUNT"),
        "{stderr}"
    );
    assert_eq!(
        op.argv(),
        [["whoami", "--format", "json"]],
        "nothing after whoami"
    );

    let out = moto
        .credrot(dir.path())
        .env("CREDROT_OP", dir.path().join("no-such-op"))
        .env("OP_SERVICE_ACCOUNT_TOKEN", TOKEN)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (_, stderr) = output(&out);
    assert!(
        stderr.contains("was not found") && stderr.contains("CREDROT_OP"),
        "{stderr}"
    );

    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)]);
    moto.assert_key_works_for(&old, USER);
    assert!(!dir.path().join("pg.json").exists(), "no store was written");
    assert!(op.items().is_empty());
}

#[test]
fn an_item_of_another_category_is_refused_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{ kind = \"1password\" }");
    let op = FakeOp::new();
    let login = op.seed_as("LOGIN", "AWS Access Key - pg", &old, "a person's login");

    let out = op
        .signed_in(&mut moto.credrot(dir.path()))
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (stdout, _) = output(&out);
    assert!(
        stdout.contains(&format!(
            "item {} is a LOGIN item, not an API Credential",
            login["id"].as_str().unwrap()
        )),
        "{stdout}"
    );
    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)]);
    assert_eq!(op.items(), [login]);
}

#[test]
fn op_failing_on_edit_rolls_back_ssm_and_secrets_manager() {
    const TITLE: &str = "AWS Access Key - postgresql-s3-backup - home-ops";
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let op = FakeOp::new();
    let seeded = op.seed(TITLE, &old, "kept by hand");
    moto.put_ssm_key("/home-ops/pg", &old);
    moto.put_secret_key("home-ops/pg/aws", &old);
    let labels_before = moto.secret_labels("home-ops/pg/aws");
    write_config(
        dir.path(),
        &format!(
            "{{ kind = \"ssm\", prefix = \"/home-ops/pg\" }},\n{{ kind = \"secrets-manager\", name = \"home-ops/pg/aws\" }},\n{{ kind = \"1password\", title = \"{TITLE}\", tags = [\"custom\"] }}"
        ),
    );

    let out = op
        .signed_in(&mut moto.credrot(dir.path()))
        .env("FAKE_OP_FAIL_ON", "edit")
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (stdout, _) = output(&out);
    let id = seeded["id"].as_str().unwrap();
    assert!(
        stdout.contains(&format!(
            "1password:Automation/{TITLE}: cannot write: op item edit {id} failed"
        )) && stdout.contains("Internal Server Error")
            && stdout.contains("rolled back"),
        "{stdout}"
    );
    moto.assert_only_key(USER, &old);
    // SSM got the new key and then the old one back: three versions, the last the old key.
    assert_eq!(moto.ssm_key("/home-ops/pg"), Some((old.clone(), [3, 3])));
    assert_eq!(
        moto.secret_key("home-ops/pg/aws", "AWSCURRENT"),
        Some(old.clone())
    );
    assert_eq!(moto.secret_labels("home-ops/pg/aws"), labels_before);
    let item = op.item(TITLE);
    assert_eq!(item, seeded, "the item is untouched");
    op.assert_no_secret_in_argv(&[&old.secret, &moto.admin.secret]);
}

#[test]
fn an_edit_whose_answer_is_lost_counts_as_written_and_is_undone() {
    const TITLE: &str = "AWS Access Key - pg";
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{ kind = \"1password\" }");
    let op = FakeOp::new();
    let seeded = op.seed(TITLE, &old, "kept by hand");

    // op edits the item, then its answer is garbled: credrot cannot know the edit worked,
    // so it must undo it rather than leave the item handing out a key it deletes.
    let out = op
        .signed_in(&mut moto.credrot(dir.path()))
        .env("FAKE_OP_GARBLE_ON", "edit")
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (stdout, _) = output(&out);
    assert!(
        stdout.contains("lost op's answer") && stdout.contains("rolled back"),
        "{stdout}"
    );
    let item = op.item(TITLE);
    assert_eq!(item["version"], 3, "edited, then edited back");
    assert_eq!(key_in(&item), old);
    assert_eq!(item["fields"], seeded["fields"]);
    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)]);
    moto.assert_key_works_for(&old, USER);
}

#[test]
fn a_later_store_failure_restores_the_item_fields_or_deletes_a_new_item() {
    const EXISTING: &str = "AWS Access Key - pg";
    const CREATED: &str = "AWS Access Key - pg - new";
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let op = FakeOp::new();
    let seeded = op.seed(EXISTING, &old, "kept by hand");
    moto.put_ssm_key("/home-ops/pg", &old);
    // The SSM store after the item fails for real: this identity may read parameters but
    // not put them.
    let rotator = moto.create_identity("rotator", &["iam:*", "sts:*", "ssm:GetParameter*"]);
    let run = |stores: &str| {
        write_config(dir.path(), stores);
        let out = op
            .signed_in(&mut crate::harness::credrot_command(dir.path()))
            .env("AWS_ACCESS_KEY_ID", &rotator.id)
            .env("AWS_SECRET_ACCESS_KEY", &rotator.secret)
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .args(["update", "pg"])
            .assert()
            .code(1);
        let (stdout, _) = output(&out);
        assert!(
            stdout.contains("cannot write: ssm:PutParameter failed")
                && stdout.contains("rolled back"),
            "{stdout}"
        );
        moto.assert_only_key(USER, &old);
    };

    // The item held the old key: it is edited, then edited back to its earlier fields.
    run("{ kind = \"1password\" },\n{ kind = \"ssm\", prefix = \"/home-ops/pg\" }");
    let restored = op.item(EXISTING);
    assert_eq!(restored["id"], seeded["id"]);
    assert_eq!(restored["version"], 3, "edited, then edited back");
    assert_eq!(key_in(&restored), old);
    for kept in ["fields", "tags", "title", "category"] {
        assert_eq!(restored[kept], seeded[kept], "{kept} restored");
    }

    // No store held a key and the item did not exist: the run creates it, then deletes it.
    run(&format!(
        "{{ kind = \"1password\", title = \"{CREATED}\" }},\n{{ kind = \"ssm\", prefix = \"/fresh/pg\" }}"
    ));
    let calls = op.argv();
    assert!(
        calls
            .iter()
            .any(|a| a.starts_with(&["item".into(), "create".into()])),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|a| a.starts_with(&["item".into(), "delete".into()])),
        "{calls:?}"
    );
    assert_eq!(op.items().len(), 1, "only the seeded item is left");
    assert!(moto.ssm_key("/fresh/pg").is_none());
    op.assert_no_secret_in_argv(&[&old.secret, &rotator.secret, &moto.admin.secret]);
}

#[test]
fn a_path_run_names_each_users_item_after_the_user() {
    const PATH: &str = "/PSKServiceAccounts/";
    let moto = Moto::start();
    let users: Vec<String> = (0..20).map(|i| format!("psk-{i:02}")).collect();
    for user in &users {
        moto.create_user(user, PATH);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.PSKServiceAccounts]\nstores = [{ kind = \"1password\" }]\n",
    )
    .unwrap();
    let op = FakeOp::new();
    let out = op
        .signed_in(&mut moto.credrot(dir.path()))
        .args([
            "rotate",
            "--path",
            PATH,
            "-o",
            "keys.json",
            "--concurrency",
            "32",
        ])
        .env("FAKE_OP_DELAY_MS", "200")
        .assert()
        .success();
    let (stdout, _) = output(&out);
    assert!(stdout.contains("20 rotated, 0 failed"), "{stdout}");
    let outfile = read_json(&dir.path().join("keys.json"));
    let mut secrets = Vec::new();
    for user in &users {
        let key = key_in(&op.item(&format!("AWS Access Key - {user}")));
        assert_eq!(key, key_of(&outfile[user.as_str()]));
        moto.assert_key_works_for(&key, user);
        secrets.push(key.secret);
    }
    // 32 users in flight, but never more than 8 op processes at once.
    let most = std::fs::read_to_string(op.state.path().join("max_running")).unwrap();
    assert!(
        (1..=8).contains(&most.parse::<u32>().unwrap()),
        "{most} op processes at once"
    );
    // One whoami for the whole run, not one per user.
    assert_eq!(op.argv().iter().filter(|a| a[0] == "whoami").count(), 1);
    op.assert_no_secret_in_argv(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn op_gets_no_aws_variable_nor_anything_else_it_does_not_need() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "{ kind = \"1password\" }");
    let op = FakeOp::new();
    // credrot runs with the admin's AWS key in its environment (and a bystander variable);
    // the strict fake refuses any AWS_* variable, so the run itself proves most of it.
    op.signed_in(&mut moto.credrot(dir.path()))
        .env("CREDROT_TEST_BYSTANDER", "not for op")
        .args(["update", "pg"])
        .assert()
        .success();
    let envs = op.envs();
    assert!(envs.len() >= 3, "whoami, get, create: {envs:?}");
    for env in &envs {
        assert!(
            !env.iter()
                .any(|name| name.starts_with("AWS_") || name == "CREDROT_TEST_BYSTANDER"),
            "op saw {env:?}"
        );
        for needed in ["PATH", "OP_SERVICE_ACCOUNT_TOKEN", "FAKE_OP_STATE"] {
            assert!(env.iter().any(|name| name == needed), "{needed}: {env:?}");
        }
    }
    let new = key_in(&op.item("AWS Access Key - pg"));
    moto.assert_key_works_for(&new, USER);
    moto.assert_key_works_for(&old, USER);
}

#[test]
fn garbage_from_whoami_stops_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "{ kind = \"file\", path = \"pg.json\" },\n{ kind = \"1password\" }",
    );
    let op = FakeOp::new();
    // whoami exits 0 but answers with something that is not an account.
    let out = op
        .signed_in(&mut moto.credrot(dir.path()))
        .env("FAKE_OP_GARBLE_ON", "whoami")
        .args(["update", "pg"])
        .assert()
        .code(1);
    let (_, stderr) = output(&out);
    assert!(
        stderr.contains("did not answer with a signed-in account"),
        "{stderr}"
    );
    assert_eq!(op.argv(), [["whoami", "--format", "json"]]);
    moto.assert_only_key(USER, &old);
    assert!(!dir.path().join("pg.json").exists(), "no store was written");
    assert!(op.items().is_empty());
}
