//! The cases of the Go package `aelse/phase` that inspired this crate,
//! ported: the behaviour its users relied on must hold here too.
#![cfg(feature = "std")]

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use phaseout::Phaser;

type Log = Arc<Mutex<Vec<usize>>>;

/// A component on its own thread: waits for shutdown, optionally works a
/// while, waits for its turn, records its id, finishes.
fn spawn_component(phaser: Phaser, id: usize, work: Duration, log: &Log) -> thread::JoinHandle<()> {
    let log = log.clone();
    thread::spawn(move || {
        phaser.wait_cancelled();
        thread::sleep(work);
        phaser.wait_turn();
        log.lock().unwrap().push(id);
    })
}

#[test]
fn seed_cancelling_a_middle_node_cancels_only_its_subtree() {
    let root = Phaser::new();
    let p0 = root.child().unwrap();
    let p1 = p0.child().unwrap();
    let p2 = p1.child().unwrap();
    let p1_sibling = p0.child().unwrap();
    p1.cancel();
    assert!(p1.is_cancelled() && p2.is_cancelled());
    assert!(!p0.is_cancelled() && !root.is_cancelled() && !p1_sibling.is_cancelled());
    drop(p2);
    assert!(p1.is_turn());
    drop(p1);
    assert_eq!(p0.live_children(), 1, "only the sibling is left");
}

#[test]
fn seed_chain_of_ten_shuts_down_leaf_first() {
    let root = Phaser::new();
    let log = Log::default();
    let mut chain = vec![root.child().unwrap()];
    for _ in 1..10 {
        let next = chain.last().unwrap().child().unwrap();
        chain.push(next);
    }
    // Spawned root-first, so thread start order cannot explain the result.
    let threads: Vec<_> = chain
        .into_iter()
        .enumerate()
        .map(|(depth, phaser)| spawn_component(phaser, depth, Duration::ZERO, &log))
        .collect();
    pollster::block_on(root.shutdown());
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), (0..10).rev().collect::<Vec<_>>());
}

#[test]
fn seed_slow_child_still_stops_before_its_parent() {
    let root = Phaser::new();
    let log = Log::default();
    let parent = root.child().unwrap();
    let child = parent.child().unwrap();
    let threads = [
        spawn_component(parent, 1, Duration::ZERO, &log),
        spawn_component(child, 2, Duration::from_millis(200), &log),
    ];
    pollster::block_on(root.shutdown());
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), [2, 1]);
}

/// The seed's recursive example: each call makes a child phaser and recurses
/// on a new thread; when shut down, the deepest call returns first.
fn recurse(phaser: Phaser, depth: usize, max: usize, log: Log) {
    let deeper = (depth < max).then(|| {
        let child = phaser.child().unwrap();
        let log = log.clone();
        thread::spawn(move || recurse(child, depth + 1, max, log))
    });
    phaser.wait_cancelled();
    phaser.wait_turn();
    log.lock().unwrap().push(depth);
    drop(phaser);
    if let Some(deeper) = deeper {
        deeper.join().unwrap();
    }
}

#[test]
fn seed_recursive_function_tree_of_depth_five_returns_deepest_first() {
    let root = Phaser::new();
    let log = Log::default();
    let top = root.child().unwrap();
    let worker = {
        let log = log.clone();
        thread::spawn(move || recurse(top, 1, 5, log))
    };
    while root.report().entries().len() < 6 {
        thread::yield_now(); // wait until all five levels exist
    }
    root.cancel();
    root.wait_turn();
    worker.join().unwrap();
    assert_eq!(*log.lock().unwrap(), [5, 4, 3, 2, 1]);
}
