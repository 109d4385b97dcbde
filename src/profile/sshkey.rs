//! The profile encryption key, derived from the user's ED25519 SSH key.
//!
//! ED25519 signatures are deterministic, so signing a fixed challenge always gives the same 64
//! bytes, and only someone who can use the private key can produce them: through the running
//! ssh-agent, or by decrypting the key file with its passphrase. Both give the same signature,
//! hence the same AES key, so once the key is in the agent no passphrase is asked again.

use hkdf::Hkdf;
use sha2::Sha256;
use signature::{Signer, Verifier};
use ssh_agent_client_rs::Client as AgentClient;
use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey, Signature};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The signed challenge. The version is part of it: a future scheme signs another text and
/// so gets an unrelated key.
const CHALLENGE: &[u8] = b"credrot profile encryption key, version 1";
/// HKDF salt and info: domain separation from any other use of the same signature.
const HKDF_SALT: &[u8] = b"credrot-profile-encryption-v1";
const HKDF_INFO: &[u8] = b"aes-256-gcm key for AWS credentials file values";

/// Environment variable that gives the SSH key's passphrase without a terminal (CI, tests).
/// Never a command-line flag: argv is visible to every user of the machine.
pub const PASSPHRASE_ENV: &str = "CREDROT_SSH_PASSPHRASE";

/// Why the profile key could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No home directory for the default key path.
    #[error("no home directory to find ~/.ssh/id_ed25519 in; pass --ssh-key PATH")]
    NoHome,
    /// The key file does not exist.
    #[error("SSH key {} not found; create a passphrase-protected ED25519 key with `ssh-keygen -t ed25519 -f {}`, or pass --ssh-key PATH", path.display(), path.display())]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file could not be read.
    #[error("cannot read SSH key {}: {source}", path.display())]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not an OpenSSH private key (e.g. an old PEM RSA key, or a public key).
    #[error("{} is not an OpenSSH private key; credrot needs a passphrase-protected ED25519 key: create one with `ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519` and pass it with --ssh-key", path.display())]
    NotOpenSsh {
        /// The key file.
        path: PathBuf,
    },
    /// Another algorithm than ED25519.
    #[error("SSH key {} is {algorithm}, but credrot needs ED25519 (its signatures are deterministic, so the same key always derives the same encryption key): create one with `ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519` and pass it with --ssh-key", path.display())]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
        /// What it is.
        algorithm: String,
    },
    /// The key file has no passphrase, so anyone who can read it can decrypt the profiles.
    #[error("SSH key {} has no passphrase, so anyone who can read it could decrypt your credentials; add one with `ssh-keygen -p -f {}`", path.display(), path.display())]
    Unprotected {
        /// The key file.
        path: PathBuf,
    },
    /// The key is not in the agent and there is no way to ask for the passphrase.
    #[error("SSH key {} is not in the ssh-agent and there is no terminal to ask for its passphrase; add it to the agent with `ssh-add {}`, or set {PASSPHRASE_ENV}", path.display(), path.display())]
    NoPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The passphrase prompt failed.
    #[error("cannot read the passphrase for {}: {source}", path.display())]
    Prompt {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for SSH key {}", path.display())]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// Signing failed or gave a signature the public key does not verify.
    #[error("signing with SSH key {} failed: {reason}", path.display())]
    Signing {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The AES-256 key that protects profile values. Its bytes never leave this crate's
/// profile module and are wiped on drop.
pub struct ProfileKey {
    bytes: Zeroizing<[u8; 32]>,
    /// The SSH key's SHA-256 fingerprint, for messages.
    pub fingerprint: String,
}

impl fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ProfileKey {
    /// The raw AES key.
    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A key from raw bytes (tests of the cipher and the session cache).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> ProfileKey {
        ProfileKey {
            bytes: Zeroizing::new(bytes),
            fingerprint: "test".into(),
        }
    }
}

/// Where the passphrase comes from when the agent cannot sign.
pub trait Passphrase {
    /// The passphrase for the key at `path`.
    fn passphrase(&self, path: &Path) -> Result<Zeroizing<String>, KeyError>;
}

/// `CREDROT_SSH_PASSPHRASE`, else a prompt on the controlling terminal.
#[derive(Debug, Default)]
pub struct EnvOrTerminal;

impl Passphrase for EnvOrTerminal {
    fn passphrase(&self, path: &Path) -> Result<Zeroizing<String>, KeyError> {
        if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
            return Ok(Zeroizing::new(value.to_string_lossy().into_owned()));
        }
        // The prompt goes to the terminal, not stdout, so it works under eval $(...) and as
        // a credential_process; without a terminal, fail instead of hanging.
        if std::fs::File::open("/dev/tty").is_err() {
            return Err(KeyError::NoPassphrase {
                path: path.to_path_buf(),
            });
        }
        rpassword::prompt_password(format!("Passphrase for SSH key {}: ", path.display()))
            .map(Zeroizing::new)
            .map_err(|source| KeyError::Prompt {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// `~/.ssh/id_ed25519`, or `path` when given.
pub fn key_path(path: Option<&Path>) -> Result<PathBuf, KeyError> {
    match path {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(dirs::home_dir()
            .ok_or(KeyError::NoHome)?
            .join(".ssh")
            .join("id_ed25519")),
    }
}

/// A parsed, still encrypted, ED25519 private key that has a passphrase.
pub struct SshKey {
    path: PathBuf,
    private: PrivateKey,
}

impl SshKey {
    /// Read `path` and refuse anything but a passphrase-protected ED25519 OpenSSH key.
    pub fn open(path: &Path) -> Result<SshKey, KeyError> {
        let text = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let private = PrivateKey::from_openssh(&text).map_err(|_| KeyError::NotOpenSsh {
            path: path.to_path_buf(),
        })?;
        if private.algorithm() != Algorithm::Ed25519 {
            return Err(KeyError::NotEd25519 {
                path: path.to_path_buf(),
                algorithm: private.algorithm().to_string(),
            });
        }
        if !private.is_encrypted() {
            return Err(KeyError::Unprotected {
                path: path.to_path_buf(),
            });
        }
        Ok(SshKey {
            path: path.to_path_buf(),
            private,
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        self.private.public_key()
    }

    /// Derive the profile key: sign the challenge through the agent when it holds this key,
    /// else decrypt the key file with the passphrase and sign with it.
    pub fn derive(
        &self,
        passphrase: &dyn Passphrase,
        use_agent: bool,
    ) -> Result<ProfileKey, KeyError> {
        let signature = match use_agent.then(|| self.sign_with_agent()).flatten() {
            Some(signature) => signature,
            None => self.sign_with_file(passphrase)?,
        };
        // The agent is another process: check its answer before trusting it, and the file
        // path the same way, so a bad signature can never become a wrong key silently.
        self.public_key()
            .key_data()
            .ed25519()
            .ok_or_else(|| self.signing_error("the public key is not ED25519"))?
            .verify(CHALLENGE, &signature)
            .map_err(|_| self.signing_error("the signature does not verify"))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(HKDF_SALT), signature.as_bytes())
            .expand(HKDF_INFO, bytes.as_mut())
            .map_err(|_| self.signing_error("key derivation failed"))?;
        Ok(ProfileKey {
            bytes,
            fingerprint: self.public_key().fingerprint(HashAlg::Sha256).to_string(),
        })
    }

    fn signing_error(&self, reason: &str) -> KeyError {
        KeyError::Signing {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The agent's signature, or None when there is no agent, it does not hold this key, or
    /// it refuses (then the passphrase path still works).
    fn sign_with_agent(&self) -> Option<Signature> {
        let socket = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty())?;
        let mut agent = AgentClient::connect(Path::new(&socket))
            .map_err(|e| tracing::debug!("ssh-agent not reachable: {e}"))
            .ok()?;
        let held = agent
            .list_all_identities()
            .map_err(|e| tracing::debug!("ssh-agent did not list its keys: {e}"))
            .ok()?
            .iter()
            .any(|identity| {
                let data: &ssh_key::public::KeyData = identity.into();
                data == self.public_key().key_data()
            });
        if !held {
            tracing::debug!("the ssh-agent does not hold {}", self.path.display());
            return None;
        }
        agent
            .sign(self.public_key(), CHALLENGE)
            .map_err(|e| tracing::warn!("the ssh-agent refused to sign: {e}"))
            .ok()
    }

    fn sign_with_file(&self, passphrase: &dyn Passphrase) -> Result<Signature, KeyError> {
        let phrase = passphrase.passphrase(&self.path)?;
        let decrypted =
            self.private
                .decrypt(phrase.as_bytes())
                .map_err(|_| KeyError::WrongPassphrase {
                    path: self.path.clone(),
                })?;
        // A wrong passphrase can decode into garbage without an error (OpenSSH's check bytes
        // catch most, not all): the decrypted key must match the public key.
        if decrypted.public_key().key_data() != self.public_key().key_data() {
            return Err(KeyError::WrongPassphrase {
                path: self.path.clone(),
            });
        }
        let keypair = decrypted
            .key_data()
            .ed25519()
            .ok_or_else(|| self.signing_error("the decrypted key is not ED25519"))?;
        keypair
            .try_sign(CHALLENGE)
            .map_err(|e| self.signing_error(&e.to_string()))
    }
}

/// Derive the profile key from the SSH key at `path` (default `~/.ssh/id_ed25519`), through
/// the agent or the passphrase from the environment or the terminal.
pub fn derive_profile_key(path: Option<&Path>) -> Result<ProfileKey, KeyError> {
    let path = key_path(path)?;
    let key = SshKey::open(&path)?;
    let derived = key.derive(&EnvOrTerminal, true)?;
    tracing::debug!(fingerprint = %derived.fingerprint, "derived the profile key");
    Ok(derived)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::LineEnding;

    pub(crate) struct Fixed(pub &'static str);

    impl Passphrase for Fixed {
        fn passphrase(&self, _: &Path) -> Result<Zeroizing<String>, KeyError> {
            Ok(Zeroizing::new(self.0.to_string()))
        }
    }

    /// A passphrase-protected ED25519 key file in `dir`.
    pub(crate) fn protected_key(dir: &Path, passphrase: &str) -> PathBuf {
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let encrypted = key.encrypt(&mut OsRng, passphrase).unwrap();
        let path = dir.join("id_ed25519");
        encrypted.write_openssh_file(&path, LineEnding::LF).unwrap();
        path
    }

    #[test]
    fn the_same_key_and_passphrase_derive_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = protected_key(dir.path(), "correct horse");
        let key = SshKey::open(&path).unwrap();
        let a = key.derive(&Fixed("correct horse"), false).unwrap();
        let b = SshKey::open(&path)
            .unwrap()
            .derive(&Fixed("correct horse"), false)
            .unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert!(a.fingerprint.starts_with("SHA256:"));
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.bytes()[0..4].to_vec())));

        std::fs::create_dir(dir.path().join("x")).unwrap();
        let other = protected_key(&dir.path().join("x"), "correct horse");
        let c = SshKey::open(&other)
            .unwrap()
            .derive(&Fixed("correct horse"), false)
            .unwrap();
        assert_ne!(
            a.bytes(),
            c.bytes(),
            "another SSH key gives another AES key"
        );
    }

    #[test]
    fn a_wrong_passphrase_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = protected_key(dir.path(), "right");
        let err = SshKey::open(&path)
            .unwrap()
            .derive(&Fixed("wrong"), false)
            .unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
    }

    #[test]
    fn unprotected_and_non_ed25519_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .unwrap()
            .write_openssh_file(&path, LineEnding::LF)
            .unwrap();
        let err = SshKey::open(&path).err().unwrap();
        assert!(err.to_string().contains("ssh-keygen -p -f"), "{err}");

        let ecdsa = dir.path().join("ecdsa");
        PrivateKey::random(
            &mut OsRng,
            Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP256,
            },
        )
        .unwrap()
        .write_openssh_file(&ecdsa, LineEnding::LF)
        .unwrap();
        let err = SshKey::open(&ecdsa).err().unwrap();
        assert!(matches!(err, KeyError::NotEd25519 { .. }), "{err}");

        std::fs::write(dir.path().join("junk"), "not a key").unwrap();
        let err = SshKey::open(&dir.path().join("junk")).err().unwrap();
        assert!(matches!(err, KeyError::NotOpenSsh { .. }), "{err}");
        let err = SshKey::open(&dir.path().join("none")).err().unwrap();
        assert!(err.to_string().contains("ssh-keygen -t ed25519"), "{err}");
    }
}
