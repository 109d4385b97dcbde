//! The fakes of GitHub, GCP Secret Manager and Azure Key Vault (tests/fake-cloud/
//! fake_cloud.py), one process per test on a free loopback port, and their control calls.

use crate::harness::free_port;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running fake, stopped on drop.
pub struct FakeCloud {
    child: Child,
    port: u16,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl FakeCloud {
    /// Start the fake of `service` (`github`, `gcp`, `azure`) with `args`.
    pub fn start(service: &str, args: &[&str]) -> FakeCloud {
        Self::start_on(service, free_port(), args)
    }

    /// [`Self::start`] on `port` (for settings that must name the fake's URL up front).
    pub fn start_on(service: &str, port: u16, args: &[&str]) -> FakeCloud {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fake-cloud/fake_cloud.py"
        );
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(service)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the fake");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the {service} fake did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        FakeCloud {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            conn,
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("null");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    /// The fake's state (GitHub secrets opened).
    pub fn state(&self) -> Value {
        self.control("GET", "/__fake/state", None)
    }

    /// Merge `data` into the state (see the service's `seed`).
    pub fn seed(&self, data: Value) {
        self.control("POST", "/__fake/seed", Some(&data));
    }

    /// Fail the next matching call: `{"method", "path" (regex), "skip", "count", "status"}`.
    pub fn fail(&self, rule: Value) {
        self.control("POST", "/__fake/fail", Some(&rule));
    }

    /// Every API call so far: `{"method", "path", "status"}`.
    pub fn log(&self) -> Vec<Value> {
        self.control("GET", "/__fake/log", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
