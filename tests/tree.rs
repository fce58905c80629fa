//! Guarantees 1–5 and 10 on a tree: order, scope, at once, refusal, drop,
//! and bad use, single-threaded and hand-polled so every wake-up is counted
//! exactly. The same under real thread races is in `races.rs`, scale in
//! `depth.rs` and `memory.rs`, executors in `executors.rs`.

mod common;

use std::future::{pending, ready};
use std::task::Poll;

use common::{poll_once, CountingWaker};
use futures_core::FusedFuture;
use phaseout::{NodeState, Phaser, ShutdownStarted};

// ===== 1. Order =====

#[test]
fn order_turn_waits_for_every_descendant() {
    let root = Phaser::named("root");
    let a = root.child_named("a").unwrap();
    let b = a.child_named("b").unwrap();
    let (counter, waker) = CountingWaker::new();
    let mut turn = root.turn();

    root.cancel();
    assert_eq!(poll_once(&mut turn, &waker), Poll::Pending);
    assert!(!root.is_turn());
    assert!(!a.is_turn(), "a still has a live child");
    assert!(b.is_turn(), "b has no children");

    drop(b);
    assert!(!root.is_turn(), "a is not drained yet");
    assert!(a.is_turn());
    assert_eq!(poll_once(&mut turn, &waker), Poll::Pending);
    let wakes_before_last_drain = counter.wakes();

    drop(a);
    assert!(root.is_turn());
    assert!(
        counter.wakes() > wakes_before_last_drain,
        "the last drain must wake the turn"
    );
    assert_eq!(poll_once(&mut turn, &waker), Poll::Ready(()));
}

#[test]
fn order_owner_done_child_still_blocks_grandparent_until_its_child_drains() {
    let root = Phaser::new();
    let a = root.child().unwrap();
    let b = a.child().unwrap();
    root.cancel();
    drop(a); // a's owner is done, but b is live: a is "finishing", not drained
    assert_eq!(root.live_children(), 1);
    assert!(!root.is_turn());
    assert_eq!(root.report().entries()[1].state(), NodeState::Finishing);
    drop(b); // drains b, then a (cascade), then gives root its turn
    assert_eq!(root.live_children(), 0);
    assert!(root.is_turn());
}

#[test]
fn order_turn_is_never_ready_on_a_live_node() {
    let root = Phaser::new();
    let (_, waker) = CountingWaker::new();
    assert!(!root.is_turn(), "no children, but not cancelled either");
    assert_eq!(poll_once(&mut root.turn(), &waker), Poll::Pending);
}

// ===== 2. Scope =====

#[test]
fn scope_cancel_reaches_exactly_the_subtree() {
    let root = Phaser::new();
    let left = root.child().unwrap();
    let right = root.child().unwrap();
    let left_child = left.child().unwrap();
    let right_child = right.child().unwrap();
    let left_grandchild = left_child.child().unwrap();

    left.cancel();

    assert!(left.is_cancelled() && left_child.is_cancelled() && left_grandchild.is_cancelled());
    assert!(!root.is_cancelled(), "ancestor must stay live");
    assert!(
        !right.is_cancelled() && !right_child.is_cancelled(),
        "sibling subtree must stay live"
    );
    assert!(
        right.child().is_ok(),
        "a live sibling still accepts children"
    );
}

#[test]
fn scope_token_cancel_has_the_same_scope() {
    let root = Phaser::new();
    let a = root.child().unwrap();
    let b = root.child().unwrap();
    let a_child = a.child().unwrap();
    a_child.token().cancel();
    assert!(a_child.is_cancelled());
    assert!(!a.is_cancelled() && !b.is_cancelled() && !root.is_cancelled());
}

// ===== 3. At once =====

/// Builds a tree of `fanout`^`depth` nodes below `root`, returning all nodes.
fn build_tree(root: &Phaser, fanout: usize, depth: usize) -> Vec<Phaser> {
    let mut all = Vec::new();
    let mut level = vec![root.child().unwrap()];
    for _ in 1..depth {
        let mut next = Vec::new();
        for parent in &level {
            for _ in 0..fanout {
                next.push(parent.child().unwrap());
            }
        }
        all.append(&mut level);
        level = next;
    }
    all.append(&mut level);
    all
}

#[test]
fn at_once_every_node_cancelled_and_every_waiter_woken_when_cancel_returns() {
    let root = Phaser::new();
    let nodes = build_tree(&root, 3, 4); // 1 + 3 + 9 + 27 nodes
    let mut waiters: Vec<_> = nodes
        .iter()
        .map(|node| {
            let (counter, waker) = CountingWaker::new();
            let mut cancelled = node.cancelled();
            assert_eq!(poll_once(&mut cancelled, &waker), Poll::Pending);
            (counter, waker, cancelled)
        })
        .collect();
    let tokens: Vec<_> = nodes.iter().map(Phaser::token).collect();

    root.cancel();

    for (counter, waker, cancelled) in &mut waiters {
        assert_eq!(
            counter.wakes(),
            1,
            "exactly one wake-up per waiter, delivered by cancel()"
        );
        assert_eq!(poll_once(cancelled, waker), Poll::Ready(()));
    }
    assert!(nodes.iter().all(Phaser::is_cancelled));
    assert!(tokens.iter().all(phaseout::Token::is_cancelled));
}

#[test]
fn at_once_cancel_of_a_node_under_an_already_cancelled_one_still_covers_its_subtree() {
    // A second cancel() must not return early just because the node is
    // already cancelled: here the tree is consistent, so it is a no-op.
    let root = Phaser::new();
    let a = root.child().unwrap();
    let b = a.child().unwrap();
    root.cancel();
    a.cancel();
    assert!(b.is_cancelled());
}

// ===== 4. Refusal =====

#[test]
fn refusal_cancelled_node_accepts_no_child_and_creates_none() {
    let root = Phaser::named("root");
    let a = root.child_named("a").unwrap();
    root.cancel();
    let err: ShutdownStarted = root.child().unwrap_err();
    assert_eq!(err.label(), Some("root"));
    assert_eq!(a.child_named("late").unwrap_err().label(), Some("a"));
    assert_eq!(root.live_children(), 1, "a refused child is not counted");
    assert_eq!(a.live_children(), 0);
    assert!(root.report().find("late").is_none(), "no node was created");
}

#[test]
fn refusal_turn_once_given_is_never_taken_back() {
    let root = Phaser::new();
    root.cancel();
    assert!(root.is_turn());
    assert!(root.child().is_err());
    assert!(root.is_turn());
}

// ===== 5. Drop =====

#[test]
fn drop_with_live_children_cancels_them_and_drains_when_the_last_one_does() {
    let grandparent = Phaser::new();
    let parent = grandparent.child().unwrap();
    let kids: Vec<_> = (0..3).map(|_| parent.child().unwrap()).collect();
    let (counter, waker) = CountingWaker::new();
    let mut kid_cancelled = kids[0].cancelled();
    assert_eq!(poll_once(&mut kid_cancelled, &waker), Poll::Pending);

    drop(parent); // returns at once although three children are live
    assert!(kids.iter().all(Phaser::is_cancelled));
    assert_eq!(counter.wakes(), 1);
    assert!(
        !grandparent.is_cancelled(),
        "dropping does not cancel upwards"
    );
    assert_eq!(
        grandparent.live_children(),
        1,
        "parent waits for its children"
    );

    let mut kids = kids;
    kids.pop();
    kids.pop();
    assert_eq!(grandparent.live_children(), 1);
    kids.pop();
    assert_eq!(
        grandparent.live_children(),
        0,
        "last child drained: parent drained"
    );
}

#[cfg(feature = "std")]
#[test]
fn drop_while_panicking_drains_and_is_marked_panicked() {
    let root = Phaser::named("root");
    let worker = root.child_named("worker").unwrap();
    let _helper = worker.child_named("helper").unwrap(); // keeps worker un-drained
    let result = std::thread::spawn(move || {
        let _owned = worker;
        panic!("worker failed");
    })
    .join();
    assert!(result.is_err());
    let report = root.report();
    let worker_entry = report.find("worker").expect("worker has a live child");
    assert!(worker_entry.panicked());
    assert_eq!(worker_entry.state(), NodeState::Finishing);
    assert!(report
        .to_string()
        .contains("worker: owner panicked, waiting for 1 child to finish"));
    assert!(!report.find("root").unwrap().panicked());
    drop(_helper);
    assert_eq!(
        root.live_children(),
        0,
        "a panicked owner drains the same way"
    );
}

// ===== 10. Bad use =====

#[test]
fn bad_use_cancel_twice_is_a_no_op() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    let (counter, waker) = CountingWaker::new();
    let mut cancelled = child.cancelled();
    assert_eq!(poll_once(&mut cancelled, &waker), Poll::Pending);
    root.cancel();
    root.cancel();
    root.token().cancel();
    assert_eq!(counter.wakes(), 1);
    assert_eq!(root.live_children(), 1);
    assert!(child.is_cancelled());
}

#[test]
fn bad_use_hung_child_blocks_turn_forever_and_is_named() {
    let root = Phaser::named("root");
    let _hung = root.child_named("hung").unwrap();
    root.cancel();
    let (_, waker) = CountingWaker::new();
    let mut turn = root.turn();
    for _ in 0..3 {
        assert_eq!(poll_once(&mut turn, &waker), Poll::Pending);
    }
    let report = root.report();
    assert_eq!(report.find("hung").unwrap().state(), NodeState::Turn);
    let mut within = root.turn_within(ready(()));
    let Poll::Ready(Err(stragglers)) = poll_once(&mut within, &waker) else {
        panic!("deadline passed: turn_within must give the stragglers");
    };
    assert!(stragglers.find("hung").is_some());
    assert!(stragglers
        .to_string()
        .contains("hung: its turn came, its owner has not finished"));
}

#[test]
fn bad_use_turn_within_prefers_ok_when_both_are_ready() {
    let root = Phaser::new();
    root.cancel();
    let (_, waker) = CountingWaker::new();
    assert!(matches!(
        poll_once(&mut root.turn_within(ready(())), &waker),
        Poll::Ready(Ok(()))
    ));
}

#[test]
fn bad_use_turn_within_pending_until_one_side_is_ready() {
    let root = Phaser::new();
    let child = root.child().unwrap();
    root.cancel();
    let (counter, waker) = CountingWaker::new();
    let mut within = root.turn_within(pending::<()>());
    assert!(poll_once(&mut within, &waker).is_pending());
    assert!(!within.is_terminated());
    drop(child);
    assert!(counter.wakes() >= 1);
    assert!(matches!(
        poll_once(&mut within, &waker),
        Poll::Ready(Ok(()))
    ));
    assert!(within.is_terminated());
    assert!(
        matches!(poll_once(&mut within, &waker), Poll::Ready(Ok(()))),
        "stays ready"
    );
}
