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
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(all(not(loom), feature = "portable-atomic"))]
pub(crate) use portable_atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::hint::spin_loop;

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

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

/// The acquire half of dropping the last count (of a node or a
/// [`Cause`](crate::Cause)), after a `fetch_sub(1, Release)` that read 1.
///
/// An acquire *load* of the count, not `fence(Acquire)`: it reads the 0 our
/// own decrement wrote, which belongs to the release sequence of every
/// earlier (release) decrement, so it synchronizes with all of them, as the
/// fence would. ThreadSanitizer does not model fences, and with the fence
/// it reports every free as racing with the other threads' last uses (std's
/// `Arc` switches to such a load under TSan for the same reason). The load
/// is used in every build so that what TSan checks is what ships: it runs
/// once per freed block, on a cache line this thread has just written, and
/// costs no more than the fence (a plain load on x86, `ldar` against
/// `dmb ishld` on AArch64, one `ldr` more on 32-bit Arm).
#[inline]
pub(crate) fn last_count_acquire(refs: &AtomicUsize) {
    let remaining = refs.load(Ordering::Acquire);
    // Nothing may take a count once the last one is gone.
    debug_assert_eq!(
        remaining, 0,
        "phaseout: a count was taken after the last one was dropped"
    );
}
