//! One round on the rings: completions reaped, fill rings topped up, RX consumed into the
//! handler, forwarded frames produced on their TX rings.

use std::io::Write;

#[cfg(debug_assertions)]
use super::umem::chunk_index;
use super::{Place, WorkerPorts};
use crate::io::{Look, Ports, Verdict, FRAME_SIZE};
use crate::IfIndex;

impl Ports for WorkerPorts {
    /// One batched round: reap TX completions, refill fill rings, receive up to `budget` frames
    /// (at most `batch` per RX ring) and run `handler` on each, then put the forwarded frames on
    /// their TX rings with one kick per ring (in copy mode repeated while the kernel says it
    /// has more, see the module docs). Returns the number of frames received.
    ///
    /// `handler(in_if, buf, len)` gets the whole [`FRAME_SIZE`] buffer, the frame in its first
    /// `len` bytes.
    fn poll_looking<L, F>(&mut self, budget: usize, look: &mut L, handler: &mut F) -> usize
    where
        L: Look,
        F: FnMut(IfIndex, &mut [u8], usize) -> Verdict,
    {
        self.complete();
        self.kick_leftover_tx();
        self.refill();
        let mut received = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        // Start one socket further each round, so that a budget smaller than a batch per
        // socket cannot starve the last sockets.
        let nsocks = self.socks.len();
        self.rx_next = (self.rx_next + 1) % nsocks;
        for s in (self.rx_next..nsocks).chain(0..self.rx_next) {
            let want = self.batch.min(budget - received);
            if want == 0 {
                break;
            }
            // SAFETY: `scratch` only receives descriptors; the kernel hands back chunks of the
            // UMEM this socket was created with.
            let n = unsafe { self.socks[s].rx.consume(&mut scratch[..want]) };
            if n == 0 {
                continue;
            }
            received += n;
            self.socks[s].in_fill -= n as u32;
            self.counters.rx += n as u64;
            let in_if = self.ports[self.socks[s].port].if_index;
            for desc in &scratch[..n] {
                // SAFETY: as below (the kernel is done with the chunk; nothing else refers to
                // it), read-only and before any handler runs.
                look.frame(unsafe { self.umem.data(desc) }.contents());
            }
            look.end();
            for desc in &mut scratch[..n] {
                self.mark(desc, Place::fill(s), Place::Pipeline);
                let rx_len = desc.lengths().data();
                let verdict = {
                    // SAFETY: the chunk came from this socket's RX ring, so it belongs to `umem`
                    // and the kernel is done with it; no other descriptor refers to it (each
                    // chunk is in one place only), so this is the only live reference to it.
                    let mut data = unsafe { self.umem.data_mut(desc) };
                    // `contents_mut` is the first `len` bytes: lengthen the frame to the whole
                    // buffer the pipeline may use (clamped to the chunk's room after the
                    // packet start, 3840 bytes unless an XDP program moved the start).
                    data.cursor().set_pos(FRAME_SIZE);
                    let buf = data.contents_mut();
                    let verdict = if buf.len() == FRAME_SIZE && rx_len <= FRAME_SIZE {
                        Some(handler(in_if, buf, rx_len))
                    } else {
                        None
                    };
                    if let Some(Verdict::Tx { len, .. }) = verdict {
                        // The descriptor carries the verdict's length, not the received one:
                        // the frame may have grown or shrunk.
                        data.cursor().set_pos(len.min(FRAME_SIZE));
                    }
                    verdict
                };
                match verdict {
                    None => {
                        self.counters.rx_too_long += 1;
                        self.free(*desc, Place::Pipeline);
                    }
                    Some(Verdict::Drop) => {
                        self.counters.dropped += 1;
                        self.free(*desc, Place::Pipeline);
                    }
                    Some(Verdict::Tx { out_if, len }) => {
                        let out = usize::from(self.tx_of[usize::from(out_if)]);
                        if out < nsocks && len <= FRAME_SIZE && len > 0 {
                            self.socks[out].pending.push(*desc);
                        } else {
                            self.counters.bad_verdict += 1;
                            self.free(*desc, Place::Pipeline);
                        }
                    }
                }
            }
        }
        self.scratch = scratch;
        self.flush_tx();
        received
    }

    /// Sends a copy of `bytes` on `out_if` (slow path: ARP, CARP adverts). False, and counted,
    /// if there is no free frame, no such port, the frame is too long, or the TX ring is full.
    fn send_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        let Some(s) = self.queue(out_if, bytes) else {
            return false;
        };
        let before = self.counters.tx;
        self.flush_one(s);
        self.counters.tx > before
    }
}

impl WorkerPorts {
    /// Queues a copy of `bytes` for `out_if` without sending it: [`WorkerPorts::flush`] then
    /// puts every queued frame on its TX ring with one producer update per ring and the
    /// wakeups the kernel asks for. A sender of many frames (the load generator) pays those
    /// once per batch instead of once per frame. False, and counted, as for
    /// [`Ports::send_copy`], except that a full TX ring shows only at the flush
    /// ([`PortCounters::tx_ring_full`]).
    pub fn queue_copy(&mut self, out_if: IfIndex, bytes: &[u8]) -> bool {
        self.queue(out_if, bytes).is_some()
    }

    /// Sends every frame [`WorkerPorts::queue_copy`] queued.
    pub fn flush(&mut self) {
        self.flush_tx();
    }

    /// Copies `bytes` into a free frame queued for `out_if`'s socket, whose index it returns.
    fn queue(&mut self, out_if: IfIndex, bytes: &[u8]) -> Option<usize> {
        let s = usize::from(self.tx_of[usize::from(out_if)]);
        if s >= self.socks.len() || bytes.is_empty() || bytes.len() > FRAME_SIZE {
            self.counters.bad_verdict += 1;
            return None;
        }
        if self.pool.is_empty() {
            self.complete();
        }
        let Some(mut desc) = self.pool.pop() else {
            self.counters.send_no_frame += 1;
            return None;
        };
        self.mark(&desc, Place::Free, Place::Pipeline);
        let written = {
            // SAFETY: the chunk came from the pool, so no ring and no other descriptor holds
            // it; it belongs to `umem`.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = data.cursor();
            cursor.set_pos(0);
            cursor.write_all(bytes).is_ok()
        };
        if !written {
            self.counters.bad_verdict += 1;
            self.free(desc, Place::Pipeline);
            return None;
        }
        self.socks[s].pending.push(desc);
        Some(s)
    }
}

impl WorkerPorts {
    /// Reaps every completion ring into the pool.
    pub(super) fn complete(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for s in 0..self.socks.len() {
            loop {
                let want = scratch.len().min(self.socks[s].in_tx as usize);
                if want == 0 {
                    break;
                }
                // SAFETY: completion entries are chunks this socket's TX ring sent, all of
                // `umem`. `consume` zeroes their lengths (the pool does not care).
                let n = unsafe { self.socks[s].cq.consume(&mut scratch[..want]) };
                if n == 0 {
                    break;
                }
                self.socks[s].in_tx -= n as u32;
                self.counters.completed += n as u64;
                for desc in &scratch[..n] {
                    self.free(*desc, Place::tx(s));
                }
            }
        }
        self.scratch = scratch;
    }

    /// Tops every fill ring up to its target from the pool.
    pub(super) fn refill(&mut self) {
        for s in 0..self.socks.len() {
            let sock = &mut self.socks[s];
            let want = self.fill_target.saturating_sub(sock.in_fill);
            if want == 0 {
                continue;
            }
            let free_slots = sock.fq.nb_free(want);
            let n = (want.min(free_slots) as usize).min(self.pool.len());
            if n < want as usize && n < free_slots as usize {
                self.counters.fill_starved += 1;
            }
            if n == 0 {
                continue;
            }
            let from = self.pool.len() - n;
            // SAFETY: the descriptors come from the pool (each chunk once, owned by no ring),
            // and `nb_free` said `n` slots are free, so all `n` are accepted.
            let done = unsafe { sock.fq.produce(&self.pool[from..]) };
            debug_assert_eq!(done, n, "fill ring took fewer frames than nb_free promised");
            sock.in_fill += done as u32;
            #[cfg(debug_assertions)]
            for i in from..from + done {
                let c = chunk_index(&self.pool[i]);
                assert_eq!(
                    self.places[c],
                    Place::Free,
                    "chunk {c} filled while not free"
                );
                self.places[c] = Place::fill(s);
            }
            // Frames the ring refused (never, per nb_free) stay at the top of the pool.
            self.pool.drain(from..from + done);
            if sock.fq.needs_wakeup() {
                let _ = sock.fq.wakeup(sock.rx.fd_mut(), 0);
            }
        }
    }

    pub(super) fn flush_tx(&mut self) {
        for s in 0..self.socks.len() {
            if !self.socks[s].pending.is_empty() {
                self.flush_one(s);
            }
        }
    }

    /// Puts socket `s`'s pending frames on its TX ring and kicks it; frames that do not fit go
    /// back to the pool, counted.
    pub(super) fn flush_one(&mut self, s: usize) {
        let mut pending = std::mem::take(&mut self.socks[s].pending);
        // SAFETY: pending frames are chunks of `umem` held by nothing else (taken from an RX
        // ring or the pool), with their lengths set.
        let n = unsafe { self.socks[s].tx.produce(&pending) };
        self.socks[s].in_tx += n as u32;
        self.counters.tx += n as u64;
        for desc in &pending[..n] {
            self.mark(desc, Place::Pipeline, Place::tx(s));
        }
        for desc in &pending[n..] {
            self.counters.tx_ring_full += 1;
            self.free(*desc, Place::Pipeline);
        }
        let full = n < pending.len();
        pending.clear();
        self.socks[s].pending = pending;
        // A full ring is kicked too: the kernel must drain it for the next round to fit.
        if n > 0 || full {
            self.kick_tx(s, n.max(1));
        }
    }
}
