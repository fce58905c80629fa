//! Parent → child links: an intrusive doubly-linked list per node.
//!
//! Why intrusive: linking and unlinking are O(1) pointer writes with no
//! allocation of their own, and a drained child leaves nothing behind in its
//! parent (no slot, no capacity), which keeps a long-lived parent's memory
//! flat however many children come and go.
//!
//! Ownership: the list holds one strong count of each linked child (made with
//! `Arc::into_raw`, given back with `Arc::from_raw` on unlink). `head` is
//! guarded by the node's own lock; each child's `siblings` by its parent's.

use core::mem::ManuallyDrop;
use core::ptr;

use super::{state, Node};
use crate::sync::{Arc, Ordering};

/// The head of a node's child list. Guarded by that node's lock.
pub(crate) struct ChildList {
    head: *const Node,
}

impl ChildList {
    pub(crate) const fn new() -> Self {
        Self { head: ptr::null() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }
}

/// A node's neighbours in its parent's list. Guarded by the parent's lock.
pub(crate) struct Siblings {
    prev: *const Node,
    next: *const Node,
}

impl Siblings {
    pub(crate) const fn new() -> Self {
        Self {
            prev: ptr::null(),
            next: ptr::null(),
        }
    }
}

/// Links the freshly created `child` at the front of `parent`'s list.
///
/// Under the parent's lock it re-checks the parent's `CANCELLED` flag: a
/// cancel walk that read the list before this link cannot have seen the
/// child, so the child is marked cancelled here (invariant #2). The child is
/// not shared yet, so nobody waits on it and a plain RMW is enough.
pub(super) fn link(parent: &Node, child: &Arc<Node>) {
    let raw = Arc::into_raw(child.clone());
    parent.children.with(|list| {
        // SAFETY: we hold `parent`'s lock, which guards `list` and the
        // `siblings` of every node in it; `raw` is not in any list yet and
        // `list.head`, if not null, is a live child (the list owns a count).
        unsafe {
            (*(*raw).siblings.get()).next = list.head;
            if let Some(old_head) = list.head.as_ref() {
                (*old_head.siblings.get()).prev = raw;
            }
        }
        list.head = raw;
        if state::is_cancelled(parent.state.load(Ordering::Acquire)) {
            child.state.fetch_or(
                state::CANCELLED | state::SUBTREE_CANCELLED,
                Ordering::AcqRel,
            );
        }
    });
}

/// Removes `child` from `parent`'s list and returns the list's reference to
/// it, to be dropped by the caller after the lock is released.
pub(super) fn unlink(parent: &Node, child: &Node) -> Arc<Node> {
    let raw = parent.children.with(|list| {
        // SAFETY: we hold `parent`'s lock, which guards `list` and the
        // `siblings` of `child` and of its neighbours; all of them are linked
        // (so alive: the list owns a count of each).
        unsafe {
            let siblings = &mut *child.siblings.get();
            // The pointer the list stores is the one `Arc::into_raw` gave:
            // it, not `child` (a plain reference), may become an `Arc` again.
            let stored = match siblings.prev.as_ref() {
                None => core::mem::replace(&mut list.head, siblings.next),
                Some(prev) => core::mem::replace(&mut (*prev.siblings.get()).next, siblings.next),
            };
            debug_assert!(
                ptr::eq(stored, child),
                "phaseout: inconsistent state: a child's links do not lead back to it"
            );
            if let Some(next) = siblings.next.as_ref() {
                (*next.siblings.get()).prev = siblings.prev;
            }
            *siblings = Siblings::new();
            stored
        }
    });
    // SAFETY: `raw` came from `Arc::into_raw` in `link`, and unlinking is the
    // one place that gives that count back; a node is unlinked once, by the
    // thread that drained it.
    unsafe { Arc::from_raw(raw) }
}

/// Calls `visit` with a new reference to each child of `node`, newest first,
/// with `node`'s lock held. `visit` must be short (it runs under the lock)
/// and must not touch `node`'s links.
pub(crate) fn for_each_child(node: &Node, mut visit: impl FnMut(Arc<Node>)) {
    node.children.with(|list| {
        let mut cursor = list.head;
        while !cursor.is_null() {
            // SAFETY: `cursor` is linked in `node`'s list, whose lock we hold,
            // so the list's count keeps it alive; `from_raw` inside
            // `ManuallyDrop` borrows that count without giving it back, and
            // `clone` makes the caller's own.
            let child = unsafe { ManuallyDrop::new(Arc::from_raw(cursor)) };
            // SAFETY: the child's `siblings` are guarded by `node`'s lock.
            cursor = unsafe { (*child.siblings.get()).next };
            visit(Arc::clone(&child));
        }
    });
}
