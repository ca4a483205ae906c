//! Waiting for frames: an idle worker blocks in `ppoll` on its sockets, so that the kernel
//! wakes it when a frame lands on an RX ring instead of a timer some time later.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::WorkerPorts;

impl WorkerPorts {
    /// Blocks until a socket has frames on its RX ring or `timeout` has passed, and says
    /// whether one has. A signal or a poll error returns early (`false`): the caller's loop runs
    /// a round either way, so an early return costs a round, never a frame.
    ///
    /// In copy mode the kernel's poll also sends what waits on the TX rings (`xsk_poll`), so a
    /// worker asleep here leaves nothing unsent.
    pub fn wait_rx(&mut self, timeout: Duration) -> bool {
        if self.pollfds.len() != self.socks.len() {
            self.pollfds = self
                .socks
                .iter()
                .map(|s| libc::pollfd {
                    fd: s.rx.fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
        }
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9: fits every c_long.
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pollfds` is an initialized slice of `pollfds.len()` entries that the call may
        // write `revents` into; `ts` lives across the call; a null sigmask keeps the thread's.
        let n = unsafe {
            libc::ppoll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        n > 0 && self.pollfds.iter().any(|p| p.revents & libc::POLLIN != 0)
    }
}
