//! The racing pairs where one thread may free a node another thread was just
//! using: drops against drops, cancels, reports and turns.
//!
//! Small on purpose: these are the tests Miri runs with preemption over many
//! seeds under Stacked and Tree Borrows (`ci/miri.sh`), where a `&Node`
//! still live while another thread frees the node is reported as undefined
//! behaviour (guarantee 11). Natively they run many rounds.

use std::sync::Barrier;
use std::thread;

use phaseout::Phaser;

/// Rounds per test: few under Miri (it runs each test over many seeds).
const ROUNDS: usize = if cfg!(miri) { 20 } else { 2_000 };

/// Runs `a` and `b` on two threads, released at the same moment.
fn race(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let start = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            start.wait();
            a();
        });
        start.wait();
        b();
    });
}

/// The owner of a child drops it while the owner of its parent drops the
/// parent the moment the child is gone: the child's drain releases the
/// parent's lock, and the parent's owner may drain and free the parent
/// while the child's thread is still returning from that release.
#[test]
fn dropping_a_parent_as_soon_as_its_only_child_unlinked() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        race(
            move || drop(child),
            move || {
                while parent.live_children() != 0 {
                    thread::yield_now();
                }
                drop(parent); // drains and frees it at once
            },
        );
        assert_eq!(root.live_children(), 0);
        assert!(!root.is_cancelled());
    }
}

/// The mirror case: the owner of the parent marks it done while its child
/// is live, and the child, dropped the moment it sees the cancel, drains
/// and frees the parent while the owner's thread is still returning from
/// marking it.
#[test]
fn dropping_a_parent_while_its_last_child_drains_it() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        race(
            move || drop(parent), // cancels the child, then marks itself done
            move || {
                while !child.is_cancelled() {
                    thread::yield_now();
                }
                drop(child);
            },
        );
        assert_eq!(root.live_children(), 0);
    }
}

/// Two children drain the same owner-less parent from two threads, with a
/// turn waiter on the grandparent.
#[test]
fn two_last_children_drain_an_ownerless_parent() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let a = parent.child().unwrap();
        let b = parent.child().unwrap();
        root.cancel();
        drop(parent);
        race(move || drop(a), move || drop(b));
        pollster::block_on(root.turn());
        assert_eq!(root.live_children(), 0);
    }
}

/// A cancel walk over a subtree whose nodes drain and are freed under it.
#[test]
fn cancelling_while_the_subtree_drops() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let children: Vec<_> = (0..3).map(|_| parent.child().unwrap()).collect();
        let token = root.token();
        race(
            move || {
                drop(children);
                drop(parent);
            },
            move || token.cancel(),
        );
        pollster::block_on(root.turn());
    }
}

/// A report walks the tree while its nodes drain and are freed.
#[test]
fn reporting_while_the_subtree_drops() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        race(
            move || {
                drop(child);
                drop(parent);
            },
            || {
                let report = root.report();
                assert!(!report.entries().is_empty() && report.entries().len() <= 3);
            },
        );
        assert_eq!(root.report().entries().len(), 1);
    }
}

/// A task waits for its node's turn while the last child drains it and the
/// owner drops the node the moment the turn comes.
#[test]
fn turn_waiter_against_the_draining_child() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        root.cancel();
        race(
            move || drop(child),
            move || pollster::block_on(parent.turn()),
        );
        assert_eq!(root.live_children(), 0);
    }
}

/// Two cancels of nested nodes with waiters on both: every waiter wakes,
/// and the tokens stay usable after everything drained.
#[test]
fn nested_cancels_with_waiters() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let mid = root.child().unwrap();
        let leaf = mid.child().unwrap();
        let (root_token, mid_token, leaf_token) = (root.token(), mid.token(), leaf.token());
        let waiter = thread::spawn(move || pollster::block_on(leaf_token.cancelled()));
        race(move || root_token.cancel(), move || mid_token.cancel());
        waiter.join().unwrap();
        let late = leaf.token();
        drop((leaf, mid));
        drop(root);
        assert!(late.is_cancelled());
        late.cancel(); // a drained node: nothing to walk
    }
}

/// A cause read through a leaf's token while another thread cancels the
/// tree with a cause and drops every `Phaser` above (freeing those nodes):
/// the cause lives in the leaf, so the read touches nothing freed.
#[test]
fn reading_a_cause_while_the_tree_above_is_freed() {
    for _ in 0..ROUNDS {
        let root = Phaser::named("root");
        let middle = root.child().unwrap();
        let leaf = middle.child_named("leaf").unwrap();
        let token = leaf.token();
        race(
            move || {
                root.cancel_with(String::from("stop"));
                drop((leaf, middle, root));
            },
            || {
                let cause = token.cause().map(|cause| cause.to_string());
                assert!(cause.is_none() || cause.as_deref() == Some("stop"));
            },
        );
        assert_eq!(token.cause().unwrap().to_string(), "stop");
    }
}

/// `cancel_with` and `abort` on nested nodes against the drop of the
/// nodes between them: both walks hand causes down through nodes that are
/// being unlinked and freed.
#[test]
fn cancel_with_and_abort_while_the_subtree_drops() {
    for _ in 0..ROUNDS {
        let root = Phaser::new();
        let middle = root.child().unwrap();
        let leaf = middle.child().unwrap();
        let leaf_token = leaf.token();
        let root_token = root.token();
        race(
            move || {
                drop(middle);
                drop(leaf);
            },
            || {
                root_token.cancel_with("outer");
                root_token.abort();
            },
        );
        assert!(leaf_token.is_cancelled());
        assert!(root.is_aborted() && root.is_turn());
    }
}
