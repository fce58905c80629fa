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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, Ordering};

use phaseout::Phaser;
use review_util::{poll_with, waker};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
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
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        one_cycle();
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let _ = std::panic::take_hook();
    assert!(
        grown < 10_000,
        "10,000 drops with a panicking waker left {grown} bytes allocated"
    );
}

static ALLOCS: AtomicIsize = AtomicIsize::new(0);

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
    let count_before = ALLOCS.load(Ordering::Relaxed);
    let bytes_before = LIVE.load(Ordering::Relaxed);
    let mut f = token.cancelled();
    assert!(poll_with(&mut f, &w).is_pending());
    let held = LIVE.load(Ordering::Relaxed) - bytes_before;
    let allocs = ALLOCS.load(Ordering::Relaxed) - count_before;
    eprintln!("one pending cancelled(): {allocs} allocations, {held} bytes held");
    drop(f);
    assert!(allocs <= 2);
}
