//! Parent → child links: an intrusive doubly-linked list per node.
//!
//! Why intrusive: linking and unlinking are O(1) pointer writes with no
//! allocation of their own, and a drained child leaves nothing behind in its
//! parent (no slot, no capacity), which keeps a long-lived parent's memory
//! flat however many children come and go.
//!
//! Ownership: the list holds no count of its own. A linked child is always
//! alive, because a child stays linked until it drains, and an un-drained
//! node is kept alive by its owner's `Phaser` or, once the owner is done,
//! by the reference the owner left to the node itself (node invariant #6);
//! the thread that drains a child holds a reference to it while it unlinks
//! it. Saving the two
//! reference-count operations per child is measurable (benches). `head` is
//! guarded by the node's own `LOCKED` bit; each child's `siblings` by its
//! parent's.
//! The pointers stored are `NodeRef::as_ptr` of the child, so a walker may
//! take a new count of it while the lock keeps the child linked.

use core::ptr;

use super::{Node, NodeRef};

/// The head of a node's child list. Guarded by that node's `LOCKED` bit.
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

/// A node's neighbours in its parent's list. Guarded by the parent's
/// `LOCKED` bit.
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

/// Links `child` at the front of `list`. The caller holds the lock of the
/// list's node, which also guards every linked child's `siblings`.
#[inline]
pub(super) fn push_front(list: &mut ChildList, child: &NodeRef) {
    let raw = NodeRef::as_ptr(child);
    // SAFETY: the caller holds the lock guarding `list` and the `siblings`
    // of every node in it; `child` is in no list yet, and `list.head`, if
    // not null, is a live child (see the module doc).
    unsafe {
        (*child.siblings.get()).next = list.head;
        if let Some(old_head) = list.head.as_ref() {
            (*old_head.siblings.get()).prev = raw;
        }
    }
    list.head = raw;
}

/// Removes `child` from `list`. The caller holds the lock of the list's
/// node and keeps `child` alive.
#[inline]
pub(super) fn unlink(list: &mut ChildList, child: &Node) {
    // SAFETY: the caller holds the lock guarding `list` and the `siblings`
    // of `child` and of its neighbours; all of them are linked, so alive
    // (module doc).
    unsafe {
        let siblings = &mut *child.siblings.get();
        match siblings.prev.as_ref() {
            None => list.head = siblings.next,
            Some(prev) => (*prev.siblings.get()).next = siblings.next,
        }
        if let Some(next) = siblings.next.as_ref() {
            (*next.siblings.get()).prev = siblings.prev;
        }
        *siblings = Siblings::new();
    }
}

/// Calls `visit` with a new reference to each child of `node`, newest first,
/// with `node`'s lock held. `visit` must be short (it runs under the lock)
/// and must not touch `node`.
pub(crate) fn for_each_child(node: &Node, mut visit: impl FnMut(NodeRef)) {
    // SAFETY: `node` is borrowed from a count the caller holds for the whole
    // call. `visit` may panic (a full stack's allocation); it changes
    // nothing of the list, so the lock's panic guard restores it correctly.
    let visit_all = |list: &mut ChildList, unlocked| {
        let mut cursor = list.head;
        while !cursor.is_null() {
            // SAFETY: `cursor` is linked in `node`'s list, whose lock we hold,
            // so it is alive (module doc); it came from `NodeRef::as_ptr`.
            let child = unsafe { NodeRef::new_count(cursor) };
            // SAFETY: the child's `siblings` are guarded by `node`'s lock.
            cursor = unsafe { (*child.siblings.get()).next };
            visit(child);
        }
        (unlocked, ())
    };
    // SAFETY: see above.
    unsafe { super::with_children(node, visit_all) }
}
