//! A loopback HTTP proxy in front of moto that records every AWS call (action and signing
//! key) and injects faults: refuse an action, or run a hook when it arrives. It lets a test
//! break one step of a multi-step run of the real binary.
//!
//! One request per connection: the proxy answers with `Connection: close`, so the SDK opens
//! a new connection for the next call.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One call as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The query-protocol `Action`, e.g. `DeleteAccessKey`.
    pub action: String,
    /// The access key id that signed it.
    pub signer: String,
    /// The form-encoded parameters.
    pub body: String,
}

/// What to do with a matching call.
pub enum Fault {
    /// Answer with this HTTP status and AWS error code; moto never sees the call.
    Refuse { status: u16, code: &'static str },
    /// Run the hook, then forward the call.
    Before(Box<dyn Fn() + Send + Sync>),
}

/// Which calls a rule applies to.
pub enum Signer {
    /// Any signer.
    Any,
    /// Every signer except this access key id.
    Not(String),
}

struct Rule {
    action: &'static str,
    signer: Signer,
    fault: Fault,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// The proxy; stopped on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub endpoint: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rules: Mutex::default(),
            seen: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(&shared, stream);
                    });
                }
            })
        };
        FaultProxy {
            endpoint,
            shared,
            thread: Some(thread),
        }
    }

    /// Apply `fault` to `action` calls signed by `signer`.
    pub fn on(&self, action: &'static str, signer: Signer, fault: Fault) {
        self.shared.rules.lock().unwrap().push(Rule {
            action,
            signer,
            fault,
        });
    }

    /// Every call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A request: head lines and body.
struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { head, body }))
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(request) = read_request(&mut reader)? else {
        return Ok(());
    };
    let body = String::from_utf8_lossy(&request.body).to_string();
    let action = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string();
    let signer = header(&request.head, "authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string();
    shared.seen.lock().unwrap().push(Seen {
        action: action.clone(),
        signer: signer.clone(),
        body: body.clone(),
    });
    let mut refusal = None;
    for rule in shared.rules.lock().unwrap().iter() {
        let applies = rule.action == action
            && match &rule.signer {
                Signer::Any => true,
                Signer::Not(id) => *id != signer,
            };
        if !applies {
            continue;
        }
        match &rule.fault {
            Fault::Refuse { status, code } => refusal = Some((*status, *code)),
            Fault::Before(hook) => hook(),
        }
    }
    let mut client = stream;
    if let Some((status, code)) = refusal {
        let xml = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>refused by the test proxy</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
        );
        write!(
            client,
            "HTTP/1.1 {status} Refused\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return client.flush();
    }
    let mut upstream = TcpStream::connect(&shared.upstream)?;
    let mut out = Vec::new();
    out.extend_from_slice(request.head[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in &request.head[1..] {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&request.body);
    upstream.write_all(&out)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    // Make the client close too, whatever the upstream said.
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut fixed: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    fixed.push_str("Connection: close\r\n\r\n");
    client.write_all(fixed.as_bytes())?;
    client.write_all(&response[(split + 4).min(response.len())..])?;
    client.flush()
}
