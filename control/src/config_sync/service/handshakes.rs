//! The secondary's connections still in the handshake, so that a new connection can take the
//! place of one of them: clients that never authenticate and reconnect as each is dropped
//! (every 3 s, [`super::HANDSHAKE`]) would otherwise keep the session slots from the primary.
//!
//! A new connection ends its own source's unfinished handshake (the primary runs one session
//! at a time) and, when the slots are full, the oldest unfinished one. The primary's handshake
//! takes a few milliseconds on the sync link; to be pushed out it must be the oldest, behind
//! every connection that arrived before it.

use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::{Mutex, PoisonError};

/// Connections in the handshake, oldest first.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    inner: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    /// (ticket, source, a handle on the session's socket), in order of arrival.
    list: Vec<(u64, Ipv4Addr, TcpStream)>,
}

/// What [`Handshakes::admit`] did to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Admitted {
    /// The new connection's ticket, for [`Handshakes::done`].
    pub ticket: u64,
    /// Unfinished handshakes ended for it (their sessions end at their next read).
    pub ended: usize,
}

impl Handshakes {
    /// Registers `stream`, from `from`, as in the handshake. Ends `from`'s own unfinished
    /// handshake, and, when `full`, the oldest unfinished one; `None` when it is full and no
    /// handshake is left to end (every slot holds an authenticated session): refuse it.
    pub(super) fn admit(&self, from: Ipv4Addr, stream: &TcpStream, full: bool) -> Option<Admitted> {
        let mut open = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ended = 0;
        if let Some(i) = open.list.iter().position(|(_, src, _)| *src == from) {
            end(open.list.remove(i));
            ended += 1;
        } else if full {
            if open.list.is_empty() {
                return None;
            }
            end(open.list.remove(0));
            ended += 1;
        }
        // Without a handle the connection could not be ended for another: refuse it.
        let handle = stream.try_clone().ok()?;
        let ticket = open.next;
        open.next += 1;
        open.list.push((ticket, from, handle));
        Some(Admitted { ticket, ended })
    }

    /// The connection of `ticket` is out of the handshake (authenticated or failed).
    pub(super) fn done(&self, ticket: u64) {
        let mut open = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        open.list.retain(|(t, _, _)| *t != ticket);
    }

    /// Connections in the handshake now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list
            .len()
    }
}

/// Ends a session still in its handshake: its blocked read returns at once.
fn end((_, _, stream): (u64, Ipv4Addr, TcpStream)) {
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_new_connection_ends_its_sources_own_and_when_full_the_oldest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Handshakes::default();
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (mut c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (_c3, s3) = pair(&l);
        let t1 = h.admit(a, &s1, false).unwrap();
        assert_eq!(t1.ended, 0);
        // Another source, room left: nothing ended.
        assert_eq!(h.admit(b, &s2, false).unwrap().ended, 0);
        assert_eq!(h.len(), 2);
        // Full: the oldest (a's) ends, and its client sees the close.
        let t3 = h.admit(Ipv4Addr::new(10, 0, 0, 3), &s3, true).unwrap();
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
        assert_eq!(h.admit(b, &s4, false).unwrap().ended, 1);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn full_of_authenticated_sessions_refuses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h = Handshakes::default();
        let (_c1, s1) = pair(&l);
        let t = h.admit(Ipv4Addr::new(10, 0, 0, 1), &s1, false).unwrap();
        h.done(t.ticket);
        assert_eq!(h.len(), 0);
        let (_c2, s2) = pair(&l);
        assert_eq!(h.admit(Ipv4Addr::new(10, 0, 0, 2), &s2, true), None);
    }
}
