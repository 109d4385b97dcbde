//! credrot as an AWS Lambda function (custom runtime `provided.al2023`).
//!
//! The same binary, packaged as `bootstrap`: started by the Lambda runtime (no arguments and
//! `AWS_LAMBDA_RUNTIME_API` in the environment), or as `credrot lambda`, it polls the Runtime
//! API for events. Each event names a command and its options as JSON fields, e.g.
//! `{"command": "rotate", "path": "PSKServiceAccounts", "dry_run": true}`; see [`FIELDS`].
//!
//! An event is checked strictly before anything runs: an unknown field, a wrong type or a
//! value the command line would refuse is an error response naming it, and nothing is
//! changed. A valid event becomes the command line `credrot --output json COMMAND ...`
//! (checked by the same clap parser as a typed one), which is run as a child process of the
//! same binary: the same command code, its stdout (the JSON summary) captured, its stderr
//! (logs, never a secret) passed on to CloudWatch. Exit 0 is the function's response, the
//! summary; any other exit is a function error (so retries, alarms and destinations see it)
//! whose message is a JSON document holding the exit code, the error and the summary.
//!
//! Nothing that would put a key in the response or in the function's filesystem is
//! accepted: `print_secrets` and `outfile` are refused by name.

use crate::cli::{Cli, GlobalArgs};
use crate::error::Error;
use crate::http::{HttpClient, Request, Response, TlsOptions};
use http::{HeaderName, HeaderValue, Method, Uri};
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use zeroize::Zeroizing;

/// Whether the Lambda runtime started this process: no arguments at all and the Runtime
/// API's address in the environment (a `bootstrap` is started exactly so).
pub fn started_by_runtime() -> bool {
    std::env::args_os().len() == 1 && std::env::var_os(RUNTIME_API).is_some_and(|v| !v.is_empty())
}

const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// How an event field becomes command-line arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `true` → `--flag`; `false` → nothing.
    Switch,
    /// A string or number → `--flag VALUE`.
    Value,
    /// An array of strings → `--flag V` for each.
    Repeated,
    /// A string → a positional argument.
    Positional,
    /// An array of strings → positional arguments.
    Positionals,
}

/// One event field: its name, the flag it becomes, and whether the command needs it.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    flag: &'static str,
    kind: Kind,
    required: bool,
}

const fn field(name: &'static str, flag: &'static str, kind: Kind) -> Field {
    Field {
        name,
        flag,
        kind,
        required: false,
    }
}

const fn required(name: &'static str, flag: &'static str, kind: Kind) -> Field {
    Field {
        name,
        flag,
        kind,
        required: true,
    }
}

/// Fields every command takes: the region (`--region`) and the accounts (`--account`,
/// repeated).
const COMMON: [Field; 2] = [
    field("region", "--region", Kind::Value),
    field("accounts", "--account", Kind::Repeated),
];

/// The options of `update` and `rotate` (RotationArgs), minus the two that hand out keys.
const ROTATION: [Field; 7] = [
    field("dry_run", "--dry-run", Kind::Switch),
    field("time_limit", "--time-limit", Kind::Value),
    field("force", "--force", Kind::Switch),
    field("no_lock", "--no-lock", Kind::Switch),
    field("lock_ttl", "--lock-ttl", Kind::Value),
    field("verify_timeout", "--verify-timeout", Kind::Value),
    field("fail_on", "--fail-on", Kind::Value),
];

/// Each command's own fields, besides [`COMMON`] (and [`ROTATION`] for rotate and update).
const FIELDS: [(&str, &[Field]); 3] = [
    (
        "rotate",
        &[
            required("path", "--path", Kind::Value),
            field("concurrency", "--concurrency", Kind::Value),
        ],
    ),
    ("update", &[required("service", "", Kind::Positional)]),
    (
        "status",
        &[
            field("services", "", Kind::Positionals),
            field("path", "--path", Kind::Value),
            field("fail_on", "--fail-on", Kind::Value),
            field("unused_after", "--unused-after", Kind::Value),
            field("alert", "--alert", Kind::Switch),
            field("concurrency", "--concurrency", Kind::Value),
        ],
    ),
];

/// Fields refused with their own reason rather than as unknown.
const REFUSED: [(&str, &str); 6] = [
    ("print_secrets", "it would put the new keys in the function's response (and its logs); configure stores in services.toml"),
    ("outfile", "it would write the new keys to the function's /tmp, which nothing reads; configure stores in services.toml"),
    ("output", "the response is always the JSON summary"),
    ("config", "the configuration is the function's: CREDROT_CONFIG in its environment, else services.toml in the package"),
    ("profile", "the function signs with its execution role"),
    ("endpoint_url", "set AWS_ENDPOINT_URL in the function's environment"),
];

/// An event that cannot run: nothing was started and nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event: {0}")]
pub struct EventError(String);

/// The command line for `event` (without the program name): `--output json`, the global
/// options of `credrot lambda` itself, then the command and the event's options. Checked by
/// the CLI's own parser, so every value is range- and format-checked as on a terminal.
/// `time_budget` becomes `--time-limit` of a rotation whose event sets none.
pub fn command_line(
    event: &Value,
    base: &[OsString],
    time_budget: Option<Duration>,
) -> Result<Vec<OsString>, EventError> {
    let object = event.as_object().ok_or_else(|| {
        EventError(format!(
            "the event must be a JSON object such as {{\"command\": \"rotate\", \"path\": \"PSKServiceAccounts\"}}, not {}",
            json_kind(event)
        ))
    })?;
    let names: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
    let command = match object.get("command") {
        Some(Value::String(c)) if names.contains(&c.as_str()) => c.as_str(),
        Some(Value::String(c)) => {
            return Err(EventError(format!(
                "field `command`: unknown command '{c}'; expected one of {}",
                names.join(", ")
            )))
        }
        Some(other) => {
            return Err(EventError(format!(
                "field `command` must be a string (one of {}), not {}",
                names.join(", "),
                json_kind(other)
            )))
        }
        None => {
            return Err(EventError(format!(
                "field `command` is missing; expected one of {}",
                names.join(", ")
            )))
        }
    };
    let fields = fields_of(command);
    check_fields(command, object, &fields)?;
    let mut args: Vec<OsString> = vec!["--output".into(), "json".into()];
    args.extend(base.iter().cloned());
    let mut own: Vec<OsString> = vec![command.into()];
    let mut positionals: Vec<OsString> = Vec::new();
    for f in &fields {
        let Some(value) = object.get(f.name) else {
            if f.required {
                return Err(EventError(format!(
                    "field `{}` is required for command {command}",
                    f.name
                )));
            }
            continue;
        };
        let wrong = |what: &str| {
            EventError(format!(
                "field `{}` must be {what}, not {}",
                f.name,
                json_kind(value)
            ))
        };
        // --region is a global option: it goes before the command.
        let out = if f.name == "region" {
            &mut args
        } else {
            &mut own
        };
        match (f.kind, value) {
            (Kind::Switch, Value::Bool(true)) => out.push(f.flag.into()),
            (Kind::Switch, Value::Bool(false)) => {}
            (Kind::Switch, _) => return Err(wrong("true or false")),
            (Kind::Value, Value::String(s)) => out.extend([f.flag.into(), s.into()]),
            (Kind::Value, Value::Number(n)) => out.extend([f.flag.into(), n.to_string().into()]),
            (Kind::Value, _) => return Err(wrong("a string")),
            (Kind::Positional, Value::String(s)) => positionals.push(s.into()),
            (Kind::Positional, _) => return Err(wrong("a string")),
            (Kind::Repeated | Kind::Positionals, Value::Array(items)) => {
                for item in items {
                    let Value::String(s) = item else {
                        return Err(wrong("an array of strings"));
                    };
                    match f.kind {
                        Kind::Repeated => out.extend([f.flag.into(), s.into()]),
                        _ => positionals.push(s.into()),
                    }
                }
            }
            (Kind::Repeated | Kind::Positionals, _) => return Err(wrong("an array of strings")),
        }
    }
    if let Some(budget) = time_budget {
        if command != "status" && !object.contains_key("time_limit") {
            own.extend([
                "--time-limit".into(),
                format!("{}s", budget.as_secs()).into(),
            ]);
        }
    }
    // Positionals after `--`: a service named `--force` stays a name.
    if !positionals.is_empty() {
        own.push("--".into());
        own.extend(positionals);
    }
    args.extend(own);
    let mut argv: Vec<OsString> = vec!["credrot".into()];
    argv.extend(args.iter().cloned());
    if let Err(e) = <Cli as clap::Parser>::try_parse_from(&argv) {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let reason = e.to_string();
        let reason = reason
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        return Err(EventError(format!(
            "it is the command line `credrot {}`, which credrot refuses: {reason}",
            shown.join(" ")
        )));
    }
    Ok(args)
}

fn fields_of(command: &str) -> Vec<Field> {
    let own = FIELDS
        .iter()
        .find(|(name, _)| *name == command)
        .map(|(_, fields)| *fields)
        .unwrap_or_default();
    let mut fields: Vec<Field> = own.to_vec();
    if command != "status" {
        fields.extend(ROTATION);
    }
    fields.extend(COMMON);
    fields
}

/// Every field of the event must be one this command takes.
fn check_fields(
    command: &str,
    object: &Map<String, Value>,
    fields: &[Field],
) -> Result<(), EventError> {
    for name in object.keys().filter(|k| *k != "command") {
        if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| refused == name) {
            return Err(EventError(format!(
                "field `{name}` is refused in Lambda: {why}"
            )));
        }
        if !fields.iter().any(|f| f.name == name) {
            let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
            return Err(EventError(format!(
                "unknown field `{name}` for command {command}; it takes: command, {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a finished run answers: the summary on success, else a function error.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Exit 0: the JSON summary.
    Done(Value),
    /// Anything else (including an invalid event).
    Failed {
        /// `credrot.Usage` (exit 2), `credrot.Failed` (1), `credrot.Gate` (3), `credrot.Killed`.
        error_type: &'static str,
        /// `{"exit_code", "error", "summary"}`.
        document: Value,
    },
}

impl Answer {
    fn invalid(e: &EventError) -> Answer {
        Answer::Failed {
            error_type: "credrot.Usage",
            document: serde_json::json!({
                "exit_code": crate::error::EXIT_USAGE,
                "error": e.to_string(),
                "summary": Value::Null,
            }),
        }
    }

    /// The answer for a child that ended with `code` (None: killed by a signal).
    fn of_exit(code: Option<i32>, error: Option<String>, stdout: &[u8]) -> Answer {
        let summary: Value = serde_json::from_slice(stdout).unwrap_or(Value::Null);
        let error_type = match code {
            Some(0) => return Answer::Done(summary),
            Some(2) => "credrot.Usage",
            Some(3) => "credrot.Gate",
            Some(_) => "credrot.Failed",
            None => "credrot.Killed",
        };
        let error = error.unwrap_or_else(|| match code {
            Some(code) => format!("credrot exited with {code}"),
            None => "credrot was killed by a signal".to_string(),
        });
        Answer::Failed {
            error_type,
            document: serde_json::json!({
                "exit_code": code,
                "error": error,
                "summary": summary,
            }),
        }
    }
}

/// How long a rotation may go on starting users when the invocation must end in
/// `remaining`: what is left after a margin for the users already under way to finish
/// (their last calls, the stores, STS verification), 90 s or a quarter of the time,
/// whichever is less; at least 1 s. Lambda freezes a function at its deadline, which to a
/// rotation is a kill: safe, but the users it held wait for `--lock-ttl` on the next run.
pub fn time_budget(remaining: Duration) -> Duration {
    let margin = (remaining / 4).min(Duration::from_secs(90));
    remaining.saturating_sub(margin).max(Duration::from_secs(1))
}

/// Run one event: check it, run the command as a child of this binary, and answer.
/// `deadline` is the invocation's (`Lambda-Runtime-Deadline-Ms`).
pub async fn handle(
    event: &Value,
    base: &[OsString],
    trace_id: Option<&str>,
    deadline: Option<SystemTime>,
) -> Answer {
    let budget = deadline.map(|at| {
        time_budget(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    });
    let args = match command_line(event, base, budget) {
        Ok(args) => args,
        Err(e) => return Answer::invalid(&e),
    };
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing::warn!("running credrot {}", shown.join(" "));
    match run_child(&args, trace_id).await {
        Ok(answer) => answer,
        Err(e) => Answer::Failed {
            error_type: "credrot.Failed",
            document: serde_json::json!({
                "exit_code": Value::Null,
                "error": format!("cannot run credrot: {e}"),
                "summary": Value::Null,
            }),
        },
    }
}

/// The child: stdout (the summary) read whole, stderr passed on line by line with the
/// last `credrot: error:` line kept for the answer.
async fn run_child(args: &[OsString], trace_id: Option<&str>) -> std::io::Result<Answer> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Lambda's filesystem is read-only but for /tmp; in-flight records live there.
    if std::env::var_os("CREDROT_STATE_DIR").is_none() {
        command.env(
            "CREDROT_STATE_DIR",
            std::env::temp_dir().join("credrot-state"),
        );
    }
    if let Some(trace) = trace_id {
        command.env("_X_AMZN_TRACE_ID", trace);
    }
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read_out = async {
        let mut buffer = Vec::new();
        stdout.read_to_end(&mut buffer).await.map(|_| buffer)
    };
    let pass_err = async {
        let mut lines = BufReader::new(stderr).lines();
        let mut last_error = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(error) = line.strip_prefix("credrot: error: ") {
                last_error = Some(error.to_string());
            }
            // One short line at a time: a blocking write is fine here.
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        last_error
    };
    let (out, error) = tokio::join!(read_out, pass_err);
    let status = child.wait().await?;
    Ok(Answer::of_exit(status.code(), error, &out?))
}

/// The global options a `credrot lambda` was given, passed on to every run, and the
/// configuration: `--config`/CREDROT_CONFIG, else services.toml in the package
/// (`LAMBDA_TASK_ROOT`), else ./services.toml.
fn base_args(global: &GlobalArgs) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let packaged = std::env::var_os("LAMBDA_TASK_ROOT")
        .map(|root| PathBuf::from(root).join("services.toml"))
        .filter(|p| p.is_file());
    if let Some(config) = global.config.clone().or(packaged) {
        args.extend(["--config".into(), config.into_os_string()]);
    }
    if let Some(region) = &global.region {
        args.extend(["--region".into(), region.into()]);
    }
    if let Some(url) = &global.endpoint_url {
        args.extend(["--endpoint-url".into(), url.into()]);
    }
    if let Some(profile) = &global.profile {
        args.extend(["--profile".into(), profile.into()]);
    }
    if global.verbose > 0 {
        args.push(format!("-{}", "v".repeat(usize::from(global.verbose))).into());
    }
    if global.quiet {
        args.push("--quiet".into());
    }
    args
}

/// The Lambda Runtime API (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>),
/// on the one HTTP client of [`crate::http`]: `next` (a long poll), `response`, `error` and
/// `init/error`. The `lambda_runtime` crate would do the same and grew the release binary
/// by 1.1 MB (measured: 15.52 MB against 14.42 MB), past credrot's 15 MB budget; this client
/// adds 78 KB.
pub struct RuntimeApi {
    base: String,
    client: HttpClient,
}

/// One invocation: its request id and event.
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Trace-Id`, given to the run as `_X_AMZN_TRACE_ID` (X-Ray).
    pub trace_id: Option<String>,
    /// The event, whatever JSON it is (checked by [`command_line`]).
    pub event: Result<Value, String>,
    /// When the invocation times out (`Lambda-Runtime-Deadline-Ms`, Unix milliseconds).
    pub deadline: Option<SystemTime>,
}

/// The Runtime API answered what no runtime can go on from.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No answer, or not the one the API documents.
    #[error("the Lambda Runtime API at {target}: {message}")]
    Protocol {
        /// Scheme, host and port.
        target: String,
        /// What went wrong.
        message: String,
    },
}

const API_VERSION: &str = "2018-06-01";

impl RuntimeApi {
    /// The API at `address`: `host:port` as Lambda sets `AWS_LAMBDA_RUNTIME_API`, or a URL
    /// with a path (cargo-lambda's emulator: `http://127.0.0.1:9000/.rt`).
    pub fn new(address: &str) -> Result<RuntimeApi, RuntimeError> {
        let base = if address.contains("://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        let uri: Uri = base.parse().map_err(|_| RuntimeError::Protocol {
            target: address.to_string(),
            message: "not a host:port or URL".into(),
        })?;
        // `next` waits until an event comes (the sandbox is frozen meanwhile): no bound
        // that an idle function could reach.
        let client = HttpClient::new(
            &TlsOptions::default(),
            Duration::from_secs(366 * 24 * 3600),
            &uri,
        )
        .map_err(|e| RuntimeError::Protocol {
            target: crate::http::target(&uri),
            message: e.to_string(),
        })?;
        Ok(RuntimeApi { base, client })
    }

    fn uri(&self, path: &str) -> Uri {
        format!("{}/{API_VERSION}/runtime/{path}", self.base)
            .parse()
            .expect("a URI made of a valid base and an API path")
    }

    async fn send(&self, request: Request, expect: u16) -> Result<Response, RuntimeError> {
        let target = crate::http::target(request.uri());
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| RuntimeError::Protocol {
                target: target.clone(),
                message: e.to_string(),
            })?;
        // Lambda answers 202 to response and error posts; emulators (cargo-lambda) 200.
        let accepted = response.status == expect || (expect == 202 && response.is_success());
        if !accepted {
            return Err(RuntimeError::Protocol {
                target,
                message: format!(
                    "HTTP {} (expected {expect}): {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
            });
        }
        Ok(response)
    }

    /// Wait for the next event.
    pub async fn next(&self) -> Result<Invocation, RuntimeError> {
        let request = Request::new(Method::GET, self.uri("invocation/next"));
        let target = crate::http::target(request.uri());
        let response = self.send(request, 200).await?;
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header("lambda-runtime-aws-request-id")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| RuntimeError::Protocol {
                target,
                message: "an invocation without a valid Lambda-Runtime-Aws-Request-Id header"
                    .into(),
            })?;
        let event = serde_json::from_slice(&response.body)
            .map_err(|e| format!("the event is not JSON: {e}"));
        Ok(Invocation {
            request_id,
            trace_id: header("lambda-runtime-trace-id"),
            deadline: header("lambda-runtime-deadline-ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            event,
        })
    }

    /// The function's response to `request_id`.
    pub async fn respond(&self, request_id: &str, body: &Value) -> Result<(), RuntimeError> {
        let request = Request::new(
            Method::POST,
            self.uri(&format!("invocation/{request_id}/response")),
        )
        .json(Zeroizing::new(body.to_string().into_bytes()));
        self.send(request, 202).await.map(drop)
    }

    /// A function error for `request_id`.
    pub async fn fail(
        &self,
        request_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), RuntimeError> {
        self.post_error(
            &format!("invocation/{request_id}/error"),
            error_type,
            message,
        )
        .await
    }

    /// An initialisation error: the runtime then stops this process.
    pub async fn init_failed(&self, error_type: &str, message: &str) -> Result<(), RuntimeError> {
        self.post_error("init/error", error_type, message).await
    }

    async fn post_error(
        &self,
        path: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), RuntimeError> {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        });
        let mut request = Request::new(Method::POST, self.uri(path))
            .json(Zeroizing::new(body.to_string().into_bytes()));
        if let Ok(value) = HeaderValue::from_str(error_type) {
            request = request.header(
                HeaderName::from_static("lambda-runtime-function-error-type"),
                value,
            );
        }
        self.send(request, 202).await.map(drop)
    }
}

/// `credrot lambda`: serve events from the Lambda Runtime API until the runtime stops us.
pub fn run(global: &GlobalArgs) -> Result<(), Error> {
    let address = std::env::var(RUNTIME_API).ok().filter(|v| !v.is_empty());
    let Some(address) = address else {
        return Err(Error::Usage(format!(
            "credrot lambda runs under the Lambda runtime (provided.al2023), which sets {RUNTIME_API}; it is not set here (locally: `cargo lambda watch --only-lambda-apis` prints the value to set)"
        )));
    };
    let api = RuntimeApi::new(&address).map_err(|e| Error::Usage(e.to_string()))?;
    let base = base_args(global);
    crate::commands::runtime()?.block_on(async {
        // A configuration that cannot load fails every event alike: say so once, as the
        // function's initialisation error (the runtime then stops the sandbox).
        if let Err(e) = check_config(&base) {
            let document = serde_json::json!({
                "exit_code": crate::error::EXIT_USAGE,
                "error": e.to_string(),
                "summary": Value::Null,
            });
            api.init_failed("credrot.Usage", &document.to_string())
                .await
                .map_err(|e| Error::Usage(e.to_string()))?;
            return Err(e);
        }
        loop {
            let invocation = api.next().await.map_err(|e| Error::Usage(e.to_string()))?;
            let answer = match &invocation.event {
                Ok(event) => {
                    handle(
                        event,
                        &base,
                        invocation.trace_id.as_deref(),
                        invocation.deadline,
                    )
                    .await
                }
                Err(e) => Answer::invalid(&EventError(e.clone())),
            };
            let sent = match &answer {
                Answer::Done(summary) => api.respond(&invocation.request_id, summary).await,
                Answer::Failed {
                    error_type,
                    document,
                } => {
                    tracing::error!("{error_type}: {document}");
                    api.fail(&invocation.request_id, error_type, &document.to_string())
                        .await
                }
            };
            sent.map_err(|e| Error::Usage(e.to_string()))?;
        }
    })
}

/// Load the configuration the runs will use, if one is named (`--config` in `base`) or
/// ./services.toml exists, so that a broken one is an initialisation error.
fn check_config(base: &[OsString]) -> Result<(), Error> {
    let named = base
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| base.get(i + 1))
        .map(PathBuf::from);
    let path = named.unwrap_or_else(|| PathBuf::from("services.toml"));
    if base.iter().any(|a| a == "--config") || path.exists() {
        crate::config::Config::load(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(event: Value) -> Result<String, String> {
        line_within(event, None)
    }

    fn line_within(event: Value, budget: Option<Duration>) -> Result<String, String> {
        command_line(&event, &[], budget)
            .map(|args| {
                args.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn events_map_onto_the_command_line() {
        assert_eq!(
            line(json!({"command": "rotate", "path": "PSKServiceAccounts", "dry_run": true, "force": false, "concurrency": 4, "lock_ttl": "30m"})).unwrap(),
            "--output json rotate --path PSKServiceAccounts --concurrency 4 --dry-run --lock-ttl 30m"
        );
        assert_eq!(
            line(json!({"command": "update", "service": "pg", "region": "eu-west-1", "fail_on": "busy"})).unwrap(),
            "--output json --region eu-west-1 update --fail-on busy -- pg"
        );
        assert_eq!(
            line(json!({"command": "status", "services": ["a", "b"], "fail_on": "overdue", "alert": true})).unwrap(),
            "--output json status --fail-on overdue --alert -- a b"
        );
        assert_eq!(
            line(json!({"command": "status"})).unwrap(),
            "--output json status"
        );
    }

    #[test]
    fn a_rotation_stops_starting_users_before_the_invocation_times_out() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        // 15 min, Lambda's longest: 90 s kept for the users under way.
        assert_eq!(time_budget(minutes(15)), Duration::from_secs(810));
        // A short timeout keeps a quarter.
        assert_eq!(time_budget(minutes(1)), Duration::from_secs(45));
        assert_eq!(time_budget(Duration::ZERO), Duration::from_secs(1));
        let budget = Some(Duration::from_secs(45));
        assert_eq!(
            line_within(json!({"command": "update", "service": "pg"}), budget).unwrap(),
            "--output json update --time-limit 45s -- pg"
        );
        // The event's own limit wins; status starts no rotation.
        assert_eq!(
            line_within(
                json!({"command": "rotate", "path": "P", "time_limit": "10m"}),
                budget
            )
            .unwrap(),
            "--output json rotate --path P --time-limit 10m"
        );
        assert_eq!(
            line_within(json!({"command": "status"}), budget).unwrap(),
            "--output json status"
        );
        let err = line(json!({"command": "rotate", "path": "P", "time_limit": "0s"})).unwrap_err();
        assert!(err.contains("--time-limit"), "{err}");
    }

    #[test]
    fn unknown_and_misplaced_fields_are_named() {
        let err = line(json!({"command": "rotate", "path": "P", "dryrun": true})).unwrap_err();
        assert!(
            err.contains("unknown field `dryrun` for command rotate"),
            "{err}"
        );
        assert!(err.contains("dry_run"), "{err}");
        let err = line(json!({"command": "status", "force": true})).unwrap_err();
        assert!(
            err.contains("unknown field `force` for command status"),
            "{err}"
        );
        let err = line(json!({"command": "update", "service": "x", "concurrency": 2})).unwrap_err();
        assert!(err.contains("`concurrency`"), "{err}");
    }

    #[test]
    fn fields_that_hand_out_keys_are_refused_by_name() {
        for field in ["print_secrets", "outfile"] {
            let err = line(json!({"command": "rotate", "path": "P", field: true})).unwrap_err();
            assert!(
                err.contains(&format!("field `{field}` is refused in Lambda")),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_types_missing_fields_and_bad_values_are_refused() {
        let err = line(json!({"command": "rotate"})).unwrap_err();
        assert!(err.contains("field `path` is required"), "{err}");
        let err = line(json!({"command": "rotate", "path": "P", "dry_run": "yes"})).unwrap_err();
        assert!(
            err.contains("`dry_run` must be true or false, not a string"),
            "{err}"
        );
        let err = line(json!({"command": "status", "services": "a"})).unwrap_err();
        assert!(
            err.contains("`services` must be an array of strings"),
            "{err}"
        );
        let err = line(json!({"command": "rotate", "path": "P", "lock_ttl": "999d"})).unwrap_err();
        assert!(
            err.contains("--lock-ttl") && err.contains("0s to 7d"),
            "{err}"
        );
        let err = line(json!({"command": "rotate", "path": "a b"})).unwrap_err();
        assert!(err.contains("not a valid IAM path"), "{err}");
        let err = line(json!({"command": "delete"})).unwrap_err();
        assert!(err.contains("unknown command 'delete'"), "{err}");
        let err = line(json!({"path": "P"})).unwrap_err();
        assert!(err.contains("`command` is missing"), "{err}");
        let err = line(json!(["rotate"])).unwrap_err();
        assert!(err.contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn a_service_name_that_looks_like_a_flag_stays_a_name() {
        let args = line(json!({"command": "update", "service": "--force"})).unwrap();
        assert!(args.ends_with("update -- --force"), "{args}");
    }

    #[test]
    fn exits_map_to_answers() {
        let summary = br#"{"users": []}"#;
        assert_eq!(
            Answer::of_exit(Some(0), None, summary),
            Answer::Done(json!({"users": []}))
        );
        let Answer::Failed {
            error_type,
            document,
        } = Answer::of_exit(Some(1), Some("1 of 2 users failed".into()), summary)
        else {
            panic!("a failure")
        };
        assert_eq!(error_type, "credrot.Failed");
        assert_eq!(document["exit_code"], 1);
        assert_eq!(document["error"], "1 of 2 users failed");
        assert_eq!(document["summary"], json!({"users": []}));
        let Answer::Failed {
            error_type,
            document,
        } = Answer::of_exit(Some(3), None, b"")
        else {
            panic!("a gate")
        };
        assert_eq!(error_type, "credrot.Gate");
        assert_eq!(document["summary"], Value::Null);
        assert!(matches!(
            Answer::of_exit(None, None, b""),
            Answer::Failed {
                error_type: "credrot.Killed",
                ..
            }
        ));
    }
}
