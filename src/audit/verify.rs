//! `credrot audit verify`: walk the chain and name the first line that breaks it.

use super::{parse_line, AuditError, Link};
use serde::Serialize;
use std::io::BufRead;
use std::path::Path;

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a line credrot wrote (or damaged beyond reading).
    #[error("is not an audit record: {0}")]
    NotARecord(String),
    /// Its hash does not match its content.
    #[error("was edited: its content does not match its hash")]
    Edited,
    /// It does not follow the line before, and its `seq` skips ahead.
    #[error("breaks the chain: {missing} line(s) are missing before it (seq jumps from {after} to {seq}); lines were removed or moved")]
    Removed {
        /// The seq of the line before it.
        after: u64,
        /// Its own seq.
        seq: u64,
        /// How many are missing.
        missing: u64,
    },
    /// It does not follow the line before, and its `seq` does not skip ahead.
    #[error("breaks the chain: it does not follow the line before it (seq {seq} after {after}); lines were reordered, inserted or replaced")]
    OutOfOrder {
        /// The seq of the line before it.
        after: u64,
        /// Its own seq.
        seq: u64,
    },
    /// The file ends in the middle of a line.
    #[error("is cut off: the file does not end with a newline (an interrupted write, or an edit)")]
    Incomplete,
}

/// The first line that breaks the chain, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct Broken {
    /// The 1-based line number in the file.
    pub line: u64,
    /// What is wrong with it.
    pub problem: Problem,
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// How many lines it has.
    pub lines: u64,
    /// Its last position: compare it with an anchor kept elsewhere to detect truncation.
    pub head: Link,
}

/// Verify the chain read from `reader`, line by line (the file is never held in memory).
pub fn verify(reader: impl BufRead) -> std::io::Result<Result<Verified, Broken>> {
    let mut reader = reader;
    let mut last = Link::genesis();
    let mut number = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(Ok(Verified {
                lines: number,
                head: last,
            }));
        }
        number += 1;
        let broken = |problem| {
            Ok(Err(Broken {
                line: number,
                problem,
            }))
        };
        let Some(line) = buf.strip_suffix(b"\n") else {
            return broken(Problem::Incomplete);
        };
        let parsed = match parse_line(line) {
            Ok(p) => p,
            Err(problem) => return broken(problem),
        };
        if let Err(problem) = follows(&last, &parsed.link, &parsed.prev) {
            return broken(problem);
        }
        last = parsed.link;
    }
}

/// Whether a line at `link` that claims to follow `prev` comes right after `last`.
pub(super) fn follows(last: &Link, link: &Link, prev: &str) -> Result<(), Problem> {
    if prev == last.hash && link.seq == last.seq + 1 {
        return Ok(());
    }
    if link.seq > last.seq + 1 {
        Err(Problem::Removed {
            after: last.seq,
            seq: link.seq,
            missing: link.seq - last.seq - 1,
        })
    } else {
        Err(Problem::OutOfOrder {
            after: last.seq,
            seq: link.seq,
        })
    }
}

/// Verify the audit log at `path`: `Ok` when intact, [`AuditError::Broken`] naming the
/// first bad line otherwise.
pub fn verify_file(path: &Path) -> Result<Verified, AuditError> {
    let read_error = |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    verify(std::io::BufReader::new(file))
        .map_err(read_error)?
        .map_err(|broken| AuditError::Broken {
            path: path.to_path_buf(),
            broken,
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::super::{seal, RunInfo, GENESIS};
    use super::*;
    use std::time::SystemTime;

    /// A chain of `n` lines, as the lines (each with its newline).
    fn chain(n: usize) -> Vec<String> {
        chain_of_run(n, "run")
    }

    fn chain_of_run(n: usize, run_id: &str) -> Vec<String> {
        let run = RunInfo {
            run_id: run_id.to_string(),
            caller: "arn:aws:iam::1:user/a".to_string(),
        };
        let mut last = Link::genesis();
        (1..=n)
            .map(|i| {
                let sealed = seal(&event(i), &run, &last, SystemTime::now());
                last = sealed.link;
                sealed.line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<Verified, Broken> {
        verify(lines.concat().as_bytes()).unwrap()
    }

    fn broken_at(lines: &[String]) -> Broken {
        check(lines).expect_err("the chain must be reported broken")
    }

    #[test]
    fn an_intact_chain_verifies_and_names_its_head() {
        let lines = chain(5);
        let verified = check(&lines).unwrap();
        assert_eq!(verified.lines, 5);
        assert_eq!(verified.head.seq, 5);
        let last: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
        assert_eq!(verified.head.hash, last["hash"].as_str().unwrap());
    }

    #[test]
    fn an_empty_log_is_intact() {
        let verified = check(&[]).unwrap();
        assert_eq!(verified.lines, 0);
        assert_eq!(verified.head.hash, GENESIS);
    }

    #[test]
    fn an_edited_line_is_named() {
        let mut lines = chain(5);
        lines[2] = lines[2].replace("\"outcome\":\"ok\"", "\"outcome\":\"no\"");
        assert_eq!(
            broken_at(&lines),
            Broken {
                line: 3,
                problem: Problem::Edited
            }
        );
    }

    #[test]
    fn an_edited_last_line_is_named() {
        let mut lines = chain(3);
        lines[2] = lines[2].replace("user-3", "user-9");
        assert_eq!(broken_at(&lines).line, 3);
    }

    #[test]
    fn a_removed_line_is_named_where_the_chain_breaks() {
        let mut lines = chain(5);
        lines.remove(1);
        let broken = broken_at(&lines);
        assert_eq!(broken.line, 2);
        assert_eq!(
            broken.problem,
            Problem::Removed {
                after: 1,
                seq: 3,
                missing: 1
            }
        );
        assert!(broken.to_string().contains("removed"), "{broken}");
    }

    #[test]
    fn a_removed_first_line_is_detected() {
        let mut lines = chain(3);
        lines.remove(0);
        assert_eq!(broken_at(&lines).line, 1);
    }

    #[test]
    fn reordered_lines_are_detected() {
        let mut lines = chain(5);
        lines.swap(2, 3);
        assert_eq!(broken_at(&lines).line, 3);
    }

    #[test]
    fn a_duplicated_line_is_out_of_order() {
        let mut lines = chain(3);
        lines.insert(2, lines[1].clone());
        let broken = broken_at(&lines);
        assert_eq!(broken.line, 3);
        assert_eq!(broken.problem, Problem::OutOfOrder { after: 2, seq: 2 });
    }

    #[test]
    fn a_line_from_another_chain_is_detected_even_with_the_right_seq() {
        let mut lines = chain(3);
        let other = chain_of_run(3, "another run");
        // Same seq, valid hash, but it follows a different line 1.
        lines[1] = other[1].clone();
        assert_eq!(
            broken_at(&lines),
            Broken {
                line: 2,
                problem: Problem::OutOfOrder { after: 1, seq: 2 }
            }
        );
    }

    #[test]
    fn a_cut_off_last_line_is_incomplete() {
        let mut lines = chain(2);
        let cut = lines[1].len() - 10;
        lines[1].truncate(cut);
        assert_eq!(
            broken_at(&lines),
            Broken {
                line: 2,
                problem: Problem::Incomplete
            }
        );
    }

    #[test]
    fn truncation_at_the_end_leaves_an_intact_shorter_chain() {
        // Documented limit: only an anchor kept elsewhere (the head) reveals this.
        let lines = chain(4);
        let full = check(&lines).unwrap();
        let cut = check(&lines[..3]).unwrap();
        assert_eq!(cut.lines, 3);
        assert_ne!(cut.head, full.head);
    }

    #[test]
    fn a_blank_line_is_not_a_record() {
        let mut lines = chain(2);
        lines.insert(1, "\n".to_string());
        assert!(matches!(
            broken_at(&lines),
            Broken {
                line: 2,
                problem: Problem::NotARecord(_)
            }
        ));
    }
}
