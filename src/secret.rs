//! Secret-holding types. Their `Debug` never prints the secret, and the secret bytes are
//! zeroized on drop (through `secrecy`).

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// An IAM access key pair: the id is public, the secret is not.
#[derive(Clone)]
pub struct AccessKey {
    /// The access key id (`AKIA...`), safe to log.
    pub id: String,
    /// The secret access key; only `expose()` reveals it.
    secret: SecretString,
}

impl AccessKey {
    /// Wrap a key pair; the secret moves into a zeroizing box.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        AccessKey {
            id: id.into(),
            secret: SecretString::from(secret.into()),
        }
    }

    /// The secret access key, for the few places that must hand it on.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl PartialEq for AccessKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.expose() == other.expose()
    }
}

impl Eq for AccessKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let key = AccessKey::new("AKIAEXAMPLE", "very-secret-value");
        let printed = format!("{key:?}");
        assert!(printed.contains("AKIAEXAMPLE"));
        assert!(!printed.contains("very-secret-value"));
    }
}
