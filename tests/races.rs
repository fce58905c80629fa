//! Guarantees under real thread races. Each of these went red when the code
//! was broken on purpose. The numbers are those of the crate docs,
//! "Guarantees".
#![cfg(feature = "std")]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{scaled, within_a_minute, Sequence};
use phaseout::Phaser;

// ===== 1. Order: random trees, one thread per node =====

struct RandomTree {
    /// parent index of each node (node 0 is the root's first child).
    parents: Vec<Option<usize>>,
}

impl RandomTree {
    fn new(rng: &mut fastrand::Rng, nodes: usize) -> Self {
        let parents = (0..nodes)
            .map(|i| if i == 0 { None } else { Some(rng.usize(0..i)) })
            .collect();
        Self { parents }
    }

    fn is_descendant(&self, mut node: usize, ancestor: usize) -> bool {
        while let Some(parent) = self.parents[node] {
            if parent == ancestor {
                return true;
            }
            node = parent;
        }
        false
    }
}

fn run_random_tree(seed: u64, nodes: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let tree = RandomTree::new(&mut rng, nodes);
    let root = Phaser::new();
    let mut phasers: Vec<Phaser> = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let parent = match tree.parents[i] {
            None => &root,
            Some(p) => &phasers[p],
        };
        let child = parent.child().unwrap();
        phasers.push(child);
    }
    let sequence = Arc::new(Sequence::new());
    let turn_at: Arc<Vec<AtomicUsize>> =
        Arc::new((0..nodes).map(|_| AtomicUsize::new(0)).collect());
    let dropped_at: Arc<Vec<AtomicUsize>> =
        Arc::new((0..nodes).map(|_| AtomicUsize::new(0)).collect());
    let threads: Vec<_> = phasers
        .into_iter()
        .enumerate()
        .map(|(i, phaser)| {
            let (sequence, turn_at, dropped_at) =
                (sequence.clone(), turn_at.clone(), dropped_at.clone());
            let delays = [rng.u64(0..200), rng.u64(0..200)];
            thread::spawn(move || {
                phaser.wait_cancelled();
                thread::sleep(Duration::from_micros(delays[0]));
                phaser.wait_turn();
                turn_at[i].store(sequence.next(), Ordering::SeqCst);
                thread::sleep(Duration::from_micros(delays[1]));
                dropped_at[i].store(sequence.next(), Ordering::SeqCst);
                drop(phaser);
            })
        })
        .collect();
    thread::sleep(Duration::from_micros(rng.u64(0..500)));
    root.cancel();
    root.wait_turn();
    let root_turn = sequence.next();
    for thread in threads {
        thread.join().unwrap();
    }
    for node in 0..nodes {
        let turn = turn_at[node].load(Ordering::SeqCst);
        for other in 0..nodes {
            if tree.is_descendant(other, node) {
                let dropped = dropped_at[other].load(Ordering::SeqCst);
                assert!(
                    dropped < turn,
                    "seed {seed}: node {node} got its turn (#{turn}) before its descendant {other} was dropped (#{dropped})"
                );
            }
        }
        assert!(
            dropped_at[node].load(Ordering::SeqCst) < root_turn,
            "seed {seed}: root's turn before node {node} dropped"
        );
    }
}

#[test]
fn order_random_trees_every_turn_after_every_descendant_dropped() {
    let seeds = scaled(30, 2) as u64;
    let nodes = scaled(200, 12);
    for seed in 0..seeds {
        within_a_minute("random tree", move || run_random_tree(seed, nodes));
    }
}

// ===== 3. At once, under races =====

#[test]
fn at_once_no_lost_wakeups_between_cancel_and_waiters() {
    for _ in 0..scaled(300, 5) {
        let root = Phaser::new();
        let node = root.child().unwrap();
        let start = Arc::new(Barrier::new(3));
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let start = start.clone();
                let token = node.token();
                thread::spawn(move || {
                    start.wait();
                    if i == 0 {
                        token.wait_cancelled();
                    } else {
                        pollster::block_on(token.cancelled());
                    }
                    assert!(token.is_cancelled());
                })
            })
            .collect();
        within_a_minute("cancel vs waiters", move || {
            start.wait();
            root.cancel();
            for waiter in waiters {
                waiter.join().unwrap();
            }
        });
    }
}

#[test]
fn at_once_cancel_returns_only_when_the_subtree_is_cancelled_even_if_an_ancestor_races() {
    for _ in 0..scaled(100, 3) {
        let root = Phaser::new();
        let middle = root.child().unwrap();
        // A wide subtree under `middle`, so the ancestor's walk takes a while.
        let leaves: Vec<_> = (0..scaled(2000, 20))
            .map(|_| middle.child().unwrap())
            .collect();
        let tokens: Vec<_> = leaves.iter().map(Phaser::token).collect();
        let ancestor = {
            let root_token = root.token();
            thread::spawn(move || root_token.cancel())
        };
        // Start our own cancel the moment the ancestor's walk reached
        // `middle`: it is then somewhere among the leaves.
        while !middle.is_cancelled() {
            std::hint::spin_loop();
        }
        middle.cancel();
        let missed = tokens.iter().filter(|token| !token.is_cancelled()).count();
        assert_eq!(
            missed, 0,
            "cancel() returned while {missed} nodes of its subtree were live"
        );
        ancestor.join().unwrap();
        drop(leaves);
    }
}

// ===== 4. Refusal: child() racing cancel() =====

#[test]
fn refusal_child_racing_cancel_is_atomic() {
    for _ in 0..scaled(200, 4) {
        let parent = Arc::new(Phaser::new());
        let start = Arc::new(Barrier::new(3));
        let makers: Vec<_> = (0..2)
            .map(|_| {
                let (parent, start) = (parent.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    let mut created = Vec::new();
                    while let Ok(child) = parent.child() {
                        created.push(child);
                    }
                    // Once refused, never accepted again.
                    for _ in 0..10 {
                        assert!(
                            parent.child().is_err(),
                            "a refused child() was accepted later"
                        );
                    }
                    created
                })
            })
            .collect();
        start.wait();
        thread::yield_now();
        parent.cancel();
        let mut children: Vec<Phaser> =
            makers.into_iter().flat_map(|m| m.join().unwrap()).collect();
        assert!(
            children.iter().all(Phaser::is_cancelled),
            "a child created during cancel() escaped it"
        );
        assert_eq!(parent.live_children(), children.len());
        while let Some(child) = children.pop() {
            assert!(
                !parent.is_turn(),
                "turn came while {} created children were live",
                children.len() + 1
            );
            drop(child);
        }
        assert!(parent.is_turn());
    }
}

#[test]
fn refusal_child_created_in_the_cancel_window_is_cancelled() {
    // The narrow window: child() reserved its slot before the cancel, but
    // links after the walk read the list. The child must come back cancelled.
    for _ in 0..scaled(3000, 20) {
        let parent = Arc::new(Phaser::new());
        let go = Arc::new(AtomicBool::new(false));
        let maker = {
            let (parent, go) = (parent.clone(), go.clone());
            thread::spawn(move || {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                parent.child().ok()
            })
        };
        go.store(true, Ordering::Release);
        parent.cancel();
        if let Some(child) = maker.join().unwrap() {
            assert!(child.is_cancelled(), "child of a cancelled parent is live");
            assert!(!parent.is_turn());
        }
    }
}

// ===== 1 + 5. Draining races =====

#[test]
fn order_last_two_children_draining_on_two_threads_give_exactly_one_turn() {
    for _ in 0..scaled(300, 5) {
        let parent = Phaser::new();
        let a = parent.child().unwrap();
        let b = parent.child().unwrap();
        parent.cancel();
        let start = Arc::new(Barrier::new(2));
        let other = {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                drop(a);
            })
        };
        start.wait();
        drop(b);
        within_a_minute("turn after two concurrent drains", move || {
            pollster::block_on(parent.turn());
            assert_eq!(parent.live_children(), 0);
        });
        other.join().unwrap();
    }
}

#[test]
fn drop_parent_and_only_child_concurrently_drains_the_grandparent() {
    for _ in 0..scaled(300, 5) {
        let root = Phaser::new();
        let parent = root.child().unwrap();
        let child = parent.child().unwrap();
        let start = Arc::new(Barrier::new(2));
        let other = {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                drop(child);
            })
        };
        start.wait();
        drop(parent);
        other.join().unwrap();
        assert_eq!(
            root.live_children(),
            0,
            "the parent must drain exactly once"
        );
        root.cancel();
        assert!(root.is_turn());
    }
}

#[test]
fn drop_owner_the_moment_its_turn_comes_while_the_last_child_wakes_it() {
    // The waking child touches the parent after giving its count back; the
    // parent's owner may drop (and free) it at that very moment. Miri runs
    // this to check the child holds the parent alive across the wake.
    for _ in 0..scaled(300, 10) {
        let parent = Phaser::new();
        let child = parent.child().unwrap();
        parent.cancel();
        let start = Arc::new(Barrier::new(2));
        let owner = {
            let start = start.clone();
            thread::spawn(move || {
                let mut turn = std::pin::pin!(parent.turn());
                let waker = std::task::Waker::from(Arc::new(common::CountingWaker::default()));
                let mut cx = std::task::Context::from_waker(&waker);
                let registered = turn.as_mut().poll(&mut cx).is_pending();
                start.wait();
                if registered {
                    while turn.as_mut().poll(&mut cx).is_pending() {
                        std::hint::spin_loop();
                    }
                }
                drop(parent); // frees the node at once
            })
        };
        start.wait();
        drop(child);
        owner.join().unwrap();
    }
}
