//! The fake REST services (tests/fake-kube, tests/fake-vault) from the tests' side: start
//! one on free loopback ports (optionally on HTTPS with a CA made here by `openssl`), tell
//! it to fail calls, seed it and read its state through its plain-HTTP control port.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running fake, stopped on drop.
pub struct FakeServer {
    child: Child,
    /// The API's base URL, `http(s)://127.0.0.1:PORT`.
    pub url: String,
    control_port: u16,
    _dir: tempfile::TempDir,
}

/// A CA and a server certificate for 127.0.0.1 it signed, and a client certificate.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// Make them with the openssl CLI; `None` when it is not installed.
    pub fn make() -> Option<TestCa> {
        which::which("openssl").ok()?;
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=credrot test CA",
        ]);
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        std::fs::write(
            dir.path().join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=credrot-robot",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ]);
        Some(TestCa { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file's content, base64 (for kubeconfig `*-data` fields).
    pub fn base64(&self, name: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(self.path(name)).unwrap())
    }
}

impl FakeServer {
    /// Start `tests/<script>` with `args`; on HTTPS with `tls`'s server certificate (and
    /// its CA for client certificates) when given.
    pub fn start(script: &str, args: &[&str], tls: Option<&TestCa>) -> FakeServer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("ports");
        let program = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(script);
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(&program)
            .arg("--port-file")
            .arg(&port_file)
            .args(args);
        if let Some(ca) = tls {
            cmd.arg("--tls-cert").arg(ca.path("server.pem"));
            cmd.arg("--tls-key").arg(ca.path("server.key"));
            cmd.arg("--client-ca").arg(ca.path("ca.pem"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the fake");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ports = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text;
            }
            assert!(Instant::now() < deadline, "{script} did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut ports = ports.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        let (api, control_port) = (ports.next().unwrap(), ports.next().unwrap());
        let scheme = if tls.is_some() { "https" } else { "http" };
        FakeServer {
            child,
            url: format!("{scheme}://127.0.0.1:{api}"),
            control_port,
            _dir: dir,
        }
    }

    /// One control request.
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut conn = TcpStream::connect(("127.0.0.1", self.control_port)).unwrap();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "control {method} {path}: {head}"
        );
        serde_json::from_str(body).unwrap()
    }

    /// Fail the next matching call (see tests/support/fake_http.py).
    pub fn fail(&self, rule: Value) {
        self.control("POST", "/__fake/fail", Some(&rule));
    }

    pub fn seed(&self, spec: Value) -> Value {
        self.control("POST", "/__fake/seed", Some(&spec))
    }

    pub fn state(&self) -> Value {
        self.control("GET", "/__fake/state", None)
    }

    /// Every API request the fake received.
    pub fn requests(&self) -> Vec<Value> {
        self.control("GET", "/__fake/requests", None)
            .as_array()
            .unwrap()
            .clone()
    }

    /// The requests with `method` whose path contains `part`.
    pub fn calls(&self, method: &str, part: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == method && r["path"].as_str().unwrap().contains(part))
            .collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
