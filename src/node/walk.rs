//! The cancel walk: one `cancel()` (or `abort()`) marks a whole subtree.
//!
//! Depth-first with an explicit stack (invariant #5). Each node is visited
//! twice: on the way down it gets `CANCELLED` (waking its waiters) and its
//! children are pushed; on the way up, once everything below it has been
//! handled, it gets `SUBTREE_CANCELLED`.
//!
//! Why the second flag: a `cancel()` must not return before its whole subtree
//! is cancelled, even if another thread's walk got to the top of it first
//! (guarantee 3). So a walk cannot stop at a node that is merely `CANCELLED`;
//! it can only stop at one that is `SUBTREE_CANCELLED`. Without the flag,
//! dropping the `Phaser`s of a long chain root-first would re-walk the rest
//! of the chain at every step: quadratic time.
//!
//! An abort walk also sets `ABORTED` and never stops early (invariant #11):
//! abort is a rare escalation, and walking everything is what lets it wake
//! every `aborted()` waiter without a pending bit of its own.

use alloc::vec::Vec;

use super::{end_of_operation, for_each_child, state, trace, Node, NodeRef};
use crate::cause::Cause;

/// Why a walk cancels the nodes it reaches first (invariant #10).
pub(super) enum Reason<'a> {
    /// A plain `cancel()` or `abort()`: no cause.
    Plain,
    /// `cancel_with(cause)`, or what a walk passes down.
    Given(&'a Cause),
    /// The walk's root is being dropped by its owner (whose thread is
    /// `panicked` or not); its descendants get a shared cause that says so.
    OwnDrop { panicked: bool },
}

enum Visit {
    /// Cancel this node and queue its children.
    Down(NodeRef),
    /// Everything below this node is cancelled now.
    Up(NodeRef),
}

/// Cancels `root` and its whole subtree. Returns once every node of it is
/// `CANCELLED` and every waiter on them has been woken. Never waits for
/// another thread.
///
/// A waker that panics does not stop the walk: its panic comes out of this
/// call once the walk is done (`wakes.rs`).
#[inline]
pub(crate) fn cancel_subtree(root: &Node) {
    walk(root, &Reason::Plain, false, 0);
    end_of_operation();
}

/// Like [`cancel_subtree`], aborting every node of the subtree as well.
pub(crate) fn abort_subtree(root: &Node) {
    walk(root, &Reason::Plain, true, 0);
    end_of_operation();
}

/// Like [`cancel_subtree`], giving `cause` to the nodes it cancels first.
pub(crate) fn cancel_subtree_with(root: &Node, cause: &Cause) {
    walk(root, &Reason::Given(cause), false, 0);
    end_of_operation();
}

/// The walk of an owner's drop: like [`cancel_subtree`] with the drop's
/// cause; if `root` has no child, also sets `if_childless` in the same
/// read-modify-write. Returns `root`'s state before. A waker's panic is
/// held for the caller's own end of the operation: the drop is not over
/// when the walk is.
#[inline]
pub(super) fn cancel_for_owner_drop(root: &Node, panicked: bool, if_childless: usize) -> usize {
    walk(root, &Reason::OwnDrop { panicked }, false, if_childless)
}

#[inline]
fn walk(root: &Node, reason: &Reason<'_>, abort: bool, if_childless: usize) -> usize {
    let prev = root.mark_cancelled(reason, abort, if_childless, true);
    if abort && !state::is_aborted(prev) {
        trace::abort(root);
    }
    let done_already = !abort && prev & state::SUBTREE_CANCELLED != 0;
    if !done_already && state::live_children(prev) > 0 {
        // The descendants this walk reaches first get its cause. An owner's
        // drop that was the node's first cancellation becomes a shared
        // cause that names the owner; a drop after the node was cancelled
        // passes on the node's own cause, or none after a plain cancel
        // (guarantee 18): the walk that cancelled the node may still be on
        // its way down, and what it reaches late was still cancelled for
        // its reason, not because this owner returned.
        let dropped;
        let below = match reason {
            Reason::Plain | Reason::Given(_) => reason,
            Reason::OwnDrop { panicked } => {
                dropped = cause_below_a_drop(root, prev, *panicked);
                match &dropped {
                    Some(cause) => &Reason::Given(cause),
                    None => &Reason::Plain,
                }
            }
        };
        walk_descendants(root, below, abort);
        root.set(state::SUBTREE_CANCELLED);
    }
    prev
}

/// The cause an owner's drop gives the descendants it reaches first:
/// its own if the drop cancelled `root` (`prev`, the state before, was not
/// cancelled), else `root`'s cause. Out of line: only a drop with children
/// needs it, and firmware pays flash for every inlined copy.
#[inline(never)]
fn cause_below_a_drop(root: &Node, prev: usize, panicked: bool) -> Option<Cause> {
    if state::is_cancelled(prev) {
        // Not by this drop, so `OWN_DROP` is not set: the node's cause is
        // in its slot, or it has none.
        (prev & state::HAS_CAUSE != 0)
            .then(|| root.meta.cause())
            .flatten()
    } else {
        Some(Cause::owner_finished(root.label_cow(), panicked))
    }
}

/// The walk below an already cancelled `root` (invariant #5: no recursion).
fn walk_descendants(root: &Node, reason: &Reason<'_>, abort: bool) {
    let mut stack = Vec::new();
    for_each_child(root, |child| stack.push(Visit::Down(child)));
    while let Some(visit) = stack.pop() {
        match visit {
            Visit::Down(node) => {
                let prev = node.mark_cancelled(reason, abort, 0, false);
                let done_already = !abort && prev & state::SUBTREE_CANCELLED != 0;
                if done_already || state::live_children(prev) == 0 {
                    continue; // done already, or a leaf (marked in the same RMW)
                }
                // `Up` goes *below* the children, so it is popped after all
                // of them are done (inserting moves only this node's
                // children, and saves a reference count).
                let below_children = stack.len();
                for_each_child(&node, |child| stack.push(Visit::Down(child)));
                stack.insert(below_children, Visit::Up(node));
            }
            Visit::Up(node) => {
                node.set(state::SUBTREE_CANCELLED);
            }
        }
    }
}
