//! Migration from iam-sorry, which writes the same `__encrypted__:` marker with its own scheme:
//! an AES-256-GCM key derived by HKDF-SHA256 from the raw bytes of the SSH private key file
//! (no passphrase involved), `nonce (12) || ciphertext and tag` in base64, no associated data.
//!
//! Reading such values is all credrot does with the scheme: `profile import-iam-sorry`
//! re-encrypts them with credrot's own.

use super::cipher::{self, CipherError};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// iam-sorry's HKDF salt and info (iam-sorry 0.2.x).
const SALT: &[u8] = b"iam-sorry-v1-salt-2025";
const INFO: &[u8] = b"iam-sorry-encryption";

/// iam-sorry's AES key for the SSH key file whose bytes are `key_file`.
pub fn derive_key(key_file: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(SALT), key_file)
        .expand(INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// Decrypt one iam-sorry value.
pub fn decrypt(key: &[u8; 32], value: &str) -> Result<Zeroizing<String>, CipherError> {
    cipher::open(key, &cipher::decode(value)?, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made with `ssh-keygen -t ed25519 -N vector-pass` for this test only.
    const KEY_FILE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBfvdJdq9\nHU5Q66VdOhDOB2AAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAINeUQzEUOx2FhdNq\nu3V2UHRJJLl60rT7yF/1WD0ed7/5AAAAoLzubQxKVnWYuF7hLIhrY6swRFvZbecq9ObE2v\nd2s/Xt72+SKT3q8hWFLnV9Nrjlmsjj/HZCo00atr7wLSNHX66wDPds4khah8dF3gfLD6St\ntzxU+gMUHd0HMcOk0RGfOPdSAT72goNdGg64lX2j7wH/IpHRA46lln8wtlESIRWV991B/s\nxKCAjuxVelfLgWj5GrvSC+PBjY0Jb+cjcTwhQ=\n-----END OPENSSH PRIVATE KEY-----\n";
    /// Values that iam-sorry 0.2.2's `encrypt_credential` wrote with KEY_FILE.
    const ID: &str =
        "__encrypted__:8j7k0wnd0X2dZ62xN64eqXOzAE0+C4XF1SN/ZSgZhwiQeg168qHJxqoJU1816vZd";
    const SECRET: &str = "__encrypted__:KVFOb1x24X19ABmWxVNdwfCzI4MSs6/47+8h+8b5qWy6kxLt/awHhNIM60q6t0AXdrKnkElZzGVViFbxF5xhs3DslVk=";

    #[test]
    fn values_written_by_iam_sorry_decrypt() {
        let key = derive_key(KEY_FILE.as_bytes());
        assert_eq!(*decrypt(&key, ID).unwrap(), "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            *decrypt(&key, SECRET).unwrap(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        let other = derive_key(b"another key file");
        assert_eq!(decrypt(&other, ID).unwrap_err(), CipherError::Rejected);
        assert_eq!(cipher::kind(ID), cipher::ValueKind::Foreign);
    }
}
