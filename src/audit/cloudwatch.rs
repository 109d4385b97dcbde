//! The CloudWatch Logs copy of the audit log: the same lines, byte for byte, in a log
//! stream, so that a copy outside this machine can anchor the file's chain.
//!
//! Recording never waits on the network: lines go through a channel to a task that sends
//! them with `PutLogEvents`, in batches of whatever arrived within [`FLUSH_INTERVAL`] (and
//! within the API's limits). The run waits for the task to drain at its end.

use crate::aws::{AwsError, LogEvent, LogsApi};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long the sender waits for more lines before sending a batch.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// `PutLogEvents` limits: events per call, bytes per call, and the bytes it counts on
/// top of each message.
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
/// A batch may not span more than 24 hours.
const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;

/// Why the CloudWatch sink failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    /// The log group or stream could not be created or checked before the run.
    #[error("cannot prepare CloudWatch Logs group '{group}' stream '{stream}' for the audit log: {source}; nothing was rotated")]
    Setup {
        /// The log group.
        group: String,
        /// The log stream.
        stream: String,
        /// The AWS failure.
        source: AwsError,
    },
    /// Some lines were not delivered.
    #[error("{failed} of {total} audit lines could not be sent to CloudWatch Logs group '{group}' stream '{stream}': {first}")]
    Delivery {
        /// The log group.
        group: String,
        /// The log stream.
        stream: String,
        /// Lines not delivered.
        failed: usize,
        /// Lines handed to the sink.
        total: usize,
        /// The first failure.
        first: String,
    },
}

/// What the sending task did.
#[derive(Debug, Default)]
struct Delivery {
    total: usize,
    failed: usize,
    first_error: Option<String>,
}

/// A running CloudWatch Logs sink.
pub struct CloudWatchSink {
    group: String,
    stream: String,
    sender: Mutex<Option<mpsc::UnboundedSender<LogEvent>>>,
    task: Mutex<Option<JoinHandle<Delivery>>>,
}

impl CloudWatchSink {
    /// Create the group and stream if missing, then start the sending task. Must be called
    /// inside a tokio runtime.
    pub async fn start(
        api: Arc<dyn LogsApi>,
        group: &str,
        stream: &str,
    ) -> Result<CloudWatchSink, CloudWatchError> {
        api.ensure_stream(group, stream)
            .await
            .map_err(|source| CloudWatchError::Setup {
                group: group.to_string(),
                stream: stream.to_string(),
                source,
            })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(deliver(
            api,
            group.to_string(),
            stream.to_string(),
            receiver,
        ));
        Ok(CloudWatchSink {
            group: group.to_string(),
            stream: stream.to_string(),
            sender: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Queue one line (without its newline) stamped `time`. Never blocks.
    pub fn send(&self, time: SystemTime, line: &str) -> Result<(), CloudWatchError> {
        let timestamp_ms = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let event = LogEvent {
            timestamp_ms,
            message: line.to_string(),
        };
        let sent = self
            .sender
            .lock()
            .expect("sender lock")
            .as_ref()
            .map(|s| s.send(event).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            Err(self.delivery_error(1, 1, "the sink was already closed".to_string()))
        }
    }

    /// Send what is queued and stop; the error counts the lines that did not arrive.
    pub async fn finish(&self) -> Result<usize, CloudWatchError> {
        // Dropping the sender ends the task's loop once the queue is empty.
        self.sender.lock().expect("sender lock").take();
        let Some(task) = self.task.lock().expect("task lock").take() else {
            return Ok(0);
        };
        let delivery = task.await.unwrap_or_else(|e| Delivery {
            total: 0,
            failed: 1,
            first_error: Some(format!("the sending task died: {e}")),
        });
        match delivery.first_error {
            None => Ok(delivery.total),
            Some(first) => Err(self.delivery_error(delivery.failed, delivery.total, first)),
        }
    }

    fn delivery_error(&self, failed: usize, total: usize, first: String) -> CloudWatchError {
        CloudWatchError::Delivery {
            group: self.group.clone(),
            stream: self.stream.clone(),
            failed,
            total,
            first,
        }
    }
}

/// The sending task: batch what arrives, send, until the channel closes.
async fn deliver(
    api: Arc<dyn LogsApi>,
    group: String,
    stream: String,
    mut receiver: mpsc::UnboundedReceiver<LogEvent>,
) -> Delivery {
    let mut delivery = Delivery::default();
    let mut pending: Vec<LogEvent> = Vec::new();
    let mut last_timestamp = i64::MIN;
    let mut open = true;
    while open {
        match receiver.recv().await {
            Some(event) => pending.push(event),
            None => open = false,
        }
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while open && pending.len() < MAX_BATCH_EVENTS {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(event)) => pending.push(event),
                Ok(None) => open = false,
                Err(_) => break,
            }
        }
        for event in &mut pending {
            // PutLogEvents refuses a batch out of time order; if the clock stepped back,
            // keep the lines' order (the chain's order) and bend the timestamp instead.
            event.timestamp_ms = event.timestamp_ms.max(last_timestamp);
            last_timestamp = event.timestamp_ms;
        }
        while !pending.is_empty() {
            let n = batch_len(&pending);
            let batch: Vec<LogEvent> = pending.drain(..n).collect();
            delivery.total += batch.len();
            if let Err(e) = api.put_events(&group, &stream, &batch).await {
                tracing::debug!("CloudWatch Logs put failed: {e}");
                delivery.failed += batch.len();
                delivery.first_error.get_or_insert(e.to_string());
            }
        }
    }
    delivery
}

/// How many of `events` (in time order, at least one) fit in one `PutLogEvents` call.
fn batch_len(events: &[LogEvent]) -> usize {
    let Some(first) = events.first() else {
        return 0;
    };
    let mut bytes = 0;
    for (i, event) in events.iter().enumerate() {
        bytes += event.message.len() + EVENT_OVERHEAD;
        let too_big = bytes > MAX_BATCH_BYTES || i >= MAX_BATCH_EVENTS;
        let too_long = event.timestamp_ms - first.timestamp_ms >= MAX_BATCH_SPAN_MS;
        if i > 0 && (too_big || too_long) {
            return i;
        }
    }
    events.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    fn event(ms: i64, len: usize) -> LogEvent {
        LogEvent {
            timestamp_ms: ms,
            message: "x".repeat(len),
        }
    }

    #[test]
    fn batches_respect_count_bytes_and_span() {
        assert_eq!(batch_len(&[]), 0);
        let small: Vec<_> = (0..12_000).map(|i| event(i, 10)).collect();
        assert_eq!(batch_len(&small), MAX_BATCH_EVENTS);
        let big: Vec<_> = (0..10).map(|i| event(i, 300_000)).collect();
        assert_eq!(batch_len(&big), 3, "3 x 300 kB fit in 1 MiB, 4 do not");
        let spread = vec![event(0, 1), event(1, 1), event(MAX_BATCH_SPAN_MS, 1)];
        assert_eq!(batch_len(&spread), 2);
        let huge = vec![event(0, 2_000_000)];
        assert_eq!(batch_len(&huge), 1, "a batch always makes progress");
    }

    /// Records what it was sent; fails every put when `fail` is set.
    #[derive(Default)]
    struct FakeLogs {
        batches: Mutex<Vec<Vec<LogEvent>>>,
        fail: bool,
    }

    #[async_trait]
    impl LogsApi for FakeLogs {
        async fn ensure_stream(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn put_events(&self, _: &str, _: &str, events: &[LogEvent]) -> Result<(), AwsError> {
            if self.fail {
                return Err(AwsError {
                    operation: "logs:PutLogEvents",
                    code: Some("AccessDeniedException".to_string()),
                    message: "denied".to_string(),
                    kind: crate::aws::AwsErrorKind::AccessDenied,
                });
            }
            self.batches.lock().unwrap().push(events.to_vec());
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_arrive_in_order_with_monotonic_timestamps() {
        let api = Arc::new(FakeLogs::default());
        let sink = CloudWatchSink::start(api.clone(), "g", "s").await.unwrap();
        let now = SystemTime::now();
        sink.send(now, "one").unwrap();
        sink.send(now - Duration::from_secs(5), "two").unwrap();
        sink.send(now, "three").unwrap();
        assert_eq!(sink.finish().await.unwrap(), 3);
        let sent: Vec<LogEvent> = api.batches.lock().unwrap().concat();
        let messages: Vec<&str> = sent.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "two", "three"]);
        assert!(sent
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
        assert!(
            sink.send(now, "late").is_err(),
            "a finished sink refuses lines"
        );
    }

    #[tokio::test]
    async fn failures_are_counted_not_fatal() {
        let api = Arc::new(FakeLogs {
            fail: true,
            ..FakeLogs::default()
        });
        let sink = CloudWatchSink::start(api, "g", "s").await.unwrap();
        sink.send(SystemTime::now(), "one").unwrap();
        sink.send(SystemTime::now(), "two").unwrap();
        let err = sink.finish().await.unwrap_err();
        assert!(
            matches!(
                err,
                CloudWatchError::Delivery {
                    failed: 2,
                    total: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("denied"), "{err}");
    }
}
