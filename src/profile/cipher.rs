//! Encrypted values in the credentials file: `__encrypted__:<base64>`.
//!
//! credrot's payload is `magic (4 bytes) || nonce (12) || AES-256-GCM ciphertext and tag`,
//! with the profile and field name as associated data, so a value copied into another profile
//! or field does not decrypt. The magic tells credrot's values from other tools' that use the
//! same marker (iam-sorry: `nonce || ciphertext`, no magic).

use super::ProfileKey;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

/// The marker that starts every encrypted value.
pub const PREFIX: &str = "__encrypted__:";
/// credrot's format, version 1.
const MAGIC: &[u8; 4] = b"crd\x01";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What a value in the credentials file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Plain text.
    Plain,
    /// Encrypted by credrot.
    Credrot,
    /// Carries the marker but not credrot's format (iam-sorry, or damaged).
    Foreign,
}

/// Why a value could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The value is not base64 or too short to hold a nonce and a tag.
    #[error("the encrypted value is damaged (not base64, or too short)")]
    Malformed,
    /// The value was not written by credrot.
    #[error("the value was not encrypted by credrot (another tool, such as iam-sorry, uses the same marker)")]
    Foreign,
    /// Authentication failed: another key, another profile or field, or altered bytes.
    #[error("it does not decrypt: it was encrypted with another SSH key or for another profile or field, or it was altered")]
    Rejected,
    /// The plaintext is not UTF-8.
    #[error("the decrypted value is not text")]
    NotText,
}

/// Classify a stored value.
pub fn kind(value: &str) -> ValueKind {
    match value.strip_prefix(PREFIX) {
        None => ValueKind::Plain,
        Some(encoded) => match STANDARD.decode(encoded) {
            Ok(bytes)
                if bytes.len() >= MAGIC.len() + NONCE_LEN + TAG_LEN && bytes.starts_with(MAGIC) =>
            {
                ValueKind::Credrot
            }
            _ => ValueKind::Foreign,
        },
    }
}

/// Associated data: binds a value to where it is stored.
fn associated_data(profile: &str, field: &str) -> Vec<u8> {
    // NUL separators: neither a profile name nor a field name can contain one, so
    // ("ab", "c") and ("a", "bc") never share associated data.
    [
        b"credrot/v1".as_slice(),
        profile.as_bytes(),
        field.as_bytes(),
    ]
    .join(&0u8)
}

/// Encrypt `plaintext` for `field` of `profile`, with a fresh random nonce.
pub fn encrypt(key: &ProfileKey, profile: &str, field: &str, plaintext: &str) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).expect("the operating system's random source works");
    let aad = associated_data(profile, field);
    let ciphertext = Aes256Gcm::new(key.bytes().into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of a short value cannot fail");
    let mut payload = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
    payload.extend_from_slice(MAGIC);
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&ciphertext);
    format!("{PREFIX}{}", STANDARD.encode(payload))
}

/// Decrypt a credrot value stored in `field` of `profile`.
pub fn decrypt(
    key: &ProfileKey,
    profile: &str,
    field: &str,
    value: &str,
) -> Result<Zeroizing<String>, CipherError> {
    let payload = decode(value)?;
    let body = payload.strip_prefix(MAGIC).ok_or(CipherError::Foreign)?;
    open(key.bytes(), body, &associated_data(profile, field))
}

/// The base64 payload of a marked value.
pub(super) fn decode(value: &str) -> Result<Vec<u8>, CipherError> {
    let encoded = value.strip_prefix(PREFIX).ok_or(CipherError::Malformed)?;
    let payload = STANDARD
        .decode(encoded.trim())
        .map_err(|_| CipherError::Malformed)?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(CipherError::Malformed);
    }
    Ok(payload)
}

/// AES-256-GCM open of `nonce || ciphertext`.
pub(super) fn open(
    key: &[u8; 32],
    body: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<String>, CipherError> {
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(CipherError::Malformed);
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let plaintext = Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CipherError::Rejected)?;
    String::from_utf8(plaintext)
        .map(Zeroizing::new)
        .map_err(|_| CipherError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ProfileKey {
        ProfileKey::from_bytes([byte; 32])
    }

    #[test]
    fn values_round_trip_with_fresh_nonces() {
        let k = key(7);
        let a = encrypt(&k, "work", "aws_secret_access_key", "s3cr3t/+=");
        let b = encrypt(&k, "work", "aws_secret_access_key", "s3cr3t/+=");
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(a.starts_with(PREFIX));
        assert!(!a.contains("s3cr3t"));
        assert_eq!(kind(&a), ValueKind::Credrot);
        assert_eq!(
            *decrypt(&k, "work", "aws_secret_access_key", &a).unwrap(),
            "s3cr3t/+="
        );
    }

    #[test]
    fn a_value_moved_elsewhere_or_under_another_key_fails() {
        let k = key(7);
        let v = encrypt(&k, "work", "aws_secret_access_key", "secret");
        for (profile, field) in [
            ("other", "aws_secret_access_key"),
            ("work", "aws_access_key_id"),
            ("wor", "kaws_secret_access_key"),
        ] {
            assert_eq!(
                decrypt(&k, profile, field, &v).unwrap_err(),
                CipherError::Rejected
            );
        }
        assert_eq!(
            decrypt(&key(8), "work", "aws_secret_access_key", &v).unwrap_err(),
            CipherError::Rejected
        );
        let mut tampered = v.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(decrypt(&k, "work", "aws_secret_access_key", &tampered).is_err());
    }

    #[test]
    fn foreign_and_damaged_values_are_told_apart() {
        assert_eq!(kind("AKIAPLAIN"), ValueKind::Plain);
        assert_eq!(kind("__encrypted__:not base64!"), ValueKind::Foreign);
        let foreign = format!("{PREFIX}{}", STANDARD.encode([1u8; 40]));
        assert_eq!(kind(&foreign), ValueKind::Foreign);
        assert_eq!(
            decrypt(&key(1), "p", "f", &foreign).unwrap_err(),
            CipherError::Foreign
        );
        assert_eq!(
            decrypt(&key(1), "p", "f", "__encrypted__:AAAA").unwrap_err(),
            CipherError::Malformed
        );
    }
}
