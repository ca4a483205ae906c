//! How the [`Replicator`](crate::replicate::Replicator) reaches its peer: the [`Transport`]
//! trait, with two implementations: [`RawIpSocket`](crate::socket::RawIpSocket) (protocol 240
//! on the sync interface) and [`MemTransport`], an in-memory pair with a fault injector for
//! tests (drop every n-th, drop a random fraction, duplicate, reorder).

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};

/// One end of the sync link. Both calls are non-blocking.
pub trait Transport {
    /// Send one datagram (the IP payload: the kernel or the test builds the rest).
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// Receive one datagram into `buf` if one is waiting: its length, IP source and TTL.
    /// `Ok(None)`: nothing waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        (**self).send(datagram)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>> {
        (**self).recv(buf)
    }
}

/// Faults applied by a [`MemTransport`] to what it sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Drop every n-th datagram sent (0: never).
    pub drop_every: u64,
    /// Drop this fraction of datagrams at random (0.0 to 1.0).
    pub drop_fraction: f64,
    /// Deliver this fraction twice.
    pub duplicate_fraction: f64,
    /// Deliver this fraction ahead of the datagram sent before it.
    pub reorder_fraction: f64,
    /// Seed of the fault generator (xorshift64; 0 is replaced).
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop_every: 0,
            drop_fraction: 0.0,
            duplicate_fraction: 0.0,
            reorder_fraction: 0.0,
            seed: 0x5eed,
        }
    }
}

/// A datagram in flight: bytes, source, TTL.
type Packet = (Vec<u8>, Ipv4Addr, u8);
type Inbox = Arc<Mutex<VecDeque<Packet>>>;

/// One end of an in-memory link ([`mem_pair`]). What it sends lands in the other end's inbox,
/// through the [`Faults`]; every datagram offered to `send` is also kept in a tap (before the
/// faults) so tests can replay or mutate real traffic.
#[derive(Debug)]
pub struct MemTransport {
    addr: Ipv4Addr,
    inbox: Inbox,
    peer: Inbox,
    faults: Faults,
    rng: u64,
    sent: u64,
    tap: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Link down: everything sent is lost.
    pub down: bool,
}

/// Two connected in-memory ends with addresses `a` and `b`, TTL 255, no faults.
pub fn mem_pair(a: Ipv4Addr, b: Ipv4Addr) -> (MemTransport, MemTransport) {
    let ia: Inbox = Arc::default();
    let ib: Inbox = Arc::default();
    let end = |addr, inbox: &Inbox, peer: &Inbox| MemTransport {
        addr,
        inbox: Arc::clone(inbox),
        peer: Arc::clone(peer),
        faults: Faults::default(),
        rng: Faults::default().seed,
        sent: 0,
        tap: Arc::default(),
        down: false,
    };
    (end(a, &ia, &ib), end(b, &ib, &ia))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemTransport {
    /// Apply `faults` to what this end sends from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.rng = if faults.seed == 0 {
            0x5eed
        } else {
            faults.seed
        };
        self.faults = faults;
    }

    /// Put a datagram into this end's own inbox, as if it arrived from `src` with `ttl`.
    pub fn inject(&self, datagram: &[u8], src: Ipv4Addr, ttl: u8) {
        lock(&self.inbox).push_back((datagram.to_vec(), src, ttl));
    }

    /// Every datagram this end was asked to send so far (before faults), and forget them.
    pub fn take_tap(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *lock(&self.tap))
    }

    /// Datagrams waiting in this end's inbox.
    pub fn pending(&self) -> usize {
        lock(&self.inbox).len()
    }

    /// Forget everything waiting in this end's inbox (a box that died loses its queue).
    pub fn clear_inbox(&self) {
        lock(&self.inbox).clear();
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

impl Transport for MemTransport {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        lock(&self.tap).push(datagram.to_vec());
        self.sent += 1;
        if self.down {
            return Ok(());
        }
        let f = self.faults;
        if f.drop_every != 0 && self.sent.is_multiple_of(f.drop_every) {
            return Ok(());
        }
        if self.chance(f.drop_fraction) {
            return Ok(());
        }
        let copies = if self.chance(f.duplicate_fraction) {
            2
        } else {
            1
        };
        let reorder = self.chance(f.reorder_fraction);
        let mut q = lock(&self.peer);
        for _ in 0..copies {
            let p = (datagram.to_vec(), self.addr, crate::wire::TTL);
            if reorder && !q.is_empty() {
                let at = q.len() - 1;
                q.insert(at, p);
            } else {
                q.push_back(p);
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Ipv4Addr, u8)>> {
        let Some((d, src, ttl)) = lock(&self.inbox).pop_front() else {
            return Ok(None);
        };
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(Some((n, src, ttl)))
    }
}
