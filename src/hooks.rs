//! Reload hooks (`after_rotate`): run once a user's new key is stored, verified and
//! promoted, so that the workloads reading it pick it up. A command (no shell; the key on
//! its stdin only if it asks), a `kubectl rollout restart` of a workload, or a signal to
//! the process of a pid file. A hook that fails is reported and never undoes the rotation.

use crate::config::{CommandHook, Hook, RestartHook, SignalHook};
use crate::http::HttpError;
use crate::kube::{describe_failure, KubeClient};
use crate::rotation::{AfterRotate, HookReport, UserReport};
use crate::secret::AccessKey;
use crate::store::KeyDocument;
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

/// How long the Kubernetes API may take to accept a restart.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// The variables of credrot's own environment a command hook inherits: enough to find
/// programs and reach a session bus or a cluster, and never credrot's credentials (AWS,
/// Vault, 1Password), which stay with credrot.
const INHERITED: [&str; 13] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "KUBECONFIG",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "SYSTEMD_IGNORE_CHROOT",
];

/// Runs each user's configured hooks.
pub struct HookRunner {
    by_user: HashMap<String, Vec<Hook>>,
    account: Option<String>,
    base_dir: PathBuf,
}

impl HookRunner {
    /// No hooks yet; `account` is the AWS account id for `CREDROT_ACCOUNT`, if known, and
    /// commands run in `base_dir` (services.toml's directory).
    pub fn new(account: Option<String>, base_dir: PathBuf) -> Self {
        HookRunner {
            by_user: HashMap::new(),
            account,
            base_dir,
        }
    }

    /// Set the account id for `CREDROT_ACCOUNT`.
    pub fn set_account(&mut self, account: Option<String>) {
        self.account = account;
    }

    /// Run `hooks` after `user`'s rotation too (a hook listed twice runs once).
    pub fn add(&mut self, user: &str, hooks: &[Hook]) {
        let list = self.by_user.entry(user.to_string()).or_default();
        for hook in hooks {
            if !list.contains(hook) {
                list.push(hook.clone());
            }
        }
    }

    /// Whether any user has a hook.
    pub fn is_empty(&self) -> bool {
        self.by_user.values().all(Vec::is_empty)
    }

    /// The account id of an ARN (`arn:aws:iam::123456789012:user/x`).
    pub fn account_of(arn: &str) -> Option<String> {
        arn.split(':')
            .nth(4)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
    }

    async fn run(&self, hook: &Hook, report: &UserReport, key: &AccessKey) -> Result<(), String> {
        match hook {
            Hook::Command(c) => self.command(c, report, key).await,
            Hook::KubernetesRestart(r) => restart(r, &self.base_dir).await,
            Hook::Signal(s) => signal(s),
        }
    }

    /// Run a command hook: argv as configured, a clean environment with the `CREDROT_*`
    /// facts, the key JSON on stdin only with `stdin = "key"`, killed at its timeout.
    async fn command(
        &self,
        hook: &CommandHook,
        report: &UserReport,
        key: &AccessKey,
    ) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(&hook.argv[0]);
        cmd.args(&hook.argv[1..])
            .current_dir(if self.base_dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                self.base_dir.clone()
            })
            .env_clear()
            .envs(
                INHERITED
                    .iter()
                    .filter_map(|v| std::env::var_os(v).map(|value| (v, value))),
            )
            .env("CREDROT_USER", &report.user)
            .env("CREDROT_KEY_ID", &key.id)
            .env("CREDROT_STORES", report.stores.join("\n"))
            .stdin(if hook.key_on_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(service) = &report.service {
            cmd.env("CREDROT_SERVICE", service);
        }
        if let Some(account) = &self.account {
            cmd.env("CREDROT_ACCOUNT", account);
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot run {}: not found (give a path, or put it on PATH)",
                hook.argv[0]
            ),
            _ => format!("cannot run {}: {e}", hook.argv[0]),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let document: Zeroizing<Vec<u8>> = KeyDocument::to_wiped(key, false);
            // A hook that exits without reading is judged by its exit status alone.
            let _ = stdin.write_all(&document).await;
            drop(stdin);
        }
        let waited = tokio::time::timeout(hook.timeout, child.wait_with_output()).await;
        let output = match waited {
            // Dropping the child on timeout kills it (kill_on_drop).
            Err(_) => {
                return Err(format!(
                    "did not finish within {} and was killed",
                    humantime::format_duration(hook.timeout)
                ))
            }
            Ok(Err(e)) => return Err(format!("cannot wait for it: {e}")),
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
        let tail: String = crate::store::redact(&tail, &[key.expose()])
            .chars()
            .take(500)
            .collect();
        let status = match output.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        Err(if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        })
    }
}

/// `kubectl rollout restart`: a strategic-merge PATCH of the pod template's
/// `kubectl.kubernetes.io/restartedAt` annotation, so the workload rolls its pods.
async fn restart(hook: &RestartHook, base_dir: &std::path::Path) -> Result<(), String> {
    let client = KubeClient::connect(&hook.connection, base_dir, RESTART_TIMEOUT)?;
    let now = humantime::format_rfc3339_seconds(crate::clock::now()).to_string();
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}
    });
    let path = format!(
        "/apis/apps/v1/namespaces/{}/{}/{}",
        hook.namespace,
        hook.kind.resource(),
        hook.name
    );
    let body = Zeroizing::new(patch.to_string().into_bytes());
    let response = client
        .call(
            http::Method::PATCH,
            &path,
            Some((body, "application/strategic-merge-patch+json")),
        )
        .await
        .map_err(|e: HttpError| e.to_string())?;
    if response.is_success() {
        Ok(())
    } else {
        Err(describe_failure(&response).replace(
            "see the RBAC rules in docs/stores/kubernetes.md",
            "it needs 'patch' on the workload: see docs/hooks.md",
        ))
    }
}

/// Send the hook's signal to the process in its pid file.
fn signal(hook: &SignalHook) -> Result<(), String> {
    use rustix::process::{kill_process, Pid, Signal};
    let text = std::fs::read_to_string(&hook.pid_file)
        .map_err(|e| format!("cannot read pid file {}: {e}", hook.pid_file.display()))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            format!(
                "pid file {} does not hold a process id above 1",
                hook.pid_file.display()
            )
        })?;
    let sig = match hook.signal.as_str() {
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "WINCH" => Signal::WINCH,
        other => return Err(format!("signal {other} is not supported")),
    };
    kill_process(pid, sig).map_err(|e| {
        format!(
            "cannot send SIG{} to process {}: {e}",
            hook.signal,
            pid.as_raw_pid()
        )
    })
}

#[async_trait]
impl AfterRotate for HookRunner {
    async fn after_rotate(&self, report: &UserReport) -> Vec<HookReport> {
        let (Some(hooks), Some(key)) = (self.by_user.get(&report.user), &report.new_key) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(hooks.len());
        for hook in hooks {
            let result = self.run(hook, report, key).await;
            if result.is_ok() {
                tracing::info!(user = %report.user, hook = %hook.describe(), "after_rotate hook done");
            }
            out.push(HookReport {
                hook: hook.describe(),
                outcome: if result.is_ok() { "ok" } else { "failed" },
                error: result
                    .err()
                    .map(|e| crate::store::redact(&e, &[key.expose()])),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_HOOK_TIMEOUT;

    fn report(user: &str) -> UserReport {
        let mut r = UserReport::new(user, Some("svc"));
        r.stores = vec!["file:a.json".into(), "vault:secret/x".into()];
        r.new_key = Some(AccessKey::new("AKIANEW", "the-new-secret-value"));
        r
    }

    fn command(argv: &[&str], stdin: bool) -> Hook {
        Hook::Command(CommandHook {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            key_on_stdin: stdin,
            timeout: DEFAULT_HOOK_TIMEOUT,
        })
    }

    #[tokio::test]
    async fn a_command_gets_the_facts_and_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let mut runner = HookRunner::new(Some("123456789012".into()), dir.path().to_path_buf());
        let script = format!("env > {}; cat > {}.stdin", out.display(), out.display());
        runner.add("u", &[command(&["sh", "-c", &script], false)]);
        let hooks = runner.after_rotate(&report("u")).await;
        assert_eq!(hooks.len(), 1);
        assert!(!hooks[0].failed(), "{hooks:?}");
        let env = std::fs::read_to_string(&out).unwrap();
        for line in [
            "CREDROT_USER=u",
            "CREDROT_SERVICE=svc",
            "CREDROT_KEY_ID=AKIANEW",
            "CREDROT_ACCOUNT=123456789012",
            "CREDROT_STORES=file:a.json",
        ] {
            assert!(env.contains(line), "{line} missing in {env}");
        }
        assert!(!env.contains("the-new-secret-value"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env.txt.stdin")).unwrap(),
            ""
        );
    }

    #[tokio::test]
    async fn stdin_key_hands_the_key_json_and_failures_are_reported_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = HookRunner::new(None, dir.path().to_path_buf());
        runner.add(
            "u",
            &[
                command(&["sh", "-c", "cat >&2; exit 3"], true),
                command(&["/no/such/program"], false),
            ],
        );
        let hooks = runner.after_rotate(&report("u")).await;
        assert!(hooks.iter().all(HookReport::failed));
        let first = hooks[0].error.as_deref().unwrap();
        assert!(
            first.starts_with("exited with status 3") && first.contains("AKIANEW"),
            "{first}"
        );
        assert!(!first.contains("the-new-secret-value"), "{first}");
        assert!(hooks[1].error.as_deref().unwrap().contains("not found"));
        assert!(runner.after_rotate(&report("other")).await.is_empty());
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed() {
        let mut runner = HookRunner::new(None, PathBuf::new());
        runner.add(
            "u",
            &[Hook::Command(CommandHook {
                argv: vec!["sleep".into(), "30".into()],
                key_on_stdin: false,
                timeout: Duration::from_millis(200),
            })],
        );
        let hooks = runner.after_rotate(&report("u")).await;
        assert!(hooks[0].error.as_deref().unwrap().contains("was killed"));
    }

    #[test]
    fn signals_need_a_real_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, "1\n").unwrap();
        let hook = SignalHook {
            signal: "HUP".into(),
            pid_file: pid_file.clone(),
        };
        assert!(signal(&hook).unwrap_err().contains("above 1"));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        signal(&SignalHook {
            signal: "TERM".into(),
            pid_file,
        })
        .unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the signal ended it");
        assert_eq!(
            HookRunner::account_of("arn:aws:iam::123456789012:user/a").as_deref(),
            Some("123456789012")
        );
    }
}
