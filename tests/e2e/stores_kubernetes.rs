//! The Kubernetes Secret store through the built binary, against the fake API server
//! (tests/fake-kube) for the cluster and moto for IAM and SSM.

use crate::fake_http::{FakeServer, TestCa};
use crate::harness::{key_of, read_json, shown, write_key_file, Key, Moto};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::path::Path;

const USER: &str = "pg-backup";
const TOKEN: &str = "kube-test-token-0123456789";
const SECRET: &str = "apps/aws-pg";

/// The fake cluster and a kubeconfig for it in the test directory.
pub struct Cluster {
    pub fake: FakeServer,
}

impl Cluster {
    /// A cluster whose kubeconfig (`dir/kubeconfig`) authenticates with the bearer token.
    pub fn start(dir: &Path) -> Cluster {
        let fake = FakeServer::start("fake-kube/server.py", &["--token", TOKEN], None);
        write_kubeconfig(dir, &fake.url, &format!("token: {TOKEN}"), "");
        Cluster { fake }
    }

    /// The key the Secret `ns/name` holds, decoded, with its data and annotations.
    pub fn secret(&self, id: &str) -> Option<Value> {
        let state = self.fake.state();
        let obj = state["secrets"].get(id)?.clone();
        Some(obj)
    }

    pub fn key(&self, id: &str) -> Option<Key> {
        let obj = self.secret(id)?;
        Some(Key {
            id: decode(&obj["data"]["AWS_ACCESS_KEY_ID"])?,
            secret: decode(&obj["data"]["AWS_SECRET_ACCESS_KEY"])?,
        })
    }

    /// Put a Secret holding `key` (and `DB_URL`) in place, as an earlier run would have.
    pub fn seed(&self, key: &Key) {
        self.fake.seed(json!({"secret": {
            "metadata": {"name": "aws-pg", "namespace": "apps",
                         "annotations": {"credrot.io/access-key-id": key.id}},
            "data": {"AWS_ACCESS_KEY_ID": STANDARD.encode(&key.id),
                     "AWS_SECRET_ACCESS_KEY": STANDARD.encode(&key.secret),
                     "DB_URL": STANDARD.encode("postgres://db")}
        }}));
    }
}

/// A kubeconfig at `dir/kubeconfig` for `server`, with `user` (YAML lines of the user)
/// and `cluster` (extra YAML lines of the cluster).
pub fn write_kubeconfig(dir: &Path, server: &str, user: &str, cluster: &str) {
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n{}contexts:\n- name: test\n  context:\n    cluster: fake\n    user: robot\n    namespace: apps\nusers:\n- name: robot\n  user:\n{}",
        indent(cluster),
        indent(user)
    );
    std::fs::write(dir.join("kubeconfig"), yaml).unwrap();
}

fn decode(value: &Value) -> Option<String> {
    Some(String::from_utf8(STANDARD.decode(value.as_str()?).ok()?).unwrap())
}

fn kube_store(extra: &str) -> String {
    format!("{{ kind = \"kubernetes\", namespace = \"apps\", name = \"aws-{{service}}\", kubeconfig = \"kubeconfig\", timeout = \"3s\"{extra} }}")
}

fn write_config(dir: &Path, stores: &str) {
    crate::harness::write_pg_service(dir, USER, stores);
}

#[test]
fn the_secret_is_created_then_replaced_on_its_version() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    write_config(
        dir.path(),
        &kube_store(", credentials_key = \"credentials\""),
    );

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let first = cluster.key(SECRET).expect("the Secret was created");
    assert_ne!(first.id, old.id);
    moto.assert_key_works_for(&first, USER);
    let obj = cluster.secret(SECRET).unwrap();
    assert_eq!(obj["type"], "Opaque");
    assert_eq!(
        obj["metadata"]["annotations"]["credrot.io/access-key-id"],
        first.id.as_str()
    );
    assert_eq!(obj["metadata"]["annotations"]["credrot.io/iam-user"], USER);
    assert!(obj["metadata"]["annotations"]["credrot.io/rotated-at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(
        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "credrot"
    );
    let creds = decode(&obj["data"]["credentials"]).unwrap();
    assert!(
        creds.starts_with("[default]\naws_access_key_id = ") && creds.contains(&first.secret),
        "the credentials file holds the key"
    );
    assert_eq!(cluster.fake.calls("POST", "/secrets").len(), 1);
    // Someone adds a key of their own; credrot keeps it.
    cluster.fake.fail(json!({"method": "GET", "path": "aws-pg", "interfere": {"namespace": "apps", "name": "aws-pg", "set": {"DB_URL": "postgres://db"}}}));
    let version = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let second = cluster.key(SECRET).unwrap();
    assert_ne!(second.id, first.id);
    moto.assert_key_works_for(&second, USER);
    moto.assert_key_works_for(&first, USER);
    assert!(moto.whoami(&old).is_none(), "the old LAST is deleted");
    let obj = cluster.secret(SECRET).unwrap();
    assert_eq!(
        decode(&obj["data"]["DB_URL"]).as_deref(),
        Some("postgres://db")
    );
    assert_eq!(
        obj["metadata"]["annotations"]["credrot.io/previous-access-key-id"],
        first.id.as_str()
    );
    let puts = cluster
        .fake
        .calls("PUT", "/api/v1/namespaces/apps/secrets/aws-pg");
    assert_eq!(puts.len(), 1, "replaced in place");
    let sent: Value = serde_json::from_str(puts[0]["body"].as_str().unwrap()).unwrap();
    assert_ne!(
        sent["metadata"]["resourceVersion"],
        version.as_str(),
        "the PUT carries the version read in this run"
    );
    for r in cluster.fake.requests() {
        assert_eq!(r["headers"]["authorization"], format!("Bearer {TOKEN}"));
    }

    // status shows what the Secret holds.
    let out = moto
        .credrot(dir.path())
        .args(["--output", "json", "status", "pg"])
        .assert()
        .success();
    let status: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let stores = &status[0]["stores"];
    assert_eq!(stores[0]["store"], "kubernetes:apps/aws-pg");
    assert_eq!(stores[0]["key_id"], second.id.as_str());
}

#[test]
fn one_service_hands_the_key_to_a_file_ssm_and_a_secret() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    cluster.seed(&old);
    write_key_file(&dir.path().join("pg.json"), &old);
    moto.put_ssm_key("/pg/aws", &old);
    write_config(
        dir.path(),
        &format!("{{ kind = \"file\", path = \"pg.json\" }},\n{{ kind = \"ssm\", prefix = \"/pg/aws\" }},\n{}", kube_store("")),
    );
    // Alone here: the old key, made a second ago, is not another run's new key.
    moto.credrot(dir.path())
        .args(["update", "pg", "--no-lock"])
        .assert()
        .success();
    let new = cluster.key(SECRET).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(key_of(&read_json(&dir.path().join("pg.json"))), new);
    assert_eq!(moto.ssm_key("/pg/aws").unwrap().0, new);
    moto.assert_key_works_for(&new, USER);
}

/// A fault on the cluster while the key is handed out: the run fails (exit 1), the file
/// and SSM stores and the Secret hold the old key again, IAM has only the old key, and it
/// works; a second run converges. `after` checks the cluster after the failed run.
fn rolls_back(rule: Value, says: &str, after: impl Fn(&Cluster, &Key)) {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    cluster.seed(&old);
    write_key_file(&dir.path().join("pg.json"), &old);
    moto.put_ssm_key("/pg/aws", &old);
    write_config(
        dir.path(),
        &format!("{{ kind = \"file\", path = \"pg.json\" }},\n{{ kind = \"ssm\", prefix = \"/pg/aws\" }},\n{}", kube_store("")),
    );
    cluster.fake.fail(rule);
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let err = shown(&out);
    assert!(err.contains(says) && err.contains("rolled back"), "{err}");
    assert!(!err.contains(&old.secret) && !err.contains(TOKEN), "{err}");
    assert_eq!(
        key_of(&read_json(&dir.path().join("pg.json"))),
        old,
        "file restored"
    );
    assert_eq!(moto.ssm_key("/pg/aws").unwrap().0, old, "ssm restored");
    moto.assert_only_key(USER, &old);
    after(&cluster, &old);
    let obj = cluster.secret(SECRET).unwrap();
    assert_eq!(
        decode(&obj["data"]["DB_URL"]).as_deref(),
        Some("postgres://db"),
        "other keys kept"
    );

    // Alone here: the old key, made a second ago, is not another run's new key.
    moto.credrot(dir.path())
        .args(["update", "pg", "--no-lock"])
        .assert()
        .success();
    let new = cluster.key(SECRET).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(key_of(&read_json(&dir.path().join("pg.json"))), new);
    assert_eq!(moto.ssm_key("/pg/aws").unwrap().0, new);
    moto.assert_key_works_for(&new, USER);
    moto.assert_key_works_for(&old, USER);
}

fn holds_old(cluster: &Cluster, old: &Key) {
    assert_eq!(
        cluster.key(SECRET).as_ref(),
        Some(old),
        "the Secret holds the old key"
    );
    assert_eq!(
        cluster.secret(SECRET).unwrap()["metadata"]["annotations"]["credrot.io/access-key-id"],
        old.id.as_str()
    );
}

#[test]
fn a_forbidden_write_rolls_back() {
    rolls_back(
        json!({"method": "PUT", "path": "/secrets/aws-pg", "status": 403}),
        "cannot update resource \"secrets\"",
        holds_old,
    );
}

#[test]
fn a_writer_that_changed_our_keys_is_never_overwritten() {
    rolls_back(
        json!({"method": "PUT", "path": "/secrets/aws-pg", "interfere": {"namespace": "apps", "name": "aws-pg", "set": {"AWS_ACCESS_KEY_ID": "AKIAOTHERWRITER00000"}}}),
        "another writer changed the keys",
        |cluster, _| {
            let obj = cluster.secret(SECRET).unwrap();
            assert_eq!(
                decode(&obj["data"]["AWS_ACCESS_KEY_ID"]).as_deref(),
                Some("AKIAOTHERWRITER00000"),
                "the other writer's change stands"
            );
        },
    );
}

#[test]
fn a_write_whose_answer_never_comes_is_undone() {
    rolls_back(
        json!({"method": "PUT", "path": "/secrets/aws-pg", "hang": "after"}),
        "did not answer within 3s",
        holds_old,
    );
}

#[test]
fn a_malformed_answer_to_the_write_is_undone() {
    rolls_back(
        json!({"method": "PUT", "path": "/secrets/aws-pg", "garble": true}),
        "not a Secret",
        holds_old,
    );
}

#[test]
fn a_conflict_with_a_writer_of_other_keys_is_written_again() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    cluster.seed(&old);
    write_config(dir.path(), &kube_store(""));
    cluster.fake.fail(json!({"method": "PUT", "path": "/secrets/aws-pg", "interfere": {"namespace": "apps", "name": "aws-pg", "set": {"DB_URL": "postgres://other"}}}));
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let new = cluster.key(SECRET).unwrap();
    assert_ne!(new.id, old.id);
    moto.assert_key_works_for(&new, USER);
    let obj = cluster.secret(SECRET).unwrap();
    assert_eq!(
        decode(&obj["data"]["DB_URL"]).as_deref(),
        Some("postgres://other"),
        "no lost update"
    );
    assert_eq!(
        cluster.fake.calls("PUT", "/secrets/aws-pg").len(),
        2,
        "a 409, then the write on the new version"
    );
}

#[test]
fn a_secret_credrot_created_is_deleted_on_rollback() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    write_key_file(&dir.path().join("pg.json"), &old);
    // The Secret comes first and is created; the file after it fails to be written.
    write_config(
        dir.path(),
        &format!(
            "{},\n{{ kind = \"file\", path = \"/proc/credrot-cannot-write/pg.json\" }}",
            kube_store("")
        ),
    );
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    assert!(
        cluster.secret(SECRET).is_none(),
        "the Secret credrot created is gone"
    );
    assert_eq!(cluster.fake.calls("DELETE", "/secrets/aws-pg").len(), 1);
    let sent: Value = serde_json::from_str(
        cluster.fake.calls("DELETE", "/secrets/aws-pg")[0]["body"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        sent["preconditions"]["resourceVersion"].is_string(),
        "deleted only at the version credrot wrote"
    );
    moto.assert_only_key(USER, &old);
}

#[test]
fn an_unauthorized_token_stops_the_user_before_any_iam_change() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    write_kubeconfig(dir.path(), &cluster.fake.url, "token: wrong-token", "");
    write_config(dir.path(), &kube_store(""));
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let err = shown(&out);
    assert!(
        err.contains("401 Unauthorized") && !err.contains("wrong-token"),
        "{err}"
    );
    moto.assert_only_key(USER, &old);
    assert!(cluster.fake.calls("POST", "").is_empty() && cluster.fake.calls("PUT", "").is_empty());
}

#[test]
fn https_with_the_cluster_ca_and_a_client_certificate() {
    let Some(ca) = TestCa::make() else {
        eprintln!("openssl is not installed: the HTTPS test is skipped");
        return;
    };
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start(
        "fake-kube/server.py",
        &["--client-cn", "credrot-robot"],
        Some(&ca),
    );
    let cluster = Cluster { fake };
    write_kubeconfig(
        dir.path(),
        &cluster.fake.url,
        &format!(
            "client-certificate-data: {}\nclient-key-data: {}",
            ca.base64("client.pem"),
            ca.base64("client.key")
        ),
        &format!("certificate-authority-data: {}", ca.base64("ca.pem")),
    );
    write_config(dir.path(), &kube_store(""));
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let new = cluster.key(SECRET).unwrap();
    assert_ne!(new.id, old.id);
    moto.assert_key_works_for(&new, USER);

    // Without the cluster's CA the server is not trusted, and nothing changes.
    write_kubeconfig(
        dir.path(),
        &cluster.fake.url,
        &format!(
            "client-certificate-data: {}\nclient-key-data: {}",
            ca.base64("client.pem"),
            ca.base64("client.key")
        ),
        "",
    );
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg", "--force"])
        .assert()
        .code(1);
    let err = shown(&out);
    assert!(err.contains("kubernetes:apps/aws-pg: cannot read"), "{err}");
    assert_eq!(cluster.key(SECRET), Some(new));
}
