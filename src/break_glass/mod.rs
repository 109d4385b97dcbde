//! Break-glass emergency access (placeholder while the feature is built).

/// Why a break-glass step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    /// The command line or configuration asks for something that cannot work.
    #[error("{0}")]
    Usage(String),
}

impl BreakGlassError {
    /// Whether this is a usage or configuration error (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, BreakGlassError::Usage(_))
    }
}
