//! Local records of keys this host is handing out, so that a run can tell a dead run's key
//! from a live one's. A run writes `<dir>/<key id>` right after creating a key (run id,
//! host, pid and the process's start time) and removes it once the key is stored or undone.
//! A record left behind names a process: if it is gone (or the pid now belongs to another
//! process), the run that made the key was killed, and the next run takes its work over at
//! once instead of waiting for the lock TTL. Records from other hosts (a shared home) and
//! keys without a record say nothing; the TTL decides for them.
//!
//! The records hold no secret. The directory is `$CREDROT_STATE_DIR`, else
//! `$XDG_STATE_HOME/credrot/inflight` (`~/.local/state/credrot/inflight`).

use super::planner::Owner;
use std::io::Write;
use std::path::{Path, PathBuf};

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

impl InflightRecords {
    /// The records in the default directory, `None` when no directory can be named.
    pub fn default_location() -> Option<Self> {
        let dir = match std::env::var_os("CREDROT_STATE_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::state_dir()
                .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?
                .join("credrot"),
        };
        Some(Self::at(dir.join("inflight")))
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

    fn path(&self, key_id: &str) -> Option<PathBuf> {
        // Key ids are upper-case letters and digits; anything else is not a file name.
        key_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric())
            .then(|| self.dir.join(key_id))
    }

    /// Record that this process, run `run_id`, is handing out `key_id`. Failing to record
    /// only costs a faster takeover after a crash, so it is reported, not fatal.
    pub fn begin(&self, key_id: &str, run_id: &str) {
        let Some(path) = self.path(key_id) else {
            return;
        };
        let line = format!(
            "{} {} {} {}\n",
            self.me.host,
            self.me.pid,
            self.me.start.map(|s| s.to_string()).unwrap_or("-".into()),
            run_id
        );
        let written = crate::fsutil::create_private_dir(&self.dir).and_then(|()| {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(line.as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot record the key in flight: {e}");
        }
    }

    /// The key is stored (or undone): forget it.
    pub fn end(&self, key_id: &str) {
        if let Some(path) = self.path(key_id) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// What this host knows of the process that created `key_id`.
    pub fn owner(&self, key_id: &str) -> Option<Owner> {
        let text = std::fs::read_to_string(self.path(key_id)?).ok()?;
        let mut fields = text.split_whitespace();
        let (host, pid, start, run) = (
            fields.next()?,
            fields.next()?.parse::<u32>().ok()?,
            fields.next()?,
            fields.next().unwrap_or("?"),
        );
        if host != self.me.host {
            return None;
        }
        let who = format!("run {run} (pid {pid} on {host})");
        if !Path::new("/proc/self").exists() {
            // No way to tell on this system: assume the worst, the TTL decides.
            return Some(Owner::Alive(who));
        }
        let recorded_start = start.parse::<u64>().ok();
        let alive = Path::new(&format!("/proc/{pid}")).exists()
            && (recorded_start.is_none() || start_time(pid) == recorded_start);
        Some(if alive {
            Owner::Alive(who)
        } else {
            Owner::Dead(who)
        })
    }
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
        assert_eq!(records.owner("AKIAONE"), None, "no record, nothing known");
        records.begin("AKIAONE", "run-1");
        assert!(matches!(records.owner("AKIAONE"), Some(Owner::Alive(w)) if w.contains("run-1")));

        // A process that has exited: its pid's start time no longer matches (or it is gone).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let line = format!("{} {pid} 1 run-2\n", records.me.host);
        std::fs::write(dir.path().join("inflight/AKIATWO"), line).unwrap();
        assert!(matches!(records.owner("AKIATWO"), Some(Owner::Dead(_))));

        std::fs::write(
            dir.path().join("inflight/AKIATHREE"),
            "otherhost 1 1 run-3\n",
        )
        .unwrap();
        assert_eq!(
            records.owner("AKIATHREE"),
            None,
            "another host's record says nothing"
        );

        records.end("AKIAONE");
        assert_eq!(records.owner("AKIAONE"), None);
        assert_eq!(records.path("../x"), None);
    }
}
