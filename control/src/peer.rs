//! Who is on the other end of the control socket (`SO_PEERCRED`), who may talk to it, and what
//! files that caller could read itself: `config check|apply FILE` reads a file as root, so it
//! must not become a way to read (or test-parse) a file its caller cannot.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
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

    /// Whether this peer could read `path` itself: every directory on the way searchable and
    /// the file readable by its owner, group or others bits. Root reads everything.
    pub fn may_read(&self, path: &Path) -> Result<(), String> {
        if self.uid == 0 {
            return Ok(());
        }
        let denied = || {
            format!(
                "{}: not readable by uid {} (the file is read with the caller's rights)",
                path.display(),
                self.uid
            )
        };
        if !path.is_absolute() {
            return Err(format!("{}: give an absolute path", path.display()));
        }
        let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
        dirs.reverse();
        for d in dirs {
            let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            if !self.permits(&m, 0o1) {
                return Err(denied());
            }
        }
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if self.permits(&m, 0o4) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    /// `bit` (4 read, 1 search) in the owner, group or other class that applies to this peer.
    fn permits(&self, m: &std::fs::Metadata, bit: u32) -> bool {
        let mode = m.mode();
        if m.uid() == self.uid {
            mode & (bit << 6) != 0
        } else if self.in_group(m.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
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
mod test {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            pid: 0,
            uid,
            gid,
            groups: vec![],
        }
    }

    #[test]
    fn reads_follow_the_mode_bits_and_the_path() {
        let dir = std::env::temp_dir().join(format!("tandem-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner = std::fs::metadata(&f).unwrap();
        let nobody = peer(65534, 65534);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(nobody.may_read(&f).is_err());
        assert!(peer(0, 0).may_read(&f).is_ok());
        assert!(peer(owner.uid(), 12345).may_read(&f).is_ok() || owner.uid() == 0);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(nobody.may_read(&f).is_ok());
        // A directory it cannot search hides the file.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(nobody.may_read(&f).is_err());
        assert!(nobody.may_read(Path::new("relative.toml")).is_err());
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
