//! The AWS shared credentials file (`~/.aws/credentials`): a line-preserving editor and a
//! locked, atomic rewrite.
//!
//! People keep comments, odd spacing and profiles credrot knows nothing about in this file, and
//! no INI crate round-trips them. So the file is kept as its lines: reading classifies each
//! line the way the AWS SDKs do, and an edit replaces only the value bytes of the properties it
//! sets (or adds lines), so every other byte of the file stays exactly as it was.

use fs4::fs_std::FileExt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an edit waits for another credrot that holds the file's lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why the credentials file could not be read, parsed for an edit, or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No home directory to find `~/.aws/credentials` in.
    #[error(
        "cannot find the AWS credentials file: no home directory; set AWS_SHARED_CREDENTIALS_FILE"
    )]
    NoHome,
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The credentials file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("{} is not UTF-8 text; fix or convert it before credrot edits it", path.display())]
    NotText {
        /// The credentials file.
        path: PathBuf,
    },
    /// The lock could not be taken.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process held the lock for too long.
    #[error("{} is locked by another credrot run (lock file {}); try again when it has finished", path.display(), lock.display())]
    Busy {
        /// The credentials file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The new content could not be written; the old file is untouched.
    #[error("cannot write {} (the file was left as it was): {source}", path.display())]
    Write {
        /// The credentials file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The same profile has two sections, so an edit could not know which to change.
    #[error("profile [{profile}] appears more than once in {}; merge its sections by hand first", path.display())]
    DuplicateProfile {
        /// The credentials file.
        path: PathBuf,
        /// The profile.
        profile: String,
    },
    /// The same key appears twice in one profile.
    #[error("{key} appears more than once in profile [{profile}] of {}; remove the extra line first", path.display())]
    DuplicateKey {
        /// The credentials file.
        path: PathBuf,
        /// The profile.
        profile: String,
        /// The repeated key.
        key: String,
    },
}

impl FileError {
    /// Whether the user has to fix the file (exit 2) rather than retry (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            FileError::NoHome
                | FileError::NotText { .. }
                | FileError::DuplicateProfile { .. }
                | FileError::DuplicateKey { .. }
        )
    }
}

/// The credentials file on disk.
#[derive(Debug, Clone)]
pub struct CredentialsFile {
    path: PathBuf,
}

impl CredentialsFile {
    /// The file the AWS SDKs and CLI read: `AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`.
    pub fn locate() -> Result<CredentialsFile, FileError> {
        if let Some(path) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
            if !path.is_empty() {
                return Ok(CredentialsFile::at(expand_home(Path::new(&path))));
            }
        }
        let home = dirs::home_dir().ok_or(FileError::NoHome)?;
        Ok(CredentialsFile::at(home.join(".aws").join("credentials")))
    }

    /// The shared config file the AWS SDKs and CLI read: `AWS_CONFIG_FILE`, else
    /// `~/.aws/config` (read only: credrot never writes it).
    pub fn locate_config() -> Result<CredentialsFile, FileError> {
        if let Some(path) = std::env::var_os("AWS_CONFIG_FILE") {
            if !path.is_empty() {
                return Ok(CredentialsFile::at(expand_home(Path::new(&path))));
            }
        }
        let home = dirs::home_dir().ok_or(FileError::NoHome)?;
        Ok(CredentialsFile::at(home.join(".aws").join("config")))
    }

    /// The file at `path`.
    pub fn at(path: impl Into<PathBuf>) -> CredentialsFile {
        CredentialsFile { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read and parse the file; a missing file is an empty document.
    pub fn read(&self) -> Result<Document, FileError> {
        read_document(&self.path)
    }

    /// Re-read the file under its lock, let `change` edit it, and write it back atomically
    /// when it changed. `change` sees the current content, so concurrent credrot runs never
    /// lose each other's edits.
    pub fn edit<T, E>(&self, change: impl FnOnce(&mut Document) -> Result<T, E>) -> Result<T, E>
    where
        E: From<FileError>,
    {
        // Write through a symlink (dotfile managers link ~/.aws/credentials), not over it.
        let target = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let _lock = self.lock(&target)?;
        let mut document = read_document(&target)?;
        let before = document.render();
        let value = change(&mut document)?;
        let after = document.render();
        if after != before {
            crate::fsutil::write_private_atomic(&target, after.as_bytes()).map_err(|source| {
                FileError::Write {
                    path: self.path.clone(),
                    source,
                }
            })?;
        }
        Ok(value)
    }

    /// An exclusive lock on a sibling lock file (the credentials file itself is replaced by
    /// rename, so a lock on it would not exclude the next writer). Released on drop.
    fn lock(&self, target: &Path) -> Result<std::fs::File, FileError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "credentials".into());
        let lock_path = target.with_file_name(format!(".{name}.credrot-lock"));
        let lock_error = |source| FileError::Lock {
            path: lock_path.clone(),
            source,
        };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(lock_error)?;
        }
        let file = open_private(&lock_path).map_err(lock_error)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            if FileExt::try_lock_exclusive(&file).map_err(lock_error)? {
                return Ok(file);
            }
            if Instant::now() >= deadline {
                return Err(FileError::Busy {
                    path: self.path.clone(),
                    lock: lock_path,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Create `~/.aws` the way the AWS CLI does: readable by its owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// `~/x` as the shells and the AWS SDKs expand it.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

fn read_document(path: &Path) -> Result<Document, FileError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(|text| Document::parse(&text, path))
            .map_err(|_| FileError::NotText {
                path: path.to_path_buf(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Document::parse("", path)),
        Err(source) => Err(FileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What a line is, as the AWS SDKs read it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Blank, comment, continuation or unparsable: kept as it is.
    Other,
    /// `[name]`.
    Section(String),
    /// `key = value`; `value` is the byte range of the value within the line.
    Property {
        key: String,
        value: std::ops::Range<usize>,
    },
}

#[derive(Debug, Clone)]
struct Line {
    /// The line without its line ending.
    text: String,
    /// `\n`, `\r\n`, or empty for a last line without one.
    eol: &'static str,
    kind: Kind,
}

/// A parsed credentials file that renders back to the same bytes, except where it was edited.
#[derive(Debug, Clone)]
pub struct Document {
    path: PathBuf,
    lines: Vec<Line>,
    /// The line ending new lines get: the file's own.
    eol: &'static str,
}

const WHITESPACE: &[char] = &[' ', '\t'];

impl Document {
    /// Parse `text`; `path` is only used in messages. Parsing never fails: lines the SDKs
    /// would reject are kept as they are and ignored.
    pub fn parse(text: &str, path: &Path) -> Document {
        let mut lines = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (raw, eol, next) = match rest.find('\n') {
                Some(i) if rest[..i].ends_with('\r') => (&rest[..i - 1], "\r\n", &rest[i + 1..]),
                Some(i) => (&rest[..i], "\n", &rest[i + 1..]),
                None => (rest, "", ""),
            };
            lines.push(Line {
                text: raw.to_string(),
                eol,
                kind: classify(raw),
            });
            rest = next;
        }
        let eol = lines
            .iter()
            .map(|l| l.eol)
            .find(|e| !e.is_empty())
            .unwrap_or("\n");
        Document {
            path: path.to_path_buf(),
            lines,
            eol,
        }
    }

    /// The text, byte for byte as parsed plus the edits.
    pub fn render(&self) -> String {
        self.lines
            .iter()
            .flat_map(|l| [l.text.as_str(), l.eol])
            .collect()
    }

    /// Profile names in file order, each once.
    pub fn profiles(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for line in &self.lines {
            if let Kind::Section(name) = &line.kind {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Whether a config file (not a credentials file) has the profile: `[profile NAME]`,
    /// or `[default]` for `default`, as the SDKs read it.
    pub fn has_config_profile(&self, profile: &str) -> bool {
        self.profiles().iter().any(|section| {
            let mut words = section.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("profile"), Some(name), None) => name == profile,
                (Some(name), None, None) => name == "default" && profile == "default",
                _ => false,
            }
        })
    }

    /// Whether the profile has a section.
    pub fn has_profile(&self, profile: &str) -> bool {
        self.profiles().contains(&profile)
    }

    /// The value of `key` in `profile`. Like the SDKs, a later occurrence wins.
    pub fn get(&self, profile: &str, key: &str) -> Option<&str> {
        let mut found = None;
        let mut current: Option<&str> = None;
        for line in &self.lines {
            match &line.kind {
                Kind::Section(name) => current = Some(name),
                Kind::Property { key: k, value } if current == Some(profile) && k == key => {
                    found = Some(&line.text[value.clone()]);
                }
                _ => {}
            }
        }
        found
    }

    /// Set `key` in `profile`: the value bytes of its line are replaced; a missing key is
    /// added after the profile's last property; a missing profile is appended at the end.
    pub fn set(&mut self, profile: &str, key: &str, value: &str) -> Result<(), FileError> {
        let Some(section) = self.section(profile)? else {
            self.append_section(profile, &[(key, value)]);
            return Ok(());
        };
        let mut hits = section
            .clone()
            .filter(|&i| matches!(&self.lines[i].kind, Kind::Property { key: k, .. } if k == key));
        match (hits.next(), hits.next()) {
            (Some(_), Some(_)) => Err(FileError::DuplicateKey {
                path: self.path.clone(),
                profile: profile.to_string(),
                key: key.to_string(),
            }),
            (Some(i), None) => {
                let line = &mut self.lines[i];
                if let Kind::Property { value: range, .. } = &line.kind {
                    let range = range.clone();
                    line.text.replace_range(range.clone(), value);
                    line.kind = Kind::Property {
                        key: key.to_string(),
                        value: range.start..range.start + value.len(),
                    };
                }
                Ok(())
            }
            (None, _) => {
                // After the last property or continuation of the section, so trailing blank
                // lines and comments that introduce the next profile stay where they are.
                let after = section
                    .clone()
                    .rev()
                    .find(|&i| {
                        matches!(self.lines[i].kind, Kind::Property { .. })
                            || self.lines[i].text.starts_with(WHITESPACE)
                                && !self.lines[i].text.trim_matches(WHITESPACE).is_empty()
                    })
                    .unwrap_or(section.start - 1);
                self.ensure_eol(after);
                let eol = self.eol;
                self.lines.insert(after + 1, property_line(key, value, eol));
                Ok(())
            }
        }
    }

    /// The line indexes of `profile`'s body (after its header), or None when it has no
    /// section. Two sections for one profile are refused: an edit could pick the wrong one.
    fn section(&self, profile: &str) -> Result<Option<std::ops::Range<usize>>, FileError> {
        let headers: Vec<usize> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(&l.kind, Kind::Section(n) if n == profile))
            .map(|(i, _)| i)
            .collect();
        match headers.as_slice() {
            [] => Ok(None),
            [start] => {
                let end = self.lines[start + 1..]
                    .iter()
                    .position(|l| matches!(l.kind, Kind::Section(_)))
                    .map_or(self.lines.len(), |p| start + 1 + p);
                Ok(Some(start + 1..end))
            }
            _ => Err(FileError::DuplicateProfile {
                path: self.path.clone(),
                profile: profile.to_string(),
            }),
        }
    }

    fn append_section(&mut self, profile: &str, properties: &[(&str, &str)]) {
        let eol = self.eol;
        if let Some(last) = self.lines.len().checked_sub(1) {
            self.ensure_eol(last);
            if !self.lines[last].text.trim_matches(WHITESPACE).is_empty() {
                self.lines.push(Line {
                    text: String::new(),
                    eol,
                    kind: Kind::Other,
                });
            }
        }
        self.lines.push(Line {
            text: format!("[{profile}]"),
            eol,
            kind: Kind::Section(profile.to_string()),
        });
        for (key, value) in properties {
            self.lines.push(property_line(key, value, eol));
        }
    }

    /// A last line without a line ending gets one before anything is added after it.
    fn ensure_eol(&mut self, index: usize) {
        if let Some(line) = self.lines.get_mut(index) {
            if line.eol.is_empty() {
                line.eol = self.eol;
            }
        }
    }
}

fn property_line(key: &str, value: &str, eol: &'static str) -> Line {
    let text = format!("{key} = {value}");
    let start = key.len() + 3;
    Line {
        kind: Kind::Property {
            key: key.to_string(),
            value: start..text.len(),
        },
        text,
        eol,
    }
}

/// Classify one line by the AWS SDKs' profile-file rules: `#`/`;` lines are comments,
/// `[name]` starts a profile, a line starting with whitespace continues the previous
/// property, and `key = value` is a property whose value ends at a ` #` or ` ;` comment.
fn classify(line: &str) -> Kind {
    let trimmed = line.trim_matches(WHITESPACE);
    if trimmed.is_empty() || line.starts_with(['#', ';']) || line.starts_with(WHITESPACE) {
        return Kind::Other;
    }
    if line.starts_with('[') {
        let header = strip_comment(trimmed, false).trim_matches(WHITESPACE);
        return match header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(name) if !name.trim_matches(WHITESPACE).is_empty() => {
                Kind::Section(name.trim_matches(WHITESPACE).to_string())
            }
            _ => Kind::Other,
        };
    }
    let content = strip_comment(line, true);
    let Some(eq) = content.find('=') else {
        return Kind::Other;
    };
    let key = content[..eq].trim_matches(WHITESPACE);
    if key.is_empty() {
        return Kind::Other;
    }
    let after = &content[eq + 1..];
    let lead = after.len() - after.trim_start_matches(WHITESPACE).len();
    let start = eq + 1 + lead;
    let end = eq + 1 + after.trim_end_matches(WHITESPACE).len();
    Kind::Property {
        key: key.to_ascii_lowercase(),
        value: start..end.max(start),
    }
}

/// `line` up to a comment; in property lines the comment marker must follow whitespace.
fn strip_comment(line: &str, needs_whitespace: bool) -> &str {
    let mut previous_blank = false;
    for (i, c) in line.char_indices() {
        if (c == '#' || c == ';') && (previous_blank || !needs_whitespace) {
            return &line[..i];
        }
        previous_blank = WHITESPACE.contains(&c);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# my credentials, hand-edited
[default]
aws_access_key_id=AKIADEFAULT
aws_secret_access_key =  secretdefault   ; trailing comment

;; work account
[ work ]   # comment after header
Aws_Access_Key_Id = AKIAWORK
aws_secret_access_key = secretwork
region = eu-west-1
s3 =
  max_concurrent_requests = 10

[other]
aws_access_key_id = AKIAOTHER
";

    fn doc(text: &str) -> Document {
        Document::parse(text, Path::new("credentials"))
    }

    #[test]
    fn config_profiles_are_named_with_the_profile_prefix() {
        let config = doc("[default]\nregion = x\n[profile  work ]\n[plain]\n[sso-session s]\n");
        assert!(config.has_config_profile("default"));
        assert!(config.has_config_profile("work"));
        assert!(
            !config.has_config_profile("plain"),
            "config sections need 'profile '"
        );
        assert!(!config.has_config_profile("s"));
        assert!(!config.has_config_profile("nosuch"));
    }

    #[test]
    fn parsing_and_rendering_keeps_every_byte() {
        for text in [
            SAMPLE,
            "",
            "\n\n",
            "[a]\r\nx = 1\r\n",
            "[a]\nx = 1",
            "garbage line\n[a]\n=novalue\n",
        ] {
            assert_eq!(doc(text).render(), text);
        }
    }

    #[test]
    fn values_are_read_as_the_sdk_reads_them() {
        let d = doc(SAMPLE);
        assert_eq!(d.profiles(), ["default", "work", "other"]);
        assert_eq!(d.get("default", "aws_access_key_id"), Some("AKIADEFAULT"));
        assert_eq!(
            d.get("default", "aws_secret_access_key"),
            Some("secretdefault")
        );
        assert_eq!(d.get("work", "aws_access_key_id"), Some("AKIAWORK"));
        assert_eq!(d.get("work", "s3"), Some(""));
        assert_eq!(d.get("work", "max_concurrent_requests"), None);
        assert_eq!(d.get("missing", "aws_access_key_id"), None);
        assert_eq!(
            doc("[a]\nk = a#b\n").get("a", "k"),
            Some("a#b"),
            "# not after whitespace is part of the value"
        );
    }

    #[test]
    fn setting_a_value_changes_only_its_bytes() {
        let mut d = doc(SAMPLE);
        d.set("work", "aws_access_key_id", "__encrypted__:abc+/=")
            .unwrap();
        d.set("default", "aws_secret_access_key", "new").unwrap();
        let expected = SAMPLE
            .replace("AKIAWORK", "__encrypted__:abc+/=")
            .replace("secretdefault", "new");
        assert_eq!(d.render(), expected);
        assert_eq!(
            d.get("work", "aws_access_key_id"),
            Some("__encrypted__:abc+/=")
        );
        // Setting again works on the updated range.
        d.set("work", "aws_access_key_id", "AKIAWORK").unwrap();
        assert_eq!(d.render(), SAMPLE.replace("secretdefault", "new"));
    }

    #[test]
    fn a_missing_key_goes_after_the_last_property_of_its_profile() {
        let mut d = doc(SAMPLE);
        d.set("other", "aws_session_token", "tok").unwrap();
        d.set("work", "aws_session_token", "tok2").unwrap();
        let expected = SAMPLE
            .replace(
                "  max_concurrent_requests = 10\n",
                "  max_concurrent_requests = 10\naws_session_token = tok2\n",
            )
            .replace("AKIAOTHER\n", "AKIAOTHER\naws_session_token = tok\n");
        assert_eq!(d.render(), expected);
    }

    #[test]
    fn a_missing_profile_is_appended_with_the_files_line_endings() {
        let mut d = doc("[a]\r\nx = 1");
        d.set("b", "aws_access_key_id", "AKIA").unwrap();
        assert_eq!(
            d.render(),
            "[a]\r\nx = 1\r\n\r\n[b]\r\naws_access_key_id = AKIA\r\n"
        );

        let mut empty = doc("");
        empty.set("b", "k", "v").unwrap();
        empty.set("b", "k2", "v2").unwrap();
        assert_eq!(empty.render(), "[b]\nk = v\nk2 = v2\n");
    }

    #[test]
    fn duplicates_are_refused_for_edits() {
        let mut d = doc("[a]\nk = 1\n[a]\nk = 2\n");
        assert_eq!(d.get("a", "k"), Some("2"), "later wins, as in the SDKs");
        assert!(matches!(
            d.set("a", "k", "3"),
            Err(FileError::DuplicateProfile { .. })
        ));
        let mut d = doc("[a]\nk = 1\nk = 2\n");
        assert!(matches!(
            d.set("a", "k", "3"),
            Err(FileError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn edits_are_atomic_private_and_keep_other_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, SAMPLE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = CredentialsFile::at(&path);
        file.edit(|d| d.set("other", "aws_access_key_id", "AKIANEW"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            SAMPLE.replace("AKIAOTHER", "AKIANEW")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A failed change writes nothing.
        let result: Result<(), FileError> = file.edit(|d| {
            d.set("other", "aws_access_key_id", "AKIALOST")?;
            Err(FileError::NoHome)
        });
        assert!(result.is_err());
        assert!(std::fs::read_to_string(&path).unwrap().contains("AKIANEW"));
    }

    #[test]
    fn edits_write_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real-credentials");
        std::fs::write(&real, "[a]\nk = 1\n").unwrap();
        let link = dir.path().join("credentials");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        CredentialsFile::at(&link)
            .edit(|d| d.set("a", "k", "2"))
            .unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "[a]\nk = 2\n");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[a]\nk = 1\n").unwrap();
        let file = CredentialsFile::at(&path);
        let held = file.lock(&path).unwrap();
        // A second lock on another descriptor is refused while the first is held.
        let other = open_private(&dir.path().join(".credentials.credrot-lock")).unwrap();
        assert!(!FileExt::try_lock_exclusive(&other).unwrap());
        drop(held);
        assert!(FileExt::try_lock_exclusive(&other).unwrap());
    }
}
