//! Guarantee 17 at thread exit: a `Phaser` dropped by a thread-local
//! destructor, after phaseout's own thread-local (`DEFERRAL`) is gone.
// Without `std` a waker runs inside event-listener's notify (README,
// "Wakers"): these wakers that act or panic need it.
#![cfg(feature = "std")]
mod review_util;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use phaseout::futures::Cancelled;
use phaseout::Phaser;
use review_util::{poll_with, waker};

thread_local! {
    static HELD: RefCell<Option<Phaser>> = const { RefCell::new(None) };
}

/// A worker thread keeps its component's `Phaser` in a thread-local,
/// registered before the thread first woke anything through phaseout, so
/// that phaseout's thread-local is destroyed first (destructors run in
/// reverse order of registration). The `Phaser` is dropped by the
/// thread-local's destructor; `deliver` then finds no `DEFERRAL` and lets
/// event-listener call the relays, which call the users' wakers *under
/// event-listener's lock*. A waker that drops another future of the same
/// node (guarantee 17) then deadlocks; here the drop is done by a helper
/// thread, so the test sees the lock held instead of hanging.
#[test]
fn a_phaser_dropped_at_thread_exit_wakes_with_no_lock_held() {
    let (to_main, from_worker) = mpsc::channel();
    let worker = thread::spawn(move || {
        let phaser = Phaser::named("thread-local component");
        let token = phaser.token();
        HELD.with(|held| *held.borrow_mut() = Some(phaser)); // registered first
                                                             // Now any wake through phaseout on this thread (its DEFERRAL is
                                                             // registered second, so destroyed first).
        let scratch = Phaser::new();
        let mut f = scratch.token().cancelled();
        assert!(poll_with(&mut f, &waker(|| {})).is_pending());
        scratch.cancel();
        to_main.send(token).unwrap();
        // Wait until main registered its waiters, then exit.
        thread::park();
    });
    let token = from_worker.recv().unwrap();

    let other: Arc<Mutex<Option<Cancelled>>> = Arc::new(Mutex::new(Some(token.cancelled())));
    assert!(poll_with(other.lock().unwrap().as_mut().unwrap(), &waker(|| {})).is_pending());
    let lock_held = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicBool::new(false));
    let acting = {
        let other = Arc::clone(&other);
        let lock_held = Arc::clone(&lock_held);
        let woken = Arc::clone(&woken);
        waker(move || {
            woken.store(true, Ordering::SeqCst);
            // Drop the node's other future (guarantee 17), on a helper
            // thread so that a held lock shows as a timeout, not a hang.
            let other = Arc::clone(&other);
            let (done, finished) = mpsc::channel();
            thread::spawn(move || {
                drop(other.lock().unwrap().take());
                let _ = done.send(());
            });
            if finished.recv_timeout(Duration::from_secs(2)).is_err() {
                lock_held.store(true, Ordering::SeqCst);
            }
        })
    };
    let mut mine = token.cancelled();
    assert!(poll_with(&mut mine, &acting).is_pending());
    worker.thread().unpark();
    worker.join().unwrap();
    assert!(token.is_cancelled());
    assert!(woken.load(Ordering::SeqCst), "the waiter was never woken");
    assert!(
        !lock_held.load(Ordering::SeqCst),
        "the user's waker ran under event-listener's lock (a waker dropping a future of the node deadlocks)"
    );
}
