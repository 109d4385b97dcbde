//! Why a configuration could not be used, and where in the file.

use std::path::PathBuf;

/// Where a relative path was looked for: ` (looked in DIR)`, or nothing for an absolute one.
fn looked_in(path: &std::path::Path) -> String {
    match std::env::current_dir() {
        Ok(dir) if path.is_relative() => format!(" (looked in {})", dir.display()),
        _ => String::new(),
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("configuration file {} not found{}; create it with `credrot generate` (it asks for a service and writes the file), or point --config / CREDROT_CONFIG at yours", path.display(), looked_in(path))]
    Missing { path: PathBuf },
    /// The file exists but could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or not a valid credrot configuration.
    #[error("{}:{line}:{column}: {message}\n  hint: {hint}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: String,
    },
    /// A service name given on the command line is not configured.
    #[error("service '{name}' is not in {}; run 'credrot list' to see the configured services", path.display())]
    UnknownService { name: String, path: PathBuf },
}

/// A problem found at a byte offset of the file: what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Byte offset in the file.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl Problem {
    pub(crate) fn new(offset: usize, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Problem {
            offset,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Turns byte offsets into `file:line:column` errors for one file's text.
pub(crate) struct Locator<'a> {
    pub path: &'a std::path::Path,
    pub text: &'a str,
}

impl Locator<'_> {
    /// The error for `problem`.
    pub fn error(&self, problem: Problem) -> ConfigError {
        let (line, column) = self.line_column(problem.offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: problem.message,
            hint: problem.hint,
        }
    }

    /// 1-based line of byte `offset`, for messages that point at a second place.
    pub fn line(&self, offset: usize) -> usize {
        self.line_column(offset).0
    }

    /// 1-based line and column of byte `offset`.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        (line, column)
    }

    /// The error for a TOML or serde error, with a hint chosen from its message.
    pub fn parse_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err.message().trim().to_string();
        let hint = hint_for(&message);
        self.error(Problem::new(
            err.span().map(|s| s.start).unwrap_or(0),
            message,
            hint,
        ))
    }
}

/// The store kinds, in the words of serde's "expected one of" list.
const KIND_VARIANTS: &str = "`file`, `1password`, `secrets-manager`, `ssm`, `kubernetes`, `vault`, `github`, `gcp-secret-manager`, `azure-key-vault`";

/// What to do about a parse error, from its message. The most specific messages come
/// first: a generic rule placed before them would make their hint unreachable.
pub(crate) fn hint_for(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "remove that key or fix its spelling; the keys allowed there are listed above"
    } else if message.contains("missing field `iam_user`") {
        "add iam_user = \"NAME\": the IAM user whose keys this service rotates"
    } else if message.contains("missing field `kind`") {
        "every store needs a kind: file, 1password, secrets-manager, ssm, kubernetes, vault, github, gcp-secret-manager or azure-key-vault"
    } else if message.contains("missing field `webhook`") {
        "add webhook = \"https://host/path\" to [notify], or remove the section"
    } else if message.starts_with("missing field") {
        "add the missing key shown above"
    } else if message.contains("unknown variant") && message.contains(KIND_VARIANTS) {
        "set kind to one of: file, 1password, secrets-manager, ssm, kubernetes, vault, github, gcp-secret-manager, azure-key-vault"
    } else if message.contains("unknown variant") {
        "use one of the values listed above"
    } else if message.starts_with("invalid type") {
        "check the value's type: strings need quotes, lists use [ ]"
    } else {
        "see the services.toml reference in docs/guide/services-toml-and-stores.md"
    }
}
