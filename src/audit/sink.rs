//! [`AuditLog`]: the engine's event sink when `[audit]` is configured. It seals each event
//! into a chained line, appends it to the file, and queues the very same line for
//! CloudWatch Logs.
//!
//! One sink serves both destinations, rather than two independent sinks behind a fan-out,
//! so that CloudWatch receives the file's lines byte for byte (hashes included) and can
//! serve as the outside anchor the chain needs. Without a file, the run's lines form a
//! chain of their own starting at the genesis hash.
//!
//! Failures never reach the engine: the first is reported on stderr at once, all are
//! counted, and [`AuditLog::finish`] returns them so the run ends with exit code 1 after
//! every rotation has run its course — an interrupted rotation is worse than a missing
//! audit line.

use super::{seal, AuditError, AuditFile, CloudWatchSink, Link, RunInfo};
use crate::rotation::{Event, EventSink};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// The audit sink of one run.
pub struct AuditLog {
    run: RunInfo,
    file: Option<AuditFile>,
    cloudwatch: Option<CloudWatchSink>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last line sealed by this run (the file's own tail wins when there is a file).
    last: Option<Link>,
    /// Lines sealed.
    lines: u64,
    /// Records lost in at least one destination.
    failed: usize,
    /// The first failure.
    first_failure: Option<String>,
}

/// What the audit log holds after a run: the anchor to keep elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// The audit file, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Lines this run wrote.
    pub lines: u64,
    /// The chain's last position after this run.
    pub head: Link,
}

impl AuditLog {
    /// A sink for this run over the destinations given.
    pub fn new(run: RunInfo, file: Option<AuditFile>, cloudwatch: Option<CloudWatchSink>) -> Self {
        AuditLog {
            run,
            file,
            cloudwatch,
            state: Mutex::new(State::default()),
        }
    }

    /// Flush the file to disk; called when a user's rotation ends.
    pub fn checkpoint(&self) {
        if let Some(file) = &self.file {
            if let Err(e) = file.sync() {
                self.state.lock().expect("audit lock").fail(e.to_string());
            }
        }
    }

    /// Flush the file, drain the CloudWatch queue, and report what was lost.
    pub async fn finish(&self) -> Result<AuditSummary, AuditError> {
        self.checkpoint();
        let delivered = match &self.cloudwatch {
            Some(cw) => cw.finish().await.map(|_| ()),
            None => Ok(()),
        };
        let state = self.state.lock().expect("audit lock");
        let summary = AuditSummary {
            path: self.file.as_ref().map(|f| f.path().to_path_buf()),
            lines: state.lines,
            // A run that wrote nothing still reports where the file's chain stands.
            head: state
                .last
                .clone()
                .or_else(|| self.file.as_ref().and_then(|f| f.current_head().ok()))
                .unwrap_or_else(Link::genesis),
        };
        if let Some(first) = &state.first_failure {
            if let Err(e) = &delivered {
                // Reported here because only one error can be returned.
                tracing::error!("audit: {e}");
            }
            return Err(AuditError::Incomplete {
                failed: state.failed,
                first: first.clone(),
            });
        }
        delivered?;
        Ok(summary)
    }
}

impl State {
    fn fail(&mut self, message: String) {
        if self.first_failure.is_none() {
            // Loud at once: whoever watches the run should not learn it at the end only.
            tracing::error!("audit: {message}; the rotations go on, the run will exit 1");
            self.first_failure = Some(message);
        }
        self.failed += 1;
    }
}

impl EventSink for AuditLog {
    fn record(&self, event: Event) {
        // One lock around sealing, writing and queueing: lines get their time, their seq
        // and their place in both destinations in the same order.
        let mut state = self.state.lock().expect("audit lock");
        let now = SystemTime::now();
        let in_memory = state.last.clone().unwrap_or_else(Link::genesis);
        let sealed = match &self.file {
            Some(file) => file
                .append(|after| seal(&event, &self.run, after, now))
                .unwrap_or_else(|e| {
                    state.fail(e.to_string());
                    // CloudWatch still gets the line, chained to the last one this run saw.
                    seal(&event, &self.run, &in_memory, now)
                }),
            None => seal(&event, &self.run, &in_memory, now),
        };
        state.last = Some(sealed.link.clone());
        state.lines += 1;
        if let Some(cw) = &self.cloudwatch {
            if let Err(e) = cw.send(now, sealed.line.trim_end_matches('\n')) {
                state.fail(e.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::super::verify_file;
    use super::*;

    fn run() -> RunInfo {
        RunInfo {
            run_id: "run-7".to_string(),
            caller: "arn:aws:iam::1:user/admin".to_string(),
        }
    }

    #[tokio::test]
    async fn records_are_chained_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(run(), Some(AuditFile::open(&path).unwrap()), None);
        for n in 1..=3 {
            log.record(event(n));
        }
        let summary = log.finish().await.unwrap();
        assert_eq!(summary.lines, 3);
        let verified = verify_file(&path).unwrap();
        assert_eq!(verified.head, summary.head);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| l.contains("\"run\":\"run-7\"")));
    }

    #[tokio::test]
    async fn a_write_failure_is_reported_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(run(), Some(AuditFile::open(&path).unwrap()), None);
        log.record(event(1));
        // Damage the tail behind the sink's back: the next append cannot chain.
        std::fs::write(&path, "garbage\n").unwrap();
        log.record(event(2));
        log.record(event(3));
        let err = log.finish().await.unwrap_err();
        assert!(
            matches!(err, AuditError::Incomplete { failed: 2, .. }),
            "{err}"
        );
    }
}
