//! The end-to-end harness: a real moto server per test, on a free loopback port, with IAM
//! authentication on, and helpers to seed users and to run the built credrot binary.

use assert_cmd::Command;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_iam::types::StatusType;
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The moto requests allowed before authentication is enforced: exactly the bootstrap
/// (create the admin user, give it an allow-all policy, create its key).
const BOOTSTRAP_REQUESTS: u32 = 3;

/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// An access key pair used by the tests themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

/// A running moto server, with an admin identity, stopped on drop.
pub struct Moto {
    /// `None` only while dropping.
    server: Option<Server>,
    pub endpoint: String,
    pub admin: Key,
    pub rt: tokio::runtime::Runtime,
}

/// One moto_server process. Starting one costs seconds of CPU (Python imports all of moto),
/// so a test's server goes back to [`IDLE`] when the test ends and the next test resets it
/// (`/moto-api/reset`: every account's resources; `/moto-api/reset-auth`: the bootstrap
/// window) instead of starting its own. It runs under `sh`, which stops it when its stdin
/// closes: when the test binary exits, however it exits, its servers go with it.
struct Server {
    guard: Child,
    port: u16,
    _log: tempfile::NamedTempFile,
}

/// Servers no test is using, reset before their next use.
static IDLE: std::sync::Mutex<Vec<Server>> = std::sync::Mutex::new(Vec::new());

impl Server {
    fn spawn() -> Server {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let override_program = std::env::var("MOTO_SERVER").ok();
        let program = override_program
            .clone()
            .unwrap_or_else(|| test_tool("moto_server"));
        let on_path = || {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|dir| dir.join(&program).is_file())
        };
        if !Path::new(&program).is_file() && !on_path() {
            let e = std::io::Error::from(std::io::ErrorKind::NotFound);
            missing_emulator(&program, &e);
        }
        // moto_server itself is found above (it says that moto is installed); it is run
        // through tests/support/moto_server.py, which makes IAM's key quota atomic as in AWS.
        let argv: Vec<String> = match override_program {
            Some(program) => vec![program],
            None => vec![
                test_tool("python3"),
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/support/moto_server.py")
                    .display()
                    .to_string(),
            ],
        };
        let guard = std::process::Command::new("sh")
            .args([
                "-c",
                r#""$@" -H 127.0.0.1 -p "$0" & server=$!; cat >/dev/null; kill "$server"; wait "$server""#,
            ])
            .arg(port.to_string())
            .args(&argv)
            // Authentication is on from the first request; each test sets its own
            // bootstrap window through reset-auth.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
            .stdin(Stdio::piped())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("sh starts moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            guard,
            port,
            _log: log,
        }
    }

    /// Forget everything earlier tests made, and allow `bootstrap` unauthenticated
    /// requests (`None`: authentication off). False if the server does not answer right.
    fn reset(&self, bootstrap: Option<u32>) -> bool {
        let window = bootstrap.map_or("inf".to_string(), |n| n.to_string());
        self.post("/moto-api/reset", "") && self.post("/moto-api/reset-auth", &window)
    }

    fn post(&self, path: &str, body: &str) -> bool {
        use std::io::{Read, Write};
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut answer = String::new();
        conn.write_all(request.as_bytes()).is_ok()
            && conn.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin ends `cat`; the shell then stops the server and waits for it.
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Without the emulator no end-to-end test can run: say so once, on one line, and end the
/// test binary instead of letting every test panic with the same message.
fn missing_emulator(program: &str, error: &std::io::Error) -> ! {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to the process's stderr: the test harness captures `eprintln!`, and the
        // exit below would swallow it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "cannot start {program} ({error}): run `bash scripts/test`, which installs the test requirements, or `pip install -r requirements-test.txt`"
        );
    });
    std::process::exit(1)
}

impl Moto {
    /// Start moto and bootstrap the admin identity; after this every request is checked.
    pub fn start() -> Moto {
        Self::start_with_bootstrap(Some(BOOTSTRAP_REQUESTS))
    }

    /// Start moto with `extra` unauthenticated requests after the admin's: for a test that
    /// must create what authentication would refuse (a role in another account, through
    /// `x-moto-account-id`). The test must make exactly `extra` requests before any other.
    pub fn start_with_extra_bootstrap(extra: u32) -> Moto {
        Self::start_with_bootstrap(Some(BOOTSTRAP_REQUESTS + extra))
    }

    /// Start moto with IAM authentication off. Only for what moto cannot do with it on:
    /// its STS session keys are fixed examples that it refuses itself under authentication.
    pub fn start_without_auth() -> Moto {
        Self::start_with_bootstrap(None)
    }

    fn start_with_bootstrap(bootstrap: Option<u32>) -> Moto {
        let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let server = match idle {
            Some(server) if server.reset(bootstrap) => server,
            _ => {
                let server = Server::spawn();
                assert!(
                    server.reset(bootstrap),
                    "moto_server on port {} did not take its reset",
                    server.port
                );
                server
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut moto = Moto {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            server: Some(server),
            admin: Key {
                id: "bootstrap".into(),
                secret: "bootstrap".into(),
            },
            rt,
        };
        moto.admin = moto.bootstrap_admin();
        moto
    }

    fn bootstrap_admin(&self) -> Key {
        let iam = aws_sdk_iam::Client::new(&self.sdk_config(&self.admin));
        self.rt.block_on(async {
            iam.create_user().user_name("credrot-admin").send().await.unwrap();
            iam.put_user_policy()
                .user_name("credrot-admin")
                .policy_name("allow-all")
                .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
                .send()
                .await
                .unwrap();
            let key = iam.create_access_key().user_name("credrot-admin").send().await.unwrap();
            let key = key.access_key().unwrap();
            Key {
                id: key.access_key_id().into(),
                secret: key.secret_access_key().into(),
            }
        })
    }

    /// SDK configuration signing with `key`, pointed at this server.
    pub fn sdk_config(&self, key: &Key) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(credrot::aws::http_client())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    &key.id,
                    &key.secret,
                    None,
                    None,
                    "test",
                )),
            )
            .build()
    }

    /// IAM as the admin.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk_config(&self.admin))
    }

    /// Create `user` under `path`.
    pub fn create_user(&self, user: &str, path: &str) {
        self.rt
            .block_on(self.iam().create_user().user_name(user).path(path).send())
            .unwrap();
    }

    /// A fresh emulator with IAM user `user` (path `/`) and one Active key, the key.
    pub fn start_with_user(user: &str) -> (Moto, Key) {
        let moto = Moto::start();
        moto.create_user(user, "/");
        let key = moto.create_key(user, true);
        (moto, key)
    }

    /// Allow `user` the IAM/STS `actions` (an inline policy): under authentication a new
    /// user may do nothing.
    pub fn allow(&self, user: &str, actions: &[&str]) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        });
        self.rt
            .block_on(
                self.iam()
                    .put_user_policy()
                    .user_name(user)
                    .policy_name("credrot-test")
                    .policy_document(policy.to_string())
                    .send(),
            )
            .unwrap();
    }

    /// Create a key for `user`, optionally deactivated.
    pub fn create_key(&self, user: &str, active: bool) -> Key {
        let iam = self.iam();
        self.rt.block_on(async {
            let out = iam
                .create_access_key()
                .user_name(user)
                .send()
                .await
                .unwrap();
            let key = out.access_key().unwrap();
            if !active {
                iam.update_access_key()
                    .user_name(user)
                    .access_key_id(key.access_key_id())
                    .status(StatusType::Inactive)
                    .send()
                    .await
                    .unwrap();
            }
            Key {
                id: key.access_key_id().into(),
                secret: key.secret_access_key().into(),
            }
        })
    }

    /// The user's keys as (id, active), sorted by id.
    pub fn keys(&self, user: &str) -> Vec<(String, bool)> {
        let out = self
            .rt
            .block_on(self.iam().list_access_keys().user_name(user).send())
            .unwrap();
        let mut keys: Vec<(String, bool)> = out
            .access_key_metadata()
            .iter()
            .map(|k| {
                (
                    k.access_key_id().unwrap().to_string(),
                    k.status() == Some(&StatusType::Active),
                )
            })
            .collect();
        keys.sort();
        keys
    }

    /// The ARN `key` authenticates as through STS, or None when it is rejected.
    pub fn whoami(&self, key: &Key) -> Option<String> {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config(key));
        self.rt
            .block_on(sts.get_caller_identity().send())
            .ok()
            .and_then(|o| o.arn().map(str::to_string))
    }

    /// Assert that `key` works and belongs to `user`.
    pub fn assert_key_works_for(&self, key: &Key, user: &str) {
        let arn = self
            .whoami(key)
            .unwrap_or_else(|| panic!("key {} is rejected by STS", key.id));
        assert!(
            arn.ends_with(&format!("/{user}")),
            "key {} is {arn}, not {user}",
            key.id
        );
    }

    /// Create `user` with an inline policy allowing `actions` (and nothing else), and a key.
    pub fn create_identity(&self, user: &str, actions: &[&str]) -> Key {
        self.create_user(user, "/");
        self.allow(user, actions);
        self.create_key(user, true)
    }

    /// SSM as the admin.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk_config(&self.admin))
    }

    /// Secrets Manager as the admin.
    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config(&self.admin))
    }

    /// Seed the SSM store under `prefix` with `key`.
    pub fn put_ssm_key(&self, prefix: &str, key: &Key) {
        let ssm = self.ssm();
        self.rt.block_on(async {
            for (name, value) in [
                ("access_key_id", &key.id),
                ("secret_access_key", &key.secret),
            ] {
                ssm.put_parameter()
                    .name(format!("{prefix}/{name}"))
                    .value(value)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .overwrite(true)
                    .send()
                    .await
                    .unwrap();
            }
        });
    }

    /// The key in the SSM store under `prefix`, with the two parameters' versions.
    pub fn ssm_key(&self, prefix: &str) -> Option<(Key, [i64; 2])> {
        let out = self
            .rt
            .block_on(
                self.ssm()
                    .get_parameters()
                    .names(format!("{prefix}/access_key_id"))
                    .names(format!("{prefix}/secret_access_key"))
                    .with_decryption(true)
                    .send(),
            )
            .unwrap();
        let get = |name: &str| {
            out.parameters()
                .iter()
                .find(|p| p.name() == Some(&format!("{prefix}/{name}")))
                .map(|p| (p.value().unwrap().to_string(), p.version()))
        };
        let ((id, v1), (secret, v2)) = (get("access_key_id")?, get("secret_access_key")?);
        Some((Key { id, secret }, [v1, v2]))
    }

    /// Seed the secret `name` with `key` as its AWSCURRENT value (creating it if needed).
    pub fn put_secret_key(&self, name: &str, key: &Key) {
        let value = key_document(key);
        let sm = self.secrets_manager();
        self.rt.block_on(async {
            if sm.describe_secret().secret_id(name).send().await.is_err() {
                sm.create_secret()
                    .name(name)
                    .secret_string(value.to_string())
                    .send()
                    .await
                    .unwrap();
            } else {
                sm.put_secret_value()
                    .secret_id(name)
                    .secret_string(value.to_string())
                    .send()
                    .await
                    .unwrap();
            }
        });
    }

    /// The key a staging label of secret `name` points at, None when no version has it.
    pub fn secret_key(&self, name: &str, stage: &str) -> Option<Key> {
        let out = self
            .rt
            .block_on(
                self.secrets_manager()
                    .get_secret_value()
                    .secret_id(name)
                    .version_stage(stage)
                    .send(),
            )
            .ok()?;
        Some(key_of(
            &serde_json::from_str(out.secret_string().unwrap()).unwrap(),
        ))
    }

    /// The staging labels of secret `name`: label -> version id.
    pub fn secret_labels(&self, name: &str) -> BTreeMap<String, String> {
        let out = self
            .rt
            .block_on(
                self.secrets_manager()
                    .describe_secret()
                    .secret_id(name)
                    .send(),
            )
            .unwrap();
        let mut labels = BTreeMap::new();
        for (version, stages) in out.version_ids_to_stages().into_iter().flatten() {
            for stage in stages {
                labels.insert(stage.clone(), version.clone());
            }
        }
        labels
    }

    /// The user has exactly `key`, Active, and it works: what an undone rotation leaves.
    pub fn assert_only_key(&self, user: &str, key: &Key) {
        assert_eq!(
            self.keys(user),
            vec![(key.id.clone(), true)],
            "new key deleted"
        );
        self.assert_key_works_for(key, user);
    }

    /// The credrot binary, run in `dir`, signing as the admin against this server, with no
    /// ambient AWS configuration of the machine leaking in.
    pub fn credrot(&self, dir: &Path) -> Command {
        Command::from_std(self.credrot_process(dir))
    }

    /// `credrot --output json rotate --path PATH` in `dir`, against this emulator; add
    /// more arguments, spawn it or wrap it in `assert_cmd::Command::from_std`.
    pub fn rotate_path_json(&self, dir: &Path, path: &str) -> std::process::Command {
        let mut cmd = self.credrot_process(dir);
        cmd.args(["--output", "json", "rotate", "--path", path]);
        cmd
    }

    /// The same as [`Moto::credrot`], as a plain process to spawn in the background.
    pub fn credrot_process(&self, dir: &Path) -> std::process::Command {
        let mut cmd = credrot_process(dir);
        cmd.env("AWS_ACCESS_KEY_ID", &self.admin.id)
            .env("AWS_SECRET_ACCESS_KEY", &self.admin.secret)
            .env("AWS_ENDPOINT_URL", &self.endpoint);
        cmd
    }
}

/// The repository's virtual environment of test tools (scripts/lib.sh makes it).
fn venv_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin")
}

/// A test tool (moto_server, task, aws): the one in .venv/bin when there is one (so a
/// plain `cargo test` after `bash scripts/test` finds them too), else `name` on PATH.
pub fn test_tool(name: &str) -> String {
    let venv = venv_bin().join(name);
    if venv.is_file() {
        venv.display().to_string()
    } else {
        name.to_string()
    }
}

/// PATH for child processes: .venv/bin first when it exists, so a credrot child (`exec
/// -- aws`) or task finds the venv's tools.
pub fn tool_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let bin = venv_bin();
    if !bin.is_dir() {
        return path;
    }
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap_or(path)
}

/// The credrot binary in `dir` with a clean AWS environment and no credentials.
pub fn credrot_command(dir: &Path) -> Command {
    Command::from_std(credrot_process(dir))
}

/// [`credrot_command`] as a plain process.
pub fn credrot_process(dir: &Path) -> std::process::Command {
    isolated_process(env!("CARGO_BIN_EXE_credrot"), dir)
}

/// `program` in `dir` with the same clean AWS environment as [`credrot_command`].
pub fn isolated_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    Command::from_std(isolated_process(program, dir))
}

/// [`isolated_command`] as a plain process.
pub fn isolated_process(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.current_dir(dir);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "CREDROT_CONFIG",
        "CREDROT_SSH_KEY",
        "CREDROT_SSH_PASSPHRASE",
        "SSH_AUTH_SOCK",
        "RUST_LOG",
        "CREDROT_OP",
        "OP_SERVICE_ACCOUNT_TOKEN",
        "OP_ACCOUNT",
        "FAKE_OP_STATE",
        "FAKE_OP_FAIL_ON",
        "FAKE_OP_GARBLE_ON",
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "VAULT_ADDR",
        "VAULT_TOKEN",
        "VAULT_NAMESPACE",
        "VAULT_CACERT",
        "VAULT_ROLE_ID",
        "VAULT_SECRET_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_REGION", REGION)
        .env("PATH", tool_path())
        .env("AWS_CONFIG_FILE", dir.join(".no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join(".no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // This host's in-flight records, per test directory: runs in one directory see
        // each other's, as runs on one host do.
        .env("CREDROT_STATE_DIR", dir.join(".credrot-state"));
    cmd
}

impl Drop for Moto {
    fn drop(&mut self) {
        // A test that failed may have left the server in any state: it is not reused.
        if let Some(server) = self.server.take() {
            if !std::thread::panicking() {
                IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(server);
            }
        }
    }
}

/// The fault-injecting proxy (tests/support/fault_proxy.py) in front of an emulator.
pub struct FaultProxy {
    child: Child,
    port: u16,
    pub endpoint: String,
}

impl FaultProxy {
    /// Start the proxy in front of `upstream`, failing `fault_rate` of the requests.
    pub fn start(upstream: &str, fault_rate: f64, extra: &[&str]) -> FaultProxy {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/fault_proxy.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream, "--port", &port.to_string()])
            .args(["--fault-rate", &fault_rate.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the fault proxy");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the fault proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        FaultProxy {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The proxy's counters (requests, forwarded, faults by kind).
    pub fn stats(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.write_all(b"GET /__proxy/stats HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user's keys as (id, active, created), oldest first.
pub fn keys_by_age(moto: &Moto, user: &str) -> Vec<(String, bool, std::time::SystemTime)> {
    let out = moto
        .rt
        .block_on(moto.iam().list_access_keys().user_name(user).send())
        .unwrap();
    let mut keys: Vec<_> = out
        .access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.access_key_id().unwrap().to_string(),
                k.status() == Some(&StatusType::Active),
                std::time::SystemTime::try_from(*k.create_date().unwrap()).unwrap(),
            )
        })
        .collect();
    keys.sort_by_key(|k| k.2);
    keys
}

/// A loopback port that records whether anything connected: proof that no AWS call was made.
pub struct Tripwire {
    listener: TcpListener,
    pub endpoint: String,
}

impl Tripwire {
    pub fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        Tripwire { listener, endpoint }
    }

    /// Whether any connection arrived.
    pub fn tripped(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

/// The fake 1Password CLI of the tests.
pub fn fake_op() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-op/op")
}

/// Assert that no secret of `keys` appears in `text`, which `place` names.
pub fn assert_no_secret(text: &str, keys: &[&Key], place: &str) {
    for key in keys {
        assert!(
            !text.contains(key.secret.as_str()),
            "a secret is in {place}"
        );
    }
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A services.toml in `dir` with the one service `pg` for IAM user `user`, tagged, writing
/// to `stores` (TOML inline tables, comma-separated).
pub fn write_pg_service(dir: &Path, user: &str, stores: &str) {
    let toml = format!(
        "[services.pg]\niam_user = \"{user}\"\ntags = [\"aws\", \"postgresql\"]\nstores = [\n{stores}\n]\n"
    );
    std::fs::write(dir.join("services.toml"), toml).unwrap();
}

/// The JSON document a `file` store holds: `{"AccessKeyId": .., "SecretAccessKey": ..}`.
pub fn key_document(key: &Key) -> String {
    serde_json::json!({"AccessKeyId": key.id, "SecretAccessKey": key.secret}).to_string()
}

/// Put `key` in a `file` store at `path`, as if an earlier run had stored it.
pub fn write_key_file(path: &Path, key: &Key) {
    std::fs::write(path, key_document(key)).unwrap();
}

/// The key in a credrot JSON key document entry.
pub fn key_of(entry: &serde_json::Value) -> Key {
    Key {
        id: entry["AccessKeyId"].as_str().unwrap().into(),
        secret: entry["SecretAccessKey"].as_str().unwrap().into(),
    }
}

/// The permission bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// One HTTP request as [`WebhookServer`] received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A tiny HTTP/1.1 server on loopback that answers requests with fixed statuses and records
/// them. It serves at most [`WebhookServer::MAX_REQUESTS`] requests and stops when dropped.
pub struct WebhookServer {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookServer {
    const MAX_REQUESTS: usize = 20;

    /// Listen on a free port; requests to any path are answered with `status`.
    pub fn start(status: u16) -> WebhookServer {
        Self::start_with(vec![status])
    }

    /// Like [`WebhookServer::start`], answering request `i` with `statuses[i]`, and every
    /// request after the last status with the last status.
    pub fn start_with(statuses: Vec<u16>) -> WebhookServer {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for (i, stream) in listener.incoming().take(Self::MAX_REQUESTS).enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    if let Some(request) = read_request(&mut stream) {
                        received.lock().unwrap().push(request);
                    }
                    let status = statuses[i.min(statuses.len() - 1)];
                    let reply = format!(
                        "HTTP/1.1 {status} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
                }
            })
        };
        WebhookServer {
            url: format!("http://{addr}"),
            received,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Read one request: head up to the blank line, then Content-Length bytes of body.
fn read_request(stream: &mut TcpStream) -> Option<Received> {
    use std::io::{BufRead, BufReader, Read};
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// Everything a run showed its user, stdout then stderr: a failure's reason is in the
/// summary on stdout, the run's own error on stderr.
pub fn shown(out: &assert_cmd::assert::Assert) -> String {
    let output = out.get_output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
