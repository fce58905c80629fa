//! Guarantee 17 (wakers may act) and its interplay with 3/13/14.
// Without `std` a waker runs inside event-listener's notify (README,
// "Wakers"): these wakers that act or panic need it.
#![cfg(feature = "std")]
mod review_util;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use phaseout::Phaser;
use review_util::{poll_with, waker};

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Thread A cancels a node whose waiter's waker cancels the same node again
/// (allowed by guarantee 17) and then takes a while (a slow waker: A's
/// delivery stays in flight). Thread B's `cancel()` helps deliver A's
/// records (guarantee 14), so it runs the waker; the waker's `cancel()` on
/// B finds the node's wake still pending and delivers again, and that
/// nested delivery also picks up A's record (it only skips *B's own* outer
/// deliveries), which runs the same waker inside itself, and so on: an
/// unbounded recursion on B for as long as A's delivery lasts. Capped here
/// at 64 levels so that the test fails instead of overflowing the stack.
#[test]
fn a_helping_thread_does_not_recurse_into_a_waker_that_cancels() {
    let root = Phaser::new();
    let token = root.token();
    let a = thread::current().id();
    let a_inside = Arc::new(AtomicBool::new(false));
    let b_done = Arc::new(AtomicBool::new(false));
    let deepest = Arc::new(AtomicUsize::new(0));

    let w = {
        let token = token.clone();
        let a_inside = Arc::clone(&a_inside);
        let b_done = Arc::clone(&b_done);
        let deepest = Arc::clone(&deepest);
        waker(move || {
            let depth = DEPTH.with(|d| {
                d.set(d.get() + 1);
                d.get()
            });
            deepest.fetch_max(depth, Ordering::SeqCst);
            if depth <= 64 {
                token.cancel(); // a waker may cancel (guarantee 17)
            }
            if thread::current().id() == a && depth == 1 {
                // A slow waker: keep A's delivery in flight for a while.
                a_inside.store(true, Ordering::SeqCst);
                let start = Instant::now();
                while !b_done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(3) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            DEPTH.with(|d| d.set(d.get() - 1));
        })
    };
    let mut cancelled = token.cancelled();
    assert!(poll_with(&mut cancelled, &w).is_pending());

    let helper = {
        let token = token.clone();
        let a_inside = Arc::clone(&a_inside);
        let b_done = Arc::clone(&b_done);
        thread::spawn(move || {
            while !a_inside.load(Ordering::SeqCst) {
                thread::yield_now();
            }
            token.cancel();
            b_done.store(true, Ordering::SeqCst);
        })
    };
    root.cancel();
    helper.join().unwrap();
    let deepest = deepest.load(Ordering::SeqCst);
    assert!(
        deepest <= 2,
        "the waker ran {deepest} levels deep inside itself (capped at 65)"
    );
}

/// A waker that cancels the node it is woken for, again: its `cancel()`
/// is made inside the delivery of that node's wakes on this thread, so it
/// leaves the node's other waiters to that delivery (node invariant #9's
/// one exception: waking them from inside would run the same waker inside
/// itself). The outer `cancel()` returns only after every waiter, the
/// second one included, has been woken.
#[test]
fn a_cancel_made_by_a_waker_leaves_the_rest_to_the_delivery_it_is_inside() {
    let root = Phaser::new();
    let token = root.token();
    let second_woken = Arc::new(AtomicBool::new(false));
    let inner_returned = Arc::new(AtomicBool::new(false));

    let first = {
        let token = token.clone();
        let inner_returned = Arc::clone(&inner_returned);
        waker(move || {
            token.cancel();
            inner_returned.store(true, Ordering::SeqCst);
        })
    };
    let second = {
        let second_woken = Arc::clone(&second_woken);
        waker(move || second_woken.store(true, Ordering::SeqCst))
    };
    let mut f1 = token.cancelled();
    let mut f2 = token.cancelled();
    assert!(poll_with(&mut f1, &first).is_pending());
    assert!(poll_with(&mut f2, &second).is_pending());
    root.cancel();
    assert!(
        inner_returned.load(Ordering::SeqCst),
        "the waker's cancel() did not return"
    );
    assert!(
        second_woken.load(Ordering::SeqCst),
        "the outer cancel() returned before the node's other waiter was woken"
    );
}

/// One waker panics; a second waker of the same wake-up (guarantee 17)
/// drops a `Phaser` of its own and then wakes its task. The first panic is
/// held for the end of the *outer* cancel, but the inner drop ends an
/// operation too and raises it there, inside the innocent second waker:
/// its task is never woken.
#[test]
fn a_held_panic_is_not_raised_inside_another_waker() {
    let root = Phaser::new();
    let token = root.token();
    let task_woken = Arc::new(AtomicBool::new(false));

    let panicking = waker(|| panic!("a waker's own bug"));
    let acting = {
        let task_woken = Arc::clone(&task_woken);
        waker(move || {
            let scratch = Phaser::new(); // any tree operation inside a waker
            drop(scratch);
            task_woken.store(true, Ordering::SeqCst); // "schedule the task"
        })
    };
    let mut f1 = token.cancelled();
    let mut f2 = token.cancelled();
    assert!(poll_with(&mut f1, &panicking).is_pending());
    assert!(poll_with(&mut f2, &acting).is_pending());
    let outcome = catch_unwind(AssertUnwindSafe(|| root.cancel()));
    assert!(
        outcome.is_err(),
        "the waker's panic is raised at the end of cancel()"
    );
    assert!(
        task_woken.load(Ordering::SeqCst),
        "the second waker was interrupted by the first one's panic: its task is never woken"
    );
    assert!(root.is_cancelled() && root.is_turn());
}

/// The same with a waker that cancels an unrelated node: the unrelated
/// `cancel()` call panics with somebody else's panic.
#[test]
fn an_unrelated_cancel_inside_a_waker_does_not_panic_with_another_wakers_panic() {
    let root = Phaser::new();
    let other = Phaser::new();
    let token = root.token();
    let cancel_panicked = Arc::new(AtomicBool::new(false));

    let panicking = waker(|| panic!("a waker's own bug"));
    let acting = {
        let other = other.token();
        let cancel_panicked = Arc::clone(&cancel_panicked);
        waker(move || {
            if catch_unwind(AssertUnwindSafe(|| other.cancel())).is_err() {
                cancel_panicked.store(true, Ordering::SeqCst);
            }
        })
    };
    let mut f1 = token.cancelled();
    let mut f2 = token.cancelled();
    assert!(poll_with(&mut f1, &panicking).is_pending());
    assert!(poll_with(&mut f2, &acting).is_pending());
    let _ = catch_unwind(AssertUnwindSafe(|| root.cancel()));
    assert!(other.is_cancelled());
    assert!(
        !cancel_panicked.load(Ordering::SeqCst),
        "other.cancel() raised a panic of a different waker"
    );
}

/// The recursion above without a slow waker and without a cap: many
/// waiters whose wakers cancel their node (escalation, guarantee 17), and
/// two threads cancelling it at once. The helping thread's nested
/// deliveries re-run every record of the other thread's in-flight delivery.
/// Before the fix it overflowed the stack and aborted the process (at
/// `WAITERS=20000`; with the default it reached depth 1,693).
#[test]
#[cfg_attr(miri, ignore = "thousands of waiters: minutes under Miri")]
fn two_cancellers_and_cancelling_wakers_do_not_overflow_the_stack() {
    let waiters: usize = std::env::var("WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let deepest = Arc::new(AtomicUsize::new(0));
    for round in 0..5 {
        let root = Phaser::new();
        let token = root.token();
        let mut futures = Vec::new();
        for _ in 0..waiters {
            let token2 = token.clone();
            let deepest = Arc::clone(&deepest);
            let w = waker(move || {
                let depth = DEPTH.with(|d| {
                    d.set(d.get() + 1);
                    d.get()
                });
                deepest.fetch_max(depth, Ordering::SeqCst);
                token2.cancel();
                DEPTH.with(|d| d.set(d.get() - 1));
            });
            let mut f = token.cancelled();
            assert!(poll_with(&mut f, &w).is_pending());
            futures.push(f);
        }
        let go = Arc::new(std::sync::Barrier::new(2));
        let other = {
            let token = token.clone();
            let go = Arc::clone(&go);
            thread::spawn(move || {
                go.wait();
                token.cancel();
            })
        };
        go.wait();
        root.cancel();
        other.join().unwrap();
        drop(futures);
        eprintln!("round {round}: deepest {}", deepest.load(Ordering::SeqCst));
    }
    assert!(deepest.load(Ordering::SeqCst) <= 2);
}
