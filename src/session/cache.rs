//! A cache of temporary credentials per profile and request, so a loop of `credrot exec`
//! calls STS (and asks for an MFA code or an SSH passphrase) once per session, not per run.
//!
//! One 0600 JSON file per (profile, request) under `<user cache dir>/credrot/sessions/`,
//! reused until [`REFRESH_MARGIN`] before the credentials expire. The file name is made of
//! hashes, so it reveals neither the profile nor the role.
//!
//! When the profile that signs is encrypted (`credrot profile encrypt`), its entries are
//! sealed with the same profile key ([`crate::profile::cipher`], bound to the entry's file
//! name): the session's secret and token are then no easier to read on disk than the
//! long-lived key they came from. Reading such an entry needs the SSH key again (silent with
//! ssh-agent); an entry that does not open (another SSH key, altered) is a cache miss.

use super::{rfc3339, TemporaryCredentials};
use crate::profile::{cipher, ProfileKey};
use crate::secret::AccessKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Credentials closer than this to their expiration are fetched anew: a command started
/// with them should not see them expire under it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Which cache entry: the profile, and everything else that makes a different session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    profile: String,
    request: String,
}

impl CacheKey {
    /// The entry for `profile` and a request described by `request` (role, MFA device,
    /// duration, endpoint...: any text that differs when the session would).
    pub fn new(profile: &str, request: &str) -> CacheKey {
        CacheKey {
            profile: profile.to_string(),
            request: request.to_string(),
        }
    }

    /// The associated data of a sealed entry: an entry copied to another file does not open.
    fn seal_field(&self) -> String {
        format!("session-cache/{}", self.file_name())
    }

    fn file_name(&self) -> String {
        format!(
            "{}-{}.json",
            short_hash(&self.profile),
            short_hash(&self.request)
        )
    }
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a cache file holds: an entry in plain JSON, or sealed with the profile key.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    /// `{"Sealed": "__encrypted__:..."}`: an [`Entry`]'s JSON, encrypted.
    Sealed {
        #[serde(rename = "Sealed")]
        sealed: String,
    },
    /// The entry itself (plain profiles).
    Plain(Entry),
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// The session cache directory.
#[derive(Debug, Clone)]
pub struct SessionCache {
    dir: PathBuf,
}

impl SessionCache {
    /// `<user cache dir>/credrot/sessions` ($XDG_CACHE_HOME or ~/.cache on Linux), or None
    /// when the platform has no cache directory.
    pub fn locate() -> Option<SessionCache> {
        dirs::cache_dir().map(|d| SessionCache::at(d.join("credrot").join("sessions")))
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> SessionCache {
        SessionCache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cached credentials for `key` that stay valid for more than [`REFRESH_MARGIN`]; with
    /// `seal`, only an entry sealed with that profile key counts, without it only a plain one.
    /// Anything unreadable, loose, stale or sealed otherwise is ignored: the cache only ever
    /// saves a call.
    pub fn load(&self, key: &CacheKey, seal: Option<&ProfileKey>) -> Option<TemporaryCredentials> {
        let path = self.dir.join(key.file_name());
        let metadata = std::fs::metadata(&path).ok()?;
        if !is_private(&metadata) {
            tracing::warn!(
                "ignoring {}: it is readable by others (credrot writes it 0600)",
                path.display()
            );
            return None;
        }
        let stored: Stored = serde_json::from_slice(&std::fs::read(&path).ok()?)
            .map_err(|e| tracing::debug!("ignoring {}: {e}", path.display()))
            .ok()?;
        let entry = match (stored, seal) {
            (Stored::Plain(entry), None) => entry,
            (Stored::Sealed { sealed }, Some(profile_key)) => {
                let json = cipher::decrypt(profile_key, &key.profile, &key.seal_field(), &sealed)
                    .map_err(|e| tracing::info!("ignoring the cached session: {e}"))
                    .ok()?;
                serde_json::from_str(&json)
                    .map_err(|e| tracing::debug!("ignoring {}: {e}", path.display()))
                    .ok()?
            }
            // The profile was encrypted or decrypted since: fetch anew, and the entry is
            // rewritten the way the profile is stored now.
            (Stored::Plain(_), Some(_)) | (Stored::Sealed { .. }, None) => {
                tracing::debug!("ignoring {}: stored unlike its profile", path.display());
                return None;
            }
        };
        let expiration: SystemTime = humantime::parse_rfc3339(&entry.expiration).ok()?;
        if expiration < SystemTime::now() + REFRESH_MARGIN {
            tracing::debug!("cached session expires at {}: refreshing", entry.expiration);
            return None;
        }
        Some(TemporaryCredentials {
            key: AccessKey::new(entry.access_key_id, entry.secret_access_key),
            token: SecretString::from(entry.session_token),
            expiration,
        })
    }

    /// Store `credentials` for `key` (0600, atomically), sealed with `seal` when given.
    pub fn store(
        &self,
        key: &CacheKey,
        credentials: &TemporaryCredentials,
        seal: Option<&ProfileKey>,
    ) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let entry = Entry {
            access_key_id: credentials.key.id.clone(),
            secret_access_key: credentials.key.expose().to_string(),
            session_token: credentials.token.expose_secret().to_string(),
            expiration: rfc3339(credentials.expiration),
        };
        let json =
            zeroize::Zeroizing::new(serde_json::to_string(&entry).map_err(std::io::Error::other)?);
        let bytes = match seal {
            None => json.as_bytes().to_vec(),
            Some(profile_key) => serde_json::to_vec(&Stored::Sealed {
                sealed: cipher::encrypt(profile_key, &key.profile, &key.seal_field(), &json),
            })
            .map_err(std::io::Error::other)?,
        };
        let bytes = zeroize::Zeroizing::new(bytes);
        crate::fsutil::write_private_atomic(&self.dir.join(key.file_name()), &bytes)
    }

    /// Remove every cached session of `profile` (after its key was rotated). Returns how
    /// many were removed.
    pub fn forget_profile(&self, profile: &str) -> std::io::Result<usize> {
        let prefix = format!("{}-", short_hash(profile));
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_private(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    metadata.mode() & 0o077 == 0
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds(valid_for: Duration) -> TemporaryCredentials {
        TemporaryCredentials {
            key: AccessKey::new("ASIA1", "secret"),
            token: SecretString::from("token".to_string()),
            expiration: SystemTime::now() + valid_for,
        }
    }

    #[test]
    fn fresh_entries_are_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path().join("sessions"));
        let key = CacheKey::new("work", "GetSessionToken 43200");
        assert!(cache.load(&key, None).is_none());
        cache
            .store(&key, &creds(Duration::from_secs(3600)), None)
            .unwrap();
        let loaded = cache.load(&key, None).unwrap();
        assert_eq!(loaded.key, AccessKey::new("ASIA1", "secret"));
        assert_eq!(loaded.token.expose_secret(), "token");
        let file = std::fs::read_dir(cache.dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!file.file_name().to_string_lossy().contains("work"));
        assert!(cache
            .load(&CacheKey::new("work", "GetSessionToken 900"), None)
            .is_none());
        assert!(cache
            .load(&CacheKey::new("play", "GetSessionToken 43200"), None)
            .is_none());
    }

    #[test]
    fn sealed_entries_hide_the_secrets_and_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path());
        let key = CacheKey::new("work", "r");
        let right = ProfileKey::from_bytes([1; 32]);
        let wrong = ProfileKey::from_bytes([2; 32]);
        let hour = Duration::from_secs(3600);
        cache.store(&key, &creds(hour), Some(&right)).unwrap();
        let text = std::fs::read_to_string(dir.path().join(key.file_name())).unwrap();
        for secret in ["ASIA1", "secret", "token"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(cache.load(&key, Some(&right)).unwrap().key.id, "ASIA1");
        assert!(
            cache.load(&key, Some(&wrong)).is_none(),
            "another key: a miss"
        );
        assert!(cache.load(&key, None).is_none(), "the profile is plain now");
        // An entry copied under another profile's name does not open either.
        let other = CacheKey::new("play", "r");
        std::fs::copy(
            dir.path().join(key.file_name()),
            dir.path().join(other.file_name()),
        )
        .unwrap();
        assert!(cache.load(&other, Some(&right)).is_none());
        // A plain entry is not trusted for an encrypted profile.
        cache.store(&key, &creds(hour), None).unwrap();
        assert!(cache.load(&key, Some(&right)).is_none());
    }

    #[test]
    fn entries_near_expiry_loose_or_broken_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path());
        let key = CacheKey::new("work", "r");
        cache
            .store(&key, &creds(REFRESH_MARGIN - Duration::from_secs(30)), None)
            .unwrap();
        assert!(
            cache.load(&key, None).is_none(),
            "expires within the margin"
        );

        cache
            .store(&key, &creds(Duration::from_secs(3600)), None)
            .unwrap();
        let path = dir.path().join(key.file_name());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load(&key, None).is_none(), "readable by others");
        std::fs::write(&path, "{").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cache.load(&key, None).is_none(), "broken");
    }

    #[test]
    fn a_profiles_entries_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path());
        let hour = Duration::from_secs(3600);
        cache
            .store(&CacheKey::new("work", "a"), &creds(hour), None)
            .unwrap();
        cache
            .store(&CacheKey::new("work", "b"), &creds(hour), None)
            .unwrap();
        cache
            .store(&CacheKey::new("play", "a"), &creds(hour), None)
            .unwrap();
        assert_eq!(cache.forget_profile("work").unwrap(), 2);
        assert!(cache.load(&CacheKey::new("play", "a"), None).is_some());
        assert_eq!(
            SessionCache::at(dir.path().join("none"))
                .forget_profile("x")
                .unwrap(),
            0
        );
    }
}
