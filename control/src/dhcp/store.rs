//! The leases on disk, in the state dir: written whole (temp file, fsync, rename, as config
//! sync's store does), so a crash leaves the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::pool::Lease;

/// The file's name in the state dir.
pub const FILE: &str = "dhcp-leases.json";

pub fn save(path: &Path, leases: &[Lease]) -> std::io::Result<()> {
    let text = serde_json::to_vec(leases).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Leases name the LAN's hosts (MACs, hostnames): 0600, as config sync's store. A temp
    // file left by a crash keeps its mode through open(): start anew.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The leases written last; none (with a warning) when the file is missing or unreadable.
pub fn load(path: &Path) -> Vec<Lease> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        tracing::warn!(
            "dhcp: {} is unreadable ({e}); starting without leases",
            path.display()
        );
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::LeaseState;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("tandem-dhcp-store-{}", std::process::id()));
        let path = dir.join(FILE);
        let l = Lease {
            mac: [2, 0, 0, 0, 0, 1],
            ip: "192.168.0.150".parse().unwrap(),
            expires: 1_800_000_000,
            state: LeaseState::Bound,
            hostname: "client".into(),
            updated_ms: 1,
        };
        save(&path, std::slice::from_ref(&l)).unwrap();
        assert_eq!(load(&path), vec![l]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "leases name the LAN's hosts");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
