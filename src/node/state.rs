//! The packed state word of a node.
//!
//! Everything a node's hot questions need lives in one `usize`, so every
//! transition is one atomic read-modify-write and every question is one load:
//!
//! | bits            | name                | set by                                    | cleared |
//! | --------------- | ------------------- | ----------------------------------------- | ------- |
//! | 0               | `CANCELLED`         | the cancel walk                           | never |
//! | 1               | `SUBTREE_CANCELLED` | the cancel walk, after every descendant has `CANCELLED` | never |
//! | 2               | `OWNER_DONE`        | the owning `Phaser`'s `Drop`              | never |
//! | 3               | `PANICKED`          | the owning `Phaser`'s `Drop`, while its thread panics | never |
//! | 4               | `HAS_WAITERS`       | a waiter, *after* it registered its listener | never |
//! | 5               | `LOCKED`            | whoever reads or changes the child list   | by the same thread, with the write that ends its change |
//! | 6               | `LOCK_SLEEPERS`     | a thread that gave up spinning on `LOCKED` and is about to sleep (std); a release that hands the lock over while more sleepers stay queued | by the lock holder's unlock, which then wakes the sleepers or hands the lock to one |
//! | 7               | `WAKE_PENDING`      | the RMW that cancels a node with waiters  | by the same thread once its `notify` returned |
//! | 8               | `ABORTED`           | the abort walk (with `CANCELLED` if not yet set) | never |
//! | 9               | `HAS_CAUSE`         | the RMW that sets `CANCELLED`, for a cancellation with a cause, after the cause slot was filled (`meta.rs`) | never |
//! | 10              | `OWN_DROP`          | the RMW that sets `CANCELLED`, when it is the owner's drop | never |
//! | 11 ..= usize::BITS-1 | live-child count | `+1` by `child()` as it links a child, `-1` as a drained child unlinks | — |
//!
//! `LOCKED` makes the word its own lock for the child list: every other
//! write to the word is a compare-and-swap that waits while `LOCKED` is set
//! (only `LOCK_SLEEPERS` may be added meanwhile), so the lock holder ends its
//! critical section by writing the final value in one step. That lets
//! `child()` count and link a child with one RMW to lock and one write to
//! unlock, and a drained child unlink and give its count back the same way.
//! See `lock.rs` for how a waiter spins, then sleeps.
//!
//! Derived states (none of them needs a bit of its own):
//!
//! * **Drained** = `OWNER_DONE` and count 0. Exactly one read-modify-write
//!   makes this true (the owner's `fetch_or(OWNER_DONE)` seeing count 0, or
//!   the last child's `fetch_sub(ONE_CHILD)` seeing `OWNER_DONE`), and the
//!   thread that performs it runs the drain cascade.
//! * **Turn** = `CANCELLED` and count 0 (and not yet drained).
//!
//! `OWNER_DONE` implies `CANCELLED`: the owner cancels its subtree before it
//! marks itself done. `ABORTED` implies `CANCELLED`. `HAS_CAUSE` and
//! `OWN_DROP` exclude each other and are only ever set in the same RMW as
//! `CANCELLED`, so a node's cause is decided the moment it is cancelled.
//! With `OWN_DROP`, `PANICKED` is set in that same RMW too.

/// Shutdown was requested on this node or on an ancestor.
pub(super) const CANCELLED: usize = 1 << 0;
/// This node and every descendant it had when the walk passed are
/// `CANCELLED`; a later `cancel()` on it has nothing left to do.
pub(super) const SUBTREE_CANCELLED: usize = 1 << 1;
/// The owning `Phaser` was dropped.
pub(super) const OWNER_DONE: usize = 1 << 2;
/// The owning `Phaser` was dropped while its thread was panicking.
pub(super) const PANICKED: usize = 1 << 3;
/// Some task registered a listener on this node's event; notifiers may skip
/// `Event::notify` (which allocates the event's list) while this is clear.
pub(super) const HAS_WAITERS: usize = 1 << 4;
/// The child list is being read or changed; see the module doc.
pub(super) const LOCKED: usize = 1 << 5;
/// Some thread sleeps until `LOCKED` is cleared: the holder must wake it,
/// or hand the lock to it (`lock.rs`). Only ever set together with
/// `LOCKED`.
pub(super) const LOCK_SLEEPERS: usize = 1 << 6;
/// The node was cancelled while it had waiters, and the thread that
/// cancelled it has not finished waking them. Another `cancel()` that finds
/// this wakes them itself before it returns (guarantee 14).
pub(super) const WAKE_PENDING: usize = 1 << 7;
/// Shutdown was escalated on this node or an ancestor: abandon the work in
/// hand.
pub(super) const ABORTED: usize = 1 << 8;
/// The node was cancelled with a cause, which is in its cause slot.
pub(super) const HAS_CAUSE: usize = 1 << 9;
/// The node was cancelled by its own owner's drop; its cause says so.
pub(super) const OWN_DROP: usize = 1 << 10;
/// How far the live-child count is shifted.
const COUNT_SHIFT: u32 = 11;
/// One live child, in the units of the state word.
pub(super) const ONE_CHILD: usize = 1 << COUNT_SHIFT;
/// The largest number of live children one node can have:
/// 2^53 − 1 on 64-bit targets, 2^21 − 1 (2,097,151) on 32-bit ones.
pub(super) const MAX_CHILDREN: usize = usize::MAX >> COUNT_SHIFT;

/// Number of live (not yet drained) children in `state`.
#[inline]
pub(super) const fn live_children(state: usize) -> usize {
    state >> COUNT_SHIFT
}

/// Whether `state` has the cancelled flag.
#[inline]
pub(super) const fn is_cancelled(state: usize) -> bool {
    state & CANCELLED != 0
}

/// Whether `state` has the aborted flag.
#[inline]
pub(super) const fn is_aborted(state: usize) -> bool {
    state & ABORTED != 0
}

/// Whether `state` is this node's turn: cancelled, and no child left.
#[inline]
pub(super) const fn is_turn(state: usize) -> bool {
    is_cancelled(state) && live_children(state) == 0
}

/// Whether `state` is drained: owner done and no child left.
#[inline]
pub(super) const fn is_drained(state: usize) -> bool {
    state & OWNER_DONE != 0 && live_children(state) == 0
}

/// A snapshot of a node's state word, read with one acquire load
/// ([`Node::state`](super::Node::state)): the questions the handles,
/// futures and reports ask, without the bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct State(usize);

impl State {
    #[inline]
    pub(super) const fn of(word: usize) -> Self {
        Self(word)
    }

    /// Shutdown was requested on this node or an ancestor (or its owner
    /// finished).
    #[inline]
    pub(crate) const fn is_cancelled(self) -> bool {
        is_cancelled(self.0)
    }

    /// Shutdown was escalated on this node or an ancestor.
    #[inline]
    pub(crate) const fn is_aborted(self) -> bool {
        is_aborted(self.0)
    }

    /// The node's turn: cancelled, and no child left.
    #[inline]
    pub(crate) const fn is_turn(self) -> bool {
        is_turn(self.0)
    }

    /// The node drained: its owner is done and no child is left.
    #[inline]
    pub(crate) const fn is_drained(self) -> bool {
        is_drained(self.0)
    }

    /// The owning `Phaser` was dropped.
    #[inline]
    pub(crate) const fn owner_done(self) -> bool {
        self.0 & OWNER_DONE != 0
    }

    /// The owning `Phaser` was dropped while its thread panicked.
    #[inline]
    pub(crate) const fn panicked(self) -> bool {
        self.0 & PANICKED != 0
    }

    /// How many children have not drained yet.
    #[inline]
    pub(crate) const fn live_children(self) -> usize {
        live_children(self.0)
    }
}

/// Why a node did not take one more child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NoChild {
    /// The node is cancelled: it accepts no child (guarantee 4).
    Cancelled,
    /// The node already has [`MAX_CHILDREN`] live children; one more would
    /// wrap the count into the flag bits.
    Full,
}

/// The state after adding one live child, or why not.
///
/// It never panics: it runs while the child-list lock is held, and a panic
/// there would leave the lock held (guarantee 13). The caller reports
/// [`NoChild::Full`] after unlocking.
#[inline]
pub(super) const fn with_one_more_child(state: usize) -> Result<usize, NoChild> {
    if is_cancelled(state) {
        return Err(NoChild::Cancelled);
    }
    if live_children(state) >= MAX_CHILDREN {
        return Err(NoChild::Full);
    }
    Ok(state + ONE_CHILD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_count_do_not_overlap() {
        let flags = CANCELLED
            | SUBTREE_CANCELLED
            | OWNER_DONE
            | PANICKED
            | HAS_WAITERS
            | LOCKED
            | LOCK_SLEEPERS
            | WAKE_PENDING
            | ABORTED
            | HAS_CAUSE
            | OWN_DROP;
        assert_eq!(flags & ONE_CHILD, 0);
        assert_eq!(flags, ONE_CHILD - 1);
        assert_eq!(live_children(flags), 0);
        assert_eq!(live_children(flags | (3 * ONE_CHILD)), 3);
        assert_eq!(live_children(usize::MAX), MAX_CHILDREN);
    }

    #[test]
    fn derived_states() {
        assert!(!is_turn(0));
        assert!(is_turn(CANCELLED));
        assert!(!is_turn(CANCELLED | ONE_CHILD));
        assert!(is_drained(CANCELLED | OWNER_DONE));
        assert!(!is_drained(CANCELLED | OWNER_DONE | ONE_CHILD));
        assert!(!is_drained(CANCELLED));
    }

    #[test]
    fn adding_a_child_counts_it_unless_cancelled() {
        assert_eq!(with_one_more_child(0), Ok(ONE_CHILD));
        assert_eq!(
            with_one_more_child(HAS_WAITERS | ONE_CHILD),
            Ok(HAS_WAITERS | (2 * ONE_CHILD))
        );
        assert_eq!(with_one_more_child(CANCELLED), Err(NoChild::Cancelled));
        assert_eq!(
            with_one_more_child(CANCELLED | (MAX_CHILDREN << COUNT_SHIFT)),
            Err(NoChild::Cancelled)
        );
        let one_below = (MAX_CHILDREN - 1) << COUNT_SHIFT;
        assert_eq!(
            with_one_more_child(one_below).map(live_children),
            Ok(MAX_CHILDREN)
        );
    }

    #[test]
    fn adding_a_child_past_the_limit_is_refused_instead_of_wrapping() {
        let full = (MAX_CHILDREN << COUNT_SHIFT) | HAS_WAITERS;
        assert_eq!(with_one_more_child(full), Err(NoChild::Full));
    }

    #[test]
    fn limit_matches_pointer_width() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(MAX_CHILDREN, (1 << 53) - 1);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(MAX_CHILDREN, (1 << 21) - 1);
    }
}
