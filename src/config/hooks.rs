//! `after_rotate = [ ... ]`: what runs once a user's new key is stored, verified and
//! promoted. As written (one table with the keys of every kind), and as checked.

use super::error::Problem;
use super::kubernetes::{is_dns_label, is_dns_subdomain, KubeConnection};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The default time a command hook may take.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest time a command hook may take.
const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// One `after_rotate` entry as written: which keys belong to which kind is checked later,
/// so that the message can say which key is out of place.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    command: Option<Vec<String>>,
    stdin: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    kubernetes_restart: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    kubeconfig: Option<String>,
    context: Option<String>,
    signal: Option<Spanned<String>>,
    pid_file: Option<String>,
}

/// A reload hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Run a program (no shell).
    Command(CommandHook),
    /// `kubectl rollout restart` of a workload.
    KubernetesRestart(RestartHook),
    /// Send a signal to the process of a pid file.
    Signal(SignalHook),
}

/// `{ command = ["prog", "arg"], stdin = "key", timeout = "60s" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandHook {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Whether the key JSON is written to its stdin (`stdin = "key"`).
    pub key_on_stdin: bool,
    /// How long it may run before it is killed.
    pub timeout: Duration,
}

/// The kinds of workload `kubernetes_restart` restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// `deployment/NAME`
    Deployment,
    /// `statefulset/NAME`
    StatefulSet,
    /// `daemonset/NAME`
    DaemonSet,
}

impl WorkloadKind {
    /// The resource of the apps/v1 API (`deployments`).
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
        }
    }

    /// The word written in services.toml (`deployment`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }
}

/// `{ kubernetes_restart = "deployment/NAME", namespace = "NS" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartHook {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The cluster (a relative kubeconfig is relative to services.toml's directory).
    pub connection: KubeConnection,
}

/// `{ signal = "HUP", pid_file = "/run/app.pid" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalHook {
    /// The signal's name without `SIG` (`HUP`).
    pub signal: String,
    /// The file holding the process id (resolved against services.toml's directory).
    pub pid_file: PathBuf,
}

/// The signals a hook may send: the ones daemons reload or reopen on, and TERM/INT for
/// supervisors that restart what stops.
pub const SIGNALS: [&str; 7] = ["HUP", "USR1", "USR2", "TERM", "INT", "QUIT", "WINCH"];

impl Hook {
    /// One line for summaries and the audit log (never a secret: argv is configuration).
    pub fn describe(&self) -> String {
        match self {
            Hook::Command(c) => format!("command {}", c.argv.join(" ")),
            Hook::KubernetesRestart(r) => {
                format!(
                    "kubernetes_restart {}/{} in {}",
                    r.kind.as_str(),
                    r.name,
                    r.namespace
                )
            }
            Hook::Signal(s) => format!("signal {} to {}", s.signal, s.pid_file.display()),
        }
    }
}

/// Check the `after_rotate` entries of one section; relative files resolve against
/// `base_dir`.
pub(super) fn check_hooks(
    raw: Vec<Spanned<RawHook>>,
    base_dir: &Path,
) -> Result<Vec<Hook>, Problem> {
    raw.into_iter().map(|h| check_hook(h, base_dir)).collect()
}

fn check_hook(raw: Spanned<RawHook>, base_dir: &Path) -> Result<Hook, Problem> {
    let at = raw.span().start;
    let raw = raw.into_inner();
    let kinds = [
        raw.command.is_some(),
        raw.kubernetes_restart.is_some(),
        raw.signal.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(Problem::new(
            at,
            "an after_rotate entry must be exactly one of command, kubernetes_restart or signal",
            "write { command = [\"prog\", \"arg\"] }, { kubernetes_restart = \"deployment/NAME\", namespace = \"NS\" } or { signal = \"HUP\", pid_file = \"FILE\" }",
        ));
    }
    // Keys of another kind are refused, so that a misplaced key is not silently ignored.
    let misplaced = |allowed: &[&str]| -> Result<(), Problem> {
        let present = [
            ("stdin", raw.stdin.is_some()),
            ("timeout", raw.timeout.is_some()),
            ("namespace", raw.namespace.is_some()),
            ("kubeconfig", raw.kubeconfig.is_some()),
            ("context", raw.context.is_some()),
            ("pid_file", raw.pid_file.is_some()),
        ];
        match present.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            Some((key, _)) => Err(Problem::new(
                at,
                format!("after_rotate: '{key}' does not belong to this kind of hook"),
                "command takes stdin and timeout; kubernetes_restart takes namespace, kubeconfig and context; signal takes pid_file",
            )),
            None => Ok(()),
        }
    };
    if let Some(argv) = raw.command {
        misplaced(&["stdin", "timeout"])?;
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(Problem::new(
                at,
                "after_rotate command is empty",
                "write the program and its arguments as a list, e.g. command = [\"systemctl\", \"reload\", \"app\"]",
            ));
        }
        let key_on_stdin = match &raw.stdin {
            None => false,
            Some(s) if s.get_ref() == "key" => true,
            Some(s) => {
                return Err(Problem::new(
                    s.span().start,
                    format!("after_rotate stdin = \"{}\" is not known", s.get_ref()),
                    "the only value is stdin = \"key\" (the new key as JSON on the command's stdin); leave it out otherwise",
                ))
            }
        };
        let timeout = match &raw.timeout {
            None => DEFAULT_HOOK_TIMEOUT,
            Some(t) => match crate::duration::DurationSetting::parse(t.get_ref()) {
                Ok(d) if d.value <= MAX_HOOK_TIMEOUT => d.value,
                Ok(_) => {
                    return Err(Problem::new(
                        t.span().start,
                        format!(
                            "after_rotate timeout '{}' is out of range: allowed is at most 1h",
                            t.get_ref()
                        ),
                        "e.g. timeout = \"60s\"",
                    ))
                }
                Err(m) => {
                    return Err(Problem::new(
                        t.span().start,
                        format!("after_rotate timeout: {m}"),
                        "e.g. timeout = \"60s\"",
                    ))
                }
            },
        };
        return Ok(Hook::Command(CommandHook {
            argv,
            key_on_stdin,
            timeout,
        }));
    }
    if let Some(target) = raw.kubernetes_restart {
        misplaced(&["namespace", "kubeconfig", "context"])?;
        let tat = target.span().start;
        let (kind, name) = match target.get_ref().split_once('/') {
            Some(("deployment" | "deploy" | "deployments", n)) => (WorkloadKind::Deployment, n),
            Some(("statefulset" | "sts" | "statefulsets", n)) => (WorkloadKind::StatefulSet, n),
            Some(("daemonset" | "ds" | "daemonsets", n)) => (WorkloadKind::DaemonSet, n),
            _ => {
                return Err(Problem::new(
                    tat,
                    format!(
                        "kubernetes_restart '{}' names no workload",
                        target.get_ref()
                    ),
                    "write \"deployment/NAME\", \"statefulset/NAME\" or \"daemonset/NAME\"",
                ))
            }
        };
        if !is_dns_subdomain(name) {
            return Err(Problem::new(
                tat,
                format!(
                    "kubernetes_restart '{}': '{name}' is not a valid workload name",
                    target.get_ref()
                ),
                "use lower-case letters, digits, '-' and '.'",
            ));
        }
        let Some(namespace) = raw.namespace else {
            return Err(Problem::new(
                tat,
                format!("kubernetes_restart '{}' has no namespace", target.get_ref()),
                "add namespace = \"NS\"",
            ));
        };
        if !is_dns_label(namespace.get_ref()) {
            return Err(Problem::new(
                namespace.span().start,
                format!("'{}' is not a valid namespace name", namespace.get_ref()),
                "use at most 63 lower-case letters, digits or '-'",
            ));
        }
        let connection = KubeConnection {
            // Resolved against services.toml's directory when the hook runs, as the
            // Kubernetes store's is.
            kubeconfig: raw.kubeconfig,
            context: raw.context,
        };
        super::kubernetes::check_connection(&connection)
            .map_err(|(m, h)| Problem::new(at, m, h))?;
        return Ok(Hook::KubernetesRestart(RestartHook {
            kind,
            name: name.to_string(),
            namespace: namespace.into_inner(),
            connection,
        }));
    }
    let signal = raw.signal.expect("one kind is set");
    misplaced(&["pid_file"])?;
    let name = signal.get_ref().trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name).to_string();
    if !SIGNALS.contains(&name.as_str()) {
        return Err(Problem::new(
            signal.span().start,
            format!(
                "after_rotate signal '{}' is not one credrot sends",
                signal.get_ref()
            ),
            format!("use one of {}", SIGNALS.join(", ")),
        ));
    }
    let Some(pid_file) = raw.pid_file.filter(|p| !p.trim().is_empty()) else {
        return Err(Problem::new(
            at,
            "after_rotate signal has no pid_file",
            "add pid_file = \"/run/NAME.pid\": the file holding the process id",
        ));
    };
    Ok(Hook::Signal(SignalHook {
        signal: name,
        pid_file: base_dir.join(pid_file),
    }))
}
