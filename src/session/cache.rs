//! A cache of temporary credentials per profile and request, so a loop of `credrot exec`
//! calls STS (and asks for an MFA code or an SSH passphrase) once per session, not per run.
//!
//! One 0600 JSON file per (profile, request) under `<user cache dir>/credrot/sessions/`,
//! reused until [`REFRESH_MARGIN`] before the credentials expire. The file name is made of
//! hashes, so it reveals neither the profile nor the role.

use super::{rfc3339, TemporaryCredentials};
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

    /// Cached credentials for `key` that stay valid for more than [`REFRESH_MARGIN`].
    /// Anything unreadable, loose or stale is ignored: the cache only ever saves a call.
    pub fn load(&self, key: &CacheKey) -> Option<TemporaryCredentials> {
        let path = self.dir.join(key.file_name());
        let metadata = std::fs::metadata(&path).ok()?;
        if !is_private(&metadata) {
            tracing::warn!(
                "ignoring {}: it is readable by others (credrot writes it 0600)",
                path.display()
            );
            return None;
        }
        let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?)
            .map_err(|e| tracing::debug!("ignoring {}: {e}", path.display()))
            .ok()?;
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

    /// Store `credentials` for `key` (0600, atomically).
    pub fn store(&self, key: &CacheKey, credentials: &TemporaryCredentials) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let entry = Entry {
            access_key_id: credentials.key.id.clone(),
            secret_access_key: credentials.key.expose().to_string(),
            session_token: credentials.token.expose_secret().to_string(),
            expiration: rfc3339(credentials.expiration),
        };
        let bytes =
            zeroize::Zeroizing::new(serde_json::to_vec(&entry).map_err(std::io::Error::other)?);
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
        assert!(cache.load(&key).is_none());
        cache
            .store(&key, &creds(Duration::from_secs(3600)))
            .unwrap();
        let loaded = cache.load(&key).unwrap();
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
            .load(&CacheKey::new("work", "GetSessionToken 900"))
            .is_none());
        assert!(cache
            .load(&CacheKey::new("play", "GetSessionToken 43200"))
            .is_none());
    }

    #[test]
    fn entries_near_expiry_loose_or_broken_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path());
        let key = CacheKey::new("work", "r");
        cache
            .store(&key, &creds(REFRESH_MARGIN - Duration::from_secs(30)))
            .unwrap();
        assert!(cache.load(&key).is_none(), "expires within the margin");

        cache
            .store(&key, &creds(Duration::from_secs(3600)))
            .unwrap();
        let path = dir.path().join(key.file_name());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.load(&key).is_none(), "readable by others");
        std::fs::write(&path, "{").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cache.load(&key).is_none(), "broken");
    }

    #[test]
    fn a_profiles_entries_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SessionCache::at(dir.path());
        let hour = Duration::from_secs(3600);
        cache
            .store(&CacheKey::new("work", "a"), &creds(hour))
            .unwrap();
        cache
            .store(&CacheKey::new("work", "b"), &creds(hour))
            .unwrap();
        cache
            .store(&CacheKey::new("play", "a"), &creds(hour))
            .unwrap();
        assert_eq!(cache.forget_profile("work").unwrap(), 2);
        assert!(cache.load(&CacheKey::new("play", "a")).is_some());
        assert_eq!(
            SessionCache::at(dir.path().join("none"))
                .forget_profile("x")
                .unwrap(),
            0
        );
    }
}
