//! Local records of the users this host is rotating, so that a run can tell a dead or
//! finished run's key from a live one's. Right before `CreateAccessKey` a run writes
//! `<dir>/user-<name>.<pid>` (host, pid, the process's start time, the time, the run id), and
//! once the user is done (the key stored, or undone) it adds the time it finished. A record
//! that is finished, or whose process is gone (or whose pid now belongs to another process),
//! means no run is at work on a key it may have created (one no older than the record, and
//! for a finished record no younger than its end): whatever such a key is, the next run takes
//! it over at once instead of waiting for the lock TTL. That covers a key whose
//! `CreateAccessKey` answer was lost, too: the record was written before the call. Records
//! from other hosts (a shared home) and keys without a record say nothing; the TTL decides
//! for them. A run that converges the user removes the records it acted on; records older
//! than [`KEEP`] are removed when a run starts.
//!
//! The records hold no secret. The directory is `$CREDROT_STATE_DIR/inflight`, else
//! `$XDG_STATE_HOME/credrot/inflight` (`~/.local/state/credrot/inflight`).

use super::planner::Owner;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long after its record a run's key can have been created: `CreateAccessKey` with
/// every retry the SDK makes, with room to spare. A record older than that claims nothing.
const CLAIM_WINDOW: Duration = Duration::from_secs(600);

/// How long records are kept: longer than the longest lock TTL, after which no key they
/// could claim is young enough to matter.
const KEEP: Duration = Duration::from_secs(8 * 86_400);

/// The record directory of this host.
#[derive(Debug, Clone)]
pub struct InflightRecords {
    dir: PathBuf,
    me: Process,
}

/// A process, as far as a record needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    host: String,
    pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22): tells a reused pid
    /// from the process that wrote the record.
    start: Option<u64>,
}

/// One record, as read back.
struct Record {
    host: String,
    pid: u32,
    start: Option<u64>,
    written: SystemTime,
    run: String,
    /// When the run was done with the user, if it was.
    finished: Option<SystemTime>,
}

impl InflightRecords {
    /// The records in the default directory, `None` when no directory can be named.
    pub fn default_location() -> Option<Self> {
        let dir = match std::env::var_os("CREDROT_STATE_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::state_dir()
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?
                .join("credrot"),
        };
        let records = Self::at(dir.join("inflight"));
        records.prune();
        Some(records)
    }

    /// The records of the users of `account`: user names repeat across accounts.
    pub fn for_account(&self, account: &str) -> Self {
        let records = InflightRecords {
            dir: self.dir.join(account),
            me: self.me.clone(),
        };
        records.prune();
        records
    }

    /// Remove records too old to claim any key that matters.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = read_record(&entry.path()).is_none_or(|r| {
                now.duration_since(r.finished.unwrap_or(r.written))
                    .unwrap_or_default()
                    > KEEP
            });
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Records kept in `dir`.
    pub fn at(dir: PathBuf) -> Self {
        InflightRecords {
            dir,
            me: Process {
                host: host_name(),
                pid: std::process::id(),
                start: start_time(std::process::id()),
            },
        }
    }

    /// IAM user names are `[A-Za-z0-9+=,.@_-]`, so with a prefix each is a file name.
    fn prefix(user: &str) -> String {
        format!("user-{user}.")
    }

    fn path(&self, user: &str) -> PathBuf {
        self.dir
            .join(format!("{}{}", Self::prefix(user), self.me.pid))
    }

    /// Record that this process, run `run_id`, is about to create a key for `user`. Failing
    /// to record only costs a slower takeover after a crash, so it is reported, not fatal.
    pub fn begin(&self, user: &str, run_id: &str) {
        let line = format!(
            "{} {} {} {} {run_id}",
            self.me.host,
            self.me.pid,
            self.me.start.map(|s| s.to_string()).unwrap_or("-".into()),
            unix_secs(SystemTime::now()),
        );
        self.write(user, &line);
    }

    /// This process is done with `user`: the key it created is stored or undone.
    pub fn end(&self, user: &str) {
        let path = self.path(user);
        if let Ok(line) = std::fs::read_to_string(&path) {
            let line = format!("{} {}", line.trim_end(), unix_secs(SystemTime::now()));
            self.write(user, &line);
        }
    }

    /// This process created no key for `user` (IAM refused it): no claim, so that the key
    /// another run created meanwhile is not taken for this run's.
    pub fn abandon(&self, user: &str) {
        let _ = std::fs::remove_file(self.path(user));
    }

    /// A run has converged `user`: the records of runs that are gone or finished have been
    /// acted on, and must not claim its keys again (a key taken over and stored, which later
    /// becomes LAST, is no leftover).
    pub fn settle(&self, user: &str) {
        let prefix = Self::prefix(user);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let done =
                read_record(&entry.path()).is_none_or(|r| r.finished.is_some() || !is_alive(&r));
            if done {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn write(&self, user: &str, line: &str) {
        let path = self.path(user);
        let done = crate::fsutil::create_private_dir(&self.dir).and_then(|()| {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(format!("{line}\n").as_bytes())
        });
        if let Err(e) = done {
            tracing::warn!(path = %path.display(), "cannot record the rotation in flight: {e}");
        }
    }

    /// What this host knows of the run that may have created a key of `user` at `created`:
    /// a run whose record is no younger than the key (IAM dates keys to the second).
    pub fn owner(&self, user: &str, created: SystemTime) -> Option<Owner> {
        let prefix = Self::prefix(user);
        let mut found = None;
        for entry in std::fs::read_dir(&self.dir).ok()?.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let Some(record) = read_record(&entry.path()) else {
                continue;
            };
            // A run creates its key right after writing the record: it claims keys of the
            // second before (IAM dates keys to the second) up to its end, or its calls'
            // longest wait.
            let until = record.finished.unwrap_or(record.written + CLAIM_WINDOW);
            let claims = created + Duration::from_secs(1) >= record.written
                && created <= until + Duration::from_secs(1);
            if record.host != self.me.host || !claims {
                continue;
            }
            let who = format!("run {} (pid {} on {})", record.run, record.pid, record.host);
            if record.finished.is_some() {
                found = found.or(Some(Owner::Finished(who)));
            } else if is_alive(&record) {
                return Some(Owner::Alive(who));
            } else {
                // A killed run says more than a finished one: its key may be unstored.
                found = Some(Owner::Dead(who));
            }
        }
        found
    }
}

fn read_record(path: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    Some(Record {
        host: fields.next()?.to_string(),
        pid: fields.next()?.parse().ok()?,
        start: fields.next()?.parse().ok(),
        written: from_unix(fields.next()?)?,
        run: fields.next().unwrap_or("?").to_string(),
        finished: fields.next().and_then(from_unix),
    })
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn from_unix(text: &str) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(text.parse().ok()?))
}

/// Whether the process of a record still runs. Without `/proc` there is no telling, and
/// the answer is yes: the lock TTL then decides, as for another host.
fn is_alive(record: &Record) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{}", record.pid)).exists()
        && (record.start.is_none() || start_time(record.pid) == record.start)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Field 22 of `/proc/PID/stat`, counted after the command name (which may hold spaces).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_this_process_is_alive_and_of_a_gone_one_dead() {
        let dir = tempfile::tempdir().unwrap();
        let records = InflightRecords::at(dir.path().join("inflight"));
        let later = SystemTime::now() + Duration::from_secs(5);
        assert_eq!(
            records.owner("app", later),
            None,
            "no record, nothing known"
        );
        records.begin("app", "run-1");
        assert!(
            matches!(records.owner("app", later), Some(Owner::Alive(w)) if w.contains("run-1"))
        );
        // A key older than the record is not this run's.
        let before = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(records.owner("app", before), None);
        assert_eq!(records.owner("other", later), None);

        // A process that has exited: gone, or its pid's start time no longer matches.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let line = format!("{} {pid} 1 {now} run-2\n", records.me.host);
        std::fs::write(dir.path().join(format!("inflight/user-batch.{pid}")), line).unwrap();
        assert!(
            matches!(records.owner("batch", later), Some(Owner::Dead(w)) if w.contains("run-2"))
        );

        // A run that converged `batch` settles the dead run's record: it claims no more.
        records.settle("batch");
        assert_eq!(records.owner("batch", later), None);

        let foreign = format!("otherhost 1 1 {now} run-3\n");
        std::fs::write(dir.path().join("inflight/user-remote.1"), foreign).unwrap();
        assert_eq!(
            records.owner("remote", later),
            None,
            "another host's record says nothing"
        );

        // Finished: its keys are no run's work any more; a key after its end is not its.
        records.end("app");
        assert!(matches!(
            records.owner("app", SystemTime::now()),
            Some(Owner::Finished(_))
        ));
        assert_eq!(records.owner("app", later + Duration::from_secs(60)), None);
    }
}
