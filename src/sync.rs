//! The one place that chooses the atomics and the spin hint.
//!
//! Everything else imports them from here, so that one switch changes the
//! whole crate:
//!
//! * the default build uses `core`'s atomics;
//! * feature `portable-atomic` takes them from `portable-atomic`, for
//!   targets without compare-and-swap;
//! * `--cfg loom` swaps in loom's types so the model checker sees every
//!   atomic access (and a spinning thread yields to it).

#[cfg(all(not(loom), not(feature = "portable-atomic")))]
pub(crate) use core::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};

#[cfg(all(not(loom), feature = "portable-atomic"))]
pub(crate) use portable_atomic::{fence, AtomicPtr, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};

/// Runs `f` so that no interrupt handler can run on this core meanwhile
/// (with feature `critical-section`), or plainly. Used around the child-list
/// lock: a handler that cancels must never spin on a lock held by the code
/// it interrupted.
#[inline]
pub(crate) fn interrupt_free<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "critical-section")]
    {
        critical_section::with(|_| f())
    }
    #[cfg(not(feature = "critical-section"))]
    {
        f()
    }
}
