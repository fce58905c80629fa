//! The shutdown scenario every firmware runs, written once and executor-free:
//! the same async functions run on embassy (Cortex-M) and on a hand-written
//! executor (RISC-V).
//!
//! ```text
//! logger     stores filtered samples in "flash"; stops last
//! └── filter     smooths raw samples; depends on the logger
//!     └── sampler    takes samples; stops first
//! ```
//!
//! A power-fail task cancels the root after some samples. The sampler stops
//! sampling at once; the filter passes on every sample already taken; the
//! logger stores every filtered sample. [`check`] then verifies the order of
//! the turns and that nothing was lost: stored == sampled.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt::Arguments;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::shutdown::{Phaser, Token};
use critical_section::Mutex;

/// Where the firmware prints (semihosting, a UART, ...).
pub type Log = fn(Arguments<'_>);

/// A queue between two tasks. Interrupt-safe, though here only tasks use it.
pub struct Pipe(Mutex<RefCell<VecDeque<u32>>>);

impl Pipe {
    const fn new() -> Self {
        Self(Mutex::new(RefCell::new(VecDeque::new())))
    }

    fn push(&self, value: u32) {
        critical_section::with(|cs| self.0.borrow_ref_mut(cs).push_back(value));
    }

    fn pop(&self) -> Option<u32> {
        critical_section::with(|cs| self.0.borrow_ref_mut(cs).pop_front())
    }
}

static RAW: Pipe = Pipe::new();
static FILTERED: Pipe = Pipe::new();
static FLASH: Mutex<RefCell<Vec<u32>>> = Mutex::new(RefCell::new(Vec::new()));
static SAMPLED: Mutex<Cell<u32>> = Mutex::new(Cell::new(0));
static TURNS: Mutex<RefCell<Vec<&'static str>>> = Mutex::new(RefCell::new(Vec::new()));

fn sampled() -> u32 {
    critical_section::with(|cs| SAMPLED.borrow(cs).get())
}

fn record_turn(name: &'static str) {
    critical_section::with(|cs| TURNS.borrow_ref_mut(cs).push(name));
}

/// A pretend sensor reading.
fn reading(n: u32) -> u32 {
    (n * 37 + 11) % 1000
}

/// The filter's work: scale to millivolts.
fn transform(raw: u32) -> u32 {
    raw * 3300 / 1000
}

/// Builds the tree: root ← logger ← filter ← sampler.
pub fn tree() -> (Phaser, [Phaser; 3]) {
    let root = Phaser::named("device");
    let logger = root.child_named("logger").expect("root is live");
    let filter = logger.child_named("filter").expect("logger is live");
    let sampler = filter.child_named("sampler").expect("filter is live");
    (root, [logger, filter, sampler])
}

/// Samples until shutdown is requested, then stops at once.
pub async fn sampler(phaser: Phaser, log: Log) {
    let mut next = 0;
    while !phaser.is_cancelled() {
        RAW.push(reading(next));
        next += 1;
        critical_section::with(|cs| SAMPLED.borrow(cs).set(next));
        yield_now().await;
    }
    phaser.turn().await; // nothing depends on the sampler: at once
    record_turn("sampler");
    log(format_args!("sampler: turn, stopped after {next} samples"));
}

/// Passes samples on until its turn, then passes on what is left.
pub async fn filter(phaser: Phaser, log: Log) {
    let mut passed = 0;
    loop {
        while let Some(raw) = RAW.pop() {
            FILTERED.push(transform(raw));
            passed += 1;
        }
        if phaser.is_turn() {
            break; // the sampler has stopped and everything it took was passed on
        }
        yield_now().await;
    }
    record_turn("filter");
    log(format_args!("filter: turn, passed on {passed} samples"));
}

/// Stores filtered samples until its turn, then stores what is left.
pub async fn logger(phaser: Phaser, log: Log) {
    let mut stored = 0;
    loop {
        while let Some(value) = FILTERED.pop() {
            critical_section::with(|cs| FLASH.borrow_ref_mut(cs).push(value));
            stored += 1;
        }
        if phaser.is_turn() {
            break;
        }
        yield_now().await;
    }
    record_turn("logger");
    log(format_args!(
        "logger: turn, flushed {stored} samples to flash"
    ));
}

/// Cancels the whole tree once `after` samples were taken.
pub async fn power_fail(root: Token, after: u32, log: Log) {
    while sampled() < after {
        yield_now().await;
    }
    log(format_args!(
        "power-fail: {} samples taken, cancelling",
        sampled()
    ));
    root.cancel();
}

/// Checks the order of the turns and that every sample was stored.
pub fn check(log: Log) -> Result<(), &'static str> {
    let turns = critical_section::with(|cs| TURNS.borrow_ref(cs).clone());
    let stored = critical_section::with(|cs| FLASH.borrow_ref(cs).clone());
    let sampled = sampled();
    log(format_args!(
        "order: {turns:?}; sampled {sampled}, stored {}",
        stored.len()
    ));
    if turns != ["sampler", "filter", "logger"] {
        return Err("turns out of order");
    }
    let expected = (0..sampled).map(|n| transform(reading(n)));
    if stored.len() != sampled as usize || !stored.iter().copied().eq(expected) {
        return Err("samples lost");
    }
    Ok(())
}

/// Gives other tasks a chance to run, on any executor.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false)
}
