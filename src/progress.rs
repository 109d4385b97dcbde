//! The progress bar of a rotation run: users done/total, rotated and failed so far, elapsed
//! time. Shown on stderr only when stdout is a terminal (and stderr too: indicatif hides a
//! bar whose target is not one), never with `--quiet`, and not for a single user. Log lines
//! written while it is shown go above it instead of through it.

use crate::rotation::{Outcome, UserReport};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The bar that is on screen, if any: the log writer draws around it.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A run's progress: a bar, and the counts its message shows.
pub struct RunProgress {
    bar: ProgressBar,
    rotated: AtomicUsize,
    failed: AtomicUsize,
}

impl RunProgress {
    /// A bar over `users` users, or a hidden one (see the module documentation).
    pub fn new(users: u64, quiet: bool) -> RunProgress {
        let show = !quiet && users >= 2 && std::io::stdout().is_terminal();
        RunProgress::with_bar(if show {
            visible(users)
        } else {
            ProgressBar::hidden()
        })
    }

    /// A bar whose total grows as accounts are listed ([`RunProgress::grow`]).
    pub fn growing(quiet: bool) -> RunProgress {
        let show = !quiet && std::io::stdout().is_terminal();
        RunProgress::with_bar(if show {
            visible(0)
        } else {
            ProgressBar::hidden()
        })
    }

    /// `users` more users to do.
    pub fn grow(&self, users: u64) {
        self.bar.inc_length(users);
    }

    fn with_bar(bar: ProgressBar) -> RunProgress {
        let progress = RunProgress {
            bar,
            rotated: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        };
        progress.bar.set_message(progress.message());
        if !progress.bar.is_hidden() {
            *SHOWN.lock().expect("progress lock") = Some(progress.bar.clone());
        }
        progress
    }

    /// What the bar says after the counts: `rotated 3, failed 1`.
    fn message(&self) -> String {
        format!(
            "rotated {}, failed {}",
            self.rotated.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst)
        )
    }

    /// One more user is done.
    pub fn done(&self, report: &UserReport) {
        match report.outcome {
            Outcome::Rotated => self.rotated.fetch_add(1, Ordering::SeqCst),
            Outcome::Failed => self.failed.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        // The message first, so the redraw that the increment makes shows both.
        self.bar.set_message(self.message());
        self.bar.inc(1);
    }

    /// Take the bar off the screen (the summary follows).
    pub fn finish(&self) {
        SHOWN.lock().expect("progress lock").take();
        self.bar.finish_and_clear();
    }
}

impl Drop for RunProgress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.finish();
        }
    }
}

fn visible(users: u64) -> ProgressBar {
    let bar = ProgressBar::new(users);
    // Short enough for an 80-column terminal, so that a redraw never wraps.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:20}] {pos}/{len} users done: {msg}, {elapsed} elapsed",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    // The elapsed time moves on while a slow user holds everything up.
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

/// The writer of log lines: stderr, around the bar when one is shown.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    // tracing's fmt layer writes each event with one write_all: the bar is cleared once for
    // it and drawn again below it.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let shown = SHOWN.lock().expect("progress lock").clone();
        match shown {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_counts_rotated_and_failed_users() {
        let progress = RunProgress::with_bar(ProgressBar::hidden());
        let mut report = UserReport::new("u", None);
        for outcome in [
            Outcome::Rotated,
            Outcome::Failed,
            Outcome::Rotated,
            Outcome::Fresh,
        ] {
            report.outcome = outcome;
            progress.done(&report);
        }
        assert_eq!(progress.message(), "rotated 2, failed 1");
        assert_eq!(progress.bar.position(), 4);
        progress.finish();
        assert!(SHOWN.lock().unwrap().is_none());
    }
}
