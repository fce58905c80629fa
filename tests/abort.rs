//! Escalation: `abort()` after the grace period (`Phaser::abort`; guarantees
//! 2, 3, 4 and 14 hold for it as for `cancel()`).

mod common;

use std::sync::{Arc, Barrier};
use std::task::Poll;
use std::thread;

use common::{poll_once, scaled, CountingWaker};
use phaseout::Phaser;

#[test]
fn abort_reaches_exactly_the_subtree_and_implies_cancel() {
    let root = Phaser::new();
    let a = root.child().unwrap();
    let below = a.child().unwrap();
    let sibling = root.child().unwrap();
    a.abort();
    assert!(a.is_aborted() && below.token().is_aborted());
    assert!(a.is_cancelled() && below.is_cancelled());
    assert!(a.cause().is_none(), "abort cancels with no cause");
    assert!(!root.is_aborted() && !root.is_cancelled());
    assert!(!sibling.is_aborted() && !sibling.is_cancelled());
    assert!(a.child().is_err(), "an aborted node refuses children");
    a.abort(); // idempotent
    assert!(a.is_aborted());
}

#[test]
fn abort_after_cancel_keeps_the_cause() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    root.cancel_with("SIGTERM");
    assert!(!child.is_aborted(), "cancel is not abort");
    root.abort();
    assert!(child.is_aborted());
    assert_eq!(child.cause().unwrap().to_string(), "SIGTERM");
}

#[test]
fn when_abort_returns_every_aborted_and_cancelled_waiter_is_woken() {
    let root = Phaser::new();
    let nodes: Vec<Phaser> = (0..10).map(|_| root.child().unwrap()).collect();
    let deeper: Vec<Phaser> = nodes.iter().map(|n| n.child().unwrap()).collect();
    let mut aborted_waiters = Vec::new();
    let mut cancelled_waiters = Vec::new();
    for node in nodes.iter().chain(&deeper) {
        let (counter, waker) = CountingWaker::new();
        let mut aborted = node.aborted();
        assert_eq!(poll_once(&mut aborted, &waker), Poll::Pending);
        aborted_waiters.push((aborted, counter, waker));
        let (counter, waker) = CountingWaker::new();
        let mut cancelled = node.token().cancelled();
        assert_eq!(poll_once(&mut cancelled, &waker), Poll::Pending);
        cancelled_waiters.push((cancelled, counter, waker));
    }
    root.abort();
    for (mut future, counter, waker) in aborted_waiters {
        assert_eq!(counter.wakes(), 1, "an aborted() waiter was not woken");
        assert_eq!(poll_once(&mut future, &waker), Poll::Ready(()));
    }
    for (mut future, counter, waker) in cancelled_waiters {
        assert_eq!(counter.wakes(), 1, "a cancelled() waiter was not woken");
        assert_eq!(poll_once(&mut future, &waker), Poll::Ready(()));
    }
}

#[test]
fn abort_of_a_cancelled_tree_wakes_the_aborted_waiters() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    root.cancel();
    let (counter, waker) = CountingWaker::new();
    let mut aborted = child.aborted();
    assert_eq!(poll_once(&mut aborted, &waker), Poll::Pending);
    root.abort();
    assert_eq!(counter.wakes(), 1);
    assert_eq!(poll_once(&mut aborted, &waker), Poll::Ready(()));
}

#[test]
fn turns_still_come_children_first_after_abort() {
    let root = Phaser::new();
    let parent = root.child().unwrap();
    let child = parent.child().unwrap();
    root.abort();
    assert!(child.is_turn());
    assert!(!parent.is_turn(), "abort must not give a turn early");
    assert!(!root.is_turn());
    drop(child);
    assert!(parent.is_turn() && !root.is_turn());
    drop(parent);
    assert!(root.is_turn());
}

#[test]
fn a_report_marks_aborted_nodes() {
    let root = Phaser::named("app");
    let _hung = root.child_named("hung").unwrap();
    root.cancel_with("SIGTERM");
    root.abort();
    let report = root.report();
    assert!(report.find("hung").unwrap().aborted());
    assert_eq!(
        report.to_string(),
        "app: aborted, waiting for 1 child to finish (cause: SIGTERM)\n  \
           hung: aborted, its turn came, its owner has not finished\n"
    );
}

/// Guarantee 14 for abort: two aborts race; each, when it returns, has
/// seen every `aborted()` waiter of its subtree woken.
#[test]
fn racing_aborts_both_return_after_the_waiters_are_woken() {
    for _ in 0..scaled(2000, 20) {
        let root = Phaser::new();
        let middle = root.child().unwrap();
        let leaf = middle.child().unwrap();
        let (counter, waker) = CountingWaker::new();
        let mut aborted = leaf.aborted();
        assert_eq!(poll_once(&mut aborted, &waker), Poll::Pending);
        let start = Arc::new(Barrier::new(2));
        let other = {
            let (token, start, counter) = (middle.token(), start.clone(), counter.clone());
            thread::spawn(move || {
                start.wait();
                token.abort();
                assert!(
                    counter.wakes() >= 1,
                    "abort returned before the waiter was woken"
                );
            })
        };
        start.wait();
        root.abort();
        assert!(
            counter.wakes() >= 1,
            "abort returned before the waiter was woken"
        );
        other.join().unwrap();
        assert_eq!(poll_once(&mut aborted, &waker), Poll::Ready(()));
    }
}

#[test]
#[cfg(feature = "std")]
fn blocking_and_async_waiters_on_threads_are_woken_by_abort() {
    for _ in 0..scaled(200, 5) {
        let root = Phaser::new();
        let child = root.child().unwrap();
        let aborted = child.aborted();
        let waiter = thread::spawn(move || pollster::block_on(aborted));
        let cancelled = child.token();
        let blocked = thread::spawn(move || cancelled.wait_cancelled());
        root.abort();
        waiter.join().unwrap();
        blocked.join().unwrap();
    }
}

/// `run_until_aborted`: the work in hand runs through the cancel (the
/// grace), and is dropped, not polled again, once the node is aborted.
#[test]
fn run_until_aborted_runs_through_the_cancel_and_stops_at_the_abort() {
    use std::future::{pending, ready};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let root = Phaser::new();
    let token = root.token();
    root.cancel();
    assert_eq!(
        pollster::block_on(token.run_until_aborted(ready(1))),
        Some(1),
        "a cancel stopped the work in hand"
    );
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(Arc::clone(&dropped));
    let mut work = Box::pin(root.run_until_aborted(async move {
        let _flag = flag;
        pending::<()>().await;
    }));
    let (wakes, waker) = CountingWaker::new();
    assert_eq!(poll_once(&mut work, &waker), Poll::Pending);
    assert!(!dropped.load(Ordering::SeqCst));
    token.abort();
    assert!(wakes.wakes() > 0, "the abort did not wake the work");
    assert_eq!(poll_once(&mut work, &waker), Poll::Ready(None));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the work was kept after the abort"
    );
    assert!(futures_core::FusedFuture::is_terminated(&*work));
    // Aborted first: even ready work is not run.
    assert_eq!(pollster::block_on(token.run_until_aborted(ready(2))), None);
}
