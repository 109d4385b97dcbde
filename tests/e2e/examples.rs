//! The scheduling examples under examples/: the Kubernetes CronJob and ConfigMap, and the
//! GitHub Actions workflow. Their YAML is parsed and checked for what makes them safe
//! (non-root, read-only, no overlap, OIDC, exit codes), and their credrot command lines and
//! services.toml are run against moto, so an example cannot drift from what credrot takes.

use crate::harness::{isolated_process, tool_path, Key, Moto};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PATH: &str = "/PSKServiceAccounts/";

/// Every YAML document of `examples/<file>`.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples").join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} document"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The CronJob's credrot container, and its pod spec.
fn cronjob_container() -> (Value, Value) {
    let docs = documents("kubernetes/cronjob.yaml");
    let pod = of_kind(&docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    (containers[0].clone(), pod)
}

/// The container's environment, by name.
fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .map(|env| {
            env.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// services.toml as the ConfigMap holds it.
fn configmap_services_toml() -> String {
    let docs = documents("kubernetes/configmap.yaml");
    of_kind(&docs, "ConfigMap")["data"]["services.toml"]
        .as_str()
        .expect("the ConfigMap holds services.toml")
        .to_string()
}

/// No flag that hands a key to stdout or a file.
fn assert_no_secret_output(args: &[String], place: &str) {
    for arg in args {
        assert!(
            !["--print-secrets", "-o", "--outfile"].contains(&arg.as_str())
                && !arg.starts_with("--outfile="),
            "{place} would print or write keys: {args:?}"
        );
    }
}

#[test]
fn the_cronjob_runs_non_root_read_only_without_overlap_and_maps_exit_codes() {
    let docs = documents("kubernetes/cronjob.yaml");
    let account = of_kind(&docs, "ServiceAccount");
    let annotations = account["metadata"]["annotations"].as_mapping();
    let irsa = annotations
        .and_then(|a| a.get("eks.amazonaws.com/role-arn"))
        .and_then(Value::as_str);
    assert!(
        irsa.is_some_and(|arn| arn.starts_with("arn:aws:iam::")),
        "IRSA role annotation: {account:?}"
    );
    let cronjob = of_kind(&docs, "CronJob");
    let spec = &cronjob["spec"];
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Forbid"));
    assert!(spec["schedule"].as_str().is_some());
    let job = &spec["jobTemplate"]["spec"];
    assert!(
        job["backoffLimit"].as_u64().is_some_and(|n| n >= 1),
        "{job:?}"
    );
    // 2 and 3 fail the Job at once; 1 is retried (backoffLimit).
    let rules = job["podFailurePolicy"]["rules"].as_sequence().unwrap();
    let fail_job: Vec<u64> = rules
        .iter()
        .filter(|r| r["action"].as_str() == Some("FailJob"))
        .flat_map(|r| {
            assert_eq!(r["onExitCodes"]["operator"].as_str(), Some("In"));
            assert_eq!(r["onExitCodes"]["containerName"].as_str(), Some("credrot"));
            r["onExitCodes"]["values"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(fail_job, vec![2, 3], "{rules:?}");

    let (container, pod) = cronjob_container();
    assert_eq!(
        pod["restartPolicy"].as_str(),
        Some("Never"),
        "podFailurePolicy needs it"
    );
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    // The distroless image's nonroot user (Dockerfile: USER nonroot).
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(":nonroot") && dockerfile.contains("USER nonroot"));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&security["capabilities"]["drop"]), vec!["ALL"]);
    // The image's ENTRYPOINT is credrot: the container gives only its arguments.
    assert!(container["command"].is_null(), "{container:?}");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/credrot"]"#));
    let args = strings(&container["args"]);
    assert_no_secret_output(&args, "the CronJob");
    // credrot stops starting users well before Kubernetes kills the pod.
    let limit = args
        .iter()
        .position(|a| a == "--time-limit")
        .map(|i| humantime::parse_duration(&args[i + 1]).unwrap())
        .expect("the CronJob sets --time-limit");
    let deadline = job["activeDeadlineSeconds"].as_u64().unwrap();
    assert!(
        limit.as_secs() + 120 <= deadline,
        "--time-limit {limit:?} leaves under 2 min of activeDeadlineSeconds {deadline}"
    );

    let env = env_of(&container);
    let var = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    for forbidden in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            var(forbidden).is_none(),
            "credentials come from IRSA, not {forbidden}"
        );
    }
    // CREDROT_CONFIG is the ConfigMap's services.toml, mounted read-only.
    let config = PathBuf::from(var("CREDROT_CONFIG").expect("CREDROT_CONFIG"));
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let volumes = pod["volumes"].as_sequence().unwrap();
    let mount_of = |path: &Path| {
        mounts
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
    };
    let volume_of = |mount: &Value| {
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap()
            .clone()
    };
    let config_mount = mount_of(&config);
    assert_eq!(config_mount["readOnly"].as_bool(), Some(true));
    assert_eq!(
        config.file_name().unwrap(),
        "services.toml",
        "the ConfigMap's key"
    );
    let configmap = documents("kubernetes/configmap.yaml");
    assert_eq!(
        volume_of(config_mount)["configMap"]["name"],
        of_kind(&configmap, "ConfigMap")["metadata"]["name"]
    );
    // The in-flight records need the one writable place, an emptyDir.
    let state = PathBuf::from(var("CREDROT_STATE_DIR").expect("CREDROT_STATE_DIR"));
    let state_mount = mount_of(&state);
    assert!(!volume_of(state_mount)["emptyDir"].is_null());
    assert_ne!(state_mount["readOnly"].as_bool(), Some(true));
}

/// Users under [`PATH`] with one key each, stored in SSM under /psk/USER as the example's
/// services.toml says.
fn seed_users(moto: &Moto, names: &[&str]) -> Vec<Key> {
    names
        .iter()
        .map(|user| {
            moto.create_user(user, PATH);
            let key = moto.create_key(user, true);
            moto.put_ssm_key(&format!("/psk/{user}"), &key);
            key
        })
        .collect()
}

/// Each user's key in SSM is new, works, and the old one is LAST.
fn assert_rotated(moto: &Moto, names: &[&str], old: &[Key]) {
    for (user, key) in names.iter().zip(old) {
        let (new, _) = moto.ssm_key(&format!("/psk/{user}")).unwrap();
        assert_ne!(new.id, key.id, "{user}: a new key in SSM");
        moto.assert_key_works_for(&new, user);
        let ids: Vec<String> = moto.keys(user).into_iter().map(|k| k.0).collect();
        assert!(ids.contains(&key.id), "{user}: the old key stays as LAST");
    }
}

#[test]
fn the_cronjob_command_line_and_configmap_rotate_on_moto() {
    let moto = Moto::start();
    let users = ["psk-a", "psk-b"];
    let old = seed_users(&moto, &users);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("services.toml");
    std::fs::write(&config, configmap_services_toml()).unwrap();
    let (container, _) = cronjob_container();
    let args = strings(&container["args"]);
    let mut run = moto.credrot_process(dir.path());
    for (name, value) in env_of(&container) {
        // The paths of the pod's mounts, here in the test's directory.
        let value = match name.as_str() {
            "CREDROT_CONFIG" => config.display().to_string(),
            "CREDROT_STATE_DIR" => dir.path().join("state").display().to_string(),
            _ => value,
        };
        run.env(name, value);
    }
    // A year on: the keys are due, as on the schedule's day.
    let out = run
        .env("CREDROT_CLOCK_OFFSET", "400d")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "credrot {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_rotated(&moto, &users, &old);
}

/// The workflow, with `on` read whichever way a YAML 1.1 parser would take it.
fn workflow() -> Value {
    documents("github-actions/rotate.yml").remove(0)
}

fn triggers(workflow: &Value) -> &Value {
    let on = &workflow["on"];
    if on.is_null() {
        &workflow[Value::Bool(true)]
    } else {
        on
    }
}

fn steps(workflow: &Value) -> Vec<Value> {
    let jobs = workflow["jobs"].as_mapping().unwrap();
    assert_eq!(jobs.len(), 1, "one job");
    jobs.values().next().unwrap()["steps"]
        .as_sequence()
        .unwrap()
        .clone()
}

/// The step that runs credrot.
fn rotate_step(workflow: &Value) -> Value {
    let found: Vec<Value> = steps(workflow)
        .into_iter()
        .filter(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.lines().any(|l| l.trim_start().starts_with("credrot ")))
        })
        .collect();
    assert_eq!(found.len(), 1, "one step runs credrot");
    found[0].clone()
}

#[test]
fn the_workflow_is_scheduled_assumes_a_role_with_oidc_and_never_overlaps() {
    let workflow = workflow();
    let on = triggers(&workflow);
    let cron = on["schedule"][0]["cron"].as_str().expect("a schedule");
    assert_eq!(cron.split_whitespace().count(), 5, "{cron}");
    assert!(!on["workflow_dispatch"].is_null(), "manual runs too");
    assert_eq!(workflow["permissions"]["id-token"].as_str(), Some("write"));
    let concurrency = &workflow["concurrency"];
    assert!(concurrency["group"].as_str().is_some_and(|g| !g.is_empty()));
    assert_eq!(concurrency["cancel-in-progress"].as_bool(), Some(false));

    let steps = steps(&workflow);
    let aws = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
        })
        .expect("configure-aws-credentials");
    let with = aws["with"].as_mapping().unwrap();
    assert!(with
        .get("role-to-assume")
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("arn:aws:iam::")));
    for stored in ["aws-access-key-id", "aws-secret-access-key"] {
        assert!(
            with.get(stored).is_none(),
            "OIDC, not a stored key: {stored}"
        );
    }
    let credentials_at = steps.iter().position(|s| s == aws).unwrap();
    let rotate_at = steps
        .iter()
        .position(|s| *s == rotate_step(&workflow))
        .unwrap();
    assert!(credentials_at < rotate_at, "credentials before the run");
    // Every command the job runs.
    let text: String = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    assert_no_secret_output(&words, "the workflow");
    assert!(
        !text.contains("set -x"),
        "a traced shell would echo every command"
    );
}

/// `${{ expr }}` in `value`, replaced from `known`; any other expression fails the test.
fn resolve(value: &str, known: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a closed expression") + start;
        let expr = rest[start + 3..end].trim();
        let (_, with) = known
            .iter()
            .find(|(name, _)| *name == expr)
            .unwrap_or_else(|| {
                panic!("the rotate step uses ${{{{ {expr} }}}}, which the test does not know")
            });
        out.push_str(with);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_workflow_rotate_step_runs_on_moto_as_dispatched_and_as_scheduled() {
    let moto = Moto::start();
    let users = ["psk-a", "psk-b"];
    let old = seed_users(&moto, &users);
    let workflow = workflow();
    let step = rotate_step(&workflow);
    let script = step["run"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    // The checked-out repository: services.toml at its root, as the ConfigMap's.
    std::fs::write(dir.path().join("services.toml"), configmap_services_toml()).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_credrot"))
        .parent()
        .unwrap()
        .to_path_buf();
    let run = |dry_run: &str| {
        // GitHub's `run` shell on Linux runners, in the checkout, with the role's
        // credentials in the environment (here moto's admin) and credrot on PATH.
        let mut bash = isolated_process("bash", dir.path());
        bash.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .env("AWS_ACCESS_KEY_ID", &moto.admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("PATH", path_with(&bin))
            // A year on: the keys are due, as on the schedule's day.
            .env("CREDROT_CLOCK_OFFSET", "400d");
        for (name, value) in step["env"].as_mapping().into_iter().flatten() {
            let value = resolve(value.as_str().unwrap(), &[("inputs.dry_run", dry_run)]);
            bash.env(name.as_str().unwrap(), value);
        }
        let out = bash.output().unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // workflow_dispatch with dry_run: the plan, and nothing changes.
    let plan = run("true");
    assert!(plan.contains("psk-a"), "{plan}");
    for (user, key) in users.iter().zip(&old) {
        assert_eq!(moto.keys(user), vec![(key.id.clone(), true)]);
    }
    // The schedule (no inputs): the rotation.
    run("");
    assert_rotated(&moto, &users, &old);
}

/// PATH with `bin` first, as `cargo install` puts credrot on the runner's PATH.
fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut dirs = vec![bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&tool_path()));
    std::env::join_paths(dirs).unwrap()
}
