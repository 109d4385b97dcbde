//! `credrot audit verify`: check the audit log's hash chain.

use crate::audit::{self, AuditError};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::config::Config;
use crate::error::Error;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Verify the chain of `path`, or of the configured `[audit] path`. Prints the line count
/// and the head (the anchor to compare with a copy kept elsewhere); a broken chain is an
/// error naming the first bad line.
pub fn verify(
    global: &GlobalArgs,
    path: Option<&Path>,
    config: impl FnOnce() -> Result<Config, Error>,
) -> Result<(), Error> {
    let path: PathBuf = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let config = config()?;
            config
                .audit
                .as_ref()
                .and_then(|a| a.path.clone())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{} has no [audit] path; pass --path FILE",
                        config.file.display()
                    ))
                })?
        }
    };
    let result = audit::verify_file(&path);
    let mut out = std::io::stdout().lock();
    match (&result, global.output) {
        (Err(AuditError::Read { source, .. }), _)
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(Error::Usage(format!(
                "no audit log at {}: check --path or [audit] path",
                path.display()
            )));
        }
        (Ok(v), OutputFormat::Json) => writeln!(
            out,
            "{}",
            json!({"path": path, "intact": true, "lines": v.lines, "head": v.head})
        )?,
        (Ok(v), OutputFormat::Table) => writeln!(
            out,
            "{}: {} lines, chain intact (head: seq {}, hash {})",
            path.display(),
            v.lines,
            v.head.seq,
            v.head.hash
        )?,
        (Err(AuditError::Broken { broken, .. }), OutputFormat::Json) => writeln!(
            out,
            "{}",
            json!({"path": path, "intact": false, "line": broken.line, "problem": broken.problem.to_string()})
        )?,
        (Err(_), _) => {}
    }
    result?;
    Ok(())
}
