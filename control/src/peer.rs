//! Who is on the other end of the control socket (`SO_PEERCRED`), who may talk to it, and where
//! the text of `config check|apply FILE` comes from. tandemd runs as root; a caller in the
//! socket's group must not make it read (or test-parse, whose errors quote the text) a file the
//! caller could not. Checking the caller's rights on the path and then opening it would race a
//! symlink swapped in between, miss ACLs and security modules, and see the daemon's own mount
//! namespace (PrivateTmp); so the caller reads the file itself (tandemctl does, with its own
//! rights) and sends the text, and tandemd opens a path only for root.

use std::os::fd::AsRawFd;
use std::path::Path;

/// The credentials of a connected process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from /proc; empty when the process is gone).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer of a connected Unix socket.
    pub fn of(sock: &impl AsRawFd) -> std::io::Result<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a valid, writable ucred and `len` its size, as SO_PEERCRED expects;
        // the fd is borrowed from a live socket.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &raw mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pid = u32::try_from(cred.pid).unwrap_or(0);
        Ok(Peer {
            pid,
            uid: cred.uid,
            gid: cred.gid,
            groups: proc_groups(pid),
        })
    }

    /// In `gid`, as primary or supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether the control socket may serve this peer: root, the daemon's own user, or a member
    /// of the socket's group when one is configured.
    pub fn allowed(&self, own_uid: u32, group: Option<u32>) -> bool {
        self.uid == 0 || self.uid == own_uid || group.is_some_and(|g| self.in_group(g))
    }
}

/// Why tandemd does not have the text of `config check|apply FILE`. Each names the path as the
/// caller gave it.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// tandemd would resolve a relative path against its own directory, not the caller's.
    #[error("{0}: give an absolute path")]
    RelativePath(String),
    /// Root's file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: crate::config::ReadError,
    },
    /// Someone other than root sent a path without its text (see the module doc).
    #[error("{0}: tandemd opens files only for root; send the file's content (tandemctl reads it with your rights)")]
    NotRoot(String),
}

/// The text of `config check|apply FILE` from `peer`: the text it sent, or, for root (or a
/// caller without credentials: an in-process one), `path` read by tandemd.
pub fn config_text(
    peer: Option<&Peer>,
    path: &str,
    sent: Option<String>,
) -> Result<String, PeerError> {
    match sent {
        Some(text) => Ok(text),
        None if peer.is_none_or(|p| p.uid == 0) => {
            let p = Path::new(path);
            if !p.is_absolute() {
                return Err(PeerError::RelativePath(path.to_string()));
            }
            crate::config::read_file(p).map_err(|source| PeerError::Read {
                path: path.to_string(),
                source,
            })
        }
        None => Err(PeerError::NotRoot(path.to_string())),
    }
}

/// A process's supplementary groups, from `/proc/PID/status`.
fn proc_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A group by name or number, from `/etc/group`.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            pid: 0,
            uid,
            gid,
            groups: vec![],
        }
    }

    #[test]
    fn only_root_makes_tandemd_open_a_file() {
        // The refusals as the operator reads them.
        let config_text = |peer: Option<&Peer>, path: &str, sent: Option<String>| {
            config_text(peer, path, sent).map_err(|e| e.to_string())
        };
        let dir = std::env::temp_dir().join(format!("tandem-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        let path = f.display().to_string();
        let nobody = peer(65534, 65534);
        let root = peer(0, 0);
        // Sent text is taken as it is, from anyone.
        assert_eq!(
            config_text(Some(&nobody), &path, Some("y".into())),
            Ok("y".into())
        );
        // Without it, only root (or an in-process caller) has the file read.
        assert_eq!(config_text(Some(&root), &path, None), Ok("x = 1\n".into()));
        assert_eq!(config_text(None, &path, None), Ok("x = 1\n".into()));
        let e = config_text(Some(&nobody), &path, None).unwrap_err();
        assert!(e.contains("only for root"), "{e}");
        // Not a regular file: refused without reading (a device or FIFO would never end).
        let e = config_text(Some(&root), "/dev/zero", None).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = config_text(Some(&root), &fifo.display().to_string(), None).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(config_text(Some(&root), "relative.toml", None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn who_may_talk() {
        assert!(peer(0, 0).allowed(0, None));
        assert!(!peer(1000, 1000).allowed(0, None));
        assert!(peer(1000, 1000).allowed(0, Some(1000)));
        let mut p = peer(1000, 1000);
        p.groups = vec![27];
        assert!(p.allowed(0, Some(27)));
        assert_eq!(group_id("0"), Some(0));
        assert_eq!(group_id("root"), Some(0));
    }
}
