//! The audit log: one JSON line per action credrot takes on IAM or a store, chained by
//! SHA-256 so that an edited or removed line is detected by `credrot audit verify`.
//!
//! # Line format (version 1)
//!
//! Each line is one JSON object, UTF-8, ended by `\n`, with its fields in this order:
//!
//! ```text
//! {"seq":N,"time":"RFC 3339","run":"RUN ID","caller":"ARN","user":"IAM USER",
//!  "service":"S","action":"create-key","key_id":"AKIA..","store":"file:..",
//!  "outcome":"ok","error":"..","prev":"HEX64","hash":"HEX64"}
//! ```
//!
//! (`service`, `key_id`, `store` and `error` are left out when they do not apply). `caller`
//! is the ARN the run's credentials belong to (STS `GetCallerIdentity`), or `unknown` when
//! STS could not say. No field ever holds a secret: the events carry key ids only.
//!
//! # The chain
//!
//! - The *body* of a line is its exact bytes up to, not including, the final
//!   `,"hash":"HEX64"}`; that suffix is always the last 75 bytes before the newline.
//! - `hash` is the lower-case hex SHA-256 of the body. The body contains `prev`, so a line's
//!   hash covers its own fields and the hash of the line before it.
//! - `prev` is the previous line's `hash`; for the first line it is [`GENESIS`]
//!   (64 zeros). `seq` is the line's number in the chain, starting at 1.
//!
//! `verify` therefore tells: an *edited* line (its hash no longer matches its body), a
//! *removed* line (the next line's `prev` and `seq` do not follow), and *reordered or
//! inserted* lines (`prev` does not follow and `seq` goes backwards or repeats).
//!
//! # What the chain cannot tell
//!
//! Lines cut off the *end* of the file leave a shorter chain that is still intact; and
//! anyone who can write the file can recompute every hash after an edit. The chain only
//! proves integrity against an anchor kept elsewhere: `verify` prints the head (last `seq`
//! and `hash`), every webhook notice carries the head after its run, and the CloudWatch
//! copy holds the same lines byte for byte. Compare with one of those to detect truncation
//! or a rewritten file.
//!
//! # When the audit log fails
//!
//! The rule that no working credential is ever lost comes first, so an audit failure never
//! interrupts a rotation half-way:
//! - before the run: the file is opened (created 0600) and its last line checked before
//!   any AWS call; if that fails the run stops with exit 2. The CloudWatch group and stream
//!   are created before IAM is touched; if that fails the run stops with exit 1 and
//!   nothing rotated.
//! - during the run: a line that cannot be written is reported on stderr at once, the
//!   rotations go on, and the run ends with exit 1 (see [`AuditLog`]).
//! - the caller's ARN costs one STS call per run, made only when `[audit]` is configured;
//!   if it fails the lines say `unknown` and a warning is printed.
//! - a dry run changes nothing and records nothing.
//!
//! Durability: see [`AuditFile`] (every line reaches the kernel at once; fsync per user).

mod cloudwatch;
mod file;
mod sink;
mod verify;

pub use cloudwatch::{CloudWatchError, CloudWatchSink};
pub use file::AuditFile;
pub use sink::{AuditLog, AuditSummary};
pub use verify::{verify, verify_file, Broken, Problem, Verified};

use crate::rotation::Event;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::SystemTime;

/// `prev` of the first line of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes after a line's body: `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 75;

/// Why the audit log or one of its sinks failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit file cannot be created, opened or locked.
    #[error("cannot open the audit log {}: {source}; fix the path or its permissions in [audit] path", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audit file's last line is not one credrot can chain from.
    #[error("the audit log {} cannot be continued: its last line {problem}; run 'credrot audit verify --path {}' and move the damaged file aside", path.display(), path.display())]
    BadTail {
        /// The file.
        path: PathBuf,
        /// What is wrong with the last line.
        problem: Problem,
    },
    /// A line could not be appended or the file could not be synced.
    #[error("cannot write the audit log {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audit file could not be read for verification.
    #[error("cannot read the audit log {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `verify` found a broken chain.
    #[error("{}: {broken}", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// The first bad line and why.
        broken: Broken,
    },
    /// The CloudWatch Logs sink failed.
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    /// Some records of this run were not written; the first failure says why.
    #[error("{failed} audit record(s) of this run could not be written (the rotations themselves went on): {first}")]
    Incomplete {
        /// How many records were lost in at least one sink.
        failed: usize,
        /// The first failure.
        first: String,
    },
}

/// The position of a line in the chain: its number and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The line's `seq` (0 before the first line).
    pub seq: u64,
    /// The line's `hash` ([`GENESIS`] before the first line).
    pub hash: String,
}

impl Link {
    /// The position before the first line.
    pub fn genesis() -> Link {
        Link {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Who ran the rotation, and which run: the fields every line of a run shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run id (also the owner of the run's IAM user locks).
    pub run_id: String,
    /// The ARN of the run's credentials, or `unknown`.
    pub caller: String,
}

/// The body of a line, in the documented field order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    run: &'a str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'a str>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    prev: &'a str,
}

/// One line ready to be written: its text (with the newline) and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The line, ending in `\n`.
    pub line: String,
    /// The line's own position, which the next line chains from.
    pub link: Link,
}

/// Build the line for `event`, chained after `after`, stamped with `time`.
pub fn seal(event: &Event, run: &RunInfo, after: &Link, time: SystemTime) -> Sealed {
    let time = humantime::format_rfc3339_millis(time).to_string();
    let seq = after.seq + 1;
    let body = Body {
        seq,
        time: &time,
        run: &run.run_id,
        caller: &run.caller,
        account: event.account.as_deref(),
        user: &event.user,
        service: event.service.as_deref(),
        action: event.action,
        key_id: event.key_id.as_deref(),
        store: event.store.as_deref(),
        outcome: event.outcome,
        error: event.error.as_deref(),
        prev: &after.hash,
    };
    let mut text = serde_json::to_string(&body).expect("strings and numbers always serialize");
    // Drop the closing brace: what remains is the body the hash covers.
    text.pop();
    let hash = hash_of(text.as_bytes());
    text.push_str(&format!(",\"hash\":\"{hash}\"}}\n"));
    Sealed {
        line: text,
        link: Link { seq, hash },
    }
}

fn hash_of(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The chain fields of a line, as `verify` reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The line's own position.
    pub link: Link,
    /// The hash it claims to follow.
    pub prev: String,
}

#[derive(Deserialize)]
struct ChainFields {
    seq: u64,
    prev: String,
}

/// Check one line (without its newline) on its own: it is a record and its hash matches
/// its body. Whether it follows the line before is the caller's business.
pub fn parse_line(line: &[u8]) -> Result<Parsed, Problem> {
    if line.is_empty() {
        return Err(Problem::NotARecord("it is empty".to_string()));
    }
    let Some(body_len) = line.len().checked_sub(HASH_SUFFIX_LEN) else {
        return Err(Problem::NotARecord(
            "it is too short to hold a hash".to_string(),
        ));
    };
    let (body, suffix) = line.split_at(body_len);
    let claimed = suffix
        .strip_prefix(b",\"hash\":\"")
        .and_then(|s| s.strip_suffix(b"\"}"))
        .filter(|h| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| Problem::NotARecord("it does not end with its hash".to_string()))?;
    let mut object = body.to_vec();
    object.push(b'}');
    let fields: ChainFields = serde_json::from_slice(&object)
        .map_err(|e| Problem::NotARecord(format!("it is not a JSON audit record ({e})")))?;
    let hash = hash_of(body);
    if hash.as_bytes() != claimed {
        return Err(Problem::Edited);
    }
    Ok(Parsed {
        link: Link {
            seq: fields.seq,
            hash,
        },
        prev: fields.prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(n: usize) -> Event {
        Event {
            account: None,
            user: format!("user-{n}"),
            service: Some("svc".to_string()),
            action: "create-key",
            key_id: Some(format!("AKIA{n:016}")),
            store: None,
            outcome: "ok",
            error: None,
        }
    }

    fn run() -> RunInfo {
        RunInfo {
            run_id: "run-1".to_string(),
            caller: "arn:aws:iam::123456789012:user/admin".to_string(),
        }
    }

    #[test]
    fn a_sealed_line_parses_back_to_its_link() {
        let sealed = seal(&event(1), &run(), &Link::genesis(), SystemTime::UNIX_EPOCH);
        assert!(sealed.line.ends_with("\"}\n"));
        assert!(sealed.line.starts_with(
            "{\"seq\":1,\"time\":\"1970-01-01T00:00:00.000Z\",\"run\":\"run-1\",\"caller\":\"arn:"
        ));
        let parsed = parse_line(sealed.line.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed.link, sealed.link);
        assert_eq!(parsed.prev, GENESIS);
        let value: serde_json::Value = serde_json::from_str(&sealed.line).unwrap();
        assert_eq!(value["key_id"], "AKIA0000000000000001");
        assert_eq!(value["hash"], sealed.link.hash.as_str());
        assert!(value.get("store").is_none(), "absent fields are left out");
    }

    #[test]
    fn the_hash_covers_the_body_and_prev() {
        let a = seal(&event(1), &run(), &Link::genesis(), SystemTime::UNIX_EPOCH);
        let other_prev = Link {
            seq: 0,
            hash: "1".repeat(64),
        };
        let b = seal(&event(1), &run(), &other_prev, SystemTime::UNIX_EPOCH);
        assert_ne!(a.link.hash, b.link.hash);
        let body = &a.line.as_bytes()[..a.line.len() - 1 - HASH_SUFFIX_LEN];
        assert_eq!(hash_of(body), a.link.hash);
    }

    #[test]
    fn an_edited_line_is_refused() {
        let sealed = seal(&event(1), &run(), &Link::genesis(), SystemTime::UNIX_EPOCH);
        let edited = sealed.line.trim_end().replace("user-1", "user-2");
        assert_eq!(parse_line(edited.as_bytes()), Err(Problem::Edited));
    }

    #[test]
    fn garbage_is_not_a_record() {
        for line in [&b""[..], b"hello", &[b'x'; 200]] {
            assert!(matches!(parse_line(line), Err(Problem::NotARecord(_))));
        }
    }
}
