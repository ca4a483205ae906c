//! What the secondary accepted, kept in its state dir so that a secondary restarted while the
//! primary is dead still runs the last pushed config, and so that no push older than it is ever
//! accepted (the version only moves forward).
//!
//! One JSON file, `config-sync.json`, written whole: a temp file, fsync, rename, fsync of the
//! directory. A crash leaves the old file or the new one, never half of one. The file holds
//! secrets (CARP passwords): it is created mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the state dir.
pub const FILE: &str = "config-sync.json";

/// An accepted push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPush {
    /// The primary's version of it; every later push must be higher.
    pub version: u64,
    /// [`super::content_hash`] of `payload`.
    pub hash: String,
    /// The sections it carries (their config names).
    pub sections: Vec<String>,
    /// The pushed sections, TOML.
    pub payload: String,
    /// Who pushed it (address and hostname).
    pub from: String,
    /// When it was accepted, seconds since the epoch.
    pub received_unix: u64,
}

/// The stored push's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Why the stored push could not be read or written; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file (or directory) could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: std::io::Error,
    },
    /// The file is not a stored push (damaged, or from another version).
    #[error("{path}: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
}

/// The stored push, `None` if there is none. A file that cannot be read is an error naming it.
pub fn load(dir: &Path) -> Result<Option<StoredPush>, StoreError> {
    let p = path(dir);
    match fs::read(&p) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Format {
                    path: p.display().to_string(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: p.display().to_string(),
            what: "read",
            source,
        }),
    }
}

/// Writes `push` to `dir` atomically and durably.
pub fn save(dir: &Path, push: &StoredPush) -> Result<(), StoreError> {
    let fail = |what: &'static str, source: std::io::Error| StoreError::Io {
        path: dir.display().to_string(),
        what,
        source,
    };
    fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(push).map_err(|source| StoreError::Format {
        path: tmp.display().to_string(),
        source,
    })?;
    // A temp file left by a crash keeps its mode through open(): start anew, so it is 0600.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("remove", e)),
    }
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail("write", e))?;
        f.write_all(&bytes).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("fsync", e))?;
    }
    fs::rename(&tmp, path(dir)).map_err(|e| fail("rename", e))?;
    // The rename is durable once the directory is.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("fsync", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_saved_push_loads_back_and_is_private() {
        let dir = std::env::temp_dir().join(format!("tandem-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(load(&dir).unwrap(), None);
        let push = StoredPush {
            version: 7,
            hash: "ab".into(),
            sections: vec!["rules".into()],
            payload: "[filter]\nrules = []\n".into(),
            from: "10.255.0.1 (fwa)".into(),
            received_unix: 1,
        };
        save(&dir, &push).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(push.clone()));
        let mode = fs::metadata(path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A newer one replaces it whole; no temp file is left.
        let newer = StoredPush { version: 8, ..push };
        save(&dir, &newer).unwrap();
        assert_eq!(load(&dir).unwrap().map(|p| p.version), Some(8));
        assert!(!dir.join(format!("{FILE}.tmp")).exists());
        // A corrupt file is an error naming it, not a silent fresh start.
        fs::write(path(&dir), b"{not json").unwrap();
        let e = load(&dir).unwrap_err();
        assert!(matches!(e, StoreError::Format { .. }), "{e}");
        assert!(e.to_string().contains(FILE), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
