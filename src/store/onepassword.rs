//! `kind = "1password"`: the key as an API Credential item (username = access key id,
//! credential = secret access key), written through the 1Password CLI `op`.
//!
//! Secrets reach `op` only as item JSON on its stdin (`op item create -`, `op item edit ID -`),
//! never in argv, where any user of the machine could read them; credentials for `op`
//! itself (`OP_SERVICE_ACCOUNT_TOKEN`, `OP_ACCOUNT`) pass through the environment, which
//! op gets only the part of that it needs ([`op_env`]): never credrot's AWS credentials. An
//! existing item is edited in place, so it keeps its id, its history and any field credrot
//! does not manage.

use super::{SecretStore, StoreError, WriteContext};
use crate::secret::AccessKey;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// The environment variable naming the `op` binary (default: `op` on PATH).
pub const OP_PROGRAM_ENV: &str = "CREDROT_OP";

/// How long one `op` call may take before it is killed.
const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest part of op's stderr quoted in an error.
const MAX_QUOTED: usize = 500;

const CATEGORY: &str = "API_CREDENTIAL";
const USERNAME: &str = "username";
const CREDENTIAL: &str = "credential";
const NOTES: &str = "notesPlain";

/// Why an `op` call failed.
#[derive(Debug, thiserror::Error)]
enum OpFailure {
    #[error("the 1Password CLI '{0}' was not found; install it, or set CREDROT_OP to its path")]
    NotInstalled(String),
    /// op answered with an error; the text is its stderr, sanitized.
    #[error("{0}")]
    Failed(String),
    /// op did not answer in time: what it did is unknown.
    #[error("op did not answer within {}s and was stopped", OP_TIMEOUT.as_secs())]
    TimedOut,
    #[error("cannot run op: {0}")]
    Io(String),
    /// op ran, but its answer was lost: what it did is unknown.
    #[error("lost op's answer: {0}")]
    Lost(String),
}

impl OpFailure {
    /// Whether op may have done what it was asked before the failure.
    fn may_have_landed(&self) -> bool {
        matches!(self, OpFailure::TimedOut | OpFailure::Lost(_))
    }
}

/// Variables op is given by name; besides these, every `OP_*` (op's own settings and
/// credentials) and `LC_*`. Everything else of credrot's environment, its AWS credentials
/// first, stays out of the child.
const OP_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "LANG",
    "XDG_CONFIG_HOME",
    // The desktop-app integration's socket lives there.
    "XDG_RUNTIME_DIR",
    // op talks to 1Password's servers, through the caller's proxy and CAs if any.
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Prefixes of the variables op is given: op's own, the locale's, and the settings of the
/// fake op credrot's tests use (tests/fake-op/op), which no real program reads.
const OP_ENV_PREFIXES: &[&str] = &["OP_", "LC_", "FAKE_OP_"];

/// Whether op is given the variable `name`.
fn passes_to_op(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|name| {
        OP_ENV.contains(&name) || OP_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
    })
}

/// The part of credrot's environment that op is given.
fn op_env() -> impl Iterator<Item = (OsString, OsString)> {
    std::env::vars_os().filter(|(name, _)| passes_to_op(name))
}

/// At most this many op processes run at once, whatever `--concurrency` is: op is a
/// process per call, and 1Password limits request bursts, while the width of a run is set
/// for AWS's endpoints.
const OP_PARALLEL: usize = 8;

/// The 1Password CLI, shared by every 1Password store of a run.
#[derive(Debug)]
pub struct OpCli {
    program: OsString,
    slots: tokio::sync::Semaphore,
}

impl OpCli {
    /// `op` as named by `CREDROT_OP`, else `op` on PATH.
    pub fn from_env() -> Self {
        OpCli::new(std::env::var_os(OP_PROGRAM_ENV).unwrap_or_else(|| "op".into()))
    }

    /// `op` at `program`.
    pub fn new(program: impl Into<OsString>) -> Self {
        OpCli {
            program: program.into(),
            slots: tokio::sync::Semaphore::new(OP_PARALLEL),
        }
    }

    /// Run op with `args` (never a secret), feeding `stdin`; stdout on success. `redact`
    /// lists secrets that must not appear in an error even if op were to echo them.
    async fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        redact: &[&str],
    ) -> Result<Vec<u8>, OpFailure> {
        // Waiting for a slot is not op's time, so the timeout starts after it.
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .env_clear()
            .envs(op_env())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out call must not leave op running.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    OpFailure::NotInstalled(self.program.to_string_lossy().into_owned())
                }
                _ => OpFailure::Io(e.to_string()),
            })?;
        let pipe = child.stdin.take();
        // Feed stdin while collecting the output, so neither side can block the other.
        let feed = async move {
            if let (Some(mut pipe), Some(input)) = (pipe, stdin) {
                pipe.write_all(input).await?;
                pipe.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let (fed, output) = tokio::time::timeout(OP_TIMEOUT, async {
            tokio::join!(feed, child.wait_with_output())
        })
        .await
        .map_err(|_| OpFailure::TimedOut)?;
        let output = output.map_err(|e| OpFailure::Lost(e.to_string()))?;
        if output.status.success() {
            // op's success is what counts: a write it reports done is treated as landed,
            // whatever became of our end of the pipe.
            return Ok(output.stdout);
        }
        // A failed feed (op exited before reading) matters only through op's own answer.
        drop(fed);
        Err(OpFailure::Failed(sanitize(
            &String::from_utf8_lossy(&output.stderr),
            redact,
        )))
    }
}

/// op's stderr as one line for an error message: `[ERROR] date time` prefixes dropped,
/// `redact`ed secrets replaced, cut at a sane length.
fn sanitize(stderr: &str, redact: &[&str]) -> String {
    let mut text = stderr
        .lines()
        .map(|line| {
            let line = line.trim();
            match line.strip_prefix("[ERROR] ") {
                // `YYYY/MM/DD HH:MM:SS message`
                Some(rest) => rest.splitn(3, ' ').nth(2).unwrap_or(rest),
                None => line,
            }
        })
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    for secret in redact.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    if text.is_empty() {
        return "op failed without a message".to_string();
    }
    if text.len() > MAX_QUOTED {
        let mut end = MAX_QUOTED;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// Whether `op whoami --format json` answered with an account: a JSON object naming the
/// user and the account it is signed in as.
fn is_signed_in_account(out: &[u8]) -> bool {
    let Ok(info) = serde_json::from_slice::<Value>(out) else {
        return false;
    };
    ["user_uuid", "account_uuid"]
        .iter()
        .all(|name| info[name].as_str().is_some_and(|v| !v.trim().is_empty()))
}

/// The value of an item's field, found by id or label.
fn field_value<'a>(item: &'a Value, name: &str) -> Option<&'a str> {
    item["fields"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == name || f["label"] == name)?
        .get("value")?
        .as_str()
        .filter(|v| !v.is_empty())
}

/// Set (or, with `None`, empty) a field, adding it when the item lacks it.
fn set_field(item: &mut Value, name: &str, kind: &str, value: Option<&str>) {
    if !item["fields"].is_array() {
        item["fields"] = json!([]);
    }
    let fields = item["fields"].as_array_mut().expect("fields is an array");
    let index = match fields
        .iter()
        .position(|f| f["id"] == name || f["label"] == name)
    {
        Some(index) => index,
        None => {
            let mut field = json!({"id": name, "type": kind, "label": name});
            if name == NOTES {
                field["purpose"] = json!("NOTES");
            }
            fields.push(field);
            fields.len() - 1
        }
    };
    let field = fields[index].as_object_mut().expect("a field is an object");
    match value {
        Some(value) => {
            field.insert("value".into(), json!(value));
        }
        // op omits the value of an empty field.
        None => {
            field.remove("value");
        }
    }
}

/// The key an item hands out, when both fields hold a value.
fn key_of(item: &Value) -> Option<AccessKey> {
    Some(AccessKey::new(
        field_value(item, USERNAME)?,
        field_value(item, CREDENTIAL)?,
    ))
}

/// Put `key` (or no key) into the item's username and credential fields.
fn set_key(item: &mut Value, key: Option<&AccessKey>) {
    set_field(item, USERNAME, "STRING", key.map(|k| k.id.as_str()));
    set_field(item, CREDENTIAL, "CONCEALED", key.map(AccessKey::expose));
}

/// The notes credrot keeps on the item.
fn notes(ctx: &WriteContext) -> String {
    let mut text = String::from(
        "Managed by credrot: the next rotation overwrites this item, so do not edit it by hand.\n",
    );
    text.push_str(&format!("IAM user: {}\n", ctx.user));
    if let Some(service) = &ctx.service {
        text.push_str(&format!("Service: {service}\n"));
    }
    text.push_str(&format!(
        "Rotated at: {}\nPrevious access key id: {}\n",
        humantime::format_rfc3339_seconds(ctx.rotated_at),
        ctx.previous_key_id.as_deref().unwrap_or("none")
    ));
    text
}

/// Item JSON for op's stdin, wiped from memory once sent.
fn to_stdin(item: &Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(item).expect("JSON values always serialize"))
}

/// What the last write changed, so that restore can undo exactly that.
enum Undo {
    /// The write created the item (its id, unless op timed out before saying).
    Created(Option<String>),
    /// The write edited the item; this is how it was before (JSON).
    Edited(Zeroizing<String>),
}

#[derive(Default)]
struct State {
    /// The item as 1Password holds it (JSON), `None` when there is none.
    item: Option<Zeroizing<String>>,
    undo: Option<Undo>,
}

/// An API Credential item in a 1Password vault.
pub struct OnePasswordStore {
    op: Arc<OpCli>,
    vault: String,
    title: String,
    tags: Vec<String>,
    state: Mutex<State>,
}

impl OnePasswordStore {
    /// The item `title` in `vault`, tagged `tags` when written.
    pub fn new(op: Arc<OpCli>, vault: String, title: String, tags: Vec<String>) -> Self {
        OnePasswordStore {
            op,
            vault,
            title,
            tags,
            state: Mutex::default(),
        }
    }

    /// `op item get`, `None` when the item does not exist.
    async fn get(&self, reference: &str) -> Result<Option<Value>, OpFailure> {
        let args = [
            "item",
            "get",
            reference,
            "--vault",
            &self.vault,
            "--format",
            "json",
        ];
        match self.op.run(&args, None, &[]).await {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|_| OpFailure::Failed("op item get printed no item JSON".into())),
            Err(OpFailure::Failed(message)) if message.contains("isn't an item") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `op item create` or `op item edit ID` with `item` on stdin; the item op returns.
    async fn put(
        &self,
        edit_id: Option<&str>,
        item: &Value,
        redact: &[&str],
    ) -> Result<Value, OpFailure> {
        let mut args = vec!["item"];
        match edit_id {
            Some(id) => args.extend(["edit", id]),
            None => args.push("create"),
        }
        args.extend(["--vault", &self.vault, "--format", "json", "-"]);
        let out = self.op.run(&args, Some(&to_stdin(item)), redact).await?;
        // op said it succeeded, so the write landed even if its answer cannot be read.
        serde_json::from_slice(&out).map_err(|_| OpFailure::Lost("op printed no item JSON".into()))
    }

    async fn delete(&self, id: &str) -> Result<(), OpFailure> {
        self.op
            .run(&["item", "delete", id, "--vault", &self.vault], None, &[])
            .await
            .map(drop)
    }
}

/// The item id, for messages and edits.
fn item_id(item: &Value) -> &str {
    item["id"].as_str().unwrap_or("?")
}

#[async_trait]
impl SecretStore for OnePasswordStore {
    fn location(&self) -> String {
        format!("1password:{}/{}", self.vault, self.title)
    }

    async fn check_run(&self) -> Result<(), StoreError> {
        match self.op.run(&["whoami", "--format", "json"], None, &[]).await {
            Ok(out) if is_signed_in_account(&out) => Ok(()),
            // Exit 0 is not enough: a wrapper or another program named op says nothing of
            // whether 1Password will accept the writes.
            Ok(_) => Err(self.error(
                "check",
                format!(
                    "'{} whoami --format json' did not answer with a signed-in account (JSON with user_uuid and account_uuid); check that it is the 1Password CLI v2 (or set CREDROT_OP to it) and that it is signed in, then run again",
                    self.op.program.to_string_lossy()
                ),
            )),
            Err(OpFailure::Failed(message)) => Err(self.error(
                "check",
                format!(
                    "op is not signed in ({message}); set OP_SERVICE_ACCOUNT_TOKEN to a service account token, or sign in with 'op signin' and set OP_ACCOUNT, then run again"
                ),
            )),
            Err(e) => Err(self.error("check", e)),
        }
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        let mut state = self.state.lock().await;
        *state = State::default();
        let Some(item) = self
            .get(&self.title)
            .await
            .map_err(|e| self.error("read", format!("op item get failed: {e}")))?
        else {
            return Ok(None);
        };
        if item["category"] != CATEGORY {
            return Err(self.error(
                "read",
                format!(
                    "item {} is a {} item, not an API Credential; give the store another title or remove the item",
                    item_id(&item),
                    item["category"].as_str().unwrap_or("unknown")
                ),
            ));
        }
        state.item = Some(Zeroizing::new(item.to_string()));
        Ok(key_of(&item))
    }

    async fn write(&self, key: &AccessKey, ctx: &WriteContext) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.undo = None;
        let before: Option<Value> = state
            .item
            .as_ref()
            .map(|text| serde_json::from_str(text).expect("stored item is JSON"));
        let mut item = before
            .clone()
            .unwrap_or_else(|| json!({"title": self.title, "category": CATEGORY, "fields": []}));
        // Path stores have no tags of their own: keep what the item already has.
        if !self.tags.is_empty() || item.get("tags").is_none() {
            item["tags"] = json!(self.tags);
        }
        set_key(&mut item, Some(key));
        set_field(&mut item, NOTES, "STRING", Some(&notes(ctx)));
        let old_secret = before.as_ref().and_then(|b| field_value(b, CREDENTIAL));
        let redact = [key.expose(), old_secret.unwrap_or_default()];
        let edit_id = before.as_ref().map(item_id);
        match self.put(edit_id, &item, &redact).await {
            Ok(written) => {
                state.undo = Some(match (&before, edit_id) {
                    (Some(b), Some(_)) => Undo::Edited(Zeroizing::new(b.to_string())),
                    _ => Undo::Created(Some(item_id(&written).to_string())),
                });
                state.item = Some(Zeroizing::new(written.to_string()));
                Ok(())
            }
            Err(e) => {
                if e.may_have_landed() {
                    state.undo = Some(match &before {
                        Some(b) => Undo::Edited(Zeroizing::new(b.to_string())),
                        None => Undo::Created(None),
                    });
                }
                Err(self.error(
                    "write",
                    match edit_id {
                        Some(id) => format!("op item edit {id} failed: {e}"),
                        None => format!("op item create failed: {e}"),
                    },
                ))
            }
        }
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        match state.undo.take() {
            None => Ok(()),
            Some(Undo::Created(id)) => {
                let id = match id {
                    Some(id) => Some(id),
                    // A create that timed out may have made the item: look it up by title.
                    None => self
                        .get(&self.title)
                        .await
                        .map_err(|e| self.error("restore", format!("op item get failed: {e}")))?
                        .map(|item| item_id(&item).to_string()),
                };
                if let Some(id) = id {
                    self.delete(&id).await.map_err(|e| {
                        self.error("restore", format!("op item delete {id} failed: {e}"))
                    })?;
                }
                state.item = None;
                Ok(())
            }
            Some(Undo::Edited(before)) => {
                let mut item: Value = serde_json::from_str(&before).expect("stored item is JSON");
                // The fields as they were, holding exactly the key the engine puts back.
                set_key(&mut item, previous);
                let id = item_id(&item).to_string();
                let current_secret = state
                    .item
                    .as_ref()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .and_then(|i| field_value(&i, CREDENTIAL).map(str::to_string))
                    .map(Zeroizing::new);
                let redact = [
                    previous.map(AccessKey::expose).unwrap_or_default(),
                    current_secret
                        .as_deref()
                        .map(String::as_str)
                        .unwrap_or_default(),
                ];
                match self.put(Some(&id), &item, &redact).await {
                    Ok(written) => {
                        state.item = Some(Zeroizing::new(written.to_string()));
                        Ok(())
                    }
                    Err(e) => {
                        state.undo = Some(Undo::Edited(before));
                        Err(self.error("restore", format!("op item edit {id} failed: {e}")))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn op_gets_its_own_variables_and_never_aws_credentials() {
        for name in [
            "PATH",
            "HOME",
            "OP_SERVICE_ACCOUNT_TOKEN",
            "OP_ACCOUNT",
            "LC_ALL",
            "XDG_CONFIG_HOME",
        ] {
            assert!(passes_to_op(name.as_ref()), "{name}");
        }
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "CREDROT_SSH_PASSPHRASE",
            "GITHUB_TOKEN",
            "OPX",
        ] {
            assert!(!passes_to_op(name.as_ref()), "{name}");
        }
    }

    #[test]
    fn whoami_must_name_a_user_and_an_account() {
        let account = br#"{"url": "https://x.1password.com", "email": "", "user_uuid": "U", "account_uuid": "A", "user_type": "SERVICE_ACCOUNT"}"#;
        assert!(is_signed_in_account(account));
        for garbage in [
            &b""[..],
            b"ok",
            b"<connection reset>",
            b"{}",
            b"[]",
            br#"{"user_uuid": "U"}"#,
            br#"{"user_uuid": "", "account_uuid": "A"}"#,
        ] {
            assert!(
                !is_signed_in_account(garbage),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn sanitize_keeps_the_message_and_drops_secrets_and_timestamps() {
        let stderr =
            "[ERROR] 2024/01/02 03:04:05 \"x\" isn't an item in the \"Automation\" vault. s3cr3t\n";
        let text = sanitize(stderr, &["s3cr3t"]);
        assert_eq!(
            text,
            "\"x\" isn't an item in the \"Automation\" vault. [redacted]"
        );
        assert_eq!(sanitize("", &[]), "op failed without a message");
        assert!(sanitize(&"e".repeat(2000), &[]).len() <= MAX_QUOTED + 3);
    }

    #[test]
    fn set_key_fills_and_empties_the_fields_keeping_the_others() {
        let mut item = json!({
            "id": "abc",
            "category": CATEGORY,
            "fields": [
                {"id": "hostname", "type": "STRING", "label": "hostname", "value": "s3"},
                {"id": "username", "type": "STRING", "label": "username"}
            ]
        });
        assert!(key_of(&item).is_none());
        let key = AccessKey::new("AKIA1", "secret1");
        set_key(&mut item, Some(&key));
        assert_eq!(key_of(&item), Some(key));
        assert_eq!(field_value(&item, "hostname"), Some("s3"));
        assert_eq!(item["fields"][2]["type"], "CONCEALED");
        set_key(&mut item, None);
        assert!(key_of(&item).is_none());
        assert!(
            item["fields"][1].get("value").is_none(),
            "op omits empty values"
        );
    }

    #[test]
    fn notes_name_the_user_the_previous_key_and_credrot() {
        let text = notes(&WriteContext {
            user: "pg-backup".into(),
            service: Some("postgresql".into()),
            previous_key_id: Some("AKIAOLD".into()),
            rotated_at: SystemTime::UNIX_EPOCH,
        });
        for part in [
            "credrot",
            "IAM user: pg-backup",
            "Service: postgresql",
            "1970-01-01T00:00:00Z",
            "Previous access key id: AKIAOLD",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }
}
