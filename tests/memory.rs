//! Guarantee 6 (bounded memory), measured with a counting global allocator.
//! The count is per thread (the test harness allocates on its own threads
//! meanwhile), so each test does its work on its own thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::task::Poll;

use common::{poll_once, scaled, CountingWaker};
use phaseout::Phaser;

struct Counting;

thread_local! {
    // Const-initialized and without a destructor, so the allocator may use
    // it at any time.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator and only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.with(|live| live.set(live.get() + layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.with(|live| live.set(live.get() - layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.with(Cell::get)
}

#[test]
fn bounded_memory_million_create_drop_cycles_under_a_live_root_stay_flat() {
    let root = Phaser::named("root");
    let keep = root.child().unwrap(); // the list is never empty either
    let before = live();
    for i in 0..scaled(1_000_000, 500) {
        let child = root.child().unwrap();
        if i % 3 == 0 {
            let grandchild = child.child().unwrap();
            drop(child); // parent first: drains via the grandchild
            drop(grandchild);
        } else {
            drop(child);
        }
    }
    assert_eq!(
        live(),
        before,
        "a live parent must keep nothing of drained children"
    );
    drop(keep);
}

#[test]
fn bounded_memory_drained_node_is_freed_once_no_handle_refers_to_it() {
    let root = Phaser::new();
    let before = live();
    let child = root.child().unwrap();
    let token = child.token();
    let with_child = live();
    assert!(with_child > before);
    drop(child);
    assert_eq!(root.live_children(), 0);
    assert_eq!(
        live(),
        with_child,
        "the token still refers to the drained node"
    );
    drop(token);
    assert_eq!(live(), before, "drained and unreferenced: freed");
}

#[test]
fn bounded_memory_waiters_and_reports_leave_nothing_behind() {
    let root = Phaser::named("root");
    let (_, waker) = CountingWaker::new();
    let mut before = live();
    for round in 0..scaled(100_000, 50) {
        if round == 1 {
            // The root's waiter list is allocated by the first `turn()` that
            // waits on it, and then lives as long as the root.
            before = live();
        }
        let child = root.child_named("child").unwrap();
        let mut cancelled = child.cancelled();
        let mut turn = root.turn();
        assert!(poll_once(&mut cancelled, &waker).is_pending());
        assert!(!child.report().to_string().is_empty());
        child.cancel();
        assert_eq!(poll_once(&mut cancelled, &waker), Poll::Ready(()));
        assert!(poll_once(&mut turn, &waker).is_pending());
        drop((cancelled, turn, child));
    }
    assert_eq!(
        live(),
        before,
        "waiters and reports must free what they took"
    );
}

#[test]
fn heap_bytes_of_one_unlabeled_node() {
    let root = Phaser::new();
    let before = live();
    let children: Vec<_> = (0..1000).map(|_| root.child().unwrap()).collect();
    let per_node =
        (live() - before - (children.capacity() * std::mem::size_of::<Phaser>()) as isize) / 1000;
    println!("heap bytes per unlabeled node: {per_node}");
    // Eight words (64 bytes on 64-bit targets), causes and abort included:
    // the label pointer doubles as the cause slot.
    let eight_words = 8 * std::mem::size_of::<usize>() as isize;
    assert!(
        per_node > 0 && per_node <= eight_words,
        "a node takes {per_node} bytes"
    );
    // Cancelling them (plainly) and dropping them allocates nothing for
    // causes: only a `cancel_with` or a drop with live children does.
    let token = root.token();
    let live_tree = live();
    root.cancel();
    assert_eq!(live(), live_tree, "a plain cancel keeps nothing");
    assert!(token.cause().is_none());
    drop(children);
}
