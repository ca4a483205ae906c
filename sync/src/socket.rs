//! [`RawIpSocket`]: the sync link's [`Transport`]: a raw IPv4 socket for protocol 240 bound to
//! the sync interface.
//!
//! The kernel builds the IP header on send (TTL 255, DSCP CS6, source the interface's
//! address); a raw IPv4 socket receives the whole IP packet, header included, so the TTL and
//! source are read from the header (no `IP_RECVTTL` control message needed). Multicast
//! (no peer configured): 224.0.0.240, joined on the sync interface, sent through it, not looped
//! back to us. Non-blocking; [`RawIpSocket::fd`] is for the daemon's poll.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::transport::Transport;
use crate::wire::{IPPROTO_SYNC, TTL};

/// pfsync's multicast group.
pub const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 240);
/// Send and receive buffer size asked for.
pub const SOCKET_BUFFER: libc::c_int = 4 << 20;
/// DSCP CS6 (network control) in the TOS byte.
pub const TOS_CS6: u8 = 0xc0;

/// A raw protocol-240 socket on the sync interface. See the [module documentation](self).
#[derive(Debug)]
pub struct RawIpSocket {
    fd: OwnedFd,
    dest: Ipv4Addr,
    scratch: Vec<u8>,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr = libc::in_addr {
        s_addr: u32::from(a).to_be(),
    };
    sa
}

impl RawIpSocket {
    /// Open the socket on interface `ifname`, sending to `peer` (unicast) or, with `None`, to
    /// 224.0.0.240 (joined on `ifname`). Needs CAP_NET_RAW.
    pub fn open(ifname: &str, peer: Option<Ipv4Addr>) -> io::Result<Self> {
        let name = CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(IPPROTO_SYNC),
            )
        })?;
        // SAFETY: `raw` is a socket we just opened and nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = RawIpSocket {
            fd,
            dest: peer.unwrap_or(SYNC_GROUP),
            scratch: vec![0; 65_536],
        };
        let bytes = name.as_bytes_with_nul();
        // SAFETY: SO_BINDTODEVICE takes the interface name and its length; the buffer lives
        // across the call.
        check(unsafe {
            libc::setsockopt(
                s.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                bytes.as_ptr().cast(),
                bytes.len() as libc::socklen_t,
            )
        })?;
        // A bulk walk or a journal burst is hundreds of datagrams: 4 MB each way (the FORCE
        // variants pass rmem_max/wmem_max with CAP_NET_ADMIN; the plain ones are capped).
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if s.set_int(libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
                s.set_int(libc::SOL_SOCKET, plain, SOCKET_BUFFER)?;
            }
        }
        s.set_int(libc::IPPROTO_IP, libc::IP_TTL, libc::c_int::from(TTL))?;
        s.set_int(libc::IPPROTO_IP, libc::IP_TOS, libc::c_int::from(TOS_CS6))?;
        s.set_int(
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_TTL,
            libc::c_int::from(TTL),
        )?;
        s.set_int(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, 0)?;
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from(SYNC_GROUP).to_be(),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as libc::c_int,
        };
        s.set_opt(libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
        if peer.is_none() {
            s.set_opt(libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
        }
        Ok(s)
    }

    fn set_int(&self, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
        self.set_opt(level, opt, &v)
    }

    fn set_opt<T>(&self, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
        // SAFETY: `v` points to a live T of the size passed; the kernel copies it.
        check(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                opt,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// The socket, for the daemon's poll (readable: call `Replicator::poll`).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Where datagrams go.
    pub fn destination(&self) -> Ipv4Addr {
        self.dest
    }
}

impl AsRawFd for RawIpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The payload, source and TTL of a received IPv4 packet; `None` if it is not one.
fn ip_payload(p: &[u8]) -> Option<(std::ops::Range<usize>, Ipv4Addr, u8)> {
    let v_ihl = *p.first()?;
    let ihl = usize::from(v_ihl & 0x0f) * 4;
    if v_ihl >> 4 != 4 || ihl < 20 || p.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).clamp(ihl, p.len());
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    Some((ihl..total, src, p[8]))
}

impl Transport for RawIpSocket {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        let sa = sockaddr(self.dest);
        // SAFETY: the buffer and the sockaddr live across the call, lengths are theirs.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>> {
        loop {
            // SAFETY: `scratch` is a live, writable buffer of the length passed.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.scratch.as_mut_ptr().cast(),
                    self.scratch.len(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            let pkt = &self.scratch[..r as usize];
            // Not an IPv4 packet: cannot happen on an AF_INET raw socket; skip it.
            let Some((range, src, ttl)) = ip_payload(pkt) else {
                continue;
            };
            let n = range.len().min(buf.len());
            buf[..n].copy_from_slice(&pkt[range.start..range.start + n]);
            return Ok(Some((n, src, ttl)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_header_parsing() {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 255;
        p[9] = crate::wire::IPPROTO_SYNC;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[20] = crate::wire::VERSION;
        let (r, src, ttl) = ip_payload(&p).unwrap();
        assert_eq!((r, src, ttl), (20..28, Ipv4Addr::new(10, 0, 0, 1), 255));
        p[0] = 0x46; // options: 24-byte header
        assert_eq!(ip_payload(&p).unwrap().0, 24..28);
        p[0] = 0x65;
        assert!(ip_payload(&p).is_none());
        assert!(ip_payload(&p[..10]).is_none());
    }
}
