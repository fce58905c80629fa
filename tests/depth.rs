//! Guarantee 7 (depth) and wide trees: no recursion over the tree, so a
//! million-deep chain is cancelled, drained and freed on a 256 KiB stack.

mod common;

use std::thread;

use common::scaled;
use phaseout::Phaser;

const SMALL_STACK: usize = 256 * 1024;

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn chain(root: &Phaser, depth: usize) -> Vec<Phaser> {
    let mut nodes: Vec<Phaser> = Vec::with_capacity(depth);
    for _ in 0..depth {
        let next = nodes.last().unwrap_or(root).child().unwrap();
        nodes.push(next);
    }
    nodes
}

#[test]
fn depth_million_chain_cancelled_then_dropped_leaf_first() {
    let depth = scaled(1_000_000, 200);
    on_small_stack(move || {
        let root = Phaser::new();
        let mut nodes = chain(&root, depth);
        root.cancel();
        assert!(nodes.last().unwrap().is_cancelled());
        assert!(nodes.last().unwrap().is_turn());
        assert!(!root.is_turn());
        while let Some(node) = nodes.pop() {
            drop(node);
        }
        assert!(root.is_turn());
    });
}

#[test]
fn depth_million_chain_dropped_root_first_drains_in_one_cascade() {
    let depth = scaled(1_000_000, 200);
    on_small_stack(move || {
        let root = Phaser::new();
        let nodes = chain(&root, depth);
        let token = nodes[0].token();
        // Drop every owner from the top: each drop cancels (one load for all
        // but the first) and leaves a "finishing" node waiting for its child.
        let mut nodes = nodes.into_iter();
        let leaf = nodes.next_back().unwrap();
        for node in nodes {
            drop(node);
        }
        assert!(token.is_cancelled());
        assert_eq!(root.live_children(), 1);
        // The leaf's drop drains the whole chain (a million-step cascade)
        // and frees it (a million-step drop loop).
        drop(leaf);
        assert_eq!(root.live_children(), 0);
        drop(token);
    });
}

#[test]
fn depth_million_chain_freed_from_a_token_of_the_leaf() {
    // The leaf's token keeps the whole chain's memory alive until it goes;
    // freeing it then walks up a million parents without recursion.
    let depth = scaled(1_000_000, 200);
    on_small_stack(move || {
        let root = Phaser::new();
        let nodes = chain(&root, depth);
        let leaf_token = nodes.last().unwrap().token();
        drop(nodes); // Vec drops first to last: root-first
        assert_eq!(root.live_children(), 0);
        assert!(leaf_token.is_cancelled());
        drop(root);
        drop(leaf_token);
    });
}

#[test]
fn wide_hundred_thousand_children_under_one_root() {
    let width = scaled(100_000, 300);
    on_small_stack(move || {
        let root = Phaser::new();
        let children: Vec<_> = (0..width).map(|_| root.child().unwrap()).collect();
        assert_eq!(root.live_children(), width);
        assert_eq!(root.report().entries().len(), width + 1);
        root.cancel();
        assert!(children.iter().all(Phaser::is_cancelled));
        assert!(!root.is_turn());
        drop(children);
        assert!(root.is_turn());
        assert_eq!(root.report().entries().len(), 1);
    });
}

#[test]
fn deep_report_does_not_recurse() {
    let depth = scaled(100_000, 100);
    on_small_stack(move || {
        let root = Phaser::new();
        let nodes = chain(&root, depth);
        let report = root.report();
        assert_eq!(report.entries().len(), depth + 1);
        assert_eq!(report.entries().last().unwrap().depth(), depth);
        drop(nodes);
    });
}
