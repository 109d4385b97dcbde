//! A key file inside a git work tree that git does not ignore is one `git add -A` away from
//! a commit: warn (stderr, once per path and process). Asks the real `git check-ignore`, so
//! every .gitignore, .git/info/exclude and core.excludesFile rule counts; without git (or
//! outside a work tree) nothing is said. Only paths go to git, on stdin: never a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Warn for each of `paths` (files that will hold keys) that is inside a git work tree and
/// not ignored there. One `git` process per directory that exists, whatever the number of
/// files in it.
pub fn warn_unignored(paths: &[PathBuf]) {
    static WARNED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let cwd = std::env::current_dir().unwrap_or_default();
    // Nearest existing directory → paths relative to it (a path's missing directories are
    // created by its store; git matches patterns against names that do not exist yet).
    let mut by_dir: BTreeMap<PathBuf, Vec<(PathBuf, PathBuf)>> = BTreeMap::new();
    for path in paths {
        let absolute = cwd.join(path);
        if WARNED.lock().expect("warned lock").contains(&absolute) {
            continue;
        }
        let mut dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        while !dir.is_dir() {
            match dir.parent() {
                Some(parent) => dir = parent.to_path_buf(),
                None => break,
            }
        }
        if let Ok(relative) = absolute.strip_prefix(&dir) {
            let entry = (relative.to_path_buf(), path.clone());
            by_dir.entry(dir.clone()).or_default().push(entry);
        }
    }
    for (dir, files) in by_dir {
        let relative: Vec<&Path> = files.iter().map(|(r, _)| r.as_path()).collect();
        let Some(unignored) = not_ignored(&dir, &relative) else {
            continue;
        };
        for (relative, shown) in &files {
            if !unignored.contains(relative) {
                continue;
            }
            if WARNED
                .lock()
                .expect("warned lock")
                .insert(dir.join(relative))
            {
                tracing::warn!(
                    "{} will hold secret keys and is inside a git work tree without being ignored: one `git add -A` would commit it; add it to .gitignore (or keep it outside the repository)",
                    shown.display()
                );
            }
        }
    }
}

/// Which of `files` (relative to `dir`) git does not ignore; `None` when git is missing,
/// `dir` is not in a work tree, or git failed.
fn not_ignored(dir: &Path, files: &[&Path]) -> Option<BTreeSet<PathBuf>> {
    // --verbose --non-matching: one record per path, with the matching pattern (empty when
    // none matched; a `!pattern` match means not ignored either).
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "check-ignore",
            "--stdin",
            "-z",
            "--verbose",
            "--non-matching",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut input = Vec::new();
    for file in files {
        input.extend_from_slice(file.as_os_str().as_encoded_bytes());
        input.push(0);
    }
    let mut stdin = child.stdin.take()?;
    let written = stdin.write_all(&input);
    drop(stdin);
    let out = child.wait_with_output().ok()?;
    written.ok()?;
    // 0: some path matched, 1: none did; 128: not a work tree, or an error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return None;
    }
    let fields: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let mut unignored = BTreeSet::new();
    for record in fields.chunks(4) {
        let [source, _line, pattern, path] = record else {
            continue;
        };
        if source.is_empty() || pattern.starts_with(b"!") {
            unignored.insert(PathBuf::from(String::from_utf8_lossy(path).into_owned()));
        }
    }
    Some(unignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> bool {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    #[test]
    fn git_tells_ignored_from_unignored_paths() {
        let dir = tempfile::tempdir().unwrap();
        if !git(dir.path(), &["init", "-q"]) {
            eprintln!("git is not installed: nothing to check");
            return;
        }
        std::fs::write(
            dir.path().join(".gitignore"),
            "secrets/\n*.keys\n!kept.keys\n",
        )
        .unwrap();
        let files = [
            Path::new("secrets/a.json"),
            Path::new("keys.json"),
            Path::new("x.keys"),
            Path::new("kept.keys"),
            Path::new("sub/dir/k.json"),
        ];
        let unignored = not_ignored(dir.path(), &files).unwrap();
        let expected: BTreeSet<PathBuf> = ["keys.json", "kept.keys", "sub/dir/k.json"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(unignored, expected);
        // Outside a work tree git says nothing.
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(not_ignored(outside.path(), &files[..1]), None);
    }
}
