//! Heap bytes per node, phaseout beside tokio-util's child tokens, counted by
//! a global allocator. Not a timing: `cargo bench --bench heap` prints
//! `heap_bytes_per_node <crate> <bytes>` lines that `ci/bench.sh` reads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NODES: usize = 10_000;

/// Bytes per node for `NODES` nodes made by `make` under one parent, minus
/// the vector that holds them.
fn per_node<T>(mut make: impl FnMut() -> T) -> usize {
    let mut nodes: Vec<T> = Vec::with_capacity(NODES);
    let before = ALLOCATED.load(Ordering::Relaxed);
    for _ in 0..NODES {
        nodes.push(make());
    }
    let after = ALLOCATED.load(Ordering::Relaxed);
    drop(nodes);
    (after - before) / NODES
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we ignore.
    let root = phaseout::Phaser::new();
    let phaseout = per_node(|| root.child().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    let tokio_util = per_node(|| token.child_token());
    println!("heap_bytes_per_node phaseout {phaseout}");
    println!("heap_bytes_per_node tokio-util {tokio_util}");
}
