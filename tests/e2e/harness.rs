//! The end-to-end harness: a real moto server per test, on a free loopback port, with IAM
//! authentication on, and helpers to seed users and to run the built credrot binary.

use assert_cmd::Command;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_iam::types::StatusType;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
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
    child: Child,
    pub endpoint: String,
    pub admin: Key,
    pub rt: tokio::runtime::Runtime,
    _log: tempfile::NamedTempFile,
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Start moto and bootstrap the admin identity; after this every request is checked.
    pub fn start() -> Moto {
        Self::start_with_bootstrap(BOOTSTRAP_REQUESTS)
    }

    fn start_with_bootstrap(bootstrap: u32) -> Moto {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", bootstrap.to_string())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} ({e}); install it with: pip install -r requirements-test.txt")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            admin: Key {
                id: "bootstrap".into(),
                secret: "bootstrap".into(),
            },
            rt,
            _log: log,
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

    /// The credrot binary, run in `dir`, signing as the admin against this server, with no
    /// ambient AWS configuration of the machine leaking in.
    pub fn credrot(&self, dir: &Path) -> Command {
        Command::from_std(self.credrot_process(dir))
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

/// The credrot binary in `dir` with a clean AWS environment and no credentials.
pub fn credrot_command(dir: &Path) -> Command {
    Command::from_std(credrot_process(dir))
}

/// [`credrot_command`] as a plain process.
pub fn credrot_process(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_credrot"));
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
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_REGION", REGION)
        .env("AWS_CONFIG_FILE", dir.join(".no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join(".no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Read a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
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
