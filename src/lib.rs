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
//!   [`Token::wait_cancelled`]) and the `panicked` mark in reports.
//! * `portable-atomic`: atomics from `portable-atomic`, for targets without
//!   compare-and-swap (`thumbv6m-none-eabi`, `riscv32imc-unknown-none-elf`).
//!   The final binary chooses the CAS provider, as portable-atomic asks (its
//!   `critical-section` feature or `--cfg portable_atomic_unsafe_assume_single_core`).
//! * `critical-section`: guards the waiter lists and child links with a
//!   critical section, so cancelling from an interrupt handler is safe.
//! * `tracing`: `tracing` events (target `phaseout`) for every cancel,
//!   abort, turn and drain; labeled nodes at DEBUG, others at TRACE.
//! * `defmt`: `defmt::Format` for the public types, and the `tracing`
//!   feature's events logged with `defmt`, for firmware.
//! * `signal` (std): `signal::cancel_on_terminate`, the first SIGINT or
//!   SIGTERM cancels a token with the signal's name as the cause, a second
//!   one exits with status 128 + its number (130, 143).
//!
//! Without `std` the crate needs only `alloc`.

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
#[cfg(feature = "defmt")]
mod defmt_format;
mod error;
pub mod futures;
mod node;
mod observe;
mod phaser;
mod report;
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub mod signal;
mod sync;
mod token;

pub use crate::cause::Cause;
pub use crate::error::ShutdownStarted;
pub use crate::phaser::Phaser;
pub use crate::report::{NodeState, Report, ReportEntry};
pub use crate::token::Token;

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
        is_send::<crate::futures::Aborted>();
        is_send::<crate::futures::Cancelled>();
        is_send::<crate::futures::Turn>();
        is_send::<crate::futures::TurnWithin<core::future::Ready<()>>>();
        is_send::<crate::futures::RunUntilCancelled<core::future::Ready<()>>>();
    }
}

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
