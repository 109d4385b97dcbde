//! `after_rotate` hooks through the built binary: commands, the Kubernetes restart and
//! signals run once the new key is stored, verified and promoted; a failing hook is
//! reported (summary, audit log, webhook, exit 1) and the rotation stands.

use crate::fake_http::FakeServer;
use crate::harness::{key_of, read_json, Key, Moto, WebhookServer};
use crate::stores_kubernetes::write_kubeconfig;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const USER: &str = "pg-backup";

/// A hook script in `dir` recording its environment, argv, stdin, and the store's content
/// at the time it ran, under files named after its first argument.
fn recorder(dir: &Path) -> PathBuf {
    let path = dir.join("hook.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\nenv > \"env-$1.txt\"\necho \"$0 $*\" > \"argv-$1.txt\"\ncat > \"stdin-$1.txt\"\ncp pg.json \"seen-$1.json\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn write_config(dir: &Path, hooks: &str, extra: &str) {
    let toml = format!(
        "[services.pg]\niam_user = \"{USER}\"\nstores = [{{ kind = \"file\", path = \"pg.json\" }}]\nafter_rotate = [\n{hooks}\n]\n{extra}"
    );
    std::fs::write(dir.join("services.toml"), toml).unwrap();
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn stored(dir: &Path) -> Key {
    key_of(&read_json(&dir.join("pg.json")))
}

#[test]
fn a_command_gets_the_facts_and_the_key_only_on_stdin_when_it_asks() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let hook = recorder(dir.path());
    write_config(
        dir.path(),
        &format!("{{ command = [\"{0}\", \"plain\"] }},\n{{ command = [\"{0}\", \"stdin\"], stdin = \"key\" }}", hook.display()),
        "rotate_after = \"1d\"\n",
    );
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    let new = stored(dir.path());
    assert_ne!(new.id, old.id);
    let env = read(dir.path(), "env-plain.txt");
    for line in [
        format!("CREDROT_USER={USER}"),
        "CREDROT_SERVICE=pg".into(),
        format!("CREDROT_KEY_ID={}", new.id),
        "CREDROT_ACCOUNT=123456789012".into(),
        "CREDROT_STORES=file:pg.json".into(),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} is not in the hook's environment:\n{env}"
        );
    }
    for name in [
        "env-plain.txt",
        "argv-plain.txt",
        "stdin-plain.txt",
        "env-stdin.txt",
        "argv-stdin.txt",
    ] {
        let text = read(dir.path(), name);
        for secret in [&new.secret, &old.secret, &moto.admin.secret] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is in the hook's {name}"
            );
        }
    }
    assert!(
        !env.contains("AWS_ACCESS_KEY_ID") && !env.contains("AWS_ENDPOINT_URL"),
        "credrot's own AWS settings stay with it"
    );
    let handed: Value = serde_json::from_str(&read(dir.path(), "stdin-stdin.txt")).unwrap();
    assert_eq!(key_of(&handed), new, "stdin = \"key\" hands the key JSON");
    // The hooks ran once the store held the new key.
    assert_eq!(key_of(&read_json(&dir.path().join("seen-plain.json"))), new);

    // A run with nothing to rotate (the key is younger than rotate_after) runs no hook.
    std::fs::remove_file(dir.path().join("env-plain.txt")).unwrap();
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    assert!(!dir.path().join("env-plain.txt").exists());
}

#[test]
fn a_failing_hook_is_reported_everywhere_and_the_rotation_stands() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let hook = recorder(dir.path());
    let notice = WebhookServer::start(204);
    write_config(
        dir.path(),
        &format!("{{ command = [\"/bin/sh\", \"-c\", \"echo reload refused >&2; exit 4\"] }},\n{{ command = [\"{}\", \"after\"] }}", hook.display()),
        &format!("[audit]\npath = \"audit.log\"\n[notify]\nwebhook = \"{}/hook\"\n", notice.url),
    );
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("1 after_rotate hooks failed for 1 users; their rotations stand"),
        "{stderr}"
    );
    assert!(
        stdout.contains("FAILED (the rotation stands): exited with status 4: reload refused"),
        "{stdout}"
    );
    assert!(stdout.contains("rotated"), "{stdout}");
    let new = stored(dir.path());
    assert_ne!(new.id, old.id);
    moto.assert_key_works_for(&new, USER);
    assert_eq!(moto.keys(USER).len(), 2, "the new key was kept");
    assert!(
        dir.path().join("env-after.txt").exists(),
        "the next hook still ran"
    );

    let audit: Vec<Value> = read(dir.path(), "audit.log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hooks: Vec<&Value> = audit
        .iter()
        .filter(|l| l["action"] == "after-rotate")
        .collect();
    assert_eq!(hooks.len(), 2, "{audit:?}");
    assert_eq!(hooks[0]["outcome"], "failed");
    assert!(hooks[0]["error"]
        .as_str()
        .unwrap()
        .contains("reload refused"));
    assert_eq!(hooks[1]["outcome"], "ok");

    let received = notice.received();
    let body = received.last().expect("a notice").json();
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("after_rotate hook command /bin/sh"),
        "{body}"
    );
    assert_eq!(body["users"][0]["hooks"][0]["outcome"], "failed");
    assert_eq!(body["users"][0]["outcome"], "rotated");
    assert!(!body.to_string().contains(&new.secret));
}

#[test]
fn kubernetes_restart_patches_the_pod_template() {
    let (moto, _old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeServer::start("fake-kube/server.py", &["--token", "hook-token"], None);
    write_kubeconfig(dir.path(), &fake.url, "token: hook-token", "");
    fake.seed(json!({"workload": {"kind": "deployments", "namespace": "apps", "name": "api"}}));
    write_config(
        dir.path(),
        "{ kubernetes_restart = \"deployment/api\", namespace = \"apps\", kubeconfig = \"kubeconfig\" },\n{ kubernetes_restart = \"statefulset/gone\", namespace = \"apps\", kubeconfig = \"kubeconfig\" }",
        "",
    );
    let out = moto
        .credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("kubernetes_restart statefulset/gone in apps: FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("statefulsets.apps \"gone\" not found"),
        "{stdout}"
    );
    let deployment = &fake.state()["workloads"]["deployments/apps/api"];
    let restarted = deployment["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap();
    humantime::parse_rfc3339(restarted).expect("an RFC 3339 time");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app"], "api",
        "merged, not replaced"
    );
    let patches = fake.calls("PATCH", "/apis/apps/v1/namespaces/apps/deployments/api");
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0]["headers"]["content-type"],
        "application/strategic-merge-patch+json"
    );
    moto.assert_key_works_for(&stored(dir.path()), USER);
}

#[test]
fn no_hook_runs_on_a_dry_run_or_a_failed_rotation() {
    let (moto, old) = Moto::start_with_user(USER);
    let dir = tempfile::tempdir().unwrap();
    let hook = recorder(dir.path());
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join("app.pid"), format!("{}\n", sleeper.id())).unwrap();
    write_config(
        dir.path(),
        &format!(
            "{{ command = [\"{}\", \"run\"] }},\n{{ signal = \"TERM\", pid_file = \"app.pid\" }}",
            hook.display()
        ),
        "",
    );
    moto.credrot(dir.path())
        .args(["update", "pg", "--dry-run"])
        .assert()
        .success();
    assert!(
        !dir.path().join("env-run.txt").exists(),
        "a dry run runs no hook"
    );
    assert!(sleeper.try_wait().unwrap().is_none(), "nor sends a signal");

    // A rotation that fails (the store cannot be written) runs no hook either.
    std::fs::create_dir(dir.path().join("pg.json")).unwrap();
    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .code(1);
    assert!(!dir.path().join("env-run.txt").exists());
    moto.assert_only_key(USER, &old);
    std::fs::remove_dir(dir.path().join("pg.json")).unwrap();

    moto.credrot(dir.path())
        .args(["update", "pg"])
        .assert()
        .success();
    assert!(dir.path().join("env-run.txt").exists());
    let status = sleeper.wait().unwrap();
    assert!(
        !status.success(),
        "SIGTERM reached the process of the pid file"
    );
}
