//! A node's label and cause slot, in one word.
//!
//! Most nodes (a request, a connection) have no label, are not scopes and
//! are never cancelled with a cause, and a node must stay 64 bytes. So all
//! of it shares one pointer, told apart by its low bit:
//!
//! | pointer         | meaning                                             |
//! | --------------- | --------------------------------------------------- |
//! | null            | no label, no cause                                  |
//! | `cause + 1`     | no label; the slot holds a count of a [`Cause`] (`cause_into_raw`) |
//! | `labeled`       | a `Box<Labeled>` (a label, or a scope, or both), set at creation and never changed; its `cause` field is the slot (null or a `Cause`), its `failures` a scope's failure list |
//!
//! Both `Labeled` and a cause (a pointer into its counted block, aligned as
//! `What`) are at least 2-aligned, so the low bit is free; the tag is added
//! and removed with pointer arithmetic, so the pointers keep their provenance (Miri checks with strict provenance). The
//! slot is filled at most once, by compare-and-swap from empty, and emptied
//! only when the node is freed; so a reader that saw it filled sees the same
//! cause forever. Whether the slot is the node's cause is the state word's
//! business (`HAS_CAUSE`, node invariant #10): a walk that fills the slot
//! and then loses the race to cancel the node leaves a cause there that
//! nobody reads.

use alloc::boxed::Box;
use core::ptr;

use alloc::vec::Vec;

use crate::cause::{Cause, What};
use crate::counted::Counted;
use crate::failure::Failure;
use crate::label::Label;
use crate::sync::{AtomicPtr, Ordering};

/// The heap part of a labeled node, and of every scope (which keeps its
/// failure list here).
struct Labeled {
    label: Option<Label>,
    /// Whether the node is a scope (set at creation, never changed).
    scope: bool,
    /// The scope's failures, newest first: null, or the head of a list of
    /// [`Recorded`] that only grows (pushed by compare-and-swap) until the
    /// node is freed.
    failures: AtomicPtr<Recorded>,
    /// Null, or a count of a cause ([`cause_into_raw`]).
    cause: AtomicPtr<u8>,
    /// When the node was cancelled, in nanoseconds since [`epoch`] plus
    /// one (0: not yet), for the `waited` field of its `tracing` events.
    #[cfg(all(feature = "tracing", feature = "std"))]
    cancelled_at: core::sync::atomic::AtomicU64,
}

/// The process's reference instant for `cancelled_at`.
#[cfg(all(feature = "tracing", feature = "std"))]
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

// Both kinds of pointer leave the low bit free for the tag. (A cause's
// pointer is its counted block's, which is at least as aligned as `What`.)
const _: () = assert!(core::mem::align_of::<Labeled>() >= 2);

/// One entry of a scope's failure list. Never changed once pushed.
struct Recorded {
    failure: Failure,
    /// The entry pushed before this one (null for the first).
    older: *mut Recorded,
}
const _: () = assert!(core::mem::align_of::<What>() >= 2);

/// Gives a count of `cause` to the slot, as a pointer.
#[inline]
fn cause_into_raw(cause: Cause) -> *mut u8 {
    Counted::into_raw(cause.into_counted())
        .cast::<u8>()
        .cast_mut()
}

/// Takes back a count that [`cause_into_raw`] gave away.
///
/// # Safety
///
/// `raw` came from `cause_into_raw`, and this is the only `from_raw` for it.
#[inline]
unsafe fn cause_from_raw(raw: *mut u8) -> Cause {
    // SAFETY: the caller's promise is `Counted::from_raw`'s.
    Cause::from_counted(unsafe { Counted::from_raw(raw.cast::<What>()) })
}

/// A new count of the cause at `raw`, which stays in its slot.
///
/// # Safety
///
/// `raw` came from [`cause_into_raw`] and that count was not taken back.
#[inline]
unsafe fn cause_new_count(raw: *mut u8) -> Cause {
    // SAFETY: the slot's count keeps the block alive (caller).
    Cause::from_counted(unsafe { Counted::new_count(raw.cast::<What>()) })
}

/// Whether `word` is an unlabeled node's tagged cause.
#[inline]
fn is_tagged(word: *mut u8) -> bool {
    (word as usize) & 1 != 0
}

/// A node's label and cause slot; see the module doc.
pub(crate) struct Meta {
    word: AtomicPtr<u8>,
}

impl Meta {
    /// A node's meta word: null for an unlabeled node that is not a scope
    /// (nothing to allocate), else a [`Labeled`] block.
    pub(crate) fn new(label: Option<Label>, scope: bool) -> Self {
        let word = match (label, scope) {
            (None, false) => ptr::null_mut(),
            (label, scope) => Box::into_raw(Box::new(Labeled {
                label,
                scope,
                failures: AtomicPtr::new(ptr::null_mut()),
                cause: AtomicPtr::new(ptr::null_mut()),
                #[cfg(all(feature = "tracing", feature = "std"))]
                cancelled_at: core::sync::atomic::AtomicU64::new(0),
            }))
            .cast::<u8>(),
        };
        Self {
            word: AtomicPtr::new(word),
        }
    }

    /// The labeled part, if the node has a label.
    #[inline]
    fn labeled(&self) -> Option<&Labeled> {
        // Relaxed: a labeled word is written before the node is shared and
        // never changes; an unlabeled one never becomes labeled.
        let word = self.word.load(Ordering::Relaxed);
        if word.is_null() || is_tagged(word) {
            return None;
        }
        // SAFETY: an untagged, non-null word is the `Box<Labeled>` made in
        // `new`, freed only when `self` is dropped.
        Some(unsafe { &*word.cast::<Labeled>() })
    }

    pub(crate) fn label(&self) -> Option<&Label> {
        self.labeled()?.label.as_ref()
    }

    /// Whether the node is a scope (made so at creation).
    pub(crate) fn is_scope(&self) -> bool {
        self.labeled().is_some_and(|labeled| labeled.scope)
    }

    /// Adds `failure` to a scope's list, after every failure recorded
    /// before, and returns the cause of the list's first (oldest) failure,
    /// perhaps this one. One allocation, then a compare-and-swap loop that
    /// only retries when another failure was pushed meanwhile: each
    /// failure is in the list exactly once. Finding the first walks the
    /// older entries: failures are few. `None` if the node is not a scope.
    pub(crate) fn record_failure(&self, failure: Failure) -> Option<Cause> {
        let Some(labeled) = self.labeled().filter(|labeled| labeled.scope) else {
            // Unreachable: `fail` finds a scope, and roots always are.
            debug_assert!(
                false,
                "phaseout: a failure recorded in a node that is not a scope"
            );
            return None;
        };
        let own_cause = failure.cause().clone();
        let entry = Box::into_raw(Box::new(Recorded {
            failure,
            older: ptr::null_mut(),
        }));
        let mut head = labeled.failures.load(Ordering::Acquire);
        loop {
            // SAFETY: `entry` is ours until the exchange below publishes it.
            unsafe { (*entry).older = head };
            // Release: a reader that sees the entry sees its contents.
            match labeled.failures.compare_exchange_weak(
                head,
                entry,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(newer) => head = newer,
            }
        }
        let mut oldest = head;
        if oldest.is_null() {
            return Some(own_cause); // the first failure
        }
        loop {
            // SAFETY: a pushed entry is never changed or freed before the
            // node, and each older one was published before the push that
            // linked it (its CAS released it; ours acquired `head`).
            let recorded = unsafe { &*oldest };
            if recorded.older.is_null() {
                return Some(recorded.failure.cause().clone());
            }
            oldest = recorded.older;
        }
    }

    /// The failures recorded so far, oldest first (empty if the node is not
    /// a scope). May run while failures are being added: it sees a prefix.
    pub(crate) fn failures(&self) -> Vec<Failure> {
        let mut failures = Vec::new();
        let Some(labeled) = self.labeled() else {
            return failures;
        };
        let mut entry = labeled.failures.load(Ordering::Acquire);
        while !entry.is_null() {
            // SAFETY: a pushed entry is never changed or freed before the
            // node (`drop` below), and its push happens-before our acquire
            // load of it (or of a newer head).
            let recorded = unsafe { &*entry };
            failures.push(recorded.failure.clone());
            entry = recorded.older;
        }
        failures.reverse();
        failures
    }

    /// Puts `cause` in the slot if it is empty. Either way the slot is full
    /// when this returns, and what it holds happens-before the caller's
    /// next write to the state word (success is a release, failure an
    /// acquire of the write that filled it).
    #[inline(never)] // only `cancel_with` and a drop with children get here
    pub(crate) fn fill(&self, cause: &Cause) {
        let (slot, tag) = match self.labeled() {
            Some(labeled) => (&labeled.cause, 0),
            None => (&self.word, 1),
        };
        if !slot.load(Ordering::Acquire).is_null() {
            return; // filled already: do not clone for nothing
        }
        let raw = cause_into_raw(cause.clone());
        if slot
            .compare_exchange(
                ptr::null_mut(),
                raw.wrapping_add(tag),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: `raw` was not stored, so its count is still ours.
            drop(unsafe { cause_from_raw(raw) });
        }
    }

    /// Records that the node was cancelled now (labeled nodes only).
    #[cfg(all(feature = "tracing", feature = "std"))]
    pub(crate) fn record_cancelled_now(&self) {
        // A scope's block without a label: unlabeled nodes pay nothing.
        if let Some(labeled) = self.labeled().filter(|labeled| labeled.label.is_some()) {
            let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            let _ = labeled.cancelled_at.compare_exchange(
                0,
                nanos + 1,
                core::sync::atomic::Ordering::Relaxed,
                core::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// The time since the node was cancelled, if it is labeled and was.
    #[cfg(all(feature = "tracing", feature = "std"))]
    pub(crate) fn since_cancelled(&self) -> Option<core::time::Duration> {
        let at = self
            .labeled()
            .filter(|labeled| labeled.label.is_some())?
            .cancelled_at
            .load(core::sync::atomic::Ordering::Relaxed);
        let at = core::time::Duration::from_nanos(at.checked_sub(1)?);
        Some(epoch().elapsed().saturating_sub(at))
    }

    /// A clone of the cause in the slot, if it is filled.
    pub(crate) fn cause(&self) -> Option<Cause> {
        let raw = match self.labeled() {
            Some(labeled) => labeled.cause.load(Ordering::Acquire),
            None => untag(self.word.load(Ordering::Acquire)),
        };
        // SAFETY: a filled slot holds a count from `cause_into_raw`,
        // released only in `drop` below, which cannot run while `&self` is
        // alive.
        (!raw.is_null()).then(|| unsafe { cause_new_count(raw) })
    }
}

/// An unlabeled node's cause pointer without its tag (null stays null).
#[inline]
fn untag(word: *mut u8) -> *mut u8 {
    if is_tagged(word) {
        word.wrapping_sub(1)
    } else {
        word
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        let word = self.word.load(Ordering::Relaxed);
        let cause = if is_tagged(word) {
            untag(word)
        } else if !word.is_null() {
            // SAFETY: the box made in `new`; this is its only release.
            let labeled = unsafe { Box::from_raw(word.cast::<Labeled>()) };
            let mut entry = labeled.failures.load(Ordering::Relaxed);
            while !entry.is_null() {
                // SAFETY: every entry was made by `Box` in `record_failure`
                // and is freed only here, once.
                let recorded = unsafe { Box::from_raw(entry) };
                entry = recorded.older;
            }
            labeled.cause.load(Ordering::Relaxed)
        } else {
            ptr::null_mut()
        };
        if !cause.is_null() {
            // SAFETY: the slot's own count, given back once.
            drop(unsafe { cause_from_raw(cause) });
        }
    }
}
