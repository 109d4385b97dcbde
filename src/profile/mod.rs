//! Profiles of the shared credentials file, encrypted at rest with a key only the user's SSH
//! key can derive ([`sshkey`]), value by value ([`cipher`]), and rotation of a profile's own
//! key ([`rotate`]).

pub mod cipher;
pub mod iam_sorry;
pub mod rotate;
mod sshkey;

pub use sshkey::{
    derive_profile_key, key_path, EnvOrTerminal, KeyError, Passphrase, ProfileKey, SshKey,
    PASSPHRASE_ENV,
};

use crate::credentials_file::{CredentialsFile, Document, FileError};
use crate::secret::AccessKey;
use cipher::{CipherError, ValueKind};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::path::{Path, PathBuf};

/// The access key id field.
pub const ACCESS_KEY_ID: &str = "aws_access_key_id";
/// The secret access key field.
pub const SECRET_ACCESS_KEY: &str = "aws_secret_access_key";
/// The session token field of temporary credentials.
pub const SESSION_TOKEN: &str = "aws_session_token";
/// The fields credrot encrypts, when present.
pub const CREDENTIAL_FIELDS: [&str; 3] = [ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN];

/// Why a profile could not be read, decrypted or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No such profile.
    #[error("profile [{profile}] is not in {}; `credrot profile list` shows the profiles there", path.display())]
    NotFound {
        /// The profile.
        profile: String,
        /// The credentials file.
        path: PathBuf,
    },
    /// The profile lacks the access key id or the secret.
    #[error("profile [{profile}] in {} has no {field}; it does not hold an access key", path.display())]
    Incomplete {
        /// The profile.
        profile: String,
        /// The credentials file.
        path: PathBuf,
        /// The missing field.
        field: &'static str,
    },
    /// `default` is used implicitly by every AWS tool; encrypting it would break them.
    #[error("refusing to encrypt the default profile: every AWS tool reads it implicitly and would get ciphertext; move the key to a named profile (e.g. [work]) and encrypt that")]
    DefaultProfile,
    /// A value carries the marker but is not credrot's.
    #[error("{field} of profile [{profile}] was encrypted by another tool; if it was iam-sorry, run `credrot profile import-iam-sorry {profile}`")]
    Foreign {
        /// The profile.
        profile: String,
        /// The field.
        field: &'static str,
    },
    /// A credrot value did not decrypt.
    #[error("cannot decrypt {field} of profile [{profile}]: {source}")]
    Decrypt {
        /// The profile.
        profile: String,
        /// The field.
        field: &'static str,
        /// Why.
        source: CipherError,
    },
    /// `import-iam-sorry` on a profile that has no iam-sorry value.
    #[error("profile [{profile}] has no value encrypted by iam-sorry; nothing to import")]
    NotIamSorry {
        /// The profile.
        profile: String,
    },
    /// The SSH key could not give the profile key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The credentials file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// Someone changed the profile between credrot reading and rewriting it.
    #[error("profile [{profile}] in {} changed while credrot worked on it; nothing was written: run the command again", path.display())]
    Changed {
        /// The profile.
        profile: String,
        /// The credentials file.
        path: PathBuf,
    },
}

impl ProfileError {
    /// Whether the user must fix an input (exit 2) rather than retry (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            ProfileError::File(e) => e.is_usage(),
            ProfileError::Changed { .. } => false,
            _ => true,
        }
    }
}

/// Decrypted credentials of a profile.
#[derive(Clone)]
pub struct ProfileCredentials {
    /// The access key.
    pub key: AccessKey,
    /// The session token, for temporary credentials.
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for ProfileCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileCredentials")
            .field("key", &self.key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl ProfileCredentials {
    /// The values by field name.
    fn fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![
            (ACCESS_KEY_ID, self.key.id.as_str()),
            (SECRET_ACCESS_KEY, self.key.expose()),
        ];
        if let Some(token) = &self.session_token {
            fields.push((SESSION_TOKEN, token.expose_secret()));
        }
        fields
    }
}

/// The credential values of one profile exactly as stored (plain or encrypted).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredProfile {
    /// The profile name.
    pub name: String,
    values: Vec<(&'static str, String)>,
}

impl fmt::Debug for StoredProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<_> = self
            .values
            .iter()
            .map(|(field, value)| (field, cipher::kind(value)))
            .collect();
        f.debug_struct("StoredProfile")
            .field("name", &self.name)
            .field("values", &kinds)
            .finish()
    }
}

impl StoredProfile {
    /// The profile `name` of `document`; it must hold an access key id and a secret.
    pub fn read(document: &Document, path: &Path, name: &str) -> Result<Self, ProfileError> {
        if !document.has_profile(name) {
            return Err(ProfileError::NotFound {
                profile: name.to_string(),
                path: path.to_path_buf(),
            });
        }
        let values: Vec<(&'static str, String)> = CREDENTIAL_FIELDS
            .iter()
            .filter_map(|field| {
                document
                    .get(name, field)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*field, v.to_string()))
            })
            .collect();
        for required in [ACCESS_KEY_ID, SECRET_ACCESS_KEY] {
            if !values.iter().any(|(f, _)| *f == required) {
                return Err(ProfileError::Incomplete {
                    profile: name.to_string(),
                    path: path.to_path_buf(),
                    field: required,
                });
            }
        }
        Ok(StoredProfile {
            name: name.to_string(),
            values,
        })
    }

    /// The stored text of `field`.
    pub fn raw(&self, field: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// The stored values, to put back exactly as they were.
    pub fn values_owned(&self) -> Vec<(&'static str, String)> {
        self.values.clone()
    }

    /// This profile as it reads after `values` are set.
    pub fn with_values(&self, values: &[(&'static str, String)]) -> StoredProfile {
        let mut next = self.clone();
        for (field, value) in values {
            match next.values.iter_mut().find(|(f, _)| f == field) {
                Some(slot) => slot.1 = value.clone(),
                None => next.values.push((field, value.clone())),
            }
        }
        // Keep the read order (CREDENTIAL_FIELDS), so the result equals a fresh read.
        next.values
            .sort_by_key(|(f, _)| CREDENTIAL_FIELDS.iter().position(|c| c == f));
        next
    }

    /// Whether the profile holds temporary credentials.
    pub fn has_session_token(&self) -> bool {
        self.raw(SESSION_TOKEN).is_some()
    }

    /// Foreign if any value is foreign, else credrot if any is encrypted, else plain.
    pub fn kind(&self) -> ValueKind {
        let kinds: Vec<ValueKind> = self.values.iter().map(|(_, v)| cipher::kind(v)).collect();
        if kinds.contains(&ValueKind::Foreign) {
            ValueKind::Foreign
        } else if kinds.contains(&ValueKind::Credrot) {
            ValueKind::Credrot
        } else {
            ValueKind::Plain
        }
    }

    /// The access key id when it is stored in plain text.
    pub fn plain_key_id(&self) -> Option<&str> {
        self.raw(ACCESS_KEY_ID)
            .filter(|v| cipher::kind(v) == ValueKind::Plain)
    }

    /// The credentials, decrypting credrot values with the key `keys` derives on first use.
    pub fn decrypt(&self, keys: &mut LazyKey) -> Result<ProfileCredentials, ProfileError> {
        let mut plain = Vec::with_capacity(self.values.len());
        for (field, value) in &self.values {
            let text = match cipher::kind(value) {
                ValueKind::Plain => zeroize::Zeroizing::new(value.clone()),
                ValueKind::Foreign => {
                    return Err(ProfileError::Foreign {
                        profile: self.name.clone(),
                        field,
                    })
                }
                ValueKind::Credrot => cipher::decrypt(keys.get()?, &self.name, field, value)
                    .map_err(|source| ProfileError::Decrypt {
                        profile: self.name.clone(),
                        field,
                        source,
                    })?,
            };
            plain.push((*field, text));
        }
        Ok(credentials_from(&plain))
    }
}

fn credentials_from(values: &[(&'static str, zeroize::Zeroizing<String>)]) -> ProfileCredentials {
    let get = |field: &str| {
        values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    };
    ProfileCredentials {
        key: AccessKey::new(
            get(ACCESS_KEY_ID).unwrap_or_default(),
            get(SECRET_ACCESS_KEY).unwrap_or_default(),
        ),
        session_token: get(SESSION_TOKEN).map(|t| SecretString::from(t.to_string())),
    }
}

/// The profile key, derived from the SSH key when first needed (so a plain profile never
/// asks for a passphrase) and then kept for the rest of the command.
#[derive(Debug)]
pub struct LazyKey {
    ssh_key: Option<PathBuf>,
    key: Option<ProfileKey>,
}

impl LazyKey {
    /// Derive from the SSH key at `ssh_key` (default `~/.ssh/id_ed25519`) on first use.
    pub fn new(ssh_key: Option<&Path>) -> LazyKey {
        LazyKey {
            ssh_key: ssh_key.map(Path::to_path_buf),
            key: None,
        }
    }

    /// A key derived already (tests).
    pub fn ready(key: ProfileKey) -> LazyKey {
        LazyKey {
            ssh_key: None,
            key: Some(key),
        }
    }

    /// The SSH key file in use.
    pub fn ssh_key_path(&self) -> Result<PathBuf, KeyError> {
        key_path(self.ssh_key.as_deref())
    }

    /// The SSH key fingerprint, once the key was derived.
    pub fn fingerprint(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.fingerprint.as_str())
    }

    /// The key if it was derived already; never asks for it.
    pub fn ready_key(&self) -> Option<&ProfileKey> {
        self.key.as_ref()
    }

    /// The key, derived now if needed.
    pub fn get(&mut self) -> Result<&ProfileKey, KeyError> {
        if self.key.is_none() {
            self.key = Some(derive_profile_key(self.ssh_key.as_deref())?);
        }
        Ok(self.key.as_ref().expect("derived above"))
    }
}

/// Encrypt every credential value for `profile`.
pub fn encrypt_all(
    key: &ProfileKey,
    profile: &str,
    credentials: &ProfileCredentials,
) -> Vec<(&'static str, String)> {
    credentials
        .fields()
        .into_iter()
        .map(|(field, value)| (field, cipher::encrypt(key, profile, field, value)))
        .collect()
}

/// The credential values of a profile as plain text.
pub fn plain_all(credentials: &ProfileCredentials) -> Vec<(&'static str, String)> {
    credentials
        .fields()
        .into_iter()
        .map(|(field, value)| (field, value.to_string()))
        .collect()
}

/// `export` lines of a profile's credentials for `eval` in a POSIX shell. A long-lived key
/// also unsets the session variables a previous `eval "$(credrot session)"` may have left,
/// since the SDKs would send a stale token along with the key and be refused.
pub fn env_lines(credentials: &ProfileCredentials) -> String {
    let mut lines = format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\n",
        crate::session::shell_quote(&credentials.key.id),
        crate::session::shell_quote(credentials.key.expose())
    );
    match &credentials.session_token {
        Some(token) => lines.push_str(&format!(
            "export AWS_SESSION_TOKEN={}\n",
            crate::session::shell_quote(token.expose_secret())
        )),
        None => lines.push_str("unset AWS_SESSION_TOKEN AWS_CREDENTIAL_EXPIRATION\n"),
    }
    lines
}

/// A summary line of `profile list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProfileSummary {
    /// The profile.
    pub name: String,
    /// `plain`, `encrypted`, `foreign` (another tool's encryption), or `no key`.
    pub state: &'static str,
    /// The access key id, when stored in plain text.
    pub access_key_id: Option<String>,
    /// Whether it holds temporary credentials.
    pub temporary: bool,
}

/// The profiles of the credentials file and how each is stored. Nothing is decrypted.
pub fn list(file: &CredentialsFile) -> Result<Vec<ProfileSummary>, ProfileError> {
    let document = file.read()?;
    Ok(document
        .profiles()
        .into_iter()
        .map(
            |name| match StoredProfile::read(&document, file.path(), name) {
                Ok(stored) => ProfileSummary {
                    name: name.to_string(),
                    state: match stored.kind() {
                        ValueKind::Plain => "plain",
                        ValueKind::Credrot => "encrypted",
                        ValueKind::Foreign => "foreign",
                    },
                    access_key_id: stored.plain_key_id().map(str::to_string),
                    temporary: stored.has_session_token(),
                },
                Err(_) => ProfileSummary {
                    name: name.to_string(),
                    state: "no key",
                    access_key_id: None,
                    temporary: false,
                },
            },
        )
        .collect())
}

/// Read profile `name` from the file.
pub fn load(file: &CredentialsFile, name: &str) -> Result<StoredProfile, ProfileError> {
    StoredProfile::read(&file.read()?, file.path(), name)
}

/// Replace the credential values of `expected.name` with `values`, under the file's lock,
/// only if the profile still holds exactly what `expected` read: an edit made in between is
/// never overwritten.
pub fn replace(
    file: &CredentialsFile,
    expected: &StoredProfile,
    values: &[(&'static str, String)],
) -> Result<(), ProfileError> {
    file.edit(|document| {
        let current = StoredProfile::read(document, file.path(), &expected.name)?;
        if current != *expected {
            return Err(ProfileError::Changed {
                profile: expected.name.clone(),
                path: file.path().to_path_buf(),
            });
        }
        for (field, value) in values {
            document.set(&expected.name, field, value)?;
        }
        Ok(())
    })
}

/// What `encrypt`/`decrypt` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The file was rewritten.
    Done,
    /// The profile was already in the asked state.
    Unchanged,
}

/// Encrypt profile `name` in place.
pub fn encrypt(
    file: &CredentialsFile,
    name: &str,
    keys: &mut LazyKey,
) -> Result<Change, ProfileError> {
    if name == "default" {
        return Err(ProfileError::DefaultProfile);
    }
    let stored = load(file, name)?;
    if stored
        .values
        .iter()
        .all(|(_, v)| cipher::kind(v) == ValueKind::Credrot)
    {
        return Ok(Change::Unchanged);
    }
    let credentials = stored.decrypt(keys)?;
    let values = encrypt_all(keys.get()?, name, &credentials);
    replace(file, &stored, &values)?;
    Ok(Change::Done)
}

/// Decrypt profile `name` in place.
pub fn decrypt(
    file: &CredentialsFile,
    name: &str,
    keys: &mut LazyKey,
) -> Result<Change, ProfileError> {
    let stored = load(file, name)?;
    if stored.kind() == ValueKind::Plain {
        return Ok(Change::Unchanged);
    }
    let credentials = stored.decrypt(keys)?;
    replace(file, &stored, &plain_all(&credentials))?;
    Ok(Change::Done)
}

/// Re-encrypt an iam-sorry profile with credrot's scheme. iam-sorry derived its key from the
/// bytes of the SSH key file, which is the file `keys` uses.
pub fn import_iam_sorry(
    file: &CredentialsFile,
    name: &str,
    keys: &mut LazyKey,
) -> Result<Change, ProfileError> {
    if name == "default" {
        return Err(ProfileError::DefaultProfile);
    }
    let stored = load(file, name)?;
    if stored.kind() != ValueKind::Foreign {
        return Err(ProfileError::NotIamSorry {
            profile: name.to_string(),
        });
    }
    let ssh_key = keys.ssh_key_path()?;
    let key_file = std::fs::read(&ssh_key).map_err(|source| KeyError::Unreadable {
        path: ssh_key.clone(),
        source,
    })?;
    let old_key = iam_sorry::derive_key(&key_file);
    let mut plain = Vec::new();
    for (field, value) in &stored.values {
        let text = match cipher::kind(value) {
            ValueKind::Plain => Ok(zeroize::Zeroizing::new(value.clone())),
            ValueKind::Credrot => cipher::decrypt(keys.get()?, name, field, value),
            ValueKind::Foreign => iam_sorry::decrypt(&old_key, value),
        }
        .map_err(|source| ProfileError::Decrypt {
            profile: name.to_string(),
            field,
            source,
        })?;
        plain.push((*field, text));
    }
    let values = encrypt_all(keys.get()?, name, &credentials_from(&plain));
    replace(file, &stored, &values)?;
    Ok(Change::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# keys
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[work]
region = eu-west-1
aws_access_key_id = AKIAWORK
aws_secret_access_key = work-secret  # rotated in May
";

    fn setup() -> (tempfile::TempDir, CredentialsFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        (dir, CredentialsFile::at(path))
    }

    fn key() -> LazyKey {
        LazyKey::ready(ProfileKey::from_bytes([3; 32]))
    }

    #[test]
    fn encrypt_then_decrypt_restores_the_file_byte_for_byte() {
        let (_dir, file) = setup();
        assert_eq!(encrypt(&file, "work", &mut key()).unwrap(), Change::Done);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains("AKIAWORK") && !text.contains("work-secret"));
        assert!(text.contains("aws_secret_access_key = __encrypted__:"));
        assert!(text.contains("  # rotated in May\n"), "{text}");
        assert_eq!(
            encrypt(&file, "work", &mut key()).unwrap(),
            Change::Unchanged
        );
        let stored = load(&file, "work").unwrap();
        assert_eq!(stored.kind(), ValueKind::Credrot);
        let creds = stored.decrypt(&mut key()).unwrap();
        assert_eq!(creds.key, AccessKey::new("AKIAWORK", "work-secret"));
        assert!(!format!("{stored:?}{creds:?}").contains("work-secret"));

        assert_eq!(decrypt(&file, "work", &mut key()).unwrap(), Change::Done);
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), FILE);
        assert_eq!(
            decrypt(&file, "work", &mut key()).unwrap(),
            Change::Unchanged
        );
    }

    #[test]
    fn env_lines_quote_values_and_clear_a_stale_session() {
        let long_lived = ProfileCredentials {
            key: AccessKey::new("AKIAWORK", "it's/secret+="),
            session_token: None,
        };
        assert_eq!(
            env_lines(&long_lived),
            "export AWS_ACCESS_KEY_ID='AKIAWORK'\n\
             export AWS_SECRET_ACCESS_KEY='it'\\''s/secret+='\n\
             unset AWS_SESSION_TOKEN AWS_CREDENTIAL_EXPIRATION\n"
        );
        let temporary = ProfileCredentials {
            session_token: Some(SecretString::from("tok".to_string())),
            ..long_lived
        };
        assert!(env_lines(&temporary).ends_with("export AWS_SESSION_TOKEN='tok'\n"));
    }

    #[test]
    fn default_missing_and_keyless_profiles_are_refused() {
        let (_dir, file) = setup();
        assert!(matches!(
            encrypt(&file, "default", &mut key()),
            Err(ProfileError::DefaultProfile)
        ));
        assert!(matches!(
            encrypt(&file, "nope", &mut key()),
            Err(ProfileError::NotFound { .. })
        ));
        std::fs::write(file.path(), "[x]\nregion = us-east-1\n").unwrap();
        assert!(matches!(
            encrypt(&file, "x", &mut key()),
            Err(ProfileError::Incomplete { .. })
        ));
    }

    #[test]
    fn values_swapped_between_profiles_do_not_decrypt() {
        let (_dir, file) = setup();
        std::fs::write(file.path(), FILE.replace("[default]", "[other]")).unwrap();
        encrypt(&file, "work", &mut key()).unwrap();
        encrypt(&file, "other", &mut key()).unwrap();
        let document = file.read().unwrap();
        let work_secret = document.get("work", SECRET_ACCESS_KEY).unwrap().to_string();
        let other_secret = document
            .get("other", SECRET_ACCESS_KEY)
            .unwrap()
            .to_string();
        let work_id = document.get("work", ACCESS_KEY_ID).unwrap().to_string();
        file.edit(|d| {
            d.set("work", SECRET_ACCESS_KEY, &other_secret)?;
            d.set("other", SECRET_ACCESS_KEY, &work_id)
        })
        .unwrap();
        for profile in ["work", "other"] {
            let err = load(&file, profile)
                .unwrap()
                .decrypt(&mut key())
                .unwrap_err();
            assert!(
                matches!(&err, ProfileError::Decrypt { field, source: CipherError::Rejected, .. } if *field == SECRET_ACCESS_KEY),
                "{err}"
            );
        }
        let _ = work_secret;
    }

    #[test]
    fn replace_refuses_when_the_profile_changed_meanwhile() {
        let (_dir, file) = setup();
        let stored = load(&file, "work").unwrap();
        std::fs::write(file.path(), FILE.replace("AKIAWORK", "AKIAEDITED")).unwrap();
        let err = replace(&file, &stored, &[(ACCESS_KEY_ID, "AKIANEW".into())]).unwrap_err();
        assert!(matches!(err, ProfileError::Changed { .. }));
        assert!(std::fs::read_to_string(file.path())
            .unwrap()
            .contains("AKIAEDITED"));
    }

    #[test]
    fn list_tells_plain_encrypted_and_foreign_apart() {
        let (_dir, file) = setup();
        encrypt(&file, "work", &mut key()).unwrap();
        file.edit(|d| {
            d.set(
                "iam",
                ACCESS_KEY_ID,
                "__encrypted__:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )?;
            d.set(
                "iam",
                SECRET_ACCESS_KEY,
                "__encrypted__:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )?;
            d.set("empty", "region", "us-east-1")
        })
        .unwrap();
        let states: Vec<(String, &str, Option<String>)> = list(&file)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.state, s.access_key_id))
            .collect();
        assert_eq!(
            states,
            vec![
                ("default".into(), "plain", Some("AKIADEFAULT".into())),
                ("work".into(), "encrypted", None),
                ("iam".into(), "foreign", None),
                ("empty".into(), "no key", None),
            ]
        );
    }
}
