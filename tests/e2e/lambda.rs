//! credrot as a Lambda function, through cargo-lambda's emulator of the Lambda Runtime API
//! (`cargo lambda watch --only-lambda-apis`), which runs no build: the prebuilt credrot is
//! started as `bootstrap` is on Lambda (no arguments, the runtime's variables set), and
//! events are sent with `cargo lambda invoke` and with the invoke API it calls.

use crate::harness::{assert_no_secret, free_port, key_of, read_json, test_tool, Key, Moto};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PATH: &str = "/Lambda/";

/// cargo-lambda's runtime emulator and credrot started under it, both stopped on drop.
pub(super) struct LambdaRig {
    port: u16,
    watch: Child,
    function: Child,
    function_log: tempfile::NamedTempFile,
    _manifest: tempfile::TempDir,
}

impl LambdaRig {
    /// Start the emulator and credrot (signing as moto's admin, config `dir/services.toml`).
    pub(super) fn start(moto: &Moto, dir: &Path) -> LambdaRig {
        // `cargo lambda watch` reads a Cargo manifest even when it builds nothing: an empty
        // package keeps it from looking at (or locking) this repository.
        let manifest = tempfile::tempdir().unwrap();
        std::fs::create_dir(manifest.path().join("src")).unwrap();
        std::fs::write(
            manifest.path().join("Cargo.toml"),
            "[package]\nname = \"function\"\nversion = \"0.0.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(manifest.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        let port = free_port();
        let watch = Command::new(test_tool("cargo-lambda"))
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
            .args(["-P", &port.to_string()])
            .current_dir(manifest.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cargo-lambda (pip install -r requirements-test.txt)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let function_log = tempfile::NamedTempFile::new().unwrap();
        // As Lambda starts `bootstrap`: no arguments, the runtime's variables set.
        let function = moto
            .credrot_process(dir)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("CREDROT_CONFIG", dir.join("services.toml"))
            .stdin(Stdio::null())
            .stdout(function_log.reopen().unwrap())
            .stderr(function_log.reopen().unwrap())
            .spawn()
            .unwrap();
        LambdaRig {
            port,
            watch,
            function,
            function_log,
            _manifest: manifest,
        }
    }

    /// What the function wrote (its logs and its children's).
    fn log(&self) -> String {
        std::fs::read_to_string(self.function_log.path()).unwrap()
    }

    /// `cargo lambda invoke` with `event`: its exit status, stdout and stderr.
    fn cargo_invoke(&self, event: &Value) -> std::process::Output {
        Command::new(test_tool("cargo-lambda"))
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .args([
                "--data-ascii",
                &event.to_string(),
                "--output-format",
                "json",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// POST `event` to the invoke API `cargo lambda invoke` calls: the response document,
    /// or the function error's type and the JSON document of its message.
    pub(super) fn invoke(&self, event: &Value) -> Result<Value, (String, Value)> {
        let body = event.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(600)))
            .unwrap();
        write!(
            stream,
            "POST /2015-03-31/functions/_/invocations HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(
            !head.to_ascii_lowercase().contains("chunked"),
            "expected a sized body: {head}"
        );
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let document: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{e}: {body}\nfunction log:\n{}", self.log()));
        if status == 200 {
            return Ok(document);
        }
        let error_type = document["errorType"].as_str().unwrap().to_string();
        let message: Value = serde_json::from_str(document["errorMessage"].as_str().unwrap())
            .expect("the error message is a JSON document");
        Err((error_type, message))
    }

    fn running(&mut self) -> bool {
        self.function.try_wait().unwrap().is_none()
    }
}

impl Drop for LambdaRig {
    fn drop(&mut self) {
        let _ = self.function.kill();
        let _ = self.function.wait();
        let _ = self.watch.kill();
        let _ = self.watch.wait();
    }
}

/// Users `names` under [`PATH`], each with one key stored in SSM under /lambda/USER.
fn users_in_ssm(moto: &Moto, dir: &Path, names: &[&str]) -> Vec<Key> {
    std::fs::write(
        dir.join("services.toml"),
        "[paths.Lambda]\nstores = [{ kind = \"ssm\", prefix = \"/lambda/{user}\" }]\n",
    )
    .unwrap();
    names
        .iter()
        .map(|user| {
            moto.create_user(user, PATH);
            let key = moto.create_key(user, true);
            moto.put_ssm_key(&format!("/lambda/{user}"), &key);
            key
        })
        .collect()
}

#[test]
fn an_event_rotates_the_users_under_a_path_in_iam_and_their_stores() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let users = ["lambda-a", "lambda-b"];
    let old = users_in_ssm(&moto, dir.path(), &users);
    let rig = LambdaRig::start(&moto, dir.path());

    // A dry run first: the plan, and nothing changes.
    let plan = rig
        .invoke(&json!({"command": "rotate", "path": "Lambda", "dry_run": true, "force": true}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", rig.log()));
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["planned"], 2, "{plan}");
    for (user, key) in users.iter().zip(&old) {
        assert_eq!(moto.keys(user), vec![(key.id.clone(), true)]);
    }

    // The rotation, sent with `cargo lambda invoke`: its stdout is the function's response.
    let out = rig.cargo_invoke(&json!({"command": "rotate", "path": "Lambda", "force": true}));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        rig.log()
    );
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["rotated"], 2, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let mut new_keys = Vec::new();
    for (user, key) in users.iter().zip(&old) {
        let (new, _) = moto.ssm_key(&format!("/lambda/{user}")).unwrap();
        assert_ne!(new.id, key.id, "{user}: SSM holds a new key");
        moto.assert_key_works_for(&new, user);
        let ids: Vec<String> = moto.keys(user).into_iter().map(|k| k.0).collect();
        assert!(
            ids.contains(&new.id) && ids.contains(&key.id),
            "{user}: CURRENT and LAST in IAM: {ids:?}"
        );
        new_keys.push(new);
    }
    let keys: Vec<&Key> = new_keys.iter().chain(&old).collect();
    assert_no_secret(&stdout, &keys, "the function's response");
    assert_no_secret(&rig.log(), &keys, "the function's logs");

    // status through the same function: the report is the response; a gate that trips is
    // a function error carrying the report.
    let report = rig
        .invoke(&json!({"command": "status", "path": "Lambda"}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", rig.log()));
    assert!(report.to_string().contains("lambda-a"), "{report}");
    let (error_type, gate) = rig
        .invoke(&json!({"command": "status", "path": "Lambda", "fail_on": "ok"}))
        .unwrap_err();
    assert_eq!(error_type, "credrot.Gate", "{gate}");
    assert_eq!(gate["exit_code"], 3, "{gate}");
    assert!(gate["summary"].to_string().contains("lambda-b"), "{gate}");
}

#[test]
fn a_bad_event_changes_nothing_and_answers_an_error_naming_the_field() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let old = users_in_ssm(&moto, dir.path(), &["lambda-a"]);
    let mut rig = LambdaRig::start(&moto, dir.path());

    for (event, named) in [
        (
            json!({"command": "rotate", "path": "Lambda", "force": true, "dryrun": false}),
            "unknown field `dryrun` for command rotate",
        ),
        (
            json!({"command": "rotate", "path": "Lambda", "force": true, "print_secrets": true}),
            "field `print_secrets` is refused in Lambda",
        ),
        (
            json!({"command": "rotate", "path": "Lambda", "force": true, "outfile": "/tmp/k.json"}),
            "field `outfile` is refused in Lambda",
        ),
        (
            json!({"command": "rotate", "path": "Lambda", "force": true, "concurrency": 0}),
            "--concurrency",
        ),
        (json!({"command": "rotate"}), "field `path` is required"),
    ] {
        let (error_type, document) = rig.invoke(&event).unwrap_err();
        assert_eq!(error_type, "credrot.Usage", "{document}");
        assert_eq!(document["exit_code"], 2, "{document}");
        let error = document["error"].as_str().unwrap();
        assert!(error.contains(named), "{event}: {error}");
        assert_eq!(moto.keys("lambda-a"), vec![(old[0].id.clone(), true)]);
        assert_eq!(moto.ssm_key("/lambda/lambda-a").unwrap().0, old[0]);
    }
    // `cargo lambda invoke` sees a function error too.
    let out = rig.cargo_invoke(&json!({"command": "rotate", "path": "Lambda", "Force": true}));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("credrot.Usage"), "{stderr}");
    assert!(stderr.contains("unknown field `Force`"), "{stderr}");
    // The function lives on and serves the next event.
    assert!(rig.running(), "{}", rig.log());
    assert_eq!(moto.keys("lambda-a"), vec![(old[0].id.clone(), true)]);
    rig.invoke(&json!({"command": "status", "path": "Lambda"}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", rig.log()));
}

#[test]
fn a_failed_rotation_is_a_function_error_carrying_the_summary() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.toml"),
        "[paths.Lambda]\nstores = [{ kind = \"file\", path = \"keys/{user}.json\" }]\n",
    )
    .unwrap();
    moto.create_user("good-user", PATH);
    moto.create_user("bad-user", PATH);
    let bad_key = moto.create_key("bad-user", true);
    // A directory where bad-user's key file should be: its store cannot be read.
    std::fs::create_dir_all(dir.path().join("keys/bad-user.json")).unwrap();
    let rig = LambdaRig::start(&moto, dir.path());

    let (error_type, document) = rig
        .invoke(&json!({"command": "rotate", "path": "Lambda"}))
        .unwrap_err();
    assert_eq!(error_type, "credrot.Failed", "{document}");
    assert_eq!(document["exit_code"], 1, "{document}");
    let error = document["error"].as_str().unwrap();
    assert!(error.contains("1 of 2 users failed"), "{error}");
    let summary = &document["summary"];
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["rotated"], 1, "{summary}");
    assert!(
        summary.to_string().contains("not a regular file"),
        "{summary}"
    );
    // The good user was rotated, the bad one left as it was.
    let good = key_of(&read_json(&dir.path().join("keys/good-user.json")));
    moto.assert_key_works_for(&good, "good-user");
    assert_eq!(moto.keys("bad-user"), vec![(bad_key.id.clone(), true)]);
    assert_no_secret(&document.to_string(), &[&good], "the function error");
}

/// An `update` event rotates one service; the invocation's deadline
/// (`Lambda-Runtime-Deadline-Ms`, which `cargo lambda watch` sets from its timeout) becomes
/// the run's `--time-limit` unless the event gives its own.
#[test]
fn an_update_event_rotates_one_service_within_the_invocations_deadline() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    moto.create_user("lambda-svc", PATH);
    let old = moto.create_key("lambda-svc", true);
    moto.put_ssm_key("/lambda/svc", &old);
    std::fs::write(
        dir.path().join("services.toml"),
        "[services.svc]\niam_user = \"lambda-svc\"\nstores = [{ kind = \"ssm\", prefix = \"/lambda/svc\" }]\n",
    )
    .unwrap();
    let rig = LambdaRig::start(&moto, dir.path());

    let summary = rig
        .invoke(&json!({"command": "update", "service": "svc"}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", rig.log()));
    assert_eq!(summary["rotated"], 1, "{summary}");
    let (new, _) = moto.ssm_key("/lambda/svc").unwrap();
    assert_ne!(new.id, old.id);
    moto.assert_key_works_for(&new, "lambda-svc");
    let log = rig.log();
    let run = log
        .lines()
        .find(|l| l.contains("running credrot") && l.contains("update"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(run.contains("--time-limit "), "{run}");

    // The event's own limit is used as given.
    rig.invoke(&json!({"command": "update", "service": "svc", "time_limit": "5m"}))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", rig.log()));
    assert!(rig.log().contains("--time-limit 5m"), "{}", rig.log());
}

/// `scripts/package-lambda`: the zip the Terraform module deploys holds an executable
/// `bootstrap` that is this credrot and the configuration given; a configuration that does
/// not load packages nothing (exit 2).
#[test]
fn the_packaging_script_zips_an_executable_bootstrap_and_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[paths.Lambda]\nstores = [{ kind = \"ssm\", prefix = \"/lambda/{user}\" }]\n";
    std::fs::write(dir.path().join("services.toml"), config).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-lambda");
    let package = |config: &str, out: &str| {
        Command::new("bash")
            .arg(&script)
            .args(["--binary", env!("CARGO_BIN_EXE_credrot")])
            .args(["--config", config, "--out", out])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = package("services.toml", "fn.zip");
    assert!(out.status.success(), "{out:?}");
    // Python's zipfile reads it back: names, modes and contents.
    let listing = Command::new("python3")
        .args(["-c", "import sys, zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename, oct(i.external_attr >> 16 & 0o777))"])
        .arg(dir.path().join("fn.zip"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "bootstrap 0o755\nservices.toml 0o644\n"
    );
    let unpacked = dir.path().join("unpacked");
    let extract = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(dir.path().join("fn.zip"))
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(extract.success());
    assert_eq!(
        std::fs::read_to_string(unpacked.join("services.toml")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read(unpacked.join("bootstrap")).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_credrot")).unwrap(),
        "bootstrap is credrot"
    );

    std::fs::write(
        dir.path().join("bad.toml"),
        "[paths.x]\nstores = [{ kind = \"nope\" }]\n",
    )
    .unwrap();
    let out = package("bad.toml", "bad.zip");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:2:") && stderr.contains("nothing was packaged"),
        "{stderr}"
    );
    assert!(!dir.path().join("bad.zip").exists());
}
