//! Graceful, *ordered* shutdown for any executor, `no_std + alloc` included.
//!
//! A program is a tree of components. A component's children are the
//! components that depend on it, so they must stop before it does:
//!
//! ```text
//! db            stops last
//! └── pipeline  depends on db
//!     └── web   depends on pipeline; stops first
//! ```
//!
//! Each component owns one [`Phaser`]. One [`cancel`](Phaser::cancel) tells a
//! whole subtree at once; then each component gets its
//! [`turn`](Phaser::turn) only after every component below it has finished
//! (dropped its `Phaser`). The web server stops accepting, the pipeline
//! drains what the web server handed it, the database flushes what the
//! pipeline wrote: nothing acknowledged is lost.
//!
//! Shutdown can say why and be escalated:
//! [`cancel_with`](Phaser::cancel_with) gives the nodes it cancels a
//! [`Cause`] (a signal, a failed component's error), read back with
//! [`cause`](Phaser::cause); after a grace period,
//! [`abort`](Phaser::abort) tells what is left to abandon the work in hand.
//!
//! Each node keeps its cancelled flag, owner-done flag and live-child count in
//! one atomic word, so `is_cancelled()` is one load and every transition one
//! atomic operation; a bit of the same word briefly locks the node's list of
//! children while a child is linked or unlinked.
//! Waiting tasks park on [`event_listener`] events, so the futures work on
//! any executor (smol, tokio, async-std, embassy, `pollster`, …), and the
//! `std` feature adds blocking waits for plain threads.
//!
//! # Examples
//!
//! ```
//! use std::thread;
//!
//! use phaseout::Phaser;
//!
//! let root = Phaser::named("app");
//! let db = root.child_named("db").unwrap();
//! let pipeline = db.child_named("pipeline").unwrap();
//! let web = pipeline.child_named("web").unwrap();
//!
//! let (tx, rx) = std::sync::mpsc::channel();
//! let mut tasks = Vec::new();
//! for (phaser, name) in [(web, "web"), (pipeline, "pipeline"), (db, "db")] {
//!     let tx = tx.clone();
//!     tasks.push(thread::spawn(move || {
//!         phaser.wait_cancelled(); // shutdown was requested: stop new work
//!         phaser.wait_turn(); // every dependent has stopped
//!         tx.send(name).unwrap(); // clean up, then drop the phaser
//!     }));
//! }
//!
//! pollster::block_on(root.shutdown()); // cancel everything, wait for all
//! let order: Vec<_> = rx.try_iter().collect();
//! assert_eq!(order, ["web", "pipeline", "db"]);
//! # for task in tasks { task.join().unwrap(); }
//! ```
//!
//! # Features
//!
//! * `std` (default): blocking waits ([`Phaser::wait_cancelled`],
//!   [`Phaser::wait_turn`], [`Phaser::wait_turn_timeout`],
//!   [`Token::wait_cancelled`]), the `panicked` mark in reports, and
//!   [`Phaser::critical`] (a panic can only be seen with `std`).
//! * `portable-atomic`: atomics from `portable-atomic`, for targets without
//!   compare-and-swap (`thumbv6m-none-eabi`, `riscv32imc-unknown-none-elf`).
//!   The final binary chooses the CAS provider, as portable-atomic asks (its
//!   `critical-section` feature or `--cfg portable_atomic_unsafe_assume_single_core`).
//! * `critical-section`: guards the waiter lists and child links with a
//!   critical section, so cancelling from an interrupt handler is safe.
//! * `tracing`: `tracing` events (target `phaseout`) for every cancel,
//!   abort, turn and drain; labeled nodes at DEBUG, others at TRACE; a
//!   `fail` (node, cause) at WARN.
//! * `defmt`: `defmt::Format` for the public types, and the `tracing`
//!   feature's events logged with `defmt`, for firmware.
//! * `signal` (std): `signal::cancel_on_terminate`, the first SIGINT or
//!   SIGTERM cancels a token with the signal's name as the cause, a second
//!   one exits with status 128 + its number (130, 143).
//!
//! Without `std` the crate needs only `alloc`.
//!
//! # Wakers
//!
//! With `std`, a waker may do anything from inside `wake()`: poll its task
//! inline, cancel, abort, drop a `Phaser`, a `Token` or a future, ask for a
//! child, take a report, on any number of threads at once. event-listener
//! calls wakers under its own lock, so phaseout never hands it yours: each
//! waiting future registers a small waker of phaseout's own, and yours runs
//! after the notify returned, with no lock held (guarantee 17). A waker
//! that panics, in `wake()` or in its drop, does not stop the cancel or
//! drop that woke it; the panic comes out of that call once the walk is
//! done. The same holds for the other user code a cancel or a drop may
//! meet half-way: a cause whose error panics when phaseout frees it, and a
//! `tracing` subscriber that panics in one of phaseout's events. Without `std` there is no
//! thread-local state to defer with: a waker runs inside the notify and
//! must only schedule its task, as embassy's and other firmware executors'
//! wakers do.
//!
//! # Guarantees
//!
//! The numbers are the ones comments and tests of this crate cite
//! ("guarantee 14"). Each names the tests (in the repository's `tests/`)
//! that fail when it breaks.
//!
//! 1. **Order.** A node's `turn()` never resolves, and `is_turn()` is never
//!    true, before every node below it has drained. (`tree.rs`: `order_*`;
//!    `races.rs`: `order_*`; `loom.rs`; the model check, `model.rs`.)
//! 2. **Scope.** `cancel()` on a node cancels exactly its subtree; the
//!    nodes above and beside it stay live. (`tree.rs`: `scope_*`.)
//! 3. **At once.** When `cancel()` returns, every node of the subtree reads
//!    cancelled and every task waiting on one of them has been woken,
//!    whatever the interleaving. (`tree.rs`, `races.rs`: `at_once_*`;
//!    `loom.rs`.)
//! 4. **Refusal.** A cancelled node takes no new child: `child()` returns
//!    [`ShutdownStarted`]. So a turn, once given, is never taken back.
//!    (`tree.rs`, `races.rs`: `refusal_*`.)
//! 5. **Drop.** Dropping a `Phaser` with live children cancels them and
//!    never blocks; the node drains when its last child drains. A `Phaser`
//!    dropped while its thread panics drains the same way and is reported
//!    `panicked` (with `std`). (`tree.rs`, `races.rs`: `drop_*`.)
//! 6. **Bounded memory.** A drained node is freed once no handle refers to
//!    it, and a live parent keeps nothing of children that came and went.
//!    Beyond the nodes, what the crate keeps for the process is bounded
//!    and does not grow with use: with `std`, the lists a notify records
//!    its wakes in keep up to 8 KiB (on a 64-bit target) of buffer between
//!    cancels, so that a cancel walk does not allocate per node, and each
//!    thread that notifies keeps a buffer of up to 16 wakes. (`memory.rs`.)
//! 7. **Depth.** Cancelling, draining and dropping a chain a million nodes
//!    deep works on a small stack: no recursion over the tree. (`depth.rs`.)
//! 8. **Any executor.** The same behaviour on smol, async-std, tokio,
//!    futures-executor, pollster and embassy; the crate depends on none.
//!    (`executors.rs`, `wakers.rs`; embassy in `examples/firmware-cortex-m`,
//!    run under QEMU by `ci/firmware.sh`.)
//! 9. **no_std.** Without default features the crate needs only `alloc` and
//!    builds for `thumbv7em-none-eabihf`, and, with feature
//!    `portable-atomic`, for targets without compare-and-swap
//!    (`thumbv6m-none-eabi`, `riscv32imc-unknown-none-elf`).
//!    (`ci/no-std.sh`, `ci/features.sh`, `ci/firmware.sh` under QEMU.)
//! 10. **Bad use gets a clear answer.** A child of a cancelled node is an
//!     `Err`; a second `cancel()` does nothing; a child that never finishes
//!     holds its parent's turn forever (the caller's bug), and `report()`
//!     and `turn_within()` name it. (`tree.rs`: `bad_use_*`.)
//! 11. **No undefined behaviour from safe code, on any target.** No count
//!     wraps (past `isize::MAX` references the process aborts, as with
//!     `Arc`), and no reference to a node is held across a step that may
//!     let another thread free it. (`handoff.rs` under Miri with
//!     preemption, Stacked and Tree Borrows, 64- and 32-bit; `limits.rs`.)
//! 12. **No unbounded spinning with `std`, and no starving.** A thread that
//!     finds a child list locked spins briefly, then sleeps until it is
//!     released: a `SCHED_FIFO` thread never livelocks against a preempted
//!     holder. A sleeper that loses the race for the lock once is handed
//!     it by the next release, so under oversubscription no operation
//!     waits for more than one lost race. The price: an heir that cannot
//!     run (its CPU taken by a thread of higher priority) keeps the others
//!     waiting until it can (`src/node/lock.rs`, "Fairness"). (`realtime.rs`,
//!     the lock's unit tests and loom models, `loom.rs`;
//!     `benches/oversubscribed.rs` measures 32 and 64 threads on two cores
//!     beside tokio-util.)
//! 13. **A panic leaves no lock held and the tree consistent**, whatever it
//!     comes from: the child limit, an allocation, a waker's `wake` or
//!     drop, a cause's destructor, a `tracing` subscriber (with `std`; the
//!     last three come out of the operation once it is done).
//!     (`limits.rs`, `liveness.rs`, `wakers.rs`, `memory.rs`,
//!     `contained.rs`.)
//! 14. **Guarantee 3 with concurrent cancels.** When any `cancel()` or
//!     `abort()` returns, every waiter of its subtree has been woken, even
//!     where another thread's walk marked the nodes first and is still
//!     waking them. One exception: a call made inside a waker that this
//!     thread runs for the same node (a waker that cancels what it was
//!     woken for) returns before the rest of that delivery's wakers ran;
//!     they run before the operation it is inside returns.
//!     (`wakers.rs`: `at_once_holds_while_another_cancel_is_still_waking`,
//!     `nested_during_another_threads_delivery`; `abort.rs`; `loom.rs`.)
//! 15. *(0.2: a list of what a waker must not do. Replaced by 17.)*
//! 16. **Every wait resolves.** Each future and each blocking wait resolves
//!     once its condition holds, whoever holds it and whatever was dropped
//!     first: after its `Phaser` was dropped, on a drained node, with the
//!     children dropped in any order. A report never names a node as held
//!     up by zero children. (`liveness.rs`, `liveness_stress.rs`, the model
//!     check with futures as actors, `loom.rs`.)
//! 17. **Wakers may act.** See [Wakers](#wakers): with `std`, anything a
//!     task may do, from inside `wake()`, on any number of threads, and 3
//!     and 14 still hold. (`wakers.rs`, `liveness.rs`, the model check's
//!     acting wakers, `loom.rs`.)
//! 18. **Causes say why.** A dropped `Phaser` gives the cause "the owner of
//!     `x` finished" only where its drop is the node's first cancellation;
//!     dropped after a cancel, what its drop cancels gets the node's own
//!     cause, or none after a plain `cancel()`. Likewise a `cancel()`,
//!     `cancel_with` or `abort()` of a node that is cancelled already
//!     gives what it reaches the node's own cause, even while the first
//!     cancel is still on its way down (a staged stop started after
//!     `SIGTERM` leaves `SIGTERM` everywhere), and two `cancel_with` that
//!     race on one node leave its subtree the node's cause. "First" is per
//!     node: a call on a node further down that gets to it before the walk
//!     from above does gives it its own cause.
//!     (`causes.rs`, `liveness.rs`, `wakers.rs`: `under_attack`.)
//! 19. **Fork.** A child made by `fork` that installs its own signal
//!     handler gets its own signals and its `stop()` returns; a live child
//!     never takes its parent's. (`fork.rs`, feature `signal`.)
//! 20. **The timeline reads in causal order.** With `tracing` or `defmt`, a
//!     node's `turn` is logged before its `drained` and before anything its
//!     turn woke. (`tracing.rs`, `timeline.rs`.)
//! 21. **Unwind-safe handles.** [`Phaser`], [`Token`] and the futures are
//!     `UnwindSafe` and `RefUnwindSafe`. (`liveness.rs`:
//!     `handles_and_futures_are_unwind_safe`.)
//! 22. **Failures have a home.** [`Phaser::fail`] records a [`Failure`] in
//!     the node's scope (the nearest [`child_scope`](Phaser::child_scope) at
//!     or above it, or the root) and cancels that scope, children first:
//!     never what is above a scope. Every failure is recorded exactly once,
//!     in the order they happened, even from many threads at once; a failure
//!     is never refused or lost against its scope's drain (the failing
//!     node's live owner keeps the scope from draining), and `failures()`
//!     reads them while they are added and after the drain. The scope's
//!     cause is the first cancellation's, as always. A
//!     [`critical`](Phaser::critical) node's panicking owner fails its scope
//!     (with `std`); any other panic cancels only its subtree.
//!     (`supervision.rs`.)
//! 23. **The staged stop.** [`Phaser::shutdown_staged`] cancels when called,
//!     counts the grace from its first poll, aborts only if the grace runs
//!     out, and ends with `Ok` at the node's turn, every node below it
//!     drained (its
//!     [`Stopped::aborted`] naming who was still running at the abort) or
//!     `Err(report)` naming the stragglers after the abort grace;
//!     [`shutdown_staged_with`](Phaser::shutdown_staged_with)'s `on_abort`
//!     is called once, just before the abort, and never without one (the
//!     abort happens even if it panics). The future, [`Staged`], is fused
//!     and stays ready with the same output. (`staged.rs`.)
//!
//! Besides these, each item's documentation says what it does, and
//! `causes.rs`, `abort.rs`, `stopping.rs`, `futures.rs`, `tracing.rs` and
//! `signal.rs` test those promises.

#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]
#![doc(test(attr(deny(warnings))))]

extern crate alloc;

mod cause;
mod counted;
#[cfg(feature = "defmt")]
mod defmt_format;
mod error;
mod failure;
pub mod futures;
mod label;
mod node;
mod phaser;
mod report;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub mod signal;
mod staged;
mod sync;
mod token;

pub use crate::cause::Cause;
pub use crate::error::ShutdownStarted;
pub use crate::failure::Failure;
pub use crate::phaser::Phaser;
pub use crate::report::{NodeState, Report, ReportEntry};
pub use crate::staged::{Staged, Stopped};
pub use crate::token::Token;

/// Under `--cfg loom` only (outside semver): makes every release of a
/// child-list lock with sleepers hand the lock over (`true`) or wake them all
/// (`false`), so that `tests/loom.rs` explores each path.
#[cfg(loom)]
#[doc(hidden)]
pub use crate::node::loom_lock_hand_over_always;

#[cfg(test)]
mod send_sync_checks {
    fn is_send_sync<T: Send + Sync>() {}
    fn is_send<T: Send>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        is_send_sync::<crate::Phaser>();
        is_send_sync::<crate::Token>();
        is_send_sync::<crate::Report>();
        is_send_sync::<crate::ShutdownStarted>();
        is_send_sync::<crate::Cause>();
        is_send_sync::<crate::Failure>();
        is_send::<crate::futures::Aborted>();
        is_send::<crate::futures::Cancelled>();
        is_send::<crate::futures::Turn>();
        is_send::<crate::futures::TurnWithin<core::future::Ready<()>>>();
        is_send::<crate::futures::RunUntilCancelled<core::future::Ready<()>>>();
        is_send::<crate::futures::RunUntilAborted<core::future::Ready<()>>>();
        is_send_sync::<crate::Stopped>();
        is_send::<
            crate::Staged<
                fn(core::time::Duration) -> core::future::Ready<()>,
                core::future::Ready<()>,
            >,
        >();
    }
}

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guides' examples (`docs/`), compiled and run as doc tests too.
#[cfg(doctest)]
#[doc = include_str!("../docs/stopping.md")]
pub struct StoppingGuideDoctests;

/// See [`StoppingGuideDoctests`].
#[cfg(doctest)]
#[doc = include_str!("../docs/deployment.md")]
pub struct DeploymentGuideDoctests;

/// See [`StoppingGuideDoctests`].
#[cfg(doctest)]
#[doc = include_str!("../docs/embedded.md")]
pub struct EmbeddedGuideDoctests;

/// See [`StoppingGuideDoctests`].
#[cfg(doctest)]
#[doc = include_str!("../docs/performance.md")]
pub struct PerformanceGuideDoctests;

/// See [`StoppingGuideDoctests`].
#[cfg(doctest)]
#[doc = include_str!("../docs/architecture.md")]
pub struct ArchitectureGuideDoctests;
