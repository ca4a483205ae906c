//! Waiting for frames: an idle worker blocks in `ppoll` on its sockets, so that the kernel
//! wakes it when a frame lands on an RX ring instead of a timer some time later.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::super::BindMode;
use super::{Sock, WorkerPorts};

/// One `ppoll` entry per socket: its RX ring readable.
pub(super) fn pollfds(socks: &[Sock]) -> Vec<libc::pollfd> {
    socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.rx.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

impl WorkerPorts {
    /// Blocks until a socket has frames on its RX ring or `timeout` has passed (plus the
    /// thread's timer slack, 50 us by default), and says whether one has. A signal returns
    /// early (`false`): the caller's loop runs a round either way, so that costs a round, never
    /// a frame.
    ///
    /// Copy mode only. In zero-copy mode the kernel's poll kicks the driver on every call
    /// (`ndo_xsk_wakeup`: an interrupt and a NAPI run), thousands of times a second per socket
    /// on an idle box, so there the worker sleeps on a timer as it always did. In copy mode the
    /// poll also sends some of what waits on the TX rings (up to the TX budget: 32 frames a call
    /// before Linux 6.17), which only helps.
    pub fn wait_rx(&mut self, timeout: Duration) -> bool {
        if self.mode != BindMode::Copy {
            std::thread::sleep(timeout);
            return false;
        }
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9: fits every c_long.
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pollfds` is an initialized slice of `pollfds.len()` entries, one per socket of
        // `socks` (whose fds live as long as `self`), that the call may write `revents` into;
        // `ts` lives across the call and glibc passes the kernel a copy of it (the kernel writes
        // the time left into that copy); a null sigmask keeps the thread's.
        let n = unsafe {
            libc::ppoll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // A poll that keeps failing (ENOMEM) must not turn the idle loop into a spin.
            self.counters.wait_errors += 1;
            std::thread::sleep(timeout);
            return false;
        }
        n > 0 && self.pollfds.iter().any(|p| p.revents & libc::POLLIN != 0)
    }
}
