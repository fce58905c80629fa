//! Guarantees 16–18 and 21: every wait resolves, wakers may act, causes say
//! why, and the handles are unwind-safe.
//!
//! Each test here reproduces a defect found in 0.2 (CHANGELOG, 0.3.0)
//! and failed on 0.2's code:
//!
//! * a future kept after its `Phaser` was dropped is woken when the node's
//!   last child drains (guarantee 16);
//! * a waker may, from inside `wake()`, drop a child, cancel, drop a
//!   `Phaser` or a future, ask for a child or take a report, also on two
//!   threads whose wakers act on each other's nodes (guarantee 17);
//! * a panicking waker leaves the tree consistent and the other waiters
//!   woken;
//! * the owner's drop after a cancellation passes that cancellation's cause
//!   down, not "the owner finished" (guarantee 18).
//!
//! A deadlock or a lost wake-up shows as a watchdog failure, never a hung
//! test run.
// Without `std` a waker runs inside event-listener's notify (crate docs,
// "Wakers"): these wakers that act or panic need it.
#![cfg(feature = "std")]
#![cfg(not(loom))]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{poll_once, within_a_minute, CountingWaker};
use phaseout::{Phaser, Token};

/// A deadline that never fires: `turn_within` can then only end `Ok`.
struct Never;

impl Future for Never {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

// ===== Guarantee 16: a future outlives its `Phaser` =====

#[test]
fn a_turn_kept_after_its_phaser_dropped_resolves_on_another_thread() {
    within_a_minute("turn after the owner dropped", || {
        let root = Phaser::named("server");
        let child = root.child_named("connection").unwrap();
        let turn = root.turn();
        drop(root); // the server's task returned; the connection still runs
        let waiter = thread::spawn(move || pollster::block_on(turn));
        thread::sleep(Duration::from_millis(20)); // let it park
        drop(child);
        waiter.join().unwrap();
    });
}

#[test]
fn a_pending_turn_is_woken_when_the_last_child_drains_an_ownerless_node() {
    let root = Phaser::named("server");
    let connections: Vec<_> = (0..3).map(|_| root.child().unwrap()).collect();
    let mut turn = root.turn();
    let (wakes, waker) = CountingWaker::new();
    assert!(poll_once(&mut turn, &waker).is_pending());
    drop(root);
    for connection in connections {
        assert!(poll_once(&mut turn, &waker).is_pending());
        drop(connection);
    }
    assert!(wakes.wakes() > 0, "the last child's drain woke nobody");
    assert!(poll_once(&mut turn, &waker).is_ready());
}

#[test]
fn shutdown_within_kept_after_its_phaser_dropped_ends_ok() {
    within_a_minute("shutdown_within after the owner dropped", || {
        let root = Phaser::named("server");
        let worker = root.child_named("worker").unwrap();
        let shutdown = root.shutdown_within(Never);
        drop(root);
        let waiter = thread::spawn(move || pollster::block_on(shutdown));
        thread::sleep(Duration::from_millis(20));
        drop(worker);
        let outcome = waiter.join().unwrap();
        assert!(outcome.is_ok(), "a false straggler report: {outcome:?}");
    });
}

#[test]
fn a_deep_ownerless_chain_wakes_the_turn_at_its_top() {
    // Every owner returned top-down while the leaf still runs: the leaf's
    // drop drains the whole chain in one cascade, and the turn kept at the
    // top must be woken by it.
    let root = Phaser::named("top");
    let mut turn = root.turn();
    let (wakes, waker) = CountingWaker::new();
    assert!(poll_once(&mut turn, &waker).is_pending());
    let mut chain = vec![root];
    for _ in 0..100 {
        let next = chain.last().unwrap().child().unwrap();
        chain.push(next);
    }
    let leaf = chain.pop().unwrap();
    drop(chain); // top-down
    assert!(poll_once(&mut turn, &waker).is_pending());
    drop(leaf);
    assert!(wakes.wakes() > 0, "the cascade woke nobody at the top");
    assert!(poll_once(&mut turn, &waker).is_ready());
}

// ===== Guarantee 17: wakers may act =====

/// A waker that runs `act` (once) when woken, on the waking thread.
struct ActOnWake {
    act: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    woken: AtomicUsize,
}

impl ActOnWake {
    fn waker(act: impl FnOnce() + Send + 'static) -> (Arc<Self>, Waker) {
        let this = Arc::new(Self {
            act: Mutex::new(Some(Box::new(act))),
            woken: AtomicUsize::new(0),
        });
        (this.clone(), Waker::from(this))
    }
}

impl Wake for ActOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
        // Taken out first, so the lock is not held while acting.
        let act = self.act.lock().unwrap().take();
        if let Some(act) = act {
            act();
        }
    }
}

#[test]
fn a_waker_may_drop_the_last_child_of_the_node_it_is_woken_for() {
    within_a_minute("drop the last child from wake()", || {
        let parent = Phaser::named("parent");
        let child = parent.child_named("child").unwrap();
        let mut turn = parent.turn();
        let (turn_wakes, turn_waker) = CountingWaker::new();
        assert!(poll_once(&mut turn, &turn_waker).is_pending());
        let (_, waker) = ActOnWake::waker(move || drop(child));
        let mut cancelled = parent.cancelled();
        assert!(poll_once(&mut cancelled, &waker).is_pending());
        parent.cancel(); // wakes `cancelled`, whose waker drains the child
        assert!(parent.is_turn());
        assert!(turn_wakes.wakes() > 0, "the turn waiter was not woken");
        assert!(poll_once(&mut turn, &turn_waker).is_ready());
    });
}

#[test]
fn a_waker_may_drop_another_pending_future_of_the_same_node() {
    within_a_minute("drop a future from wake()", || {
        let node = Phaser::new();
        let other: Arc<Mutex<Option<phaseout::futures::Turn>>> =
            Arc::new(Mutex::new(Some(node.turn())));
        let (_, idle) = CountingWaker::new();
        assert!(poll_once(other.lock().unwrap().as_mut().unwrap(), &idle).is_pending());
        let slot = other.clone();
        let (_, waker) = ActOnWake::waker(move || drop(slot.lock().unwrap().take()));
        let mut cancelled = node.cancelled();
        assert!(poll_once(&mut cancelled, &waker).is_pending());
        node.cancel();
        assert!(other.lock().unwrap().is_none(), "the waker did not run");
    });
}

#[test]
fn a_waker_may_ask_for_a_child_take_a_report_and_register_again() {
    within_a_minute("child, report and poll from wake()", || {
        let root = Arc::new(Phaser::named("root"));
        let sibling = root.child_named("sibling").unwrap();
        let node = sibling.token();
        let asked = Arc::new(Mutex::new(None));
        let answer = asked.clone();
        let root_handle = root.clone();
        let (_, waker) = ActOnWake::waker(move || {
            let report = root_handle.report().to_string();
            let mut again = root_handle.cancelled();
            let (_, idle) = CountingWaker::new();
            let pending = poll_once(&mut again, &idle).is_pending();
            *answer.lock().unwrap() = Some((report, pending));
        });
        let mut cancelled = node.cancelled();
        assert!(poll_once(&mut cancelled, &waker).is_pending());
        sibling.cancel();
        let (report, pending) = asked.lock().unwrap().take().expect("the waker did not run");
        assert!(report.contains("sibling"), "{report}");
        assert!(pending, "the root is not cancelled");
        // A waker that asks its node's parent for a new child.
        drop(sibling);
        let parent = root;
        let child_made = Arc::new(Mutex::new(None));
        let (made, owner) = (child_made.clone(), parent.clone());
        let (_, waker) = ActOnWake::waker(move || {
            *made.lock().unwrap() = Some(owner.child().is_ok());
        });
        let mut turn_of_child = {
            let kid = parent.child().unwrap();
            let token = kid.token();
            let mut waiting = token.cancelled();
            assert!(poll_once(&mut waiting, &waker).is_pending());
            kid.cancel();
            waiting
        };
        assert!(poll_once(&mut turn_of_child, &waker).is_ready());
        assert_eq!(*child_made.lock().unwrap(), Some(true));
    });
}

/// Both threads' first wakers meet here before they act, so that each
/// thread is inside its own notify while the other acts (bounded: a second
/// at most).
fn meet(arrived: &AtomicUsize) {
    arrived.fetch_add(1, Ordering::SeqCst);
    let start = std::time::Instant::now();
    while arrived.load(Ordering::SeqCst) < 2 && start.elapsed() < Duration::from_secs(1) {
        std::hint::spin_loop();
    }
}

/// Two threads, each cancelling a node whose waiter's waker cancels the
/// other thread's node: in 0.2 each held one event's lock and waited for
/// the other's (documented as a deadlock).
#[test]
fn wakers_on_two_threads_may_cancel_each_others_nodes() {
    within_a_minute("crossed cancels from wake()", || {
        for _ in 0..common::scaled(200, 3) {
            let a = Phaser::named("a");
            let b = Phaser::named("b");
            let arrived = Arc::new(AtomicUsize::new(0));
            let (_, wake_a) = ActOnWake::waker({
                let (b, arrived) = (b.token(), arrived.clone());
                move || {
                    meet(&arrived);
                    b.cancel();
                }
            });
            let (_, wake_b) = ActOnWake::waker({
                let (a, arrived) = (a.token(), arrived.clone());
                move || {
                    meet(&arrived);
                    a.cancel();
                }
            });
            let mut on_a = a.cancelled();
            let mut on_b = b.cancelled();
            assert!(poll_once(&mut on_a, &wake_a).is_pending());
            assert!(poll_once(&mut on_b, &wake_b).is_pending());
            let start = Arc::new(Barrier::new(2));
            let other = {
                let (start, b) = (start.clone(), b.token());
                thread::spawn(move || {
                    start.wait();
                    b.cancel();
                })
            };
            start.wait();
            a.cancel();
            other.join().unwrap();
            assert!(a.is_cancelled() && b.is_cancelled());
        }
    });
}

/// A waker whose act drops a `Phaser` on two threads at once, each of them
/// the owner of the other thread's node's last child.
#[test]
fn wakers_on_two_threads_may_drop_each_others_children() {
    within_a_minute("crossed drops from wake()", || {
        for _ in 0..common::scaled(200, 3) {
            let a = Phaser::named("a");
            let b = Phaser::named("b");
            let arrived = Arc::new(AtomicUsize::new(0));
            let a_child = a.child().unwrap();
            let b_child = b.child().unwrap();
            let mut turns = (a.turn(), b.turn());
            let (a_turn, a_turn_waker) = CountingWaker::new();
            let (b_turn, b_turn_waker) = CountingWaker::new();
            assert!(poll_once(&mut turns.0, &a_turn_waker).is_pending());
            assert!(poll_once(&mut turns.1, &b_turn_waker).is_pending());
            let (_, on_a) = ActOnWake::waker({
                let arrived = arrived.clone();
                move || {
                    meet(&arrived);
                    drop(b_child);
                }
            });
            let (_, on_b) = ActOnWake::waker(move || {
                meet(&arrived);
                drop(a_child);
            });
            let mut wait_a = a.cancelled();
            let mut wait_b = b.cancelled();
            assert!(poll_once(&mut wait_a, &on_a).is_pending());
            assert!(poll_once(&mut wait_b, &on_b).is_pending());
            let start = Arc::new(Barrier::new(2));
            let other = {
                let (start, b) = (start.clone(), b.token());
                thread::spawn(move || {
                    start.wait();
                    b.cancel();
                })
            };
            start.wait();
            a.cancel();
            other.join().unwrap();
            assert!(a.is_turn() && b.is_turn());
            assert!(
                a_turn.wakes() > 0 && b_turn.wakes() > 0,
                "a turn was not woken"
            );
        }
    });
}

/// A waker that panics: the cancel that woke it still cancels the whole
/// subtree and wakes every other waiter before the panic reaches its
/// caller, and no lock stays held.
#[test]
fn a_panicking_waker_leaves_the_tree_consistent() {
    within_a_minute("panicking waker", || {
        let root = Phaser::named("root");
        let mid = root.child_named("mid").unwrap();
        let leaf = mid.child_named("leaf").unwrap();
        let (_, bad) = ActOnWake::waker(|| panic!("a waker panicked"));
        let mut on_mid = mid.cancelled();
        assert!(poll_once(&mut on_mid, &bad).is_pending());
        let (after, good) = CountingWaker::new();
        let mut also_on_mid = mid.cancelled();
        assert!(poll_once(&mut also_on_mid, &good).is_pending());
        let (below, leaf_waker) = CountingWaker::new();
        let mut on_leaf = leaf.cancelled();
        assert!(poll_once(&mut on_leaf, &leaf_waker).is_pending());

        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| root.cancel()));
        assert!(caught.is_err(), "the waker's panic was swallowed");
        assert!(
            leaf.is_cancelled(),
            "the walk stopped at the panicking waker"
        );
        assert!(
            after.wakes() > 0,
            "a waiter beside the panicking one was not woken"
        );
        assert!(below.wakes() > 0, "a waiter below was not woken");
        // No lock held, counts right: the tree still drains in order.
        drop(leaf);
        assert!(mid.is_turn());
        drop(mid);
        assert!(root.is_turn());
    });
}

/// A `Phaser` dropped from a panicking waker's cancel still drains: the
/// owner's drop must not stop half-way.
#[test]
fn an_owner_drop_whose_waker_panics_still_drains_the_node() {
    within_a_minute("panicking waker in a drop", || {
        let root = Phaser::named("root");
        let node = root.child_named("node").unwrap();
        let (_, bad) = ActOnWake::waker(|| panic!("a waker panicked"));
        let mut waiting = node.cancelled();
        assert!(poll_once(&mut waiting, &bad).is_pending());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(node)));
        assert!(caught.is_err(), "the waker's panic was swallowed");
        assert_eq!(root.live_children(), 0, "the dropped node never drained");
    });
}

// ===== Guarantee 18: causes say why =====

/// The SIGTERM walk reaches `listener` and wakes its task, which returns
/// *because of* it and drops its `Phaser` before the walk has gone on to
/// `handler`, below it. The handler was cancelled by the SIGTERM, not by
/// the listener's owner finishing.
#[test]
fn an_owner_dropped_after_its_cancellation_passes_the_real_cause_down() {
    within_a_minute("cause order", || {
        let root = Phaser::named("app");
        let listener = root.child_named("listener").unwrap();
        let handler = listener.child_named("handler").unwrap();
        let handler_token = handler.token();
        let listener_token = listener.token();
        let (_, returns) = ActOnWake::waker(move || drop(listener));
        let mut waiting = listener_token.cancelled();
        assert!(poll_once(&mut waiting, &returns).is_pending());
        root.cancel_with("SIGTERM");
        let cause = handler_token.cause().map(|cause| cause.to_string());
        assert_eq!(cause.as_deref(), Some("SIGTERM"));
        // A plain cancel first: the drop gives what it cancels no cause.
        let root = Phaser::named("app");
        let listener = root.child_named("listener").unwrap();
        let handler = listener.child_named("handler").unwrap();
        let handler_token = handler.token();
        let listener_token = listener.token();
        let (_, returns) = ActOnWake::waker(move || drop(listener));
        let mut waiting = listener_token.cancelled();
        assert!(poll_once(&mut waiting, &returns).is_pending());
        root.cancel();
        assert!(
            handler_token.cause().is_none(),
            "{:?}",
            handler_token.cause()
        );
        drop(handler);
    });
}

#[test]
fn an_owner_dropped_first_still_names_itself() {
    let listener = Phaser::named("listener");
    let handler = listener.child_named("handler").unwrap();
    drop(listener);
    let cause = handler.cause().expect("the drop gave a cause").to_string();
    assert!(
        cause.contains("listener") && cause.contains("finished"),
        "{cause}"
    );
}

// ===== Guarantee 21: unwind safety =====

#[test]
fn handles_and_futures_are_unwind_safe() {
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    unwind_safe::<Phaser>();
    unwind_safe::<Token>();
    unwind_safe::<phaseout::futures::Cancelled>();
    unwind_safe::<phaseout::futures::Aborted>();
    unwind_safe::<phaseout::futures::Turn>();
    unwind_safe::<phaseout::futures::TurnWithin<std::future::Ready<()>>>();
    unwind_safe::<phaseout::futures::RunUntilCancelled<std::future::Ready<()>>>();
    unwind_safe::<phaseout::Cause>();
    unwind_safe::<phaseout::Report>();
    // The point: no `AssertUnwindSafe` needed.
    let root = Phaser::new();
    let token = root.token();
    assert!(std::panic::catch_unwind(|| token.cancel()).is_ok());
    assert!(root.is_cancelled());
}
