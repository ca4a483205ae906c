//! Waking the kernel to send: `sendto` on the socket, as `needs_wakeup` asks.

use std::os::fd::AsRawFd;

use super::super::BindMode;
use super::WorkerPorts;

impl WorkerPorts {
    /// Kicks TX rings that still hold frames the kernel has not taken (copy mode stops after
    /// [`WorkerPorts::tx_budget`] frames per kick, or early when the completion ring is full),
    /// so that they leave without waiting for new traffic on that ring.
    pub(super) fn kick_leftover_tx(&mut self) {
        for s in 0..self.socks.len() {
            let sock = &mut self.socks[s];
            if sock.in_tx > 0 && sock.tx.nb_free_exact() < self.ring_size {
                self.kick_tx(s, 1);
            }
        }
    }

    /// Wakes the kernel to send: once in zero-copy, and in copy mode again while the kernel
    /// says it has more to send (it sends [`WorkerPorts::tx_budget`] frames per call: all of a
    /// round's batch where the kernel lets us raise it, else 32).
    pub(super) fn kick_tx(&mut self, s: usize, queued: usize) {
        let sock = &self.socks[s];
        if !sock.tx.needs_wakeup() {
            return;
        }
        let fd = sock.tx.fd().as_raw_fd();
        let rounds = match self.mode {
            BindMode::Copy => queued.div_ceil(self.tx_budget) + 1,
            _ => 1,
        };
        for _ in 0..rounds {
            self.counters.tx_kicks += 1;
            // SAFETY: a zero-length sendto on the socket's own fd, no buffers.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                break;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => continue,
                Some(libc::ENOBUFS | libc::EBUSY | libc::ENETDOWN) => break,
                _ => {
                    self.counters.tx_kick_errors += 1;
                    break;
                }
            }
        }
    }
}
