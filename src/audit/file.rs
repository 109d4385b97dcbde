//! The audit file: append-only, mode 0600, chained from its own last line.
//!
//! Every append takes an exclusive `flock` on the file, reads the last line back, and
//! writes the new line with one `write` on an `O_APPEND` descriptor. Reading the tail under
//! the lock (instead of remembering the last hash in memory) keeps the chain correct when
//! several credrot runs share one audit file, which concurrent runs with per-user locks do.
//!
//! Durability: each line reaches the kernel as soon as its action is done (no buffer in
//! the process), so a crash or SIGKILL of credrot loses nothing; the file is fsynced when
//! each user's rotation ends and at the end of the run, so a power cut loses at most the
//! lines of the users still in flight. An fsync per line would make a 1000-user run
//! (~5000 lines) wait on the disk 5000 times for little gain.

use super::{parse_line, AuditError, Link, Problem};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How much of the file's end is read at a time while looking for the last line.
const TAIL_CHUNK: u64 = 8 * 1024;

/// An open audit file.
#[derive(Debug)]
pub struct AuditFile {
    path: PathBuf,
    file: File,
}

impl AuditFile {
    /// Open `path` for appending (creating it with mode 0600, and its directory with 0700), and check
    /// that the chain can be continued from its last line. Called before any AWS call, so a
    /// log that cannot be written stops the run before anything changes.
    pub fn open(path: &Path) -> Result<AuditFile, AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // 0700 whatever the umask: the log names users, keys and stores.
            crate::fsutil::create_private_dir(dir).map_err(open_error)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        if !meta.is_file() {
            return Err(open_error(std::io::Error::other(
                "it is not a regular file",
            )));
        }
        // The mode only applies on creation; an existing file with looser bits is tightened,
        // since the log names users, keys and stores.
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(open_error)?;
        }
        let audit = AuditFile {
            path: path.to_path_buf(),
            file,
        };
        audit.with_lock(|| audit.head())?;
        Ok(audit)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append the line `make` builds after the file's current last line; returns what was
    /// written.
    pub fn append(
        &self,
        make: impl FnOnce(&Link) -> super::Sealed,
    ) -> Result<super::Sealed, AuditError> {
        self.with_lock(|| {
            let head = self.head()?;
            let sealed = make(&head);
            // One write of the whole line: with O_APPEND it lands at the end in one piece.
            (&self.file)
                .write_all(sealed.line.as_bytes())
                .map_err(|source| self.write_error(source))?;
            Ok(sealed)
        })
    }

    /// Flush the file to disk.
    pub fn sync(&self) -> Result<(), AuditError> {
        self.file
            .sync_data()
            .map_err(|source| self.write_error(source))
    }

    fn write_error(&self, source: std::io::Error) -> AuditError {
        AuditError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn with_lock<T>(&self, f: impl FnOnce() -> Result<T, AuditError>) -> Result<T, AuditError> {
        self.file.lock().map_err(|source| AuditError::Open {
            path: self.path.clone(),
            source,
        })?;
        let result = f();
        // Closing the file would release it too; unlocking now lets other runs go on.
        let _ = self.file.unlock();
        result
    }

    /// Where the file's chain stands now, under the lock.
    pub fn current_head(&self) -> Result<Link, AuditError> {
        self.with_lock(|| self.head())
    }

    /// The position of the file's last line (genesis for an empty file).
    fn head(&self) -> Result<Link, AuditError> {
        let Some(line) = self.last_line()? else {
            return Ok(Link::genesis());
        };
        let Some(line) = line.strip_suffix(b"\n") else {
            return Err(self.bad_tail(Problem::Incomplete));
        };
        parse_line(line)
            .map(|parsed| parsed.link)
            .map_err(|problem| self.bad_tail(problem))
    }

    fn bad_tail(&self, problem: Problem) -> AuditError {
        AuditError::BadTail {
            path: self.path.clone(),
            problem,
        }
    }

    /// The bytes of the last line, with its newline if it has one.
    fn last_line(&self) -> Result<Option<Vec<u8>>, AuditError> {
        let read_error = |source| AuditError::Read {
            path: self.path.clone(),
            source,
        };
        let len = self.file.metadata().map_err(read_error)?.len();
        if len == 0 {
            return Ok(None);
        }
        // Read backwards until a newline before the final byte shows where the line starts.
        let mut tail: Vec<u8> = Vec::new();
        let mut start = len;
        while start > 0 {
            let chunk = TAIL_CHUNK.min(start);
            start -= chunk;
            let mut buf = vec![0; chunk as usize];
            self.file
                .read_exact_at(&mut buf, start)
                .map_err(read_error)?;
            buf.extend_from_slice(&tail);
            tail = buf;
            let searched = &tail[..tail.len() - 1];
            if let Some(pos) = searched.iter().rposition(|&b| b == b'\n') {
                return Ok(Some(tail[pos + 1..].to_vec()));
            }
        }
        Ok(Some(tail))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::super::{seal, verify_file, RunInfo};
    use super::*;
    use std::time::SystemTime;

    fn run() -> RunInfo {
        RunInfo {
            run_id: "r".to_string(),
            caller: "unknown".to_string(),
        }
    }

    fn append(file: &AuditFile, n: usize) {
        file.append(|after| seal(&event(n), &run(), after, SystemTime::now()))
            .unwrap();
    }

    #[test]
    fn appends_chain_across_opens_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.log");
        let file = AuditFile::open(&path).unwrap();
        append(&file, 1);
        append(&file, 2);
        file.sync().unwrap();
        drop(file);
        let file = AuditFile::open(&path).unwrap();
        append(&file, 3);
        let verified = verify_file(&path).unwrap();
        assert_eq!(verified.lines, 3);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "the directory it made is private");
    }

    #[test]
    fn two_writers_on_one_file_keep_one_chain() {
        // Two opens, as two concurrent credrot runs would have: the flock and the tail read
        // under it keep the chain whole.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let writers: Vec<_> = (0..2).map(|_| AuditFile::open(&path).unwrap()).collect();
        std::thread::scope(|s| {
            for file in &writers {
                s.spawn(move || {
                    for n in 0..200 {
                        append(file, n);
                    }
                });
            }
        });
        assert_eq!(verify_file(&path).unwrap().lines, 400);
    }

    #[test]
    fn a_loose_existing_file_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditFile::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn long_lines_are_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let file = AuditFile::open(&path).unwrap();
        let mut long = event(1);
        long.error = Some("x".repeat(3 * TAIL_CHUNK as usize));
        file.append(|after| seal(&long, &run(), after, SystemTime::now()))
            .unwrap();
        append(&file, 2);
        append(&file, 3);
        assert_eq!(verify_file(&path).unwrap().lines, 3);
    }

    #[test]
    fn a_damaged_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let file = AuditFile::open(&path).unwrap();
        append(&file, 1);
        drop(file);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"half\":").unwrap();
        let err = AuditFile::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::BadTail {
                    problem: Problem::Incomplete,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("credrot audit verify"), "{err}");
    }

    #[test]
    fn a_directory_cannot_be_the_log() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuditFile::open(dir.path()).is_err());
    }
}
