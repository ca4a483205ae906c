//! One lab at a time on this machine.
//!
//! Lab tests share two cores with busy-polling workers, so at most one may run at a time across
//! every test process. Two layers:
//!
//! - between processes: an exclusive `flock` (through [`File::lock`]) on [`lock_path`], held for
//!   as long as any [`LabLock`] of this process lives. The kernel drops it when the process dies,
//!   so a killed test never leaves the machine locked.
//! - between threads of one process (libtest runs tests on threads): a mutex and condvar around
//!   the file. `flock` alone would not do: it is per open file, and the lock is reentrant for the
//!   thread that holds it, so one test can hold two labs, or hold the lock around a lab to compare
//!   the machine's state before and after.
//!
//! While waiting for another process, the holder (written into the file) is printed once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

/// Environment variable that overrides [`lock_path`].
pub const LOCK_ENV: &str = "TANDEM_LAB_LOCK";

struct State {
    holder: Option<ThreadId>,
    depth: usize,
    file: Option<File>,
}

static STATE: Mutex<State> = Mutex::new(State {
    holder: None,
    depth: 0,
    file: None,
});
static RELEASED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    // The mutex is never held across code that can panic, but a poisoned lock must not wedge
    // every later test either.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the machine-wide lab lock lives: `$TANDEM_LAB_LOCK`, else `/run/lock/tandem-lab.lock`,
/// else `tandem-lab.lock` in the temporary directory.
pub fn lock_path() -> PathBuf {
    if let Some(p) = std::env::var_os(LOCK_ENV) {
        return PathBuf::from(p);
    }
    let run_lock = PathBuf::from("/run/lock");
    if run_lock.is_dir() {
        run_lock.join("tandem-lab.lock")
    } else {
        std::env::temp_dir().join("tandem-lab.lock")
    }
}

/// Proof that this thread may run a lab. Released when the last guard of the thread drops.
#[derive(Debug)]
#[must_use = "the lab lock is released as soon as the guard is dropped"]
pub struct LabLock {
    _private: (),
}

/// Takes the lab lock, waiting as long as it takes. Reentrant for the calling thread.
pub fn lock() -> io::Result<LabLock> {
    let me = thread::current().id();
    let mut st = state();
    loop {
        match st.holder {
            Some(h) if h == me => {
                st.depth += 1;
                return Ok(LabLock { _private: () });
            }
            None => break,
            Some(_) => st = RELEASED.wait(st).unwrap_or_else(PoisonError::into_inner),
        }
    }
    // Claim it for this thread, then wait for other processes without holding the mutex.
    st.holder = Some(me);
    st.depth = 1;
    drop(st);
    match lock_file() {
        Ok(file) => {
            state().file = Some(file);
            Ok(LabLock { _private: () })
        }
        Err(e) => {
            let mut st = state();
            st.holder = None;
            st.depth = 0;
            RELEASED.notify_all();
            Err(e)
        }
    }
}

fn lock_file() -> io::Result<File> {
    let path = lock_path();
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("lab lock {}: {what}: {e}", path.display()),
        )
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| ctx("open", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // Best effort: only for the message.
            let _ = file.read_to_string(&mut holder);
            eprintln!(
                "testlab: waiting for the lab lock {} (held by {})",
                path.display(),
                holder.trim()
            );
            file.lock().map_err(|e| ctx("lock", e))?;
        }
        Err(TryLockError::Error(e)) => return Err(ctx("lock", e)),
    }
    // Who holds it, for the next waiter's message.
    let me = format!(
        "pid {} ({}), thread {}",
        std::process::id(),
        std::env::args().next().unwrap_or_default(),
        thread::current().name().unwrap_or("?")
    );
    let note = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{me}"));
    if let Err(e) = note {
        eprintln!("testlab: cannot note the holder in {}: {e}", path.display());
    }
    Ok(file)
}

impl Drop for LabLock {
    fn drop(&mut self) {
        let mut st = state();
        st.depth = st.depth.saturating_sub(1);
        if st.depth == 0 {
            if let Some(file) = st.file.take() {
                // Closing the file would release it too; unlocking first says so.
                let _ = file.unlock();
            }
            st.holder = None;
            RELEASED.notify_all();
        }
    }
}
