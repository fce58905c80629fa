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

use super::{contain, end_of_operation, for_each_child, state, trace, Node, NodeRef};
use crate::cause::Cause;

/// Why a walk cancels the nodes it reaches first (invariant #10).
enum Reason<'a> {
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
    let prev = mark_cancelled(root, reason, abort, if_childless, true);
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
        //
        // The same holds for every call on a node that was cancelled
        // already: a `cancel()`, `cancel_with(b)` or `abort()` that comes
        // after `cancel_with(a)` (a task woken by `a` that then runs a
        // staged stop) passes `a` down, not its own reason, so the subtree
        // reads one cause whichever walk gets to a node first.
        match reason {
            Reason::Plain if !state::is_cancelled(prev) => walk_descendants(root, reason, abort),
            _ => walk_below_with_own_cause(root, abort),
        }
        root.set(state::SUBTREE_CANCELLED);
    }
    prev
}

/// The walk below `root` that gives what it reaches first `root`'s own
/// cause (invariant #10), read from the node now that it is cancelled (and
/// so final): the one it had before this call (none after a plain cancel),
/// or the one this call's RMW gave it (a drop's names the owner, a
/// `cancel_with`'s is the slot's, perhaps a racing call's). Out of line,
/// cause and all: firmware pays flash for every inlined copy of making and
/// dropping a cause.
#[inline(never)]
fn walk_below_with_own_cause(root: &Node, abort: bool) {
    let cause = super::cause_of(root);
    let below = match &cause {
        Some(cause) => Reason::Given(cause),
        None => Reason::Plain,
    };
    walk_descendants(root, &below, abort);
}

/// The walk below an already cancelled `root` (invariant #5: no recursion).
fn walk_descendants(root: &Node, reason: &Reason<'_>, abort: bool) {
    let mut stack = Vec::new();
    for_each_child(root, |child| stack.push(Visit::Down(child)));
    // The walk's reference to a node may be its last (its owner left
    // meanwhile): freeing it runs its cause's destructor, user code, whose
    // panic must not stop the walk half-way (invariant #15); hence each
    // release in `contain`.
    while let Some(visit) = stack.pop() {
        match visit {
            Visit::Down(node) => {
                let prev = mark_cancelled(&node, reason, abort, 0, false);
                let done_already = !abort && prev & state::SUBTREE_CANCELLED != 0;
                if done_already || state::live_children(prev) == 0 {
                    // Done already, or a leaf (marked in the same RMW).
                    contain(|| drop(node));
                    continue;
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
                contain(|| drop(node));
            }
        }
    }
}

/// Sets `CANCELLED` on `node` (and `ABORTED` if `abort`) and wakes the
/// waiters if that changed the node. `starts_here`: the node is the one the
/// call was made on (for the `tracing` events). The RMW that cancels the node also records
/// `reason` (invariant #10). If the node has no child, that is its whole
/// subtree: `SUBTREE_CANCELLED` and `if_childless` are set in the same
/// RMW (no child can appear once it is cancelled). Returns the state
/// before.
#[inline]
fn mark_cancelled(
    node: &Node,
    reason: &Reason<'_>,
    abort: bool,
    if_childless: usize,
    starts_here: bool,
) -> usize {
    let mut cancelled_with = 0;
    match reason {
        Reason::Plain => {}
        Reason::Given(cause) => {
            if !state::is_cancelled(node.load()) {
                node.meta.fill(cause);
                cancelled_with = state::HAS_CAUSE;
            }
        }
        Reason::OwnDrop { panicked, .. } => {
            cancelled_with = state::OWN_DROP | if *panicked { state::PANICKED } else { 0 };
        }
    }
    let marks = if abort {
        state::CANCELLED | state::ABORTED
    } else {
        state::CANCELLED
    };
    let prev = node.update(|current| {
        let mut next = current | marks;
        if !state::is_cancelled(current) {
            next |= cancelled_with;
            if current & state::HAS_WAITERS != 0 {
                next |= state::WAKE_PENDING; // until the wake below is done
            }
        }
        if state::live_children(current) == 0 {
            next |= state::SUBTREE_CANCELLED | if_childless;
        }
        (next != current).then_some(next)
    });
    if !state::is_cancelled(prev) {
        trace::cancelled_now(node);
        if starts_here {
            trace::cancel(node); // a cancellation started here
        }
        if state::live_children(prev) == 0 && if_childless & state::OWNER_DONE == 0 {
            trace::turn(node); // no child: cancelled is its turn
        }
        if prev & state::HAS_WAITERS != 0 {
            // This RMW may also have given the turn (no child) or
            // aborted: one wake serves every kind of waiter.
            node.notify_all();
            node.clear(state::WAKE_PENDING);
        }
    } else if abort && prev & state::HAS_WAITERS != 0 || prev & state::WAKE_PENDING != 0 {
        // Either an abort, which wakes every aborted node's waiters
        // before it returns, even those another abort marked first
        // (invariant #11); or another thread cancelled this node and may
        // not have woken its waiters yet (preempted, or a slow waker
        // ahead of them). This call must not return before they are
        // woken (guarantee 14), so wake them too; a second notification
        // is harmless. (If the notify in progress is this thread's own,
        // further up the stack, from a waker that cancels, this one
        // cannot deadlock on it: no user waker runs while
        // event-listener holds its lock, `wakes.rs`.)
        node.notify_all();
    }
    prev
}
