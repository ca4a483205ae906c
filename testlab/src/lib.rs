//! Test support: the seed's network lab (`scripts/lab`) in namespaces, torn down by a guard.

mod lock;

pub use lock::{lock, lock_path, LabLock, LOCK_ENV};

/// Calls `cond` every `poll` until it returns true or `timeout` has passed; true if it did. `cond`
/// runs at least once, and once more at the deadline.
pub fn wait_until(
    timeout: std::time::Duration,
    poll: std::time::Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
        if std::time::Instant::now() >= deadline {
            return cond();
        }
    }
}
