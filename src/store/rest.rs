//! What the stores behind REST APIs (Kubernetes, Vault) share: wiped JSON strings, the
//! redaction of secrets from messages, and the way an HTTP failure becomes a store error.

use crate::http::HttpError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A JSON string that may be (or encode) a secret: wiped on drop, never shown by Debug.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Wiped(pub Zeroizing<String>);

impl Wiped {
    pub(crate) fn new(text: String) -> Self {
        Wiped(Zeroizing::new(text))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Wiped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<wiped>")
    }
}

impl Serialize for Wiped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Wiped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The String is moved into the wiped box, not copied.
        Ok(Wiped::new(String::deserialize(d)?))
    }
}

/// `text` with every non-empty secret of `secrets` replaced by `[redacted]`: should a
/// service ever quote a value back, it does not reach a message.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    out
}

/// JSON of `value` in a wiped buffer, reserved up front so that growing it leaves no
/// unwiped copy behind.
pub(crate) fn to_wiped_json(value: &impl Serialize, size_hint: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(size_hint + 4096));
    serde_json::to_writer(&mut *out, value).expect("store documents always serialize");
    out
}

/// Appended to the reason of a write that got no answer: it may have been carried out.
pub(crate) const MAY_HAVE_LANDED: &str = " (no answer came back: the change may have been made)";

/// The reason for a failed call, secrets redacted, saying when it may have landed.
pub(crate) fn http_reason(err: &HttpError, secrets: &[&str], is_change: bool) -> String {
    let mut reason = redact(&err.to_string(), secrets);
    if is_change && err.may_have_landed() {
        reason.push_str(MAY_HAVE_LANDED);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiped_strings_round_trip_and_never_debug_print() {
        let w: Wiped = serde_json::from_str("\"s3cr3t\"").unwrap();
        assert_eq!(w.as_str(), "s3cr3t");
        assert_eq!(format!("{w:?}"), "<wiped>");
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"s3cr3t\"");
        assert_eq!(
            redact("value s3cr3t is bad", &["s3cr3t", ""]),
            "value [redacted] is bad"
        );
    }
}
