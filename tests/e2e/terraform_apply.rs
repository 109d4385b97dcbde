//! `credrot update SERVICE --terraform-apply`: a full rotation of a Terraform-sourced
//! service. The old key is retired by the usual rules, `terraform state rm` makes Terraform
//! forget the current key (it stays in IAM and the stores), `terraform apply -target` makes
//! the new one, and credrot hands that on. The main test runs the real terraform with the
//! real AWS provider against moto when both are on the machine (the provider from a local
//! mirror, no download: /opt/tf-plugins or CREDROT_TF_PLUGIN_DIR); failures and crashes run
//! tests/fake-terraform/terraform, which can fail a chosen call and which creates its keys
//! in moto through the AWS API.

use crate::harness::{key_of, read_json, Key, Moto, Tripwire};
use std::path::{Path, PathBuf};
use std::process::Output;

const ADDRESS: &str = "aws_iam_access_key.redis";

pub(crate) fn fake_terraform() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fake-terraform/terraform"
    ))
}

/// The real terraform and a local mirror of the AWS provider, if this machine has both.
fn real_terraform() -> Option<(PathBuf, PathBuf)> {
    let bin = which::which("terraform").ok()?;
    let mirror = std::env::var_os("CREDROT_TF_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tf-plugins"));
    mirror
        .join("registry.terraform.io/hashicorp/aws")
        .is_dir()
        .then_some((bin, mirror))
}

/// A Terraform project for service `redis` (user redis-backup, one file store), with the
/// key made by a first `terraform apply`.
pub(crate) struct Project {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The fake's call log (fake only).
    pub(crate) log: PathBuf,
}

const SERVICE: &str = "[services.redis]\niam_user = \"redis-backup\"\nsource = \"terraform\"\nterraform_dir = \"tf\"\noutput_prefix = \"redis\"\nterraform_resource = \"aws_iam_access_key.redis\"\nrotate_after = \"30d\"\nstores = [{ kind = \"file\", path = \"redis.json\" }]\n";

impl Project {
    pub(crate) fn new(moto: &Moto, real: Option<(PathBuf, PathBuf)>, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("services.toml"),
            format!("{SERVICE}{extra}"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("tf")).unwrap();
        // Terraform's JSON syntax: the real terraform and the fake read the same file.
        let config = serde_json::json!({
            "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws"}}},
            "provider": {"aws": {
                "region": crate::harness::REGION,
                "skip_credentials_validation": true,
                "skip_requesting_account_id": true,
                "skip_metadata_api_check": true
            }},
            "resource": {"aws_iam_access_key": {"redis": {"user": "redis-backup"}}},
            "output": {
                "redis_access_key_id": {"value": "${aws_iam_access_key.redis.id}"},
                "redis_secret_access_key": {"value": "${aws_iam_access_key.redis.secret}", "sensitive": true}
            }
        });
        std::fs::write(dir.path().join("tf/main.tf.json"), config.to_string()).unwrap();
        moto.create_user("redis-backup", "/");
        let log = dir.path().join("terraform-calls.jsonl");
        let project = match real {
            Some((bin, mirror)) => {
                eprintln!(
                    "running the real terraform with the AWS provider from {}",
                    mirror.display()
                );
                let project = Project { dir, bin, log };
                let plugins = format!("-plugin-dir={}", mirror.display());
                project.terraform_ok(moto, &["init", "-input=false", "-no-color", &plugins]);
                project
            }
            None => Project {
                dir,
                bin: fake_terraform(),
                log,
            },
        };
        let target = format!("-target={ADDRESS}");
        project.terraform_ok(moto, &["apply", &target, "-auto-approve", "-input=false"]);
        project
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// terraform -chdir=tf, signing as the moto admin.
    fn terraform(&self, moto: &Moto) -> std::process::Command {
        let mut cmd = crate::harness::isolated_process(&self.bin, self.path());
        cmd.arg("-chdir=tf")
            .env("AWS_ACCESS_KEY_ID", &moto.admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &moto.admin.secret)
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1");
        cmd
    }

    /// Run terraform with `args`, which must succeed.
    fn terraform_ok(&self, moto: &Moto, args: &[&str]) {
        let out = self.terraform(moto).args(args).output().unwrap();
        assert!(out.status.success(), "terraform {args:?}: {}", text(&out));
    }

    /// The key Terraform's outputs name.
    pub(crate) fn outputs(&self, moto: &Moto) -> Key {
        let out = self
            .terraform(moto)
            .args(["output", "-json"])
            .output()
            .unwrap();
        let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Key {
            id: outputs["redis_access_key_id"]["value"]
                .as_str()
                .unwrap()
                .into(),
            secret: outputs["redis_secret_access_key"]["value"]
                .as_str()
                .unwrap()
                .into(),
        }
    }

    pub(crate) fn stored(&self) -> Key {
        key_of(&read_json(&self.path().join("redis.json")))
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.path().join("tf/terraform.tfstate")).unwrap()
    }

    /// `credrot update redis --terraform-apply ARGS` with `env`.
    fn update(&self, moto: &Moto, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = moto.credrot_process(self.path());
        cmd.args(["update", "redis", "--terraform-apply", "--terraform-bin"])
            .arg(&self.bin)
            .args(args)
            .env("CHECKPOINT_DISABLE", "1")
            .env("FAKE_TERRAFORM_LOG", &self.log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(out: &Output, keys: &[&Key]) {
    let all = text(out);
    for key in keys {
        assert!(!all.contains(&key.secret), "a secret leaked: {all}");
    }
}

/// Every terraform call credrot made had TF_IN_AUTOMATION=1 and no secret in argv.
fn assert_calls_clean(project: &Project, keys: &[&Key]) {
    let Ok(log) = std::fs::read_to_string(&project.log) else {
        return; // the real terraform keeps no log
    };
    for line in log.lines() {
        let call: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(call["TF_IN_AUTOMATION"], "1", "{line}");
        for key in keys {
            assert!(!line.contains(&key.secret), "a secret in argv: {line}");
        }
        assert!(
            !line.contains("-replace"),
            "apply -replace is never used: {line}"
        );
    }
}

pub(crate) fn calls(project: &Project) -> Vec<String> {
    std::fs::read_to_string(&project.log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let call: serde_json::Value = serde_json::from_str(l).unwrap();
            call["argv"]
                .as_array()
                .unwrap()
                .iter()
                .skip(1)
                .map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

pub(crate) fn ids(keys: &[&Key]) -> Vec<(String, bool)> {
    let mut ids: Vec<(String, bool)> = keys.iter().map(|k| (k.id.clone(), true)).collect();
    ids.sort();
    ids
}

#[test]
fn terraform_apply_rotates_keeps_last_and_retires_it_next_time() {
    let moto = Moto::start();
    let real = real_terraform();
    if real.is_none() {
        eprintln!("terraform or a local mirror of its AWS provider is missing: using tests/fake-terraform/terraform");
    }
    let project = Project::new(&moto, real, "");
    let k0 = project.outputs(&moto);

    // The stores lack Terraform's key: it is handed on, and nothing else happens.
    let out = project.update(&moto, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(project.stored(), k0);
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0]));

    // The stores hold it and the rotation is forced: Terraform makes the next key.
    let out = project.update(&moto, &["--force"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rotated"),
        "{}",
        text(&out)
    );
    let k1 = project.outputs(&moto);
    assert_ne!(k1, k0);
    assert_eq!(project.stored(), k1);
    moto.assert_key_works_for(&k1, "redis-backup");
    // The old key stays as LAST, valid, for jobs in flight.
    moto.assert_key_works_for(&k0, "redis-backup");
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0, &k1]));
    assert!(project.state().contains(&k1.id));

    // Next time LAST (not in any store) is retired first, to make room.
    let out = project.update(&moto, &["--force"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let k2 = project.outputs(&moto);
    assert_eq!(project.stored(), k2);
    assert_eq!(moto.keys("redis-backup"), ids(&[&k1, &k2]));
    assert!(moto.whoami(&k0).is_none(), "LAST was retired");
    moto.assert_key_works_for(&k1, "redis-backup");
    assert_no_secret(&out, &[&k0, &k1, &k2]);
    assert_calls_clean(&project, &[&k0, &k1, &k2]);

    // Not due and not forced: fresh, and Terraform is not asked to make a key.
    let out = project.update(&moto, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fresh"),
        "{}",
        text(&out)
    );
    assert_eq!(project.outputs(&moto), k2);
}

#[test]
fn a_dry_run_plans_with_terraform_and_changes_nothing() {
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());
    let state = project.state();
    std::fs::remove_file(&project.log).unwrap();

    let out = project.update(&moto, &["--force", "--dry-run"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("planned"), "{}", text(&out));
    assert_eq!(
        project.state(),
        state,
        "a dry run changed Terraform's state"
    );
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0]));
    assert_eq!(project.stored(), k0);
    let calls = calls(&project);
    assert!(
        calls
            .iter()
            .any(|c| c == "plan -target=aws_iam_access_key.redis -input=false -no-color"),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("apply") || c.starts_with("state rm")),
        "{calls:?}"
    );
    let json = moto
        .credrot_process(project.path())
        .args([
            "--output",
            "json",
            "update",
            "redis",
            "--terraform-apply",
            "--force",
            "--dry-run",
            "--terraform-bin",
        ])
        .arg(&project.bin)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(
        json.contains("would create a new key: terraform state rm aws_iam_access_key.redis, then terraform apply -target=aws_iam_access_key.redis"),
        "{json}"
    );
    assert!(
        json.contains("checked terraform plan -target=aws_iam_access_key.redis"),
        "{json}"
    );
}

#[test]
fn a_failed_apply_leaves_the_stored_key_and_the_next_run_makes_the_key() {
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());

    let out = project.update(&moto, &["--force"], &[("FAKE_TERRAFORM_FAIL", "apply")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("injected failure of `terraform apply`"),
        "{}",
        text(&out)
    );
    assert_eq!(project.stored(), k0);
    moto.assert_key_works_for(&k0, "redis-backup");
    assert!(
        !project.state().contains("\"aws_iam_access_key\""),
        "state rm ran"
    );

    // Not forced: the resource missing from the state is what makes the key due.
    let out = project.update(&moto, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not hold terraform_resource"),
        "{}",
        text(&out)
    );
    let k1 = project.outputs(&moto);
    assert_ne!(k1, k0);
    assert_eq!(project.stored(), k1);
    moto.assert_key_works_for(&k1, "redis-backup");
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0, &k1]));
}

#[test]
fn a_wrong_terraform_resource_makes_no_key_and_says_so() {
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());
    let config = std::fs::read_to_string(project.path().join("services.toml")).unwrap();
    std::fs::write(
        project.path().join("services.toml"),
        config.replace("aws_iam_access_key.redis\"", "aws_iam_access_key.valkey\""),
    )
    .unwrap();
    let out = project.update(&moto, &["--force"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("made no new key"), "{}", text(&out));
    assert_eq!(project.stored(), k0);
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0]));
}

#[test]
fn terraform_apply_needs_a_terraform_service_with_terraform_resource() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        format!(
            "{}[services.pg]\niam_user = \"pg\"\nstores = [{{ kind = \"file\", path = \"pg.json\" }}]\n",
            SERVICE.replace("terraform_resource = \"aws_iam_access_key.redis\"\n", "")
        ),
    )
    .unwrap();
    let tripwire = Tripwire::new();
    for (service, wanted) in [
        (
            "redis",
            "has no terraform_resource, which --terraform-apply needs",
        ),
        (
            "pg",
            "--terraform-apply is for services with source = \"terraform\"",
        ),
    ] {
        let out = crate::harness::credrot_command(dir.path())
            .args([
                "update",
                service,
                "--terraform-apply",
                "--endpoint-url",
                &tripwire.endpoint,
            ])
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(wanted), "{stderr}");
    }
    assert!(!tripwire.tripped(), "an AWS call before the usage error");
}

/// SIGKILL after `state rm` and after `apply`: the stores keep a working key, and the
/// next run, with default flags, converges.
#[cfg(feature = "failpoints")]
#[test]
fn a_run_killed_after_state_rm_or_apply_converges_on_the_next_run() {
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());

    let out = project.update(
        &moto,
        &["--force"],
        &[("FAILPOINTS", "after-terraform-state-rm=return")],
    );
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    assert_eq!(project.stored(), k0);
    moto.assert_key_works_for(&k0, "redis-backup");
    assert_eq!(project.outputs(&moto), k0, "state rm keeps the outputs");
    let out = project.update(&moto, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let k1 = project.outputs(&moto);
    assert_ne!(k1, k0);
    assert_eq!(project.stored(), k1);
    moto.assert_key_works_for(&k1, "redis-backup");
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0, &k1]));

    let out = project.update(
        &moto,
        &["--force"],
        &[("FAILPOINTS", "after-terraform-apply=return")],
    );
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    let k2 = project.outputs(&moto);
    assert_ne!(k2, k1);
    // Terraform made k2; the stores still hand out k1, which works.
    assert_eq!(project.stored(), k1);
    moto.assert_key_works_for(&k1, "redis-backup");
    let out = project.update(&moto, &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(project.stored(), k2);
    moto.assert_key_works_for(&k2, "redis-backup");
    moto.assert_key_works_for(&k1, "redis-backup");
    assert_eq!(moto.keys("redis-backup"), ids(&[&k1, &k2]));
    // Converged: nothing left to do.
    let out = project.update(&moto, &[], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fresh"),
        "{}",
        text(&out)
    );
    assert_calls_clean(&project, &[&k0, &k1, &k2]);
}

#[test]
fn staged_mode_retires_last_by_its_rules_before_terraform_makes_a_key() {
    let moto = Moto::start();
    let project = Project::new(
        &moto,
        None,
        "mode = \"staged\"\nquiet_period = \"1s\"\ngrace = \"1h\"\n",
    );
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());
    let out = project.update(&moto, &["--force"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let k1 = project.outputs(&moto);
    assert_eq!(project.stored(), k1);
    // Tagged like the engine's own new keys: uses after this are its consumers'.
    let tags = moto
        .rt
        .block_on(moto.iam().list_user_tags().user_name("redis-backup").send())
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == format!("credrot:verified:{}", k1.id)),
        "{tags:?}"
    );

    // k1 has not been used by its consumers: k0 (LAST) may still be in use, so it stays
    // Active, and Terraform is not asked for a key.
    std::fs::remove_file(&project.log).unwrap();
    let out = project.update(&moto, &["--force"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("retiring"), "{}", text(&out));
    assert_eq!(moto.keys("redis-backup"), ids(&[&k0, &k1]));
    assert_eq!(project.outputs(&moto), k1);
    assert!(
        !calls(&project)
            .iter()
            .any(|c| c.starts_with("apply") || c.starts_with("state rm")),
        "{:?}",
        calls(&project)
    );
}

#[test]
fn a_new_key_that_fails_verification_is_kept_for_terraform_and_the_stores_restored() {
    let moto = Moto::start();
    let project = Project::new(&moto, None, "");
    let k0 = project.outputs(&moto);
    assert!(project.update(&moto, &[], &[]).status.success());
    // Terraform now makes the key for another user: it cannot pass verification.
    moto.create_user("someone-else", "/");
    let config = project.path().join("tf/main.tf.json");
    let hcl = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, hcl.replace("\"redis-backup\"", "\"someone-else\"")).unwrap();

    let out = project.update(&moto, &["--force", "--verify-timeout", "2s"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let made = project.outputs(&moto);
    assert!(
        text(&out).contains(&format!(
            "rolled back: stores restored; new key {} kept: Terraform's state holds it",
            made.id
        )),
        "{}",
        text(&out)
    );
    assert_eq!(project.stored(), k0);
    moto.assert_key_works_for(&k0, "redis-backup");
    assert_eq!(moto.keys("someone-else"), ids(&[&made]), "kept in IAM");
}
