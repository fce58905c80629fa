//! An interrupt handler shuts a phaseout tree down under true preemption, on
//! a Cortex-M3 and a Cortex-M0 under QEMU, for hundreds of rounds.
//!
//! Each round builds the scenario's tree (`device` ← `logger` ← `filter` ←
//! `sampler`) and arms a timer. The "power-fail" interrupt (SysTick on the
//! LM3S6965, TIMER0 on the nRF51 of the micro:bit) calls
//! `cancel_with("power fail")` on the root; its next interrupt in the same
//! round calls `abort()`. Meanwhile thread mode, hand-polling the three
//! components with a no-op waker, never stops touching the tree: a child
//! node per sample, a `cancelled()` future registered and dropped per
//! sample, `report()`s of the whole tree, `turn()` and `aborted()` futures,
//! drains. The timer fires after a different delay each round, so the
//! interrupt preempts thread mode in every one of those states; a
//! `static STATE` that the handler reads says which, and the summary counts
//! them.
//!
//! One round in four, the sampler also *fails* ("sensor fault") at a sample
//! the plan picks, with `Phaser::fail`: the failure is recorded in the root
//! (the tree's scope) and cancels the tree, racing the interrupt's cancel,
//! which may land before the fail, inside it, or after it. The abort comes
//! as in every round.
//!
//! Every round checks: the turns came sampler, filter, logger, device; every
//! sample taken was stored, in order; every node's cause reads
//! "power fail", or "sensor fault" if the fail came first (either, node by
//! node, if the interrupt landed inside the fail: first cause wins per
//! node); the root's failure list holds exactly the sampler's failure in a
//! round where it failed and nothing otherwise, also read through a token
//! after the tree drained; the root and every component still running at
//! the abort read `is_aborted()`; no report shows an impossible state. A violation
//! panics, which exits QEMU with status 1; a hang is left to the runner's
//! timeout.
//!
//! This is why firmware enables phaseout's `critical-section` feature.
//! Without it the same firmware hangs within the first few dozen rounds on
//! both cores: the handler's cancel spins forever on a lock that the code
//! it preempted holds, event-listener's waiter list (thread mode was
//! registering or dropping a future) or a node's child list (thread mode
//! was in `child()`, a drop or a report).
//!
//! QEMU's micro:bit has a SysTick too; TIMER0 is used there so that one of
//! the two runs takes a peripheral interrupt through the NVIC.
//!
//! Run from this directory: `cargo run --release` (Cortex-M3, lm3s6965evb)
//! or `cargo run --release --target thumbv6m-none-eabi --features m0`
//! (Cortex-M0, micro:bit, no compare-and-swap). The last line printed is
//! the summary that `ci/firmware.sh` checks.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt::{self, Write as _};
use core::future::Future;
use core::mem::MaybeUninit;
use core::pin::{pin, Pin};
use core::sync::atomic::{compiler_fence, AtomicU32, AtomicU8, Ordering};
use core::task::{Context, Poll, Waker};

use cortex_m as _; // links the critical-section implementation
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use critical_section::Mutex;
use embedded_alloc::LlffHeap as Heap;
use phaseout::{Cause, NodeState, Phaser, Token};

#[global_allocator]
static HEAP: Heap = Heap::empty();
const HEAP_SIZE: usize = 8 * 1024;

/// Rounds per run: two to three seconds of QEMU time on either target.
const ROUNDS: u32 = 1000;

/// The cause the handler gives; every node must read it back.
const POWER_FAIL: &str = "power fail";
/// The cause of the sampler's failure, in the rounds where it fails.
const SENSOR_FAULT: &str = "sensor fault";

// ---------------------------------------------------------------------------
// Where thread mode is, as the interrupt handler sees it.

/// What thread mode is doing, written just before each step, so the
/// handler can count where it landed.
static STATE: AtomicU8 = AtomicU8::new(At::Idle as u8);

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum At {
    /// Between rounds, or polling `root.aborted()` with nothing left to do.
    Idle,
    /// Inside `sampler.child()`: links a node into the sampler's list.
    Child,
    /// Dropping a sample's node: unlinks it (a drain once cancelled).
    SampleDrop,
    /// Polling a `cancelled()` or `aborted()` future: registers with
    /// event-listener.
    Poll,
    /// Dropping a registered future: unregisters from event-listener.
    FutureDrop,
    /// Inside `root.report()`: walks every child list.
    Report,
    /// Polling a `turn()` future.
    Turn,
    /// Dropping a component's `Phaser`: its drain, which may give the
    /// parent its turn.
    Drain,
    /// The components' own work (queues, checks) between phaseout calls.
    Work,
    /// Inside the sampler's `fail()`: records the failure, then cancels.
    Fail,
}

const STATES: usize = 10;
const STATE_NAMES: [&str; STATES] = [
    "idle",
    "child",
    "sample-drop",
    "poll",
    "future-drop",
    "report",
    "turn",
    "drain",
    "work",
    "fail",
];

/// Marks what thread mode does next.
#[inline(always)]
fn at(state: At) {
    // The fences keep the compiler from moving the step across the mark:
    // the handler's reading is only as good as that order.
    compiler_fence(Ordering::SeqCst);
    STATE.store(state as u8, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// What thread mode shares with the handler.

/// The root's token, for the handler. A `critical_section::Mutex`: the
/// handler clones it out, thread mode puts it in and takes it out.
static ROOT: Mutex<RefCell<Option<Token>>> = Mutex::new(RefCell::new(None));

/// The handler's progress through a round. Thread mode sets `ARMED`
/// before starting the timer; the handler moves it on.
static PHASE: AtomicU8 = AtomicU8::new(DONE);
const ARMED: u8 = 0;
const CANCELLED: u8 = 1;
const DONE: u8 = 2;

/// Timer ticks from the cancel to the abort, chosen by thread mode.
static ABORT_DELAY: AtomicU32 = AtomicU32::new(0);

/// One bit per component whose `Phaser` has not started to drop; thread
/// mode is the only writer, and the handler copies it at the abort.
static RUNNING: AtomicU8 = AtomicU8::new(0);
static RUNNING_AT_ABORT: AtomicU8 = AtomicU8::new(0);
const SAMPLER: u8 = 1;
const FILTER: u8 = 2;
const LOGGER: u8 = 4;

/// Where the cancel and the abort landed, by state. Only the handler
/// writes them (load + store: thumbv6m has no atomic add, and the handler
/// cannot preempt itself).
static CANCEL_HITS: [AtomicU32; STATES] = [const { AtomicU32::new(0) }; STATES];
static ABORT_HITS: [AtomicU32; STATES] = [const { AtomicU32::new(0) }; STATES];

fn bump(counter: &AtomicU32) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The power-fail interrupt: cancel first, abort on the next one.
fn power_fail_interrupt() {
    let state = usize::from(STATE.load(Ordering::Relaxed));
    // Cloned out so the cancel walk runs outside this critical section, as
    // a handler that shares a token with other code would do it.
    let root = critical_section::with(|cs| ROOT.borrow_ref(cs).clone());
    let Some(root) = root else {
        timer::stop(); // a late interrupt after the round was torn down
        return;
    };
    match PHASE.load(Ordering::Acquire) {
        ARMED => {
            bump(&CANCEL_HITS[state]);
            root.cancel_with(POWER_FAIL);
            PHASE.store(CANCELLED, Ordering::Release);
            timer::fire_in(ABORT_DELAY.load(Ordering::Relaxed));
        }
        CANCELLED => {
            bump(&ABORT_HITS[state]);
            RUNNING_AT_ABORT.store(RUNNING.load(Ordering::Relaxed), Ordering::Relaxed);
            root.abort();
            PHASE.store(DONE, Ordering::Release);
            timer::stop();
        }
        _ => timer::stop(),
    }
    // `root` (a token) drops here, in the handler: one more count change
    // that thread mode's own clones and drops must not lose.
}

// ---------------------------------------------------------------------------
// The timers.

/// SysTick of the Cortex-M3, on the core clock.
#[cfg(not(feature = "m0"))]
mod timer {
    use cortex_m::peripheral::syst::SystClkSource;

    /// Core clock ticks per microsecond: QEMU's lm3s6965evb runs the core
    /// at 12 MHz.
    pub const TICKS_PER_US: u32 = 12;

    pub fn init() {}

    /// Interrupts once in `ticks` (then every `ticks` until stopped).
    pub fn fire_in(ticks: u32) {
        // SAFETY: SysTick is used by this module alone, and never by two
        // contexts at once: thread mode calls this only while the timer is
        // stopped (PHASE is DONE), the handler only while it runs.
        let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(ticks.clamp(1, 0x00FF_FFFF));
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    pub fn stop() {
        // SAFETY: as in `fire_in`.
        let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
        syst.disable_interrupt();
        syst.disable_counter();
    }

    #[cortex_m_rt::exception]
    fn SysTick() {
        super::power_fail_interrupt();
    }
}

/// TIMER0 of the nRF51, a peripheral interrupt through the NVIC, at 1 MHz.
/// Raw registers: a PAC for four of them is not worth the build time.
#[cfg(feature = "m0")]
mod timer {
    use cortex_m::interrupt::InterruptNumber;
    use cortex_m::peripheral::NVIC;

    pub const TICKS_PER_US: u32 = 1;

    const TIMER0: usize = 0x4000_8000;
    const TASKS_START: usize = 0x000;
    const TASKS_STOP: usize = 0x004;
    const TASKS_CLEAR: usize = 0x00C;
    const EVENTS_COMPARE0: usize = 0x140;
    const SHORTS: usize = 0x200;
    const INTENSET: usize = 0x304;
    const MODE: usize = 0x504;
    const BITMODE: usize = 0x508;
    const PRESCALER: usize = 0x510;
    const CC0: usize = 0x540;

    /// TIMER0's interrupt number on the nRF51.
    pub const IRQ: i16 = 8;

    #[derive(Clone, Copy)]
    struct Timer0;

    // SAFETY: 8 is TIMER0's interrupt number, a valid one on the nRF51.
    unsafe impl InterruptNumber for Timer0 {
        fn number(self) -> u16 {
            IRQ as u16
        }
    }

    fn write(offset: usize, value: u32) {
        // SAFETY: a TIMER0 register of the nRF51 memory map; writes have no
        // effect on memory Rust knows about. As with SysTick, thread mode
        // and the handler never use the timer at the same time.
        unsafe { ((TIMER0 + offset) as *mut u32).write_volatile(value) }
    }

    fn read(offset: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { ((TIMER0 + offset) as *const u32).read_volatile() }
    }

    pub fn init() {
        write(TASKS_STOP, 1);
        // A timer (not a counter), 32 bits wide, at 16 MHz / 2^4 = 1 MHz.
        write(MODE, 0);
        write(BITMODE, 3);
        write(PRESCALER, 4);
        // On COMPARE[0], clear the counter and stop: a one-shot.
        write(SHORTS, 1 | 1 << 8);
        // Interrupt on COMPARE[0].
        write(INTENSET, 1 << 16);
        // SAFETY: the handler (`DefaultHandler`, IRQ 8) is ready, and no
        // critical section relies on this interrupt being masked.
        unsafe { NVIC::unmask(Timer0) };
    }

    /// Interrupts once in `ticks` microseconds.
    pub fn fire_in(ticks: u32) {
        write(TASKS_STOP, 1);
        write(TASKS_CLEAR, 1);
        write(EVENTS_COMPARE0, 0);
        write(CC0, ticks.max(1));
        write(TASKS_START, 1);
    }

    pub fn stop() {
        write(TASKS_STOP, 1);
    }

    /// Clears the event that holds the interrupt line up; read back so the
    /// write lands before the handler returns.
    pub fn acknowledge() {
        write(EVENTS_COMPARE0, 0);
        let _ = read(EVENTS_COMPARE0);
    }
}

#[cfg(feature = "m0")]
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == timer::IRQ {
        timer::acknowledge();
        power_fail_interrupt();
    } else {
        panic!("unexpected interrupt or exception {irqn}");
    }
}

#[cfg(not(feature = "m0"))]
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    panic!("unexpected interrupt or exception {irqn}");
}

// ---------------------------------------------------------------------------
// Hand-polling.

/// Polls once with a waker that does nothing: thread mode polls everything
/// again and again anyway, so nobody needs waking.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Lets the other components run.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    core::future::poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
}

/// Marks `state` on every poll of `future`, not only the first one.
async fn marked<F: Future>(state: At, future: F) -> F::Output {
    let mut future = pin!(future);
    core::future::poll_fn(|cx| {
        at(state);
        let result = future.as_mut().poll(cx);
        at(At::Work);
        result
    })
    .await
}

// ---------------------------------------------------------------------------
// A round.

/// A small PRNG (xorshift32): a different interrupt point every round, the
/// same sequence every run.
struct Rng(u32);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0 % n
    }
}

/// What one round does, drawn from the PRNG.
struct Plan {
    /// Microseconds from the start of sampling to the cancel: from before
    /// the first sample to a few thousand of them.
    cancel_after_us: u32,
    /// Microseconds from the cancel to the abort.
    abort_after_us: u32,
    /// Take a report of the whole tree every this many samples.
    report_every: u32,
    /// Steps of optional tidying each component does after its turn,
    /// unless aborted first: sampler, filter, logger.
    tidy: [u32; 3],
    /// In one round of four: the sample at which the sampler fails, if it
    /// gets that far before the cancel.
    fail_at: Option<u32>,
}

/// An early failure comes within this many samples.
const FAIL_EARLY: u32 = 64;

/// How the sampler's fail met the interrupt's cancel, in a round where it
/// failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// The fail came first: every cause reads "sensor fault".
    First,
    /// The interrupt landed inside `fail()`: each node reads either cause.
    Inside,
    /// The interrupt's cancel came first: every cause reads "power fail".
    AfterTheCancel,
}

impl Plan {
    fn draw(rng: &mut Rng) -> Self {
        let cancel_after_us = 20 + rng.below(3000);
        Self {
            cancel_after_us,
            // Log-uniform, 1 µs to 2 ms: the shutdown itself takes well
            // under 100 µs, so most aborts must come soon to land in it.
            abort_after_us: {
                let scale = 1 << rng.below(11);
                scale + rng.below(scale)
            },
            report_every: 1 + rng.below(6),
            tidy: [rng.below(40), rng.below(40), rng.below(40)],
            // Half of the failing rounds fail early; the other half aim
            // at the cancel (about 7.5 µs a sample under QEMU), so that
            // the interrupt lands inside `fail()` now and then.
            fail_at: match rng.below(8) {
                0 => Some(rng.below(FAIL_EARLY)),
                1 => Some((cancel_after_us * 2 / 15).saturating_sub(rng.below(8))),
                _ => None,
            },
        }
    }
}

/// What thread mode shares between the components of one round; only
/// thread mode touches it.
struct Round<'a> {
    plan: Plan,
    root: &'a Phaser,
    raw: RefCell<VecDeque<u32>>,
    filtered: RefCell<VecDeque<u32>>,
    turns: RefCell<Vec<&'static str>>,
    sampled: Cell<u32>,
    stored: Cell<u32>,
    failed: Cell<Option<Failed>>,
}

/// Totals over the whole run, only thread mode touches them.
#[derive(Default)]
struct Totals {
    samples: Cell<u64>,
    /// `child()` refused because the cancel landed just before it.
    refused: Cell<u32>,
    /// Sample nodes that were cancelled while they existed.
    samples_cancelled: Cell<u32>,
    reports: Cell<u32>,
    /// Components that saw the abort before they finished tidying.
    tidy_cut_short: Cell<u32>,
    /// Rounds in which the sampler failed, by how it met the cancel:
    /// first, interrupt inside the fail, after the cancel.
    failed: [Cell<u32>; 3],
}

fn add(cell: &Cell<u32>, n: u32) {
    cell.set(cell.get() + n);
}

/// A pretend sensor reading.
fn reading(n: u32) -> u32 {
    (n.wrapping_mul(37) + 11) % 1000
}

/// The filter's work: scale to millivolts.
fn transform(raw: u32) -> u32 {
    raw * 3300 / 1000
}

/// Whether `cause` displays as `expected`, without allocating.
fn reads(cause: &Cause, expected: &str) -> bool {
    struct Compare<'a> {
        rest: &'a str,
        same: bool,
    }
    impl fmt::Write for Compare<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match self.rest.strip_prefix(s) {
                Some(rest) => self.rest = rest,
                None => self.same = false,
            }
            Ok(())
        }
    }
    let mut compare = Compare {
        rest: expected,
        same: true,
    };
    let _ = write!(compare, "{cause}");
    compare.same && compare.rest.is_empty()
}

/// What a round allows its nodes' causes to read.
#[derive(Clone, Copy)]
struct Causes {
    /// The plan has the sampler fail (if it gets that far).
    may_fail: bool,
    /// It did fail, and how that met the interrupt's cancel.
    failed: Option<Failed>,
}

impl Round<'_> {
    fn causes(&self) -> Causes {
        Causes {
            may_fail: self.plan.fail_at.is_some(),
            failed: self.failed.get(),
        }
    }
}

/// Checks a node's cause against what the round allows: "power fail", or
/// "sensor fault" in a round that may fail, and once the round is over,
/// only the one that came first (`failed`); `what` names the node.
fn check_cause(cause: Option<Cause>, round: Causes, number: u32, what: &str) {
    let fault_allowed = match round.failed {
        None => round.may_fail,
        Some(Failed::First) => {
            let fault = matches!(&cause, Some(c) if reads(c, SENSOR_FAULT));
            assert!(
                fault,
                "round {number}: {what}: cause {cause:?}, the fail came first"
            );
            return;
        }
        Some(Failed::Inside) => true,
        Some(Failed::AfterTheCancel) => false,
    };
    match cause {
        Some(cause) if reads(&cause, POWER_FAIL) => {}
        Some(cause) if fault_allowed && reads(&cause, SENSOR_FAULT) => {}
        Some(cause) => panic!("round {number}: {what}: unexpected cause {cause:?}"),
        None => panic!("round {number}: {what}: cancelled without a cause"),
    }
}

/// Checks the root's failure list (through `token`, perhaps after the tree
/// drained): the sampler's one failure if it failed, nothing otherwise.
fn check_failures(token: &Token, round: Causes, number: u32) {
    let failures = token.failures();
    if round.failed.is_none() {
        assert!(
            failures.is_empty(),
            "round {number}: failures without a fail"
        );
        return;
    }
    assert!(
        failures.len() == 1,
        "round {number}: {} failures recorded for one fail",
        failures.len()
    );
    let failure = &failures[0];
    assert!(
        failure.label() == Some("sampler")
            && reads(failure.cause(), SENSOR_FAULT)
            && !failure.panicked(),
        "round {number}: wrong failure recorded: {failure:?}"
    );
}

/// A report taken at any moment: a node that is no longer live was
/// cancelled by the power fail or the sampler's fail (nothing else cancels
/// in this tree), and a node marked aborted was aborted by the handler,
/// which has finished.
fn check_report(round: &Round<'_>, number: u32, totals: &Totals) {
    at(At::Report);
    let report = round.root.report();
    at(At::Work);
    add(&totals.reports, 1);
    let entries = report.entries();
    assert!(
        entries.first().and_then(|e| e.label()) == Some("device"),
        "round {number}: the report does not start at the root"
    );
    for entry in entries {
        if entry.state() != NodeState::Live {
            check_cause(
                entry.cause().cloned(),
                round.causes(),
                number,
                "a reported node",
            );
        }
        if entry.aborted() {
            assert!(
                PHASE.load(Ordering::Acquire) == DONE,
                "round {number}: a report shows an abort the handler has not made"
            );
            assert!(
                entry.state() != NodeState::Live,
                "round {number}: a reported node is aborted but live"
            );
        }
    }
    // The report drops here, in state `Work`.
}

/// Optional work after a component's turn (compacting, statistics), cut
/// short by the abort: it polls an `aborted()` future and reports.
async fn tidy(phaser: &Phaser, steps: u32, round: &Round<'_>, number: u32, totals: &Totals) {
    at(At::Poll);
    let mut aborted = pin!(phaser.aborted());
    at(At::Work);
    for step in 0..steps {
        at(At::Poll);
        let ready = poll_once(aborted.as_mut()).is_ready();
        at(At::Work);
        if ready {
            assert!(
                phaser.is_aborted(),
                "round {number}: aborted() resolved, is_aborted() false"
            );
            add(&totals.tidy_cut_short, 1);
            break;
        }
        if step % 2 == 0 {
            check_report(round, number, totals);
        }
        yield_now().await;
    }
    at(At::FutureDrop);
    // `aborted` drops at the end of this scope: unregisters.
}

/// Marks a component as no longer running, then drops its `Phaser`.
fn finish(phaser: Phaser, bit: u8) {
    RUNNING.store(RUNNING.load(Ordering::Relaxed) & !bit, Ordering::Relaxed);
    at(At::Drain);
    drop(phaser);
    at(At::Work);
}

/// The sensor broke: the sampler fails (it keeps sampling until it sees
/// the cancel, like every component: its samples must still be stored).
/// Notes whether the interrupt's cancel came before, inside or after.
fn fail(sampler: &Phaser, round: &Round<'_>, totals: &Totals) {
    let before = PHASE.load(Ordering::Acquire);
    at(At::Fail);
    sampler.fail(SENSOR_FAULT);
    at(At::Work);
    let after = PHASE.load(Ordering::Acquire);
    let failed = if before != ARMED {
        Failed::AfterTheCancel
    } else if after == ARMED {
        Failed::First
    } else {
        Failed::Inside
    };
    round.failed.set(Some(failed));
    add(&totals.failed[failed as usize], 1);
}

/// Samples until the power fails: a child node per sample (a measurement
/// in progress), a `cancelled()` watcher that registers and gives up, and
/// a report now and then.
async fn sampler(phaser: Phaser, round: &Round<'_>, number: u32, totals: &Totals) {
    let mut taken = 0;
    loop {
        at(At::Child);
        let sample = phaser.child();
        at(At::Work);
        let Ok(sample) = sample else {
            // The cancel landed between the check below and `child()`.
            add(&totals.refused, 1);
            assert!(
                phaser.is_cancelled(),
                "round {number}: child() refused while live"
            );
            break;
        };
        if round.plan.fail_at == Some(taken) {
            fail(&phaser, round, totals);
        }
        round.raw.borrow_mut().push_back(reading(taken));
        taken += 1;
        round.sampled.set(taken);
        {
            // What `select!` against cancellation does each time round.
            at(At::Poll);
            let mut cancelled = pin!(sample.cancelled());
            let ready = poll_once(cancelled.as_mut()).is_ready();
            at(At::Work);
            if ready || sample.is_cancelled() {
                // Cancelled while it existed: its cause must already be
                // readable, whatever instant the interrupt chose.
                add(&totals.samples_cancelled, 1);
                check_cause(sample.cause(), round.causes(), number, "a sample node");
            }
            assert!(
                !sample.is_aborted() || sample.is_cancelled(),
                "round {number}: a sample is aborted but not cancelled"
            );
            at(At::FutureDrop);
            // `cancelled` drops at the end of this scope: unregisters.
        }
        at(At::Work);
        if taken % round.plan.report_every == 0 {
            check_report(round, number, totals);
        }
        at(At::SampleDrop);
        drop(sample);
        at(At::Work);
        if phaser.is_cancelled() {
            break;
        }
        yield_now().await;
    }
    // No sample node is left: the turn comes at once.
    marked(At::Turn, phaser.turn()).await;
    round.turns.borrow_mut().push("sampler");
    tidy(&phaser, round.plan.tidy[0], round, number, totals).await;
    finish(phaser, SAMPLER);
}

/// Moves samples from one queue to the next (`transform`ed, or checked and
/// counted as stored) until its turn, then moves what is left.
async fn stage(
    phaser: Phaser,
    name: &'static str,
    bit: u8,
    round: &Round<'_>,
    number: u32,
    totals: &Totals,
) {
    {
        let mut turn = pin!(phaser.turn());
        loop {
            at(At::Turn);
            // Read the turn first: once it has come, the component below
            // has dropped its `Phaser`, so the queue is complete.
            let my_turn = poll_once(turn.as_mut()).is_ready();
            at(At::Work);
            if bit == FILTER {
                while let Some(raw) = round.raw.borrow_mut().pop_front() {
                    round.filtered.borrow_mut().push_back(transform(raw));
                }
            } else {
                while let Some(value) = round.filtered.borrow_mut().pop_front() {
                    let stored = round.stored.get();
                    assert!(
                        value == transform(reading(stored)),
                        "round {number}: sample {stored} stored out of order"
                    );
                    round.stored.set(stored + 1);
                }
            }
            if my_turn {
                break;
            }
            yield_now().await;
        }
        at(At::FutureDrop);
    }
    at(At::Work);
    round.turns.borrow_mut().push(name);
    let tidy_steps = round.plan.tidy[if bit == FILTER { 1 } else { 2 }];
    tidy(&phaser, tidy_steps, round, number, totals).await;
    finish(phaser, bit);
}

/// One round: build, arm the timer, run the components until the root's
/// turn and the abort, check.
fn round(number: u32, rng: &mut Rng, totals: &Totals) {
    let plan = Plan::draw(rng);
    at(At::Work);
    let root = Phaser::named("device");
    let logger = root.child_named("logger").expect("root is live");
    let filter = logger.child_named("filter").expect("logger is live");
    let sampler_node = filter.child_named("sampler").expect("filter is live");
    let tokens = [
        ("device", root.token()),
        ("logger", logger.token()),
        ("filter", filter.token()),
        ("sampler", sampler_node.token()),
    ];
    critical_section::with(|cs| *ROOT.borrow_ref_mut(cs) = Some(root.token()));
    RUNNING.store(SAMPLER | FILTER | LOGGER, Ordering::Relaxed);
    ABORT_DELAY.store(plan.abort_after_us * timer::TICKS_PER_US, Ordering::Relaxed);
    PHASE.store(ARMED, Ordering::Release);
    compiler_fence(Ordering::SeqCst);
    timer::fire_in(plan.cancel_after_us * timer::TICKS_PER_US);

    let round = Round {
        plan,
        root: &root,
        raw: RefCell::new(VecDeque::new()),
        filtered: RefCell::new(VecDeque::new()),
        turns: RefCell::new(Vec::with_capacity(4)),
        sampled: Cell::new(0),
        stored: Cell::new(0),
        failed: Cell::new(None),
    };
    {
        let mut components: [Pin<&mut dyn Future<Output = ()>>; 3] = [
            pin!(sampler(sampler_node, &round, number, totals)),
            pin!(stage(filter, "filter", FILTER, &round, number, totals)),
            pin!(stage(logger, "logger", LOGGER, &round, number, totals)),
        ];
        let mut done = [false; 3];
        while !done.iter().all(|&d| d) {
            for (component, done) in components.iter_mut().zip(&mut done) {
                if !*done {
                    *done = poll_once(component.as_mut()).is_ready();
                }
            }
        }
    }
    // All three dropped their `Phaser`s: the root's turn has come.
    {
        let mut turn = pin!(marked(At::Turn, root.turn()));
        assert!(
            poll_once(turn.as_mut()).is_ready(),
            "round {number}: every component finished but the root's turn did not come"
        );
    }
    round.turns.borrow_mut().push("device");
    // Wait for the abort, if it has not come yet.
    {
        let mut aborted = pin!(root.aborted());
        loop {
            // Idle, though it polls: nothing else is left to do.
            at(At::Idle);
            let ready = poll_once(aborted.as_mut()).is_ready();
            if ready {
                break;
            }
        }
        at(At::FutureDrop);
    }
    at(At::Work);

    // The checks of the round.
    assert!(
        PHASE.load(Ordering::Acquire) == DONE,
        "round {number}: aborted() resolved before the handler aborted"
    );
    let turns = round.turns.borrow();
    assert!(
        *turns == ["sampler", "filter", "logger", "device"],
        "round {number}: turns out of order: {:?}",
        *turns
    );
    let (sampled, stored) = (round.sampled.get(), round.stored.get());
    assert!(
        sampled == stored && round.raw.borrow().is_empty() && round.filtered.borrow().is_empty(),
        "round {number}: sampled {sampled}, stored {stored}: samples lost"
    );
    totals
        .samples
        .set(totals.samples.get() + u64::from(sampled));
    assert!(root.is_turn() && root.live_children() == 0);
    let running_at_abort = RUNNING_AT_ABORT.load(Ordering::Relaxed);
    let causes = round.causes();
    for (i, (name, token)) in tokens.iter().enumerate() {
        assert!(token.is_cancelled(), "round {number}: {name} not cancelled");
        check_cause(token.cause(), causes, number, name);
        // The root always ran at the abort; a component did if its bit
        // was still set (it had not begun to drop its `Phaser`).
        let ran = i == 0 || running_at_abort & [0, LOGGER, FILTER, SAMPLER][i] != 0;
        assert!(
            !ran || token.is_aborted(),
            "round {number}: {name} ran at the abort but is not aborted"
        );
    }
    check_failures(&tokens[0].1, causes, number);
    drop(turns);
    drop(round);
    at(At::Drain);
    drop(root);
    at(At::Work);
    // The handler's clone goes last; the tokens still read the cause and
    // the failures.
    let handler_token = critical_section::with(|cs| ROOT.borrow_ref_mut(cs).take());
    drop(handler_token);
    check_cause(
        tokens[0].1.cause(),
        causes,
        number,
        "device after it drained",
    );
    check_failures(&tokens[0].1, causes, number);
    drop(tokens);
    at(At::Idle);
}

#[entry]
fn main() -> ! {
    {
        static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
        // SAFETY: called once, before the first allocation; the memory is a
        // static used for nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_SIZE) }
    }
    let target = if cfg!(feature = "m0") {
        "Cortex-M0, micro:bit, TIMER0"
    } else {
        "Cortex-M3, lm3s6965evb, SysTick"
    };
    hprintln!("firmware-irq: {} rounds on {}", ROUNDS, target);
    timer::init();
    let mut rng = Rng(0x2545_F491);
    let totals = Totals::default();
    for number in 0..ROUNDS {
        round(number, &mut rng, &totals);
    }

    // Built first, so semihosting prints it as one line.
    let mut line = String::new();
    let _ = write!(
        line,
        "irq summary: {ROUNDS} rounds, {} samples stored, none lost; cancel landed in",
        totals.samples.get()
    );
    write_hits(&mut line, &CANCEL_HITS);
    let _ = write!(line, "; abort landed in");
    write_hits(&mut line, &ABORT_HITS);
    let _ = write!(
        line,
        "; child() refused {}, sample nodes cancelled {}, tidying cut short by the abort {}, reports {}",
        totals.refused.get(),
        totals.samples_cancelled.get(),
        totals.tidy_cut_short.get(),
        totals.reports.get()
    );
    let [first, inside, after] = &totals.failed;
    let _ = write!(
        line,
        "; sampler failed in {} rounds (fail first {}, interrupt inside the fail {}, after the cancel {})",
        first.get() + inside.get() + after.get(),
        first.get(),
        inside.get(),
        after.get()
    );
    hprintln!("{}", line);
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// ` state n,` for every state, zeros included, so the gaps show.
fn write_hits(line: &mut String, hits: &[AtomicU32; STATES]) {
    for (i, (name, hits)) in STATE_NAMES.iter().zip(hits).enumerate() {
        let sep = if i == 0 { " " } else { ", " };
        let _ = write!(line, "{sep}{name} {}", hits.load(Ordering::Relaxed));
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("firmware-irq failed: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    // Only reached without a debugger attached: stop the core for good.
    cortex_m::asm::udf()
}
