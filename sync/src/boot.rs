//! Boot ids that only move forward, and the peers' boots remembered across our restarts.
//!
//! A boot id is the wall clock in seconds (u32: good until 2106), at least one more than the
//! last one this process or, with a state directory, this box handed out: a restart within the
//! same second, or with the clock set back, still moves forward. A receiver refuses a boot id
//! older than the current one of that sender ([`crate::replay`]), so a recorded datagram of a
//! previous boot cannot retire the current boot (issue 10.2).
//!
//! [`BootStore`] keeps, in `state_dir/sync-boots`, our own last boot id and the newest boot id
//! accepted of each peer (host id), so that after our own restart a datagram of an older boot
//! of the peer is refused even when it is the first one heard. Written only when a boot id
//! changes (a start, a peer's restart): temp file, fsync, rename.
//!
//! If a box loses its state directory *and* its clock goes back, its peer refuses it
//! (`old_boot`) until the clock passes its last boot id, or the peer's `sync-boots` line for it
//! is removed: the price of refusing replays without a handshake.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The last boot id handed out by this process.
static LAST: AtomicU32 = AtomicU32::new(0);

fn now_secs() -> u32 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// A new boot id: the clock in seconds, above every one this process handed out and above
/// `at_least - 1`. Never 0.
pub fn next_boot_id(at_least: u32) -> u32 {
    let mut id = 0;
    // fetch_update cannot fail with a closure that always returns Some.
    let _ = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
        id = now_secs().max(last.saturating_add(1)).max(at_least).max(1);
        Some(id)
    });
    id
}

/// Errors of the boot store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, io::Error),
    /// The file could not be written.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, io::Error),
}

/// Our last boot id and the peers' newest ones, persisted. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct BootStore {
    path: PathBuf,
    own: u32,
    peers: BTreeMap<u32, u32>,
}

impl BootStore {
    /// The file name in the state directory.
    pub const FILE: &'static str = "sync-boots";

    /// Reads `dir/sync-boots` (absent: nothing known). Lines it does not understand are skipped:
    /// the file is ours, and a damaged line costs at most one replay check after a restart.
    pub fn open(dir: &Path) -> Result<Self, BootError> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(BootError::Read(path, e)),
        };
        let mut own = 0;
        let mut peers = BTreeMap::new();
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["own", b] => own = b.parse().unwrap_or(own),
                ["peer", h, b] => {
                    if let (Ok(h), Ok(b)) = (h.parse(), b.parse()) {
                        peers.insert(h, b);
                    }
                }
                _ => {}
            }
        }
        Ok(BootStore { path, own, peers })
    }

    /// Our boot id for this start (above the last persisted one), persisted.
    pub fn start(&mut self) -> Result<u32, BootError> {
        self.own = next_boot_id(self.own.saturating_add(1));
        self.save()?;
        Ok(self.own)
    }

    /// The newest boot id of `host` we accepted before.
    pub fn peer(&self, host: u32) -> Option<u32> {
        self.peers.get(&host).copied()
    }

    /// Every peer's newest boot: (host id, boot id).
    pub fn peers(&self) -> Vec<(u32, u32)> {
        self.peers.iter().map(|(&h, &b)| (h, b)).collect()
    }

    /// Remember that `host` runs boot `boot` (if newer than what we knew); persisted.
    pub fn record_peer(&mut self, host: u32, boot: u32) -> Result<(), BootError> {
        if self.peer(host).is_some_and(|b| b >= boot) {
            return Ok(());
        }
        self.peers.insert(host, boot);
        self.save()
    }

    fn save(&self) -> Result<(), BootError> {
        let mut text = format!("own {}\n", self.own);
        for (h, b) in &self.peers {
            text.push_str(&format!("peer {h} {b}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| BootError::Write(self.path.clone(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_only_move_forward() {
        let a = next_boot_id(0);
        let b = next_boot_id(0);
        assert!(b > a);
        assert!(a >= now_secs() - 1, "time-based");
        // A persisted id ahead of the clock (the clock went back) still moves forward.
        let ahead = now_secs() + 1000;
        assert!(next_boot_id(ahead) >= ahead);
        assert!(next_boot_id(0) > ahead);
    }

    #[test]
    fn the_store_persists_our_boot_and_the_peers() {
        let dir = std::env::temp_dir().join(format!("tandem-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(BootStore::FILE));
        let mut s = BootStore::open(&dir).unwrap();
        let first = s.start().unwrap();
        s.record_peer(2, 500).unwrap();
        s.record_peer(2, 400).unwrap(); // older: ignored
        let mut s = BootStore::open(&dir).unwrap();
        assert_eq!(s.peer(2), Some(500));
        assert!(s.start().unwrap() > first);
        // A damaged line is skipped, the rest is read.
        std::fs::write(dir.join(BootStore::FILE), "own x\npeer 2 600\ngarbage\n").unwrap();
        let s = BootStore::open(&dir).unwrap();
        assert_eq!(s.peers(), vec![(2, 600)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
