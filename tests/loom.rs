//! Model checks of every racing pair in the core, with loom exploring the
//! interleavings (and, through the crate's `sync` shim, every atomic access
//! and lock). Run with:
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom
//! ```
//!
//! Each model bounds the preemptions loom explores (3, or 2 for the one
//! with three threads, where the child-list lock's spinning makes bound 3
//! take many minutes); `LOOM_MAX_PREEMPTIONS` overrides that for all.
#![cfg(loom)]

use std::future::Future;

use loom::future::block_on;
use loom::thread;
use phaseout::Phaser;

/// Runs `f` under loom with at most `preemptions` preemptions explored.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    // The child-list lock spins, and every spin is a branch for loom.
    builder.max_branches = 100_000;
    builder.check(f);
}

/// 1. `cancel()` vs `child()` on the same node: refusal is atomic, and a child
///    that was created is cancelled once `cancel()` has returned.
#[test]
fn cancel_vs_child() {
    model(3, || {
        let parent = loom::sync::Arc::new(Phaser::new());
        let maker = {
            let parent = parent.clone();
            thread::spawn(move || parent.child().ok())
        };
        parent.cancel();
        let child = maker.join().unwrap();
        assert!(parent.child().is_err(), "refusal must be final");
        match child {
            Some(child) => {
                assert!(child.is_cancelled(), "a child escaped the cancel");
                assert_eq!(parent.live_children(), 1);
                assert!(!parent.is_turn());
                drop(child);
                assert!(parent.is_turn());
            }
            None => assert!(parent.is_turn()),
        }
    });
}

/// 2. `cancel()` vs a task registering in `cancelled()`: no lost wake-up
///    (a lost one is a deadlock, which loom reports).
#[test]
fn cancel_vs_cancelled_waiter() {
    model(3, || {
        let node = Phaser::new();
        let token = node.token();
        let waiter = thread::spawn(move || block_on(token.cancelled()));
        node.cancel();
        waiter.join().unwrap();
    });
}

/// 3. The last two children draining on two threads vs the parent's `turn()`
///    registering: the turn comes, once, after both.
#[test]
fn two_children_drain_vs_turn_waiter() {
    model(2, || {
        let parent = Phaser::new();
        let a = parent.child().unwrap();
        let b = parent.child().unwrap();
        parent.cancel();
        let dropper_a = thread::spawn(move || drop(a));
        let dropper_b = thread::spawn(move || drop(b));
        block_on(parent.turn());
        assert_eq!(parent.live_children(), 0);
        dropper_a.join().unwrap();
        dropper_b.join().unwrap();
    });
}

/// 4. Dropping a parent vs dropping its only child: the parent drains exactly
///    once (its grandparent's count drops by one) and every node is freed
///    once (loom checks that no `Arc` leaks and none is freed twice).
#[test]
fn drop_parent_vs_drop_only_child() {
    model(3, || {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        let dropper = thread::spawn(move || drop(child));
        drop(parent);
        dropper.join().unwrap();
        assert_eq!(root.live_children(), 0);
    });
}

/// 5. `cancel()` on a node vs `cancel()` on its ancestor: whichever returns
///    first, its whole subtree is cancelled by then.
#[test]
fn cancel_vs_ancestor_cancel() {
    model(3, || {
        let root = Phaser::new();
        let middle = root.child().unwrap();
        let leaf = middle.child().unwrap();
        let leaf_token = leaf.token();
        let root_token = root.token();
        let ancestor = thread::spawn(move || {
            root_token.cancel();
        });
        middle.cancel();
        assert!(
            leaf_token.is_cancelled(),
            "cancel() returned before its subtree was cancelled"
        );
        ancestor.join().unwrap();
        assert!(root.is_cancelled() && leaf.is_cancelled());
    });
}

/// 6. A token cloned, waited on and dropped on one thread while the node is
///    cancelled and drains on another: the wait ends, nothing leaks.
#[test]
fn token_vs_drain() {
    model(3, || {
        let root = Phaser::new();
        let node = root.child().unwrap();
        let token = node.token();
        let observer = thread::spawn(move || {
            let copy = token.clone();
            drop(token);
            block_on(copy.cancelled());
            assert!(copy.is_cancelled());
        });
        drop(node); // cancels and drains
        observer.join().unwrap();
        assert_eq!(root.live_children(), 0);
    });
}

/// 7. The last child wakes its parent's turn while the parent's owner, seeing
///    the turn, drops (and frees) the parent: the child must hold the parent
///    alive across the wake.
#[test]
fn last_child_wakes_turn_vs_owner_dropping_at_turn() {
    model(3, || {
        let parent = Phaser::new();
        let child = parent.child().unwrap();
        parent.cancel();
        let dropper = thread::spawn(move || drop(child));
        block_on(parent.turn());
        drop(parent);
        dropper.join().unwrap();
    });
}

/// 8. The child-list lock's sleep/wake handshake: two threads need the same
///    parent's lock (one links a new child, one unlinks a drained one), and
///    the parent is cancelled once both are done. Under loom a waiter looks at the
///    locked word once and then sleeps, so every interleaving of "announce
///    `LOCK_SLEEPERS`" against "release" is explored; a sleeper that is
///    never woken is a deadlock, which loom reports. The lock alone, with
///    three contenders, is model-checked in `src/node/lock.rs`.
#[test]
fn lock_sleeper_vs_release() {
    phaseout::loom_lock_hand_over_always(false);
    model(2, lock_sleeper_scenario);
}

/// 8b. The same, where every release that finds a sleeper hands the lock
///     over to it (fairness; `lock.rs`): the heir continues as the holder,
///     and a lost hand-over is a deadlock too.
#[test]
fn lock_hand_over_vs_release() {
    phaseout::loom_lock_hand_over_always(true);
    model(2, lock_sleeper_scenario);
    phaseout::loom_lock_hand_over_always(false);
}

fn lock_sleeper_scenario() {
    let parent = loom::sync::Arc::new(Phaser::new());
    let old = parent.child().unwrap();
    let maker = {
        let parent = parent.clone();
        thread::spawn(move || parent.child().ok())
    };
    let dropper = thread::spawn(move || drop(old));
    let made = maker.join().unwrap();
    dropper.join().unwrap();
    assert_eq!(parent.live_children(), usize::from(made.is_some()));
    parent.cancel();
    drop(made);
    assert!(parent.is_turn());
}

/// 9. A waiter whose announcement finds `HAS_WAITERS` already set (an earlier
///    waiter registered and left) vs `cancel()`: the announcement still
///    writes the word, so the canceller's RMW reads it and the waiter's
///    listener is visible to the notify without relying on event-listener
///    taking its lock (node invariant #4).
#[test]
fn second_waiter_announcement_vs_cancel() {
    model(3, || {
        let node = Phaser::new();
        let token = node.token();
        {
            // The first waiter sets HAS_WAITERS and goes away.
            let mut first = token.cancelled();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::pin::Pin::new(&mut first).poll(&mut cx).is_pending());
        }
        let waiter = thread::spawn(move || block_on(token.cancelled()));
        node.cancel();
        waiter.join().unwrap();
    });
}

/// 10. Guarantee 14: a `cancel()` that finds a node already cancelled by
///     another thread that has not woken its waiters yet wakes them itself,
///     so when it returns the waiter has been woken.
#[test]
fn ancestor_cancel_returns_after_the_waiters_below_are_woken() {
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    // A loom atomic, so that loom sees the wake and the check as racing
    // (with a plain one it would not reorder them).
    use loom::sync::atomic::{AtomicBool, Ordering};

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    model(3, || {
        let root = Phaser::new();
        let middle = root.child().unwrap();
        let middle_token = middle.token();
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let mut waiting = middle.token().cancelled();
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut waiting).poll(&mut cx).is_pending());
        let other = thread::spawn(move || middle_token.cancel());
        root.cancel();
        assert!(
            flag.0.load(Ordering::SeqCst),
            "cancel() returned before a waiter in its subtree was woken"
        );
        other.join().unwrap();
        drop(middle);
    });
}

/// 11. Two `cancel_with` on nested nodes race: each node gets one of the two
///     causes, the outer node gets the outer one, and a reader that sees a
///     node cancelled sees its final cause at once (never `None` first,
///     never a change).
#[test]
fn cancel_with_vs_cancel_with_on_nested_nodes() {
    model(3, || {
        let outer = Phaser::new();
        let inner = outer.child().unwrap();
        let inner_token = inner.token();
        let outer_token = outer.token();
        let other = thread::spawn(move || outer_token.cancel_with("outer"));
        let reader = {
            let token = inner.token();
            thread::spawn(move || {
                if token.is_cancelled() {
                    let first = token.cause().expect("cancelled, but no cause yet");
                    let again = token.cause().expect("the cause disappeared");
                    assert_eq!(first.to_string(), again.to_string(), "the cause changed");
                    Some(first.to_string())
                } else {
                    None
                }
            })
        };
        inner_token.cancel_with("inner");
        other.join().unwrap();
        let seen = reader.join().unwrap();
        let inner_cause = inner.cause().unwrap().to_string();
        assert!(inner_cause == "inner" || inner_cause == "outer");
        if let Some(seen) = seen {
            assert_eq!(seen, inner_cause, "the cause changed after it was read");
        }
        assert_eq!(outer.cause().unwrap().to_string(), "outer");
    });
}

/// 12. `abort()` vs a task registering in `cancelled()` and another in
///     `aborted()`: abort wakes both kinds (a lost wake-up is a deadlock).
#[test]
fn abort_vs_cancelled_and_aborted_waiters() {
    model(2, || {
        let node = Phaser::new();
        let token = node.token();
        let waiter = thread::spawn(move || {
            block_on(token.cancelled());
            block_on(token.aborted());
        });
        node.abort();
        waiter.join().unwrap();
    });
}

/// 12b. `abort()` of a node that is already cancelled vs a task registering
///      in `aborted()`: the abort is a transition of its own and must wake it.
#[test]
fn abort_of_a_cancelled_node_vs_aborted_waiter() {
    model(3, || {
        let node = Phaser::new();
        node.cancel();
        let token = node.token();
        let waiter = thread::spawn(move || block_on(token.aborted()));
        node.abort();
        waiter.join().unwrap();
    });
}

/// 13. A cause read through a token of a leaf while the tree above it is
///     cancelled, drained and freed on another thread: the cause lives in the
///     leaf, so the read never touches a freed node.
#[test]
fn cause_read_vs_drain_and_free() {
    model(3, || {
        let root = Phaser::new();
        let leaf = root.child().unwrap();
        let token = leaf.token();
        let dropper = thread::spawn(move || {
            root.cancel_with("stop");
            drop(leaf);
            drop(root);
        });
        let cause = token.cause().map(|cause| cause.to_string());
        assert!(cause.is_none() || cause.as_deref() == Some("stop"));
        dropper.join().unwrap();
        assert_eq!(token.cause().unwrap().to_string(), "stop");
    });
}

/// 14. The owner drops with a live child while a turn waiter (taken before
///     the drop) waits on another thread; the child drains on a third. The
///     drain that drains the ownerless parent must wake the waiter
///     (guarantee 16): a lost wake-up is a deadlock, which loom reports.
#[test]
fn owner_dropped_with_a_live_child_vs_turn_waiter() {
    model(2, || {
        let parent = Phaser::new();
        let child = parent.child().unwrap();
        let turn = parent.turn();
        let waiter = thread::spawn(move || block_on(turn));
        let dropper = thread::spawn(move || drop(child));
        drop(parent);
        dropper.join().unwrap();
        waiter.join().unwrap();
    });
}

/// 15. A waker that drops the parent's last child from inside `wake()`,
///     during the parent's own notify (its `cancelled()` waiter), while
///     another thread waits for the parent's turn: no deadlock (guarantee
///     17), and the turn waiter is woken by that drain.
#[test]
fn waker_drains_a_child_during_its_parents_notify() {
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    struct DropOnWake(Mutex<Option<Phaser>>);
    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            let child = self.0.lock().unwrap().take();
            drop(child);
        }
    }

    model(2, || {
        let parent = Phaser::new();
        let child = parent.child().unwrap();
        let turn = parent.turn();
        let turn_waiter = thread::spawn(move || block_on(turn));
        let dropping = Arc::new(DropOnWake(Mutex::new(Some(child))));
        let mut cancelled = parent.cancelled();
        let waker = Waker::from(dropping.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut cancelled)
            .poll(&mut cx)
            .is_pending());
        parent.cancel(); // wakes `cancelled`, whose waker drains the child
        assert!(parent.is_turn());
        turn_waiter.join().unwrap();
        drop(parent);
    });
}

/// 16. Two components of one scope fail at once: each failure is recorded
///     exactly once, the scope's cause is one of the two (the first to
///     cancel it), and the order of the list agrees with it.
#[test]
fn two_racing_fails() {
    // Bound 2: each `fail` walks the scope (locks, spins), and bound 3 takes
    // a quarter of an hour.
    model(2, || {
        let root = Phaser::new();
        let a = root.child().unwrap();
        let b = root.child().unwrap();
        let failing = thread::spawn(move || {
            a.fail("a");
            drop(a);
        });
        b.fail("b");
        failing.join().unwrap();
        let failures: Vec<String> = root
            .failures()
            .iter()
            .map(|failure| failure.cause().to_string())
            .collect();
        let mut sorted = failures.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b"], "a failure was lost or doubled");
        let cause = root.cause().unwrap().to_string();
        assert_eq!(cause, failures[0], "the cause is not the first failure's");
        drop(b);
        assert!(root.is_turn());
    });
}

/// 17. A failure against its scope's drain: the scope's owner cancels and
///     drops it while the last child fails and drops. The failure is
///     recorded (the live owner of the failing node keeps the scope from
///     draining), and a token reads it after the drain.
#[test]
fn fail_vs_the_scopes_drain() {
    // Bound 2, as above.
    model(2, || {
        let root = Phaser::new();
        let scope = root.child_scope().unwrap();
        let watch = scope.token();
        let worker = scope.child().unwrap();
        let failing = thread::spawn(move || {
            worker.fail("broke");
            drop(worker);
        });
        scope.cancel();
        drop(scope);
        failing.join().unwrap();
        assert_eq!(
            watch.failures().len(),
            1,
            "the failure was lost against the drain"
        );
        assert!(root.failures().is_empty(), "the failure left its scope");
        assert!(!root.is_cancelled());
    });
}
