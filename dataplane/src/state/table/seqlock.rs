//! A state's tracking behind a sequence lock: the worker that tracks a packet takes the write
//! side (one compare-and-swap to begin, a plain store to end: half the locked operations of a
//! mutex, whose unlock must swap to learn of sleepers), and readers (state sync, the CLI)
//! copy the data without writing anything, retrying if a write overlapped.
//!
//! Writers still exclude each other: the two directions of one flow may be tracked by two
//! workers at once, and pf's tracking of one direction also moves the other side's window
//! (`dst.seqhi`), so no field has a single writer. A writer never waits long: the section is a
//! few dozen instructions, and it never blocks inside it.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// See the [module documentation](self).
pub(super) struct SeqLock<T: Copy> {
    /// Odd while a writer is inside.
    seq: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the data is written only by the one writer that made `seq` odd, and read either by
// that writer or by readers that discard any copy a write overlapped (`read`); `T: Copy` has no
// drop glue and no interior pointers a torn read could follow.
unsafe impl<T: Copy + Send> Sync for SeqLock<T> {}

// Not the data: a `Debug` that read it would spin forever if called by the writer itself.
impl<T: Copy> std::fmt::Debug for SeqLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLock")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Copy> SeqLock<T> {
    pub(super) fn new(data: T) -> Self {
        SeqLock {
            seq: AtomicU32::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Begin a write; it ends when the guard drops (also when unwinding: the data may then be
    /// half-updated, plain integers that tracking copes with, as it did a poisoned mutex).
    #[inline]
    pub(super) fn write(&self) -> WriteGuard<'_, T> {
        let mut spins = 0u32;
        loop {
            let s = self.seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && self
                    .seq
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                // Readers that see any of this write's data see the odd count (Boehm's seqlock
                // recipe): the data writes may not move above this fence.
                fence(Ordering::Release);
                return WriteGuard { lock: self, seq: s };
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The other writer was preempted inside: let it run.
                std::thread::yield_now();
            }
        }
    }

    /// A consistent copy of the data, taken without writing anything.
    #[inline]
    pub(super) fn read(&self) -> T {
        self.read_with(|| ()).0
    }

    /// [`read`](Self::read), and `also()` read in the same window: consistent with the copy
    /// for anything that changes only inside write sections (a state's expiry word).
    #[inline]
    pub(super) fn read_with<R>(&self, also: impl Fn() -> R) -> (T, R) {
        let mut spins = 0u32;
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                // SAFETY: the pointer is valid and aligned; a write may overlap this read, in
                // which case the copy is torn, but `T: Copy` makes a torn copy a harmless value
                // that is discarded below (volatile: the compiler may not assume it stable).
                let copy = unsafe { std::ptr::read_volatile(self.data.get()) };
                let other = also();
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return (copy, other);
                }
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The writer was preempted inside (perhaps on this core): let it run.
                std::thread::yield_now();
            }
        }
    }
}

/// The write side, held while tracking: derefs to the data.
pub(super) struct WriteGuard<'a, T: Copy> {
    lock: &'a SeqLock<T>,
    seq: u32,
}

impl<T: Copy> Deref for WriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard's owner is the only writer (the count is odd) and readers do not
        // write: the reference is not aliased mutably.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: Copy> DerefMut for WriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: Copy> Drop for WriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Even again: the data written above is published with the count.
        self.lock
            .seq
            .store(self.seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Debug, Clone, Copy, Default)]
    struct Pair {
        a: u64,
        b: u64,
        c: [u64; 4],
    }

    #[test]
    fn writers_exclude_each_other_and_readers_never_see_a_torn_copy() {
        let lock = SeqLock::new(Pair::default());
        let stop = AtomicBool::new(false);
        const PER_WRITER: u64 = 200_000;
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = lock.read();
                    assert_eq!(p.a, p.b, "torn read");
                    assert!(p.c.iter().all(|&c| c == p.a), "torn read");
                    reads += 1;
                }
                reads
            });
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..PER_WRITER {
                            let mut w = lock.write();
                            let n = w.a + 1;
                            w.a = n;
                            w.c = [n; 4];
                            w.b = n;
                        }
                    })
                })
                .collect();
            writers.into_iter().for_each(|w| w.join().unwrap());
            stop.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        let p = lock.read();
        assert_eq!(p.a, 2 * PER_WRITER, "a lost update: writers overlapped");
        assert_eq!(p.b, p.a);
    }

    #[test]
    fn a_panicking_writer_releases_the_lock() {
        let lock = SeqLock::new(Pair::default());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = lock.write();
            w.a = 1;
            panic!("inside the write");
        }));
        assert!(r.is_err());
        lock.write().b = 1;
        assert_eq!((lock.read().a, lock.read().b), (1, 1));
    }
}
