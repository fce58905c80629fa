//! The one place that chooses the atomics, the `Arc` and the short lock.
//!
//! Everything else imports them from here, so that one switch changes the
//! whole crate:
//!
//! * the default build uses `core`'s atomics and `alloc`'s `Arc`;
//! * feature `portable-atomic` takes both from `portable-atomic(-util)`, for
//!   targets without compare-and-swap;
//! * `--cfg loom` swaps in loom's types so the model checker sees every
//!   atomic access and every lock.

#[cfg(not(loom))]
mod imp {
    #[cfg(not(feature = "portable-atomic"))]
    pub(crate) use alloc::sync::Arc;
    #[cfg(not(feature = "portable-atomic"))]
    pub(crate) use core::sync::atomic::{AtomicUsize, Ordering};
    #[cfg(feature = "portable-atomic")]
    pub(crate) use portable_atomic::{AtomicUsize, Ordering};
    #[cfg(feature = "portable-atomic")]
    pub(crate) use portable_atomic_util::Arc;

    /// A short lock around the child links of one node.
    ///
    /// It is only ever held for a handful of pointer writes (or, while a
    /// cancel walk or a report reads the children, one pass over them), never
    /// across user code or a wake-up. With feature `critical-section` it is
    /// taken inside a critical section, so an interrupt handler that cancels
    /// cannot spin forever on a lock held by the code it interrupted.
    pub(crate) struct Lock<T>(spin::Mutex<T>);

    impl<T> Lock<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(spin::Mutex::new(value))
        }

        /// Runs `f` with the lock held.
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            #[cfg(feature = "critical-section")]
            {
                critical_section::with(|_| f(&mut self.0.lock()))
            }
            #[cfg(not(feature = "critical-section"))]
            {
                f(&mut self.0.lock())
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};
    pub(crate) use loom::sync::Arc;

    /// loom's mutex behind the same interface as the real lock.
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            // A poisoned lock means a panic inside `f`, which is a bug loom
            // should report, not hide.
            f(&mut self.0.lock().expect("child-link lock poisoned"))
        }
    }
}

pub(crate) use imp::*;
