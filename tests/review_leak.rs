//! Guarantee 6 with a panicking waker (13): a `Phaser` whose drop drains
//! its node and wakes a waker that panics leaks the node. `release_owner`
//! raises the held panic before `Phaser::drop` releases the owner's count.
//! (Miri reports the leak too.)
//! Run: cargo test --release --test review_leak
// Without `std` a waker runs inside event-listener's notify (README,
// "Wakers"): these wakers that act or panic need it.
#![cfg(feature = "std")]
mod review_util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use phaseout::Phaser;
use review_util::{poll_with, waker};

/// Counts this thread's allocations only: the tests of this file run in
/// parallel (and the harness allocates beside them), so a global count
/// would add the other thread's allocations to the one measured.
struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Allocations made by this thread.
    static ALLOCS: Cell<isize> = const { Cell::new(0) };
}

fn add(counter: &'static std::thread::LocalKey<Cell<isize>>, by: isize) {
    // `try_with`: an allocation while this thread's locals are torn down
    // is not counted rather than aborting the test.
    let _ = counter.try_with(|c| c.set(c.get() + by));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn allocs() -> isize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator and only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(&LIVE, layout.size() as isize);
        add(&ALLOCS, 1);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(&LIVE, -(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn one_cycle() {
    let phaser = Phaser::new();
    let mut cancelled = phaser.token().cancelled();
    let panicking = waker(|| panic!("a waker's bug"));
    assert!(poll_with(&mut cancelled, &panicking).is_pending());
    // The drop cancels (wakes the waker) and drains the node at once.
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(phaser)));
    assert!(dropped.is_err(), "the waker's panic comes out of the drop");
    drop(cancelled);
}

#[test]
fn a_panicking_waker_does_not_leak_the_node_its_drop_drained() {
    std::panic::set_hook(Box::new(|_| {})); // quiet
    for _ in 0..100 {
        one_cycle(); // warm-up: thread-locals, the undelivered list
    }
    let before = live();
    for _ in 0..10_000 {
        one_cycle();
    }
    let grown = live() - before;
    let _ = std::panic::take_hook();
    assert!(
        grown < 10_000,
        "10,000 drops with a panicking waker left {grown} bytes allocated"
    );
}

/// Cost (not a contract failure): a future's first pending poll now
/// allocates a relay on top of event-listener's listener, and a finished
/// future keeps its relay (and so the task's waker) until it is dropped.
/// Prints the allocations per "poll pending, drop".
#[test]
fn allocations_of_a_pending_poll() {
    let root = Phaser::new();
    let token = root.token();
    let w = waker(|| {});
    for _ in 0..10 {
        let mut f = token.cancelled();
        let _ = poll_with(&mut f, &w);
    }
    let count_before = allocs();
    let bytes_before = live();
    let mut f = token.cancelled();
    assert!(poll_with(&mut f, &w).is_pending());
    let held = live() - bytes_before;
    let allocs = allocs() - count_before;
    eprintln!("one pending cancelled(): {allocs} allocations, {held} bytes held");
    drop(f);
    assert!(allocs <= 2);
}
