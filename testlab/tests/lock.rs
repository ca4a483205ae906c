//! The machine-wide lab lock: reentrant in a thread, exclusive between threads and processes.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tandem_testlab::{lock, lock_path, wait_until};

#[test]
fn the_lock_is_reentrant_for_its_thread() {
    let outer = lock().expect("lock");
    // Would deadlock if it were not.
    let inner = lock().expect("lock again");
    drop(inner);
    drop(outer);
}

#[test]
fn another_thread_waits_until_the_lock_is_released() {
    let held = lock().expect("lock");
    let got = Arc::new(AtomicBool::new(false));
    let waiter = {
        let got = Arc::clone(&got);
        thread::spawn(move || {
            let _l = lock().expect("lock in waiter");
            got.store(true, Ordering::SeqCst);
        })
    };
    assert!(
        !wait_until(
            Duration::from_millis(300),
            Duration::from_millis(10),
            || got.load(Ordering::SeqCst)
        ),
        "a second thread took the lock while it was held"
    );
    drop(held);
    assert!(wait_until(
        Duration::from_secs(1800),
        Duration::from_millis(10),
        || got.load(Ordering::SeqCst)
    ));
    waiter.join().expect("waiter");
}

#[test]
fn other_processes_are_locked_out_while_it_is_held() {
    let _held = lock().expect("lock");
    // flock(1) takes the same kind of lock as std's File::lock; -n fails instead of waiting.
    let path = lock_path();
    let out = Command::new("flock")
        .arg("-n")
        .arg(&path)
        .arg("true")
        .output()
        .expect("flock(1)");
    assert!(
        !out.status.success(),
        "another process took {} while this one held it",
        path.display()
    );
    let holder = std::fs::read_to_string(&path).expect("lock file");
    assert!(
        holder.contains(&format!("pid {}", std::process::id())),
        "holder note: {holder}"
    );
}
