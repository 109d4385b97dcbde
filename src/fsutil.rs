//! Files that hold secrets: read only when they are regular files of a bounded size, written
//! atomically and privately, and through symlinks rather than over them.
//!
//! Symlinks are followed to their final target, since a key file is often a link into a
//! directory that consumers (or a dotfile manager) own: replacing the link with a file would
//! leave its target with the old key, which the next rotation deletes. The temporary file
//! is made beside the target, so the rename that publishes it stays on one filesystem.
//!
//! A FIFO, device or socket is refused before it is opened (opening a FIFO for reading
//! blocks until a writer comes; a device such as /dev/zero never ends), and every read is
//! bounded whatever the file claims its size is.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// The largest key file credrot reads: one key is about 150 bytes.
pub const KEY_FILE_LIMIT: u64 = 1 << 20;

/// The largest `-o` document credrot reads: some 300,000 users' keys.
pub const OUTFILE_LIMIT: u64 = 64 << 20;

/// Why a secret file cannot be read or written; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path is a symlink whose chain ends nowhere.
    #[error("it is a symlink to {target}, which does not exist; create the file there or remove the link")]
    Dangling {
        /// What the link points at.
        target: PathBuf,
    },
    /// The symlink chain cannot be followed (a loop, or a component that is not a directory).
    #[error("its symlink cannot be followed ({source}); fix or remove the link")]
    BadLink {
        /// What resolving it said.
        source: io::Error,
    },
    /// The path (or its target) is a FIFO, device, socket or directory.
    #[error("{} is {what}, not a regular file; credrot keeps keys in regular files only, so point the path at one", subject(.target))]
    NotRegular {
        /// The link's target, when the path is a link.
        target: Option<PathBuf>,
        /// What it is instead, e.g. "a named pipe (FIFO)".
        what: &'static str,
    },
    /// The file holds more than a secret file of its kind ever does.
    #[error("it holds more than {} MiB, far more than credrot ever writes there; check that the path names the right file", .limit >> 20)]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The directory a file would be created in does not exist (and is not created).
    #[error("its directory {} does not exist; create it first", .dir.display())]
    MissingDir {
        /// The directory.
        dir: PathBuf,
    },
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn subject(target: &Option<PathBuf>) -> String {
    match target {
        Some(t) => format!("its target {}", t.display()),
        None => "it".into(),
    }
}

impl From<FsError> for io::Error {
    fn from(e: FsError) -> io::Error {
        match e {
            FsError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// Where reads and writes of `path` really go: its final target when it is a symlink,
/// else `path` itself (which need not exist). A dangling link or a loop is an error, never
/// something to replace.
pub fn resolve(path: &Path) -> Result<PathBuf, FsError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(e) => Err(e.into()),
        Ok(meta) if !meta.file_type().is_symlink() => Ok(path.to_path_buf()),
        Ok(_) => match std::fs::canonicalize(path) {
            Ok(target) => Ok(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FsError::Dangling {
                target: std::fs::read_link(path)?,
            }),
            Err(source) => Err(FsError::BadLink { source }),
        },
    }
}

/// What a non-regular file is, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Refuse `meta` unless it is a regular file; `target` names a link's target in messages.
fn require_regular(meta: &Metadata, path: &Path, target: &Path) -> Result<(), FsError> {
    if meta.is_file() {
        return Ok(());
    }
    Err(FsError::NotRegular {
        target: (target != path).then(|| target.to_path_buf()),
        what: kind_of(meta),
    })
}

/// The content of the regular file at `path` (through symlinks), `None` when nothing is
/// there, at most `limit` bytes. Wiped when dropped, since it holds secrets.
pub fn read_regular(path: &Path, limit: u64) -> Result<Option<Zeroizing<Vec<u8>>>, FsError> {
    let target = resolve(path)?;
    // Checked before opening, so that a FIFO is never opened (which would block) and a
    // device is never read.
    let meta = match std::fs::metadata(&target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    require_regular(&meta, path, &target)?;
    let file = match std::fs::File::open(&target) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The open file is what is read: a swap after the check above is caught here.
    require_regular(&file.metadata()?, path, &target)?;
    // Sized up front (growing the buffer would leave unwiped copies of the secret behind);
    // one byte over the limit tells a file at the limit from a larger one.
    let capacity = meta.len().min(limit) as usize + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FsError::TooLarge { limit });
    }
    Ok(Some(bytes))
}

/// Create `dir` and its missing parents readable by their owner only (0700 whatever the
/// umask), since they hold key files.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The directory `path` lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Replace the regular file at `path` (through symlinks) with `bytes`, atomically: a 0600
/// temporary file beside the target, fsync, rename over the target, fsync the directory.
/// A crash leaves the old or the new file, whole. The directory must exist.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let target = existing_dir_target(path)?;
    let dir = parent_of(&target);
    match std::fs::metadata(&target) {
        Ok(meta) => require_regular(&meta, path, &target)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // tempfile creates the file with mode 0600 on Unix, whatever the umask.
    let mut tmp = tempfile::Builder::new()
        .prefix(".credrot-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Where [`replace_private`] would write `path`, failing when the directory it would be
/// written in does not exist (it creates none).
pub fn existing_dir_target(path: &Path) -> Result<PathBuf, FsError> {
    let target = resolve(path)?;
    let dir = parent_of(&target);
    if !dir.is_dir() {
        return Err(FsError::MissingDir {
            dir: dir.to_path_buf(),
        });
    }
    Ok(target)
}

/// [`replace_private`], creating the missing directories first (mode 0700).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    create_private_dir(parent_of(&resolve(path)?))?;
    Ok(replace_private(path, bytes)?)
}

/// Warn (once per directory and process) when the directory of `path`, or of its symlink
/// target, can be written by group or others: whoever can write there can replace the key
/// file or plant a symlink in its place.
pub fn warn_if_shared_dir(path: &Path) {
    static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let mut dirs = vec![parent_of(path).to_path_buf()];
    if let Ok(target) = resolve(path) {
        dirs.push(parent_of(&target).to_path_buf());
    }
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o022 == 0 || !WARNED.lock().expect("warned lock").insert(dir.clone()) {
            continue;
        }
        tracing::warn!(
            "directory {} holding a key file is writable by {} (mode {:o}): anyone who can write there can replace the key; run chmod go-w on it",
            dir.display(),
            if mode & 0o002 != 0 { "everyone" } else { "its group" },
            mode & 0o7777
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_are_private_and_replace_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keys.json");
        write_private_atomic(&path, b"one").unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn writes_go_through_a_chain_of_symlinks_to_the_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/key.json");
        std::fs::write(&target, "old").unwrap();
        let hop = dir.path().join("hop");
        symlink("real/key.json", &hop).unwrap();
        let link = dir.path().join("key.json");
        symlink("hop", &link).unwrap();

        write_private_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(&*read_regular(&link, 10).unwrap().unwrap(), b"new");
        // The temporary file was made beside the target, and is gone.
        assert_eq!(
            std::fs::read_dir(dir.path().join("real")).unwrap().count(),
            1
        );
    }

    #[test]
    fn dangling_links_and_loops_are_errors_and_stay_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let dangling = dir.path().join("dangling");
        symlink("nowhere/key.json", &dangling).unwrap();
        let looped = dir.path().join("loop");
        symlink("loop", &looped).unwrap();

        let err = read_regular(&dangling, 10).unwrap_err();
        assert!(matches!(err, FsError::Dangling { .. }), "{err}");
        assert!(err.to_string().contains("nowhere/key.json"), "{err}");
        assert!(matches!(
            replace_private(&dangling, b"x").unwrap_err(),
            FsError::Dangling { .. }
        ));
        assert!(write_private_atomic(&dangling, b"x").is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert!(matches!(
            read_regular(&looped, 10).unwrap_err(),
            FsError::BadLink { .. }
        ));
        assert!(write_private_atomic(&looped, b"x").is_err());
        assert!(std::fs::symlink_metadata(&looped)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn special_files_are_refused_without_blocking_or_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening the FIFO would block this test forever.
        let err = read_regular(&fifo, KEY_FILE_LIMIT).unwrap_err();
        assert!(err.to_string().contains("a named pipe (FIFO)"), "{err}");
        assert!(replace_private(&fifo, b"x").is_err());

        let zero = dir.path().join("zero");
        symlink("/dev/zero", &zero).unwrap();
        let err = read_regular(&zero, KEY_FILE_LIMIT).unwrap_err();
        assert!(
            err.to_string()
                .contains("its target /dev/zero is a character device"),
            "{err}"
        );
        let err = read_regular(dir.path(), KEY_FILE_LIMIT).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 11]).unwrap();
        assert!(matches!(
            read_regular(&path, 10).unwrap_err(),
            FsError::TooLarge { limit: 10 }
        ));
        assert_eq!(read_regular(&path, 11).unwrap().unwrap().len(), 11);
        assert!(read_regular(&dir.path().join("none"), 10)
            .unwrap()
            .is_none());
    }

    #[test]
    fn replace_creates_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = replace_private(&dir.path().join("missing/k.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing does not exist"), "{err}");
        assert!(!dir.path().join("missing").exists());
    }
}
