//! A node's label and cause slot, in one word.
//!
//! Most nodes (a request, a connection) have no label and are never
//! cancelled with a cause, and a node must stay 64 bytes. So both share one
//! word, by its low bit:
//!
//! | word            | meaning                                             |
//! | --------------- | --------------------------------------------------- |
//! | `0`             | no label, no cause                                  |
//! | `cause \| 1`    | no label; the slot holds a [`Cause`] (`into_raw`)   |
//! | `labeled`       | a `Box<Labeled>`, set at creation and never changed; its `cause` field is the slot (`0` or a `Cause`) |
//!
//! Both `Labeled` and a cause's block are at least 4-aligned, so the low bit
//! is free. The slot is filled at most once, by compare-and-swap from `0`,
//! and emptied only when the node is freed; so a reader that saw it filled
//! sees the same cause forever. Whether the slot is the node's cause is the
//! state word's business (`HAS_CAUSE`, node invariant #10): a walk that
//! fills the slot and then loses the race to cancel the node leaves a cause
//! there that nobody reads.

use alloc::boxed::Box;

use super::Label;
use crate::cause::Cause;
use crate::sync::{AtomicUsize, Ordering};

/// The low bit of an unlabeled node's word that marks a cause.
const UNLABELED_CAUSE: usize = 1;

/// The heap part of a labeled node.
struct Labeled {
    label: Label,
    /// `0`, or a cause from [`Cause::into_raw`].
    cause: AtomicUsize,
}

const _: () = assert!(core::mem::align_of::<Labeled>() >= 2);

/// A node's label and cause slot; see the module doc.
pub(crate) struct Meta {
    word: AtomicUsize,
}

impl Meta {
    pub(crate) fn new(label: Option<Label>) -> Self {
        let word = match label {
            None => 0,
            Some(label) => Box::into_raw(Box::new(Labeled {
                label,
                cause: AtomicUsize::new(0),
            })) as usize,
        };
        Self {
            word: AtomicUsize::new(word),
        }
    }

    /// The labeled part, if the node has a label.
    #[inline]
    fn labeled(&self) -> Option<&Labeled> {
        // Relaxed: a labeled word is written before the node is shared and
        // never changes; an unlabeled one never becomes labeled.
        let word = self.word.load(Ordering::Relaxed);
        if word == 0 || word & UNLABELED_CAUSE != 0 {
            return None;
        }
        // SAFETY: an even, non-zero word is the `Box<Labeled>` made in
        // `new`, freed only when `self` is dropped.
        Some(unsafe { &*(word as *const Labeled) })
    }

    pub(crate) fn label(&self) -> Option<&Label> {
        self.labeled().map(|labeled| &labeled.label)
    }

    /// Puts `cause` in the slot if it is empty. Either way the slot is full
    /// when this returns, and what it holds happens-before the caller's
    /// next write to the state word (success is a release, failure an
    /// acquire of the write that filled it).
    pub(crate) fn fill(&self, cause: &Cause) {
        let (slot, tag) = match self.labeled() {
            Some(labeled) => (&labeled.cause, 0),
            None => (&self.word, UNLABELED_CAUSE),
        };
        if slot.load(Ordering::Acquire) != 0 {
            return; // filled already: do not clone for nothing
        }
        let raw = cause.clone().into_raw();
        if slot
            .compare_exchange(0, raw | tag, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: `raw` was not stored, so its count is still ours.
            drop(unsafe { Cause::from_raw(raw) });
        }
    }

    /// A clone of the cause in the slot, if it is filled.
    pub(crate) fn cause(&self) -> Option<Cause> {
        let raw = match self.labeled() {
            Some(labeled) => labeled.cause.load(Ordering::Acquire),
            None => self.word.load(Ordering::Acquire) & !UNLABELED_CAUSE,
        };
        // SAFETY: a filled slot holds a count from `into_raw`, released
        // only in `drop` below, which cannot run while `&self` is alive.
        (raw != 0).then(|| unsafe { Cause::clone_raw(raw) })
    }
}

impl Drop for Meta {
    fn drop(&mut self) {
        let word = self.word.load(Ordering::Relaxed);
        let cause = if word & UNLABELED_CAUSE != 0 {
            word & !UNLABELED_CAUSE
        } else if word != 0 {
            // SAFETY: the box made in `new`; this is its only release.
            let labeled = unsafe { Box::from_raw(word as *mut Labeled) };
            labeled.cause.load(Ordering::Relaxed)
        } else {
            0
        };
        if cause != 0 {
            // SAFETY: the slot's own count, given back once.
            drop(unsafe { Cause::from_raw(cause) });
        }
    }
}
