//! Connections that have not yet shown what they are (a config sync handshake not finished, a
//! metrics request head not read), so that a new connection can take the place of one of them:
//! clients that never send anything and reconnect as each is dropped would otherwise keep the
//! slots from the genuine client (the primary, Prometheus), whose own exchange takes
//! milliseconds.
//!
//! A newcomer may end its own source's unproven connection (config sync: the primary runs one
//! session at a time) and, when the slots are full, the oldest unproven one. To be pushed out, a
//! genuine client must be the oldest: behind every connection that arrived before it.

use std::net::{Shutdown, TcpStream};
use std::sync::{Mutex, PoisonError};

/// Unproven connections from sources of type `A`, oldest first.
#[derive(Debug)]
pub(crate) struct Unproven<A> {
    inner: Mutex<Open<A>>,
}

impl<A> Default for Unproven<A> {
    fn default() -> Self {
        Unproven {
            inner: Mutex::new(Open {
                next: 0,
                list: Vec::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct Open<A> {
    next: u64,
    /// (ticket, source, a handle on the connection's socket), in order of arrival.
    list: Vec<(u64, A, TcpStream)>,
}

/// What [`Unproven::admit`] did to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The new connection's ticket, for [`Unproven::proven`].
    pub ticket: u64,
    /// Unproven connections ended for it (their readers see the end at once).
    pub ended: usize,
}

/// Whom a newcomer may push out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// End the source's own unproven connection, full or not.
    pub own_source: bool,
    /// The slots are full: end the oldest unproven connection, or refuse.
    pub full: bool,
}

impl<A: PartialEq + Copy> Unproven<A> {
    /// Registers `stream`, from `from`, as unproven, after making the room `room` asks for;
    /// `None` when it is full and nothing unproven is left to end (every slot holds a proven
    /// connection): refuse it.
    pub(crate) fn admit(&self, from: A, stream: &TcpStream, room: Room) -> Option<Admitted> {
        // Without a handle the connection could not be ended for another: refuse it, before
        // anything is ended for it.
        let handle = stream.try_clone().ok()?;
        let mut open = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ended = 0;
        let own = room
            .own_source
            .then(|| open.list.iter().position(|(_, src, _)| *src == from))
            .flatten();
        if let Some(i) = own {
            end(open.list.remove(i));
            ended += 1;
        } else if room.full {
            if open.list.is_empty() {
                return None;
            }
            end(open.list.remove(0));
            ended += 1;
        }
        let ticket = open.next;
        open.next += 1;
        open.list.push((ticket, from, handle));
        Some(Admitted { ticket, ended })
    }

    /// The connection of `ticket` has shown what it is (or failed): no newcomer ends it now.
    pub(crate) fn proven(&self, ticket: u64) {
        let mut open = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        open.list.retain(|(t, _, _)| *t != ticket);
    }

    /// Unproven connections now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list
            .len()
    }
}

/// A TCP connection to `to` from `src` (a loopback address other than 127.0.0.1): the tests'
/// clients from several addresses.
#[cfg(test)]
pub(crate) fn connect_from(
    src: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&std::net::SocketAddrV4::new(src, 0).into())?;
    s.connect(&to.into())?;
    Ok(s.into())
}

/// Ends an unproven connection: its blocked read returns at once.
fn end<A>((_, _, stream): (u64, A, TcpStream)) {
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener};

    const ROOM: Room = Room {
        own_source: true,
        full: false,
    };
    const FULL: Room = Room {
        own_source: true,
        full: true,
    };

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_new_connection_ends_its_sources_own_and_when_full_the_oldest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Unproven::default();
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (mut c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let t1 = h.admit(a, &s1, ROOM).unwrap();
        assert_eq!(t1.ended, 0);
        // Another source, room left: nothing ended.
        assert_eq!(h.admit(b, &s2, ROOM).unwrap().ended, 0);
        assert_eq!(h.len(), 2);
        // Full: the oldest (a's) ends, and its client sees the close.
        let t3 = h.admit(Ipv4Addr::new(10, 0, 0, 3), &s3, FULL).unwrap();
        assert_eq!(t3.ended, 1);
        assert_eq!(h.len(), 2);
        let mut buf = [0u8; 1];
        assert_eq!(
            c1.read(&mut buf).unwrap(),
            0,
            "the ended handshake's socket is closed"
        );
        // The same source again ends its own, full or not.
        let (_c4, s4) = pair(&l);
        assert_eq!(h.admit(b, &s4, ROOM).unwrap().ended, 1);
        assert_eq!(h.len(), 2);
        // Unless told not to: three from one source.
        let (_c5, s5) = pair(&l);
        let many = Room {
            own_source: false,
            full: false,
        };
        assert_eq!(h.admit(b, &s5, many).unwrap().ended, 0);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn full_of_authenticated_sessions_refuses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Unproven::default();
        let (_c1, s1) = pair(&l);
        let t = h.admit(Ipv4Addr::new(10, 0, 0, 1), &s1, ROOM).unwrap();
        h.proven(t.ticket);
        assert_eq!(h.len(), 0);
        let (_c2, s2) = pair(&l);
        assert_eq!(h.admit(Ipv4Addr::new(10, 0, 0, 2), &s2, FULL), None);
    }
}
