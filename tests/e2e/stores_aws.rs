//! The Secrets Manager and SSM stores against moto with IAM authentication on: creation,
//! updates, staging labels, parameter history, KMS keys, rollbacks caused by real failures,
//! and a templated path run.

use crate::harness::{credrot_command, key_of, read_json, Key, Moto, REGION};
use aws_config::Region;
use credrot::aws::AwsContext;
use credrot::config::{SecretsManagerConfig, StoreConfig};
use credrot::secret::AccessKey;
use credrot::store::{self, StoreEnv, TemplateValues, WriteContext};
use std::path::Path;
use std::time::SystemTime;

const USER: &str = "pg-backup";
const SECRET: &str = "home-ops/pg/aws";
const PREFIX: &str = "/home-ops/pg";

fn write_config(dir: &Path, stores: &str) {
    crate::harness::write_pg_service(dir, USER, stores);
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).to_string()
}

#[test]
fn secrets_manager_is_created_then_rotated_through_the_staging_labels() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("{{ kind = \"secrets-manager\", name = \"{SECRET}\", kms_key_id = \"alias/home-ops\" }}"),
    );

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let first = moto.secret_key(SECRET, "AWSCURRENT").expect("AWSCURRENT");
    assert_ne!(first.id, old.id);
    moto.assert_key_works_for(&first, USER);
    let labels = moto.secret_labels(SECRET);
    assert_eq!(
        labels.keys().collect::<Vec<_>>(),
        ["AWSCURRENT"],
        "a new secret has one version, AWSPENDING taken off: {labels:?}"
    );
    let described = moto
        .rt
        .block_on(
            moto.secrets_manager()
                .describe_secret()
                .secret_id(SECRET)
                .send(),
        )
        .unwrap();
    assert_eq!(described.kms_key_id(), Some("alias/home-ops"));
    let tags: Vec<(&str, &str)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    for tag in [
        ("aws", ""),
        ("postgresql", ""),
        ("managed-by", "credrot"),
        ("credrot:iam-user", USER),
    ] {
        assert!(tags.contains(&tag), "{tag:?} not in {tags:?}");
    }
    let mut expected = vec![(old.id.clone(), true), (first.id.clone(), true)];
    expected.sort();
    assert_eq!(moto.keys(USER), expected);

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let second = moto.secret_key(SECRET, "AWSCURRENT").unwrap();
    assert_ne!(second.id, first.id);
    moto.assert_key_works_for(&second, USER);
    assert_eq!(
        moto.secret_key(SECRET, "AWSPREVIOUS"),
        Some(first.clone()),
        "the old version is AWSPREVIOUS"
    );
    let labels = moto.secret_labels(SECRET);
    assert!(!labels.contains_key("AWSPENDING"), "{labels:?}");
    // The version id is the ClientRequestToken, derived from the key id: a re-run with the
    // same key cannot add a second version.
    assert!(labels["AWSCURRENT"].contains(&second.id), "{labels:?}");
    moto.assert_key_works_for(&first, USER);
    assert!(moto.whoami(&old).is_none(), "LAST was deleted");
}

#[test]
fn ssm_parameters_are_created_then_overwritten_keeping_history() {
    let moto = Moto::start();
    moto.create_user(USER, "/");
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("{{ kind = \"ssm\", prefix = \"{PREFIX}\", kms_key_id = \"alias/home-ops\" }}"),
    );

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let (first, versions) = moto.ssm_key(PREFIX).expect("both parameters");
    assert_eq!(versions, [1, 1]);
    moto.assert_key_works_for(&first, USER);
    let ssm = moto.ssm();
    for name in ["access_key_id", "secret_access_key"] {
        let name = format!("{PREFIX}/{name}");
        let described = moto
            .rt
            .block_on(
                ssm.describe_parameters()
                    .parameter_filters(
                        aws_sdk_ssm::types::ParameterStringFilter::builder()
                            .key("Name")
                            .values(&name)
                            .build()
                            .unwrap(),
                    )
                    .send(),
            )
            .unwrap();
        let parameter = &described.parameters()[0];
        assert_eq!(
            parameter.r#type(),
            Some(&aws_sdk_ssm::types::ParameterType::SecureString)
        );
        assert_eq!(parameter.key_id(), Some("alias/home-ops"), "{name}");
        let tags = moto
            .rt
            .block_on(
                ssm.list_tags_for_resource()
                    .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
                    .resource_id(&name)
                    .send(),
            )
            .unwrap();
        let tags: Vec<(&str, &str)> = tags
            .tag_list()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect();
        assert!(tags.contains(&("postgresql", "")), "{tags:?}");
        assert!(tags.contains(&("managed-by", "credrot")), "{tags:?}");
    }

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let (second, versions) = moto.ssm_key(PREFIX).unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(versions, [2, 2], "overwritten in place");
    moto.assert_key_works_for(&second, USER);
    let history = |name: &str| -> Vec<String> {
        moto.rt
            .block_on(
                ssm.get_parameter_history()
                    .name(format!("{PREFIX}/{name}"))
                    .with_decryption(true)
                    .send(),
            )
            .unwrap()
            .parameters()
            .iter()
            .map(|p| p.value().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        history("access_key_id"),
        [first.id.clone(), second.id.clone()]
    );
    assert_eq!(
        history("secret_access_key"),
        [first.secret.clone(), second.secret.clone()]
    );
}

#[test]
fn a_store_region_overrides_the_service_region() {
    let moto = Moto::start();
    moto.create_user(USER, "/");
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("{{ kind = \"ssm\", prefix = \"{PREFIX}\", region = \"eu-west-1\" }}"),
    );
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    assert!(
        moto.ssm_key(PREFIX).is_none(),
        "nothing in the run's region {REGION}"
    );
    let eu = aws_sdk_ssm::Client::new(
        &moto
            .sdk_config(&moto.admin)
            .to_builder()
            .region(Region::new("eu-west-1"))
            .build(),
    );
    let out = moto
        .rt
        .block_on(
            eu.get_parameter()
                .name(format!("{PREFIX}/access_key_id"))
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let id = out.parameter().unwrap().value().unwrap();
    assert!(moto.keys(USER).iter().any(|(k, _)| k == id));
}

/// Seed a file, a secret and two parameters with `key`, as a previous rotation would have.
fn seed_all_stores(moto: &Moto, dir: &Path, key: &Key) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    crate::harness::write_key_file(&dir.join("secrets/pg.json"), key);
    moto.put_secret_key(SECRET, key);
    moto.put_ssm_key(PREFIX, key);
}

#[test]
fn without_ssm_put_parameter_every_store_is_rolled_back() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    seed_all_stores(&moto, dir.path(), &old);
    let current_version = moto.secret_labels(SECRET)["AWSCURRENT"].clone();
    write_config(
        dir.path(),
        &format!(
            "{{ kind = \"file\", path = \"secrets/pg.json\" }},\n{{ kind = \"secrets-manager\", name = \"{SECRET}\" }},\n{{ kind = \"ssm\", prefix = \"{PREFIX}\" }}"
        ),
    );
    // Everything a rotation needs but ssm:PutParameter: reads (the preflight) succeed, the
    // write is refused by moto's IAM authorisation.
    let rotator = moto.create_identity(
        "rotator",
        &[
            "iam:*",
            "sts:*",
            "secretsmanager:*",
            "ssm:GetParameter*",
            "ssm:DeleteParameter*",
        ],
    );

    let out = credrot_command(dir.path())
        .env("AWS_ACCESS_KEY_ID", &rotator.id)
        .env("AWS_SECRET_ACCESS_KEY", &rotator.secret)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!("ssm:{PREFIX}: cannot write"))
            && stdout.contains("ssm:PutParameter")
            && stdout.contains("rolled back"),
        "{stdout}"
    );
    moto.assert_only_key(USER, &old);
    assert_eq!(key_of(&read_json(&dir.path().join("secrets/pg.json"))), old);
    assert_eq!(moto.secret_key(SECRET, "AWSCURRENT"), Some(old.clone()));
    let labels = moto.secret_labels(SECRET);
    assert_eq!(labels["AWSCURRENT"], current_version);
    assert!(
        !labels.contains_key("AWSPENDING"),
        "the staged version lost its label: {labels:?}"
    );
    assert_eq!(moto.ssm_key(PREFIX), Some((old, [1, 1])));
}

#[test]
fn a_secret_scheduled_for_deletion_stops_the_rotation_before_iam() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    seed_all_stores(&moto, dir.path(), &old);
    moto.rt
        .block_on(
            moto.secrets_manager()
                .delete_secret()
                .secret_id(SECRET)
                .recovery_window_in_days(7)
                .send(),
        )
        .unwrap();
    write_config(
        dir.path(),
        &format!(
            "{{ kind = \"file\", path = \"secrets/pg.json\" }},\n{{ kind = \"ssm\", prefix = \"{PREFIX}\" }},\n{{ kind = \"secrets-manager\", name = \"{SECRET}\" }}"
        ),
    );

    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!("secrets-manager:{SECRET}: cannot read"))
            && stdout.contains("scheduled for deletion")
            && stdout.contains("restore-secret"),
        "{stdout}"
    );
    assert_eq!(moto.keys(USER), vec![(old.id.clone(), true)]);
    moto.assert_key_works_for(&old, USER);
    assert_eq!(key_of(&read_json(&dir.path().join("secrets/pg.json"))), old);
    assert_eq!(moto.ssm_key(PREFIX), Some((old, [1, 1])));
}

fn ctx() -> WriteContext {
    WriteContext {
        user: USER.into(),
        service: Some("pg".into()),
        previous_key_id: None,
        rotated_at: SystemTime::now(),
    }
}

/// Restores the engine only needs when a later store's promotion fails, driven through the
/// library against moto.
#[test]
fn secrets_manager_restore_after_promotion_puts_the_labels_back() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let env = StoreEnv::new(
        AwsContext::from_sdk_config(moto.sdk_config(&moto.admin)),
        dir.path().to_path_buf(),
        vec!["aws".into()],
    );
    let open = |name: &str| {
        store::open(
            &StoreConfig::SecretsManager(SecretsManagerConfig {
                name: name.into(),
                kms_key_id: None,
                region: None,
            }),
            &TemplateValues {
                user: USER,
                service: Some("pg"),
                account: None,
            },
            &env,
        )
    };
    let key = |n: u8| AccessKey::new(format!("AKIATESTKEY0000000{n:02}"), format!("secret-{n}"));
    let as_key = |k: &AccessKey| Key {
        id: k.id.clone(),
        secret: k.expose().to_string(),
    };
    let rt = &moto.rt;
    // A secret with A as AWSCURRENT, then B rotated in: AWSPREVIOUS = A.
    rt.block_on(async {
        let store = open(SECRET);
        assert_eq!(store.read().await.unwrap(), None);
        store.write(&key(1), &ctx()).await.unwrap();
        store.promote(&key(1)).await.unwrap();
        let store = open(SECRET);
        assert_eq!(store.read().await.unwrap(), Some(key(1)));
        store.write(&key(2), &ctx()).await.unwrap();
        store.promote(&key(2)).await.unwrap();
    });
    let before = moto.secret_labels(SECRET);
    assert_eq!(before.len(), 2, "{before:?}");

    // C is written and promoted, then the run fails: B is AWSCURRENT again and A
    // AWSPREVIOUS, exactly as before.
    let store = open(SECRET);
    rt.block_on(async {
        assert_eq!(store.read().await.unwrap(), Some(key(2)));
        store.write(&key(3), &ctx()).await.unwrap();
        store.promote(&key(3)).await.unwrap();
    });
    assert_eq!(moto.secret_key(SECRET, "AWSCURRENT"), Some(as_key(&key(3))));
    rt.block_on(store.restore(Some(&key(2)), &ctx())).unwrap();
    assert_eq!(moto.secret_labels(SECRET), before);
    assert_eq!(moto.secret_key(SECRET, "AWSCURRENT"), Some(as_key(&key(2))));
    assert_eq!(
        moto.secret_key(SECRET, "AWSPREVIOUS"),
        Some(as_key(&key(1)))
    );

    // Written but not promoted: only the AWSPENDING label comes off.
    let store = open(SECRET);
    rt.block_on(async {
        store.read().await.unwrap();
        store.write(&key(5), &ctx()).await.unwrap();
    });
    assert!(moto.secret_labels(SECRET).contains_key("AWSPENDING"));
    rt.block_on(store.restore(Some(&key(2)), &ctx())).unwrap();
    assert_eq!(moto.secret_labels(SECRET), before);

    // A secret this run created is deleted again: it did not exist before, and its first
    // version was AWSCURRENT at once.
    let store = open("home-ops/new");
    rt.block_on(async {
        assert_eq!(store.read().await.unwrap(), None);
        store.write(&key(4), &ctx()).await.unwrap();
    });
    assert_eq!(
        moto.secret_key("home-ops/new", "AWSCURRENT"),
        Some(as_key(&key(4)))
    );
    rt.block_on(store.restore(None, &ctx())).unwrap();
    assert!(rt.block_on(open("home-ops/new").read()).unwrap().is_none());
}

#[test]
fn rotate_path_hands_50_users_their_current_key_through_templated_stores() {
    const PATH: &str = "/PSKServiceAccounts/";
    let moto = Moto::start();
    let users: Vec<String> = (0..50).map(|i| format!("psk-{i:02}")).collect();
    let mut existing = Vec::new();
    for (i, user) in users.iter().enumerate() {
        moto.create_user(user, PATH);
        if i % 2 == 0 {
            existing.push(moto.create_key(user, true).id);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.PSKServiceAccounts]\nstores = [\n  { kind = \"ssm\", prefix = \"/psk/{user}\" },\n  { kind = \"secrets-manager\", name = \"psk/{user}/aws\" },\n]\n",
    )
    .unwrap();

    let out = moto
        .credrot(dir.path())
        .args([
            "--output",
            "json",
            "rotate",
            "--path",
            "PSKServiceAccounts",
            "--concurrency",
            "8",
        ])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(summary["rotated"], 50, "{summary}");
    for user in &users {
        let (in_ssm, _) = moto
            .ssm_key(&format!("/psk/{user}"))
            .unwrap_or_else(|| panic!("{user}: no parameters"));
        let in_secret = moto
            .secret_key(&format!("psk/{user}/aws"), "AWSCURRENT")
            .unwrap_or_else(|| panic!("{user}: no secret"));
        assert_eq!(in_ssm, in_secret, "{user}: the stores agree");
        assert!(!existing.contains(&in_ssm.id), "{user}: holds the new key");
        assert!(
            moto.keys(user).iter().any(|(id, _)| id == &in_ssm.id),
            "{user}: the stored key is the user's CURRENT"
        );
        moto.assert_key_works_for(&in_ssm, user);
    }
}

/// A run killed after verifying the new key but before moving AWSCURRENT leaves it staged as
/// AWSPENDING (and "used", by the verification). The next run finishes that promotion.
#[test]
fn an_unfinished_promotion_is_finished_by_the_next_run() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.pg]\niam_user = \"pg\"\nstores = [{ kind = \"secrets-manager\", name = \"pg/aws\" }]\n",
    )
    .unwrap();
    moto.create_user("pg", "/");
    let current = moto.create_key("pg", true);
    moto.put_secret_key("pg/aws", &current);
    let staged = moto.create_key("pg", true);
    moto.rt
        .block_on(
            moto.secrets_manager()
                .put_secret_value()
                .secret_id("pg/aws")
                .secret_string(crate::harness::key_document(&staged))
                .version_stages("AWSPENDING")
                .send(),
        )
        .unwrap();
    moto.assert_key_works_for(&staged, "pg");

    // `--lock-ttl 0s`: the staged key is seconds old, and until the lock TTL has passed
    // a key the store does not hand out yet is taken for another run's in progress.
    let run = || {
        let out = moto
            .credrot(dir.path())
            .args(["--output", "json", "update", "pg", "--lock-ttl", "0s"])
            .assert()
            .success();
        let summary: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        summary["users"][0].clone()
    };
    let user = run();
    assert_eq!(user["synced"][0], "secrets-manager:pg/aws", "{user}");
    // The key consumers read until a moment ago survives the run that promoted the other.
    assert_eq!(user["outcome"], "synced", "{user}");
    assert_eq!(user["deleted"], serde_json::Value::Null, "{user}");
    assert_eq!(
        moto.secret_key("pg/aws", "AWSCURRENT"),
        Some(staged.clone())
    );
    moto.assert_key_works_for(&current, "pg");

    // The next run rotates: the previous AWSCURRENT goes, the promoted key stays as LAST.
    let user = run();
    assert_eq!(user["outcome"], "rotated", "{user}");
    assert_eq!(user["deleted"], current.id.as_str(), "{user}");
    let now_current = moto.secret_key("pg/aws", "AWSCURRENT").unwrap();
    assert_eq!(user["created"], now_current.id.as_str());
    moto.assert_key_works_for(&now_current, "pg");
    moto.assert_key_works_for(&staged, "pg");
    assert_eq!(
        moto.secret_key("pg/aws", "AWSPREVIOUS"),
        Some(staged),
        "the finished promotion is now AWSPREVIOUS"
    );
}

/// Secrets Manager moved AWSCURRENT to the new version but the answer was lost, so the
/// promotion failed and the run rolled back. The rollback used to take the move for one
/// that never happened: it deleted the new key while the secret handed it out. It must ask
/// the secret, put AWSCURRENT back, and only then delete the new key.
#[test]
fn a_promotion_whose_answer_is_lost_is_undone_before_the_new_key_is_deleted() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    seed_all_stores(&moto, dir.path(), &old);
    write_config(
        dir.path(),
        &format!(
            "{{ kind = \"file\", path = \"secrets/pg.json\" }},\n{{ kind = \"secrets-manager\", name = \"{SECRET}\" }}"
        ),
    );
    // The first UpdateSecretVersionStage is the promotion's move of AWSCURRENT.
    let proxy = crate::harness::FaultProxy::start(
        &moto.endpoint,
        0.0,
        &["--lose-answer", "UpdateSecretVersionStage:1"],
    );
    let out = moto
        .credrot(dir.path())
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        // No SDK retry: the lost answer is the promotion's failure.
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("cannot promote") && stdout.contains("rolled back"),
        "{stdout}"
    );
    assert_eq!(proxy.stats()["reset_after"], 1, "{}", proxy.stats());
    // Every store hands out a key that works, and it is the old one: the new key is gone.
    let handed_out = moto
        .secret_key(SECRET, "AWSCURRENT")
        .expect("a current key");
    moto.assert_key_works_for(&handed_out, USER);
    assert_eq!(handed_out, old);
    assert_eq!(key_of(&read_json(&dir.path().join("secrets/pg.json"))), old);
    moto.assert_only_key(USER, &old);

    // A rerun rotates as if nothing had happened.
    let out = moto
        .credrot(dir.path())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .args(["--output", "json", "update", "pg"])
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(summary["users"][0]["outcome"], "rotated", "{summary}");
    let new = moto.secret_key(SECRET, "AWSCURRENT").unwrap();
    assert_ne!(new, old);
    moto.assert_key_works_for(&new, USER);
    assert_eq!(key_of(&read_json(&dir.path().join("secrets/pg.json"))), new);
}
