//! `--print-secrets` as a store: each user's new key, streamed to stdout as one JSON document
//! (`{"user": {"AccessKeyId": .., "SecretAccessKey": ..}, ..}`), a user at a time.
//!
//! Printing is a store step so that the engine's undo covers it: the key is printed in
//! `promote`, the last step of a hand-off (after STS verification), and an output that
//! cannot be written (a closed pipe, a full disk) fails that step, so the user's stores are
//! restored and the new key deleted. A printed key whose only copy went nowhere would be
//! taken for an orphan and deleted by the next run, and the old key with it.

use super::{KeyDocument, SecretStore, StoreError, WriteContext};
use crate::secret::AccessKey;
use async_trait::async_trait;
use std::io::Write;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// The document on stdout, shared by every user of a run.
pub struct SecretPrinter {
    state: Mutex<PrinterState>,
}

struct PrinterState {
    out: Box<dyn Write + Send>,
    /// Entries printed so far.
    printed: usize,
    /// Set once a write failed: the document may be cut anywhere, so nothing more is
    /// written to it and every later key fails the same way.
    broken: Option<std::io::ErrorKind>,
}

/// Why the document could not be finished.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct PrintError {
    /// Entries that were printed before the failure (their keys stay rotated).
    pub printed: usize,
    /// The write error.
    pub source: std::io::Error,
}

impl SecretPrinter {
    /// A printer to stdout.
    pub fn stdout() -> Arc<SecretPrinter> {
        SecretPrinter::to(Box::new(std::io::stdout()))
    }

    /// A printer to `out`.
    pub fn to(out: Box<dyn Write + Send>) -> Arc<SecretPrinter> {
        Arc::new(SecretPrinter {
            state: Mutex::new(PrinterState {
                out,
                printed: 0,
                broken: None,
            }),
        })
    }

    /// The store view of this printer for one user. `beside` is the user's other copy (the
    /// `-o` file), if any; see [`StdoutStore::read`].
    pub fn store_for(
        self: &Arc<Self>,
        user: &str,
        beside: Option<Arc<dyn SecretStore>>,
    ) -> StdoutStore {
        StdoutStore {
            printer: Arc::clone(self),
            user: user.to_string(),
            beside,
        }
    }

    /// Print one user's entry, flushed, in one write under the lock, so that concurrent
    /// users never interleave and a run killed half-way has printed every key it finished.
    fn emit(&self, user: &str, key: &AccessKey) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("printer lock");
        if let Some(kind) = state.broken {
            return Err(std::io::Error::new(
                kind,
                "an earlier key could not be written to it",
            ));
        }
        // Serialized straight into one buffer that is wiped when dropped, sized up front
        // so that growing it leaves no stray copy of the secret behind.
        let capacity = 2 * user.len() + key.id.len() + key.expose().len() + 64;
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        bytes.extend_from_slice(if state.printed == 0 {
            b"{\n  "
        } else {
            b",\n  "
        });
        serde_json::to_writer(&mut *bytes, user).expect("strings serialize");
        bytes.extend_from_slice(b": ");
        KeyDocument::write_wiped(key, &mut bytes, false);
        let PrinterState { out, .. } = &mut *state;
        match out.write_all(&bytes).and_then(|()| out.flush()) {
            Ok(()) => {
                state.printed += 1;
                Ok(())
            }
            Err(e) => {
                state.broken = Some(e.kind());
                Err(e)
            }
        }
    }

    /// Close the document (`{}` when no key was printed).
    pub fn finish(&self) -> Result<(), PrintError> {
        let mut state = self.state.lock().expect("printer lock");
        let printed = state.printed;
        if let Some(kind) = state.broken {
            return Err(PrintError {
                printed,
                source: std::io::Error::new(kind, "a key could not be written to it"),
            });
        }
        let end: &[u8] = if printed == 0 { b"{}\n" } else { b"\n}\n" };
        let out = &mut state.out;
        out.write_all(end)
            .and_then(|()| out.flush())
            .map_err(|source| PrintError { printed, source })
    }
}

/// One user's entry in the printed document: a copy for the caller, like the `-o` file.
pub struct StdoutStore {
    printer: Arc<SecretPrinter>,
    user: String,
    beside: Option<Arc<dyn SecretStore>>,
}

#[async_trait]
impl SecretStore for StdoutStore {
    fn location(&self) -> String {
        "stdout".to_string()
    }

    /// stdout hands nothing out. But for a user with no real store the engine counts the
    /// copies as where the key lives, and a copy that holds nothing as behind every key;
    /// next to the `-o` file this copy therefore reads as the file does, so that printing
    /// changes nothing in what the engine sees.
    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        match &self.beside {
            Some(store) => store.read().await,
            None => Ok(None),
        }
    }

    fn is_copy(&self) -> bool {
        true
    }

    /// Nothing yet: a key is printed only once verified, in `promote`.
    async fn write(&self, _key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        Ok(())
    }

    async fn promote(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.printer.emit(&self.user, key).map_err(|e| {
            self.error(
                "print",
                format!("{e}; the reader of --print-secrets is gone (or stdout is not writable), and this key would have been lost with it"),
            )
        })
    }

    /// What was printed cannot be taken back; printing is the last step of a hand-off,
    /// so a printed key is never rolled back.
    async fn restore(
        &self,
        _previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into a shared buffer that fails once it holds `limit` bytes.
    #[derive(Clone)]
    struct Sink {
        buf: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let mut buf = self.buf.lock().unwrap();
            if buf.len() + data.len() > self.limit {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            buf.extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printer(limit: usize) -> (Arc<SecretPrinter>, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink {
            buf: Arc::clone(&buf),
            limit,
        };
        (SecretPrinter::to(Box::new(sink)), buf)
    }

    #[tokio::test]
    async fn concurrent_users_make_one_document() {
        let (printer, buf) = printer(usize::MAX);
        let prints = (0..32).map(|i| {
            let store = printer.store_for(&format!("user{i}"), None);
            async move { store.promote(&AccessKey::new(format!("A{i}"), "s")).await }
        });
        for result in futures::future::join_all(prints).await {
            result.unwrap();
        }
        printer.finish().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&buf.lock().unwrap()).unwrap();
        assert_eq!(doc.as_object().unwrap().len(), 32);
        assert_eq!(doc["user7"]["AccessKeyId"], "A7");
    }

    #[tokio::test]
    async fn an_unwritable_output_fails_the_step_and_every_later_one() {
        let (printer, _) = printer(0);
        let store = printer.store_for("u", None);
        let err = store
            .promote(&AccessKey::new("A1", "s1"))
            .await
            .unwrap_err();
        assert_eq!(err.store, "stdout");
        assert!(!err.to_string().contains("s1"), "{err}");
        let later = printer.store_for("v", None);
        assert!(later.promote(&AccessKey::new("A2", "s2")).await.is_err());
        assert_eq!(printer.finish().unwrap_err().printed, 0);
    }

    #[tokio::test]
    async fn nothing_printed_is_an_empty_document_and_writes_print_nothing() {
        let (printer, buf) = printer(usize::MAX);
        let store = printer.store_for("u", None);
        let key = AccessKey::new("A1", "s1");
        store
            .write(&key, &WriteContext::for_test("u"))
            .await
            .unwrap();
        assert!(buf.lock().unwrap().is_empty(), "printed only once promoted");
        assert_eq!(store.read().await.unwrap(), None);
        printer.finish().unwrap();
        assert_eq!(&*buf.lock().unwrap(), b"{}\n");
    }
}
