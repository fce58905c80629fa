//! What held up under attack: guarantee 18 (causes, also with the drop made
//! inside a waker in the middle of a cancel walk), 13 (a panicking waker
//! leaves the tree consistent), 14 (a helper does not wait for a slow
//! waker's thread, and wakes what it recorded).
// Without `std` a waker runs inside event-listener's notify (README,
// "Wakers"): these wakers that act or panic need it.
#![cfg(feature = "std")]
mod review_util;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use phaseout::Phaser;
use review_util::{poll_with, waker};

/// Guarantee 18: `m`'s owner drops inside a waker while `root`'s walk is
/// on its way down; what the drop cancels gets the walk's cause, not "the
/// owner of m finished"; after a plain cancel it gets none.
#[test]
fn a_drop_inside_the_walk_passes_the_nodes_own_cause_down() {
    for with_cause in [true, false] {
        let root = Phaser::named("root");
        let m = root.child_named("m").unwrap();
        let g = m.child_named("g").unwrap();
        let g_token = g.token();
        let m_slot = Arc::new(Mutex::new(Some(m)));
        let m_token = m_slot.lock().unwrap().as_ref().unwrap().token();
        let drop_m = {
            let m_slot = Arc::clone(&m_slot);
            waker(move || {
                let m = m_slot.lock().unwrap().take();
                drop(m); // the owner returns inside the wake
            })
        };
        let mut f = m_token.cancelled();
        assert!(poll_with(&mut f, &drop_m).is_pending());
        if with_cause {
            root.cancel_with("SIGTERM");
            assert_eq!(g_token.cause().unwrap().to_string(), "SIGTERM");
            assert_eq!(m_token.cause().unwrap().to_string(), "SIGTERM");
        } else {
            root.cancel();
            assert!(g_token.cause().is_none(), "{:?}", g_token.cause());
            assert!(m_token.cause().is_none());
        }
        assert!(m_slot.lock().unwrap().is_none());
        drop(g);
        assert!(root.is_turn());
    }
}

/// Guarantee 18: a live node's drop is its first cancellation: the drop
/// cause names it, for it and below.
#[test]
fn a_live_nodes_drop_names_its_owner() {
    let root = Phaser::named("root");
    let m = root.child_named("m").unwrap();
    let g = m.child_named("g").unwrap();
    let (mt, gt) = (m.token(), g.token());
    drop(m);
    let cause = gt.cause().unwrap().to_string();
    assert!(cause.contains('m') && cause.contains("finished"), "{cause}");
    assert_eq!(mt.cause().unwrap().to_string(), cause);
    assert!(!root.is_cancelled());
    drop(g);
    assert_eq!(root.live_children(), 0);
}

/// Guarantee 13: a waker that panics on the turn of a parent whose last
/// child drains: the drop panics, the tree stays consistent, the other
/// waiter is woken, no lock is left held.
#[test]
fn a_panicking_turn_waker_leaves_the_tree_consistent() {
    let root = Phaser::named("root");
    let mid = root.child_named("mid").unwrap();
    let leaf = mid.child_named("leaf").unwrap();
    let other_woken = Arc::new(AtomicBool::new(false));
    let mut t1 = mid.turn();
    let mut t2 = mid.turn();
    assert!(poll_with(&mut t1, &waker(|| panic!("turn waker bug"))).is_pending());
    let ow = Arc::clone(&other_woken);
    assert!(poll_with(&mut t2, &waker(move || ow.store(true, Ordering::SeqCst))).is_pending());
    assert!(catch_unwind(AssertUnwindSafe(|| root.cancel())).is_err());
    assert!(root.is_cancelled() && leaf.is_cancelled());
    // The cancel woke both (a panic there too): the turn waiters re-register.
    let _ = poll_with(&mut t1, &waker(|| panic!("turn waker bug")));
    let ow = Arc::clone(&other_woken);
    other_woken.store(false, Ordering::SeqCst);
    let _ = poll_with(&mut t2, &waker(move || ow.store(true, Ordering::SeqCst)));
    let result = catch_unwind(AssertUnwindSafe(move || drop(leaf)));
    assert!(result.is_err());
    assert!(other_woken.load(Ordering::SeqCst));
    assert!(mid.is_turn());
    assert!(mid.child().is_err());
    let r = mid.report().to_string();
    assert!(!r.is_empty());
    drop(mid);
    assert!(root.is_turn());
    assert_eq!(root.live_children(), 0);
}

/// A Phaser dropped while its thread unwinds, whose drop wakes a panicking
/// waker: no abort, the node drains, the cause says panicked.
#[test]
fn a_panicking_waker_during_unwinding_is_dropped() {
    let root = Phaser::new();
    let child = root.child_named("worker").unwrap();
    let token = child.token();
    let mut f = token.cancelled();
    assert!(poll_with(&mut f, &waker(|| panic!("second panic"))).is_pending());
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _child = child;
        panic!("first panic");
    }));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"first panic"));
    assert!(token.cause().unwrap().to_string().contains("panicked"));
    assert_eq!(root.live_children(), 0);
}

/// Guarantee 14 with a slow waker: B's cancel returns without waiting for
/// A to finish its slow waker, and the waiter after it has been woken.
#[test]
fn a_second_cancel_helps_past_a_slow_waker() {
    let root = Phaser::new();
    let token = root.token();
    let inside = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(AtomicBool::new(false));
    let a = thread::current().id();
    let slow = {
        let inside = Arc::clone(&inside);
        let release = Arc::clone(&release);
        waker(move || {
            if thread::current().id() == a {
                inside.store(true, Ordering::SeqCst);
                let start = Instant::now();
                while !release.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let later = {
        let woken = Arc::clone(&woken);
        waker(move || woken.store(true, Ordering::SeqCst))
    };
    let mut f1 = token.cancelled();
    let mut f2 = token.cancelled();
    assert!(poll_with(&mut f1, &slow).is_pending());
    assert!(poll_with(&mut f2, &later).is_pending());
    let helper = {
        let token = token.clone();
        let inside = Arc::clone(&inside);
        let release = Arc::clone(&release);
        let woken = Arc::clone(&woken);
        thread::spawn(move || {
            while !inside.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            let start = Instant::now();
            token.cancel();
            let took = start.elapsed();
            let seen = woken.load(Ordering::SeqCst);
            release.store(true, Ordering::SeqCst);
            (took, seen)
        })
    };
    root.cancel();
    let (took, seen) = helper.join().unwrap();
    assert!(
        seen,
        "B's cancel returned before the second waiter was woken"
    );
    assert!(took < Duration::from_secs(1), "B waited {took:?}");
}
