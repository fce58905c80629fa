//! [`Owner`]: the owning side of a node, whose drop is the hand-off.
//!
//! A `Phaser` is an `Owner` and the public methods around it. When the
//! owner is done, its node is cancelled (if it was not yet) and marked
//! "owner done"; if children are still live, the owner's count is left to
//! the node itself and the last child's drain takes it back (invariant #6).
//! That hand-off, and the raw pointer it needs (invariant #7), live here
//! and nowhere else.

use core::mem::ManuallyDrop;
use core::ops::Deref;

use super::drain::drain_cascade;
use super::{contain, end_of_operation, lock, new_child, state, trace, walk, Node, NodeRef};
use crate::label::Label;

/// The owner's count of a node. Dropping it is the owner's exit: see
/// [`release_owner`].
pub(crate) struct Owner {
    /// `ManuallyDrop`: the drop hands the count over to the node, or
    /// releases it, never both (`release_owner`).
    node: ManuallyDrop<NodeRef>,
    /// The owner's panic fails the node's scope (`Phaser::critical`). Kept
    /// here, not in the node: only the owner's drop reads it. Without `std`
    /// no panic can be seen, and the flag is not kept.
    #[cfg(feature = "std")]
    critical: bool,
}

impl Owner {
    /// A new root node with its owner.
    pub(crate) fn root(label: Option<Label>) -> Self {
        Self {
            node: ManuallyDrop::new(NodeRef::new(Node::new(label, core::ptr::null(), true))),
            #[cfg(feature = "std")]
            critical: false,
        }
    }

    /// A new child node of this one with its owner, or `None` if this node
    /// is cancelled (see [`new_child`] for the limit's panic). `scope`: the
    /// child contains the failures below it.
    #[inline]
    pub(crate) fn child(&self, label: Option<Label>, scope: bool) -> Option<Self> {
        let node = new_child(&self.node, label, scope)?;
        Some(Self {
            node: ManuallyDrop::new(node),
            #[cfg(feature = "std")]
            critical: false,
        })
    }

    /// From now on the owner's panic fails the node's scope.
    pub(crate) fn set_critical(&mut self) {
        #[cfg(feature = "std")]
        {
            self.critical = true;
        }
    }
}

impl Deref for Owner {
    type Target = NodeRef;

    #[inline]
    fn deref(&self) -> &NodeRef {
        &self.node
    }
}

impl Drop for Owner {
    /// The owner is done: its thread's panic (seen with `std` only) is
    /// recorded, the subtree cancelled, and the node drains as soon as its
    /// children have. Never blocks.
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "std")]
        let panicked = std::thread::panicking();
        #[cfg(not(feature = "std"))]
        let panicked = false;
        #[cfg(feature = "std")]
        if panicked && self.critical {
            fail_for_panic(&self.node);
        }
        // SAFETY: `self.node` holds the owner's count and is not used
        // again: `release_owner` releases it or leaves it to the node,
        // which may already be draining on another thread.
        unsafe { release_owner(&mut self.node, panicked) };
    }
}

/// A critical node's owner panicked: its scope fails, with a cause that
/// says so. Out of line: a drop that is not a critical panic pays one
/// branch for it.
#[cfg(feature = "std")]
#[cold]
#[inline(never)]
fn fail_for_panic(node: &NodeRef) {
    let cause = crate::cause::Cause::owner_finished(node.label_cow(), true);
    super::supervise::fail(node, cause, true);
}

/// The owner of a node is done: cancel the subtree, mark the node, and
/// drain it (and the ancestors that waited only for it) if it has no live
/// child. `owner` is the owner's reference to the node.
///
/// If the node drained here, the owner's reference is released here and
/// this returns `true`. Otherwise it is handed over to the node (invariant
/// #6) and this returns `false`: the caller must not touch `owner` again
/// either way.
///
/// A waker that panics does not stop the drop half-way (the node would
/// never drain): its panic comes out of this call once the node is marked
/// done, the cascade has run and the owner's reference is released
/// (`wakes.rs`), so that the panic cannot leak the node.
///
/// # Safety
///
/// `owner` holds the owner's count of the node, and is not used after
/// this call. The node is reached through a raw pointer inside: it may be
/// freed by another thread the moment it is marked done (invariant #7).
#[inline]
pub(super) unsafe fn release_owner(owner: &mut ManuallyDrop<NodeRef>, panicked: bool) -> bool {
    // SAFETY: `owner` holds the count (caller).
    let drained_here = unsafe { release_owner_unraised(NodeRef::as_ptr(owner), panicked) };
    if drained_here {
        // Freeing the node runs its cause's destructor, user code: its
        // panic must not skip the end of the operation, which raises a
        // waker's panic held meanwhile (invariant #15).
        // SAFETY: drained here, so the count is still the caller's, and
        // the caller does not use `owner` again.
        contain(|| unsafe { ManuallyDrop::drop(owner) });
    }
    end_of_operation();
    drained_here
}

/// [`release_owner`] up to the point where a waker's panic may be raised:
/// `true` if the node drained here (the caller's count is then still its
/// own).
///
/// # Safety
///
/// `node` came from [`NodeRef::as_ptr`] of the owner's reference, which the
/// caller holds.
#[inline]
unsafe fn release_owner_unraised(node: *const Node, panicked: bool) -> bool {
    let mut done = state::OWNER_DONE;
    if panicked {
        done |= state::PANICKED;
    }
    // A node without children (the common case: a request, a leaf task) is
    // cancelled, marked done and drained by one compare-and-swap.
    // SAFETY: the caller's count keeps the node alive during this call,
    // which hands nothing away unless the node drains here (then it is
    // still ours).
    let prev = walk::cancel_for_owner_drop(unsafe { &*node }, panicked, done);
    if state::live_children(prev) != 0 {
        // From this RMW on, the last child may drain the node and free it on
        // another thread: only the atomic word is borrowed for it.
        // SAFETY: alive until the RMW, as above.
        let word = unsafe { &(*node).state };
        let prev = lock::update(word, |current| Some(current | done));
        if state::live_children(prev) != 0 {
            return false; // the last child to drain will drain this node
        }
    }
    // SAFETY: the node drained in our RMW, so nobody else frees it, and the
    // caller's count still holds it.
    let node = unsafe { &*node };
    trace::drained(node);
    drain_cascade(node);
    true
}
