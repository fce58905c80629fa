//! The tree node behind every `Phaser` and `Token`: one atomic state word,
//! lock-free for every question and transition but the child list.
//!
//! A [`Node`] is shared (through a counted [`NodeRef`]) by its owning
//! `Phaser` and by any tokens and futures. Its parent's child list and its
//! children's `parent` pointers are plain pointers (invariant #6 says why
//! they stay valid). Its whole life is recorded in one atomic word (see
//! [`state`]); a bit of that word is also the lock of its child list.
//!
//! # What the rest of the crate sees
//!
//! The core is closed: the state bits, the lock and every raw pointer stay
//! in this module. Outside it there are only
//!
//! * [`NodeRef`], a counted reference to a node (`crate::counted`), and
//!   [`Owner`], the owner's count, whose drop is the owner's exit and the
//!   hand-off of invariant #6 (`owner.rs`);
//! * [`State`], one load of the state word with questions as methods
//!   (`is_cancelled`, `is_turn`, `live_children`, …), never the bits;
//! * [`cause_of`], the node's cause (invariant #10);
//! * the walks: [`cancel_subtree`], [`cancel_subtree_with`],
//!   [`abort_subtree`], and [`for_each_child`] for reports;
//! * [`Waiter`] for futures and `wait_until` for blocking waits;
//! * [`fail`] and [`failures`], the supervision (`supervise.rs`).
//!
//! The files: `state.rs` (the word), `lock.rs` (its `LOCKED` bit),
//! `links.rs` (the child list), `meta.rs` (label and cause slot),
//! `walk.rs` (cancel and abort), `owner.rs` and `drain.rs` (the owner's
//! exit and the drain cascade), `supervise.rs` (failures and scopes),
//! `waiter.rs` and `wakes.rs` (waiting and waking), `trace.rs` (events).
//!
//! # Invariants
//!
//! 1. **The count is the list's length.** The live-child count changes only
//!    under the lock, together with the list: `+1` as a child is linked,
//!    `-1` as a drained child is unlinked. So a parent's turn (cancelled,
//!    count 0) means every child has drained and none is being created.
//! 2. **Counting and linking are one step.** `child()` checks `CANCELLED`,
//!    counts the child and links it while holding the parent's lock; the
//!    cancel walk sets `CANCELLED` (which waits for that lock) before it
//!    takes the lock to read the children. So a walk either sees the child or
//!    `child()` saw `CANCELLED` and refused. No child escapes a cancel.
//! 3. **A drained child is unlinked at once**, by the thread whose
//!    read-modify-write made it drained, in the same locked step that drops
//!    the parent's count. The parent then holds nothing of it.
//! 4. **Waiters register, then announce.** A waiter first inserts its
//!    listener, then sets `HAS_WAITERS` with a read-modify-write that always
//!    writes, even when the bit is already set, and checks the value it
//!    read. A notifier changes the state with a read-modify-write (or,
//!    holding the `LOCKED` bit, with the write that releases it, which no
//!    waiter's RMW can come between) and notifies if the value it read has
//!    `HAS_WAITERS`. Both are writes to the same word, so one reads the
//!    other's: either the waiter sees the change, or the notifier's RMW reads
//!    the waiter's release, so the listener's insertion happens-before the
//!    notify. No wake-up is lost, and this needs nothing of event-listener
//!    beyond "a notify sees every listener inserted before it": if the
//!    announcement were skipped when the bit is set, it would also need
//!    event-listener's `notify` to take its list lock every time.
//! 5. **No recursion over the tree.** Cancel, the drain cascade and reports
//!    walk with loops and explicit stacks, and no node owns another, so a
//!    million-deep chain needs no more stack than a single node.
//! 6. **An un-drained node is alive, and owns itself once its owner is
//!    done.** While the `Phaser` lives, its `NodeRef` keeps the node. When the
//!    `Phaser` is dropped with children still live, it leaves its reference
//!    to the node itself; the thread whose RMW drains the node takes that
//!    reference back (`NodeRef::from_raw`) and releases it after the cascade.
//!    So a child's `parent` pointer and a parent's list pointers are valid
//!    for as long as the child is linked, without a reference count of their
//!    own; the only place a drained child touches its parent *after* giving
//!    its count back (to wake the parent's turn) takes a reference first.
//! 7. **No `&Node` outlives a hand-off.** Two steps can let another thread
//!    free a node at once: the owner's RMW that sets `OWNER_DONE` while
//!    children are live (the node now owns itself, and the last child's
//!    drain frees it), and the write that releases a parent's lock after a
//!    child gave its count back (the parent may drain and be freed). A
//!    function that performs such a step takes the node as a raw pointer
//!    and borrows only its atomic state word for the step
//!    ([`with_children`], [`owner::release_owner`]): a `&Node` argument would be
//!    protected for the whole call (the `Arc` problem of rust-lang/rust#55005,
//!    worse here because `Node` has plain fields), while a reference to an
//!    atomic may dangle once it is no longer used. Every other function that
//!    takes `&Node` is called while its caller holds a count.
//! 8. **Nobody spins without end, nobody starves, and no panic keeps the
//!    lock.** A thread that finds `LOCKED` spins briefly, then (with `std`)
//!    queues itself in a parking slot and sleeps until the holder's release
//!    wakes it; a sleeper that lost the race once is handed the lock by
//!    the next release, which then leaves `LOCKED` set for it (`lock.rs`).
//!    A hand-over is not a release: the heir is inside an operation on the
//!    node, so the node stays alive (#7 counts only real releases). A
//!    critical section cannot panic after it changed the list: the child
//!    limit is checked and reported after unlocking, and if the cancel
//!    walk's collecting panics, the lock's guard restores the word.
//! 9. **A `cancel()` returns after its subtree's waiters are woken, even if
//!    another thread cancelled them first.** The RMW that cancels a node
//!    with waiters also sets `WAKE_PENDING`, cleared once its notify *and
//!    the deliveries of its wakes* (#12) have returned. A walk that finds a
//!    node already cancelled with `WAKE_PENDING` notifies it too, and that
//!    notify delivers every wake of the node still undelivered by another
//!    thread (`wakes.rs`): it helps, it never waits. `SUBTREE_CANCELLED` on
//!    a node means every strict descendant's wake has been delivered, so a
//!    walk may stop there after handling that node's own `WAKE_PENDING`.
//!    The one exception: a `cancel()` made by a waker of this thread, while
//!    this thread is delivering that node's wakes further up its stack,
//!    leaves those to the outer delivery (it finishes before the outer call
//!    returns; waking them from inside would run the same waker inside
//!    itself).
//! 10. **A node's cause is fixed when it is cancelled, and never
//!     changes.** A cancellation with a cause first fills the node's cause
//!     slot (`meta.rs`: compare-and-swap from empty, so the first filler
//!     wins and the slot never changes again), then sets `CANCELLED` with
//!     `HAS_CAUSE` in one RMW, only if the node was not cancelled yet. (So
//!     when two causes race, the node's cause is the first *filler's*, even
//!     if the other call's RMW set the bit: both calls are concurrent, and
//!     either order explains it. The walk below passes down the slot's
//!     cause, not its own argument, so the subtree agrees with the node.)
//!     The
//!     owner's drop sets `CANCELLED | OWN_DROP` (and `PANICKED`) in one RMW
//!     instead, with no slot, if the node was not cancelled yet; only then
//!     does its walk give the descendants it reaches first a cause naming
//!     the owner. Any call that finds the node cancelled already (a
//!     drop, `cancel()`, `cancel_with(b)`, `abort()`) passes down the
//!     node's own cause, not its own reason (none after a plain
//!     `cancel()`): the walk that cancelled the node may still be on its
//!     way down, and what this call reaches before it was still cancelled
//!     for that walk's reason (a task woken by `SIGTERM` that starts a
//!     staged stop, whose `cancel()` races the signal's walk, must not
//!     leave nodes without `SIGTERM`). A plain `cancel()` sets
//!     neither. So a reader
//!     that sees `CANCELLED` (acquire) sees the kind of cause in the same
//!     word, and with `HAS_CAUSE` the slot's fill happens-before it: whoever
//!     set the bit filled the slot, or read it filled by its failed CAS. A
//!     walk gives its cause to every node it reaches first, including
//!     those below a node someone else cancelled first: "first" is per
//!     node. The cause lives in the node itself (a count of
//!     a shared `Cause`), not behind a pointer to an ancestor, so a `Token`
//!     reads it after every node above was freed.
//! 11. **Abort is a second mark on the same walk.** `abort()` walks the
//!     whole subtree (it cannot stop at `SUBTREE_CANCELLED`), sets
//!     `CANCELLED | ABORTED` in each node's RMW, and notifies every node
//!     with waiters that it finds aborted, whether or not it aborted it, so
//!     when it returns every `aborted()` waiter below was woken (guarantee
//!     14 without a second pending bit). It only adds flags: turns and
//!     drains are untouched, and still come children first.
//! 12. **No user code runs under a lock.** With `std`, a waiter registers a
//!     relay, never the task's waker: event-listener wakes relays under its
//!     lock, and they only record themselves; the tasks' wakers run after
//!     the notify returned (`wakes.rs`), and no lock of the tree (`LOCKED`)
//!     is held around a notify. A listener leaves with `discard`, which
//!     wakes nobody. So a waker may do anything, on any thread (guarantee
//!     17). A waker's panic is held until the walk or the drop that woke it
//!     has run to its end, then raised from it: the tree stays consistent
//!     (guarantee 13).
//! 13. **Every turn is delivered.** Whoever's RMW gives a node its turn
//!     wakes its waiters: the walk that cancels a childless node, the drain
//!     of a last child (holding a count of the parent across the wake), and
//!     that drain also when the parent's owner has already left and the
//!     parent drains with it (its futures may outlive the `Phaser`:
//!     guarantee 16). The turn is logged before the wake, the drain after
//!     (guarantee 20).
//! 14. **A failure is recorded before its scope can drain, once.** `fail`
//!     is called by a live owner (or by a critical owner's drop before the
//!     hand-off), so the failing node is not drained and every node above
//!     it has a live child: walking `parent` pointers up to the scope is
//!     safe (#6), and the scope cannot drain before the failure is in its
//!     list. The list only grows, by one compare-and-swap per failure
//!     (each failure once, in the order of those CASes), and is freed with
//!     the node (`meta.rs`, `supervise.rs`). Then the scope is cancelled
//!     with the cause of its *first* failure, as any `cancel_with` (#10:
//!     first wins), so racing failures agree with `failures()[0]`; the
//!     cancel runs even if the `fail` event's subscriber panics.
//! 15. **No user code unwinds through an operation.** Besides wakers
//!     (#12), a walk or a drain cascade meets user code in three places: a
//!     waker's drop (the last reference of a relay, `wakes.rs`), a freed
//!     node's cause (its error's destructor, when the walk or the cascade
//!     drops the last reference of a node) and, with `tracing`, the
//!     subscriber of every event. Each runs inside [`contain`]: with `std`
//!     its panic is caught and held like a waker's and raised once the
//!     operation is over. Otherwise a panic there would leave a walk above
//!     a live child, unwind under a locked list, or free a drained node
//!     that its parent still links (the cascade holds it in a local).
//!
//! # Memory ordering
//!
//! Every state transition is `AcqRel`, every question an `Acquire` load: what
//! an owner did before dropping its `Phaser` happens-before its parent's
//! `turn()` resolves, through the chain of RMWs on the state words.
//!
//! # Lifecycle
//!
//! Live → (cancel walk) Cancelling → (count reaches 0) turn → (owner drops)
//! Drained → (last `NodeRef` dropped) freed.

mod drain;
mod links;
mod lock;
#[cfg(loom)]
pub use lock::parking::hand_over_always as loom_lock_hand_over_always;
mod meta;
mod owner;
mod state;
mod supervise;
mod trace;
mod waiter;
#[cfg(feature = "std")]
mod wakes;
mod walk;

use core::cell::UnsafeCell;

use event_listener::Event;

pub(crate) use self::links::for_each_child;
use self::links::{ChildList, Siblings};
pub(crate) use self::owner::Owner;
pub(crate) use self::state::State;
pub(crate) use self::supervise::{fail, failures};
#[cfg(feature = "std")]
pub(crate) use self::waiter::wait_until;
pub(crate) use self::waiter::Waiter;
pub(crate) use self::walk::{abort_subtree, cancel_subtree, cancel_subtree_with};
use crate::cause::Cause;
use crate::counted::Counted;
use crate::label::Label;
use crate::sync::{AtomicUsize, Ordering};

/// A counted reference to a [`Node`]: what tokens and futures hold. The
/// node is freed with the last one.
pub(crate) type NodeRef = Counted<Node>;

/// One node of the shutdown tree. On the heap it is followed by its count
/// ([`Counted`]).
pub(crate) struct Node {
    /// The packed state word; see [`state`]. Its `LOCKED` bit guards
    /// `children` and the `siblings` of every child.
    state: AtomicUsize,
    /// Woken when the node becomes cancelled and when it gets its turn.
    /// One event for both keeps the node small; a `turn()` waiter woken by
    /// the cancel simply re-checks and waits again.
    event: Event,
    /// The label, set once at creation and shown in reports and errors, and
    /// the cause slot (invariant #10), in one word (`meta.rs`).
    meta: meta::Meta,
    /// The node this one depends on, from `NodeRef::as_ptr`. Valid until this
    /// node drains (invariant #6); only the drain cascade reads it.
    parent: *const Node,
    /// This node's children; guarded by this node's `LOCKED` bit.
    children: UnsafeCell<ChildList>,
    /// This node's place in its parent's child list; guarded by the
    /// *parent's* `LOCKED` bit.
    siblings: UnsafeCell<Siblings>,
}

// SAFETY: the only non-thread-safe fields are the raw pointers of the child
// list, `siblings` and `parent`. The list and the siblings are only read or
// written with the `LOCKED` bit that owns them held (the node's own for
// `children`, the parent's for `siblings`); `parent` is written once before
// the node is shared. Every pointer in them points to a node that is alive
// while it is reachable there (invariant #6).
unsafe impl Send for Node {}
// SAFETY: as above; shared access goes through the state word.
unsafe impl Sync for Node {}

// Unwind safety (guarantee 21): what `catch_unwind` asks about is whether
// a panic can leave shared state half-changed for code that goes on using
// it. A node cannot be: every change of its state word is one atomic
// read-modify-write, the child list is only changed in a locked section
// that cannot panic after its first write and whose guard restores the
// word if it unwinds (invariant #8), the cause slot is filled once by a
// compare-and-swap, and a waker's panic is held until the operation it
// interrupted has finished (`wakes.rs`). So the handles are as unwind-safe
// as tokio-util's token; the `UnsafeCell`s of the list are what the
// auto traits see, not a hazard.
impl core::panic::UnwindSafe for Node {}
impl core::panic::RefUnwindSafe for Node {}

impl Node {
    /// A new Live node with no children; a root (`parent` null) is always
    /// a scope.
    #[inline]
    pub(crate) fn new(label: Option<Label>, parent: *const Node, scope: bool) -> Self {
        Self {
            state: AtomicUsize::new(0),
            event: Event::new(),
            meta: meta::Meta::new(label, scope || parent.is_null()),
            parent,
            children: UnsafeCell::new(ChildList::new()),
            siblings: UnsafeCell::new(Siblings::new()),
        }
    }

    /// The current state word, for the core's own bit tests.
    #[inline]
    fn load(&self) -> usize {
        self.state.load(Ordering::Acquire)
    }

    /// What the node's state is now (one acquire load): the questions
    /// handles, futures and reports ask.
    #[inline]
    pub(crate) fn state(&self) -> State {
        State::of(self.load())
    }

    pub(crate) fn label(&self) -> Option<&str> {
        self.meta.label().map(|label| &**label)
    }

    pub(crate) fn label_cow(&self) -> Option<Label> {
        self.meta.label().cloned()
    }

    /// Changes the state word with `change`, waiting while the child list
    /// is locked; see [`lock::update`]. Returns the value before.
    #[inline]
    fn update(&self, change: impl FnMut(usize) -> Option<usize>) -> usize {
        lock::update(&self.state, change)
    }

    /// Sets `flags` (no write if they are all set); returns the state before.
    #[inline]
    fn set(&self, flags: usize) -> usize {
        self.update(|current| (current | flags != current).then_some(current | flags))
    }

    /// Clears `flags`. Out of line: only the rare end of a wake-up uses it,
    /// and one more inlined CAS loop is flash that firmware pays for.
    #[inline(never)]
    fn clear(&self, flags: usize) {
        self.update(|current| Some(current & !flags));
    }

    /// Sets `HAS_WAITERS` after the caller registered its listener. Always
    /// a write, even when the bit is already set, so that a notifier's RMW
    /// reads it (invariant #4).
    #[inline]
    fn announce_waiter(&self) -> usize {
        self.update(|current| Some(current | state::HAS_WAITERS))
    }

    /// Wakes every waiter if `prev` (the value the caller's RMW read) says
    /// there may be some. See invariant #4 for why this cannot miss one.
    #[inline]
    fn wake_waiters(&self, prev: usize) {
        if prev & state::HAS_WAITERS != 0 {
            self.notify_all();
        }
    }

    /// Wakes every registered waiter.
    #[inline]
    fn notify_all(&self) {
        // Relaxed is enough: the caller's RMW read the waiter's
        // `HAS_WAITERS` RMW (or a later value), so the waiter's listener
        // insertion happens-before this call (invariant #4).
        // With `std` the users' wakers run once event-listener has
        // released its lock (`wakes.rs`).
        #[cfg(feature = "std")]
        wakes::deliver(self, || {
            self.event.notify_relaxed(usize::MAX);
        });
        #[cfg(not(feature = "std"))]
        self.event.notify_relaxed(usize::MAX);
    }
}

/// Holds `node`'s child-list lock (the `LOCKED` bit) while `f` reads or
/// changes the list. `f` gets the state word without `LOCKED` and returns
/// the word to write when it is done: nobody else writes the word while it
/// is locked (they wait in [`lock::update`]), so that one write both applies
/// `f`'s change and unlocks. If `f` panics, the word is put back as it was,
/// so `f` must not change the list before its last step that can panic.
///
/// It takes a raw pointer, not `&Node`: once the lock is released the node
/// may be freed by another thread before this function returns, and no
/// reference to it may then be live (invariant #7).
///
/// # Safety
///
/// `node` came from [`NodeRef::as_ptr`] and the node stays alive until the
/// lock is released: the caller holds a count, or the node has a linked
/// child that cannot drain before this call unlinks it.
#[inline]
unsafe fn with_children<R>(
    node: *const Node,
    f: impl FnOnce(&mut ChildList, usize) -> (usize, R),
) -> R {
    crate::sync::interrupt_free(|| {
        // SAFETY: the node is alive until the release below (caller). Only
        // the state word is borrowed across the release, and it is an
        // atomic, whose reference may dangle once unused (as in `Arc`).
        let held = lock::Held::take(unsafe { &(*node).state });
        // SAFETY: we hold `LOCKED`, so we are the only thread with access
        // to the list until the release.
        let list = unsafe { &mut *(*node).children.get() };
        let (next, result) = f(list, held.before());
        held.release(next);
        result
    })
}

/// Runs user code that a tree operation meets half-way (a freed node's
/// cause's destructor, a `tracing` subscriber): with `std`, a panic in it
/// is caught and held like a waker's (`wakes.rs`), to come out of the
/// operation once the tree is consistent again, so that it cannot unwind
/// through a locked list or past a drained node that is still linked
/// (invariant #15). Without `std`, a panic is the firmware's end anyway.
#[inline]
fn contain(f: impl FnOnce()) {
    #[cfg(feature = "std")]
    wakes::contain(f);
    #[cfg(not(feature = "std"))]
    f();
}

/// Ends a tree operation that may have woken wakers: raises the first
/// panic of one of them (with `std`; `wakes.rs`), now that the operation
/// has run to its end.
#[inline]
fn end_of_operation() {
    #[cfg(feature = "std")]
    wakes::raise_held();
}

/// Why `node` is shutting down (invariant #10): `None` while it is live
/// or if a plain `cancel()` reached it first.
pub(crate) fn cause_of(node: &Node) -> Option<Cause> {
    let word = node.load();
    if !state::is_cancelled(word) {
        None
    } else if word & state::OWN_DROP != 0 {
        // `PANICKED` was set in the same RMW as `OWN_DROP`: final.
        Some(Cause::owner_finished(
            node.label_cow(),
            word & state::PANICKED != 0,
        ))
    } else if word & state::HAS_CAUSE != 0 {
        node.meta.cause()
    } else {
        None
    }
}

/// Creates a child of `parent`, or `None` if `parent` is cancelled.
///
/// Counting and linking the child happen under the parent's lock, so a
/// cancel walk either sees the child or made `child()` refuse (invariant #2).
///
/// # Panics
///
/// If `parent` already has [`state::MAX_CHILDREN`] live children; the lock
/// is released first.
#[inline]
fn new_child(parent: &NodeRef, label: Option<Label>, scope: bool) -> Option<NodeRef> {
    if state::is_cancelled(parent.load()) {
        return None; // refused without allocating
    }
    let child = NodeRef::new(Node::new(label, NodeRef::as_ptr(parent), scope));
    // SAFETY: the caller's `parent` holds a count of the node.
    let linked = unsafe {
        with_children(
            NodeRef::as_ptr(parent),
            |list, current| match state::with_one_more_child(current) {
                Ok(next) => {
                    links::push_front(list, &child);
                    (next, Ok(()))
                }
                Err(refused) => (current, Err(refused)),
            },
        )
    };
    match linked {
        Ok(()) => Some(child),
        // Cancelled between the first look and the lock: the unshared child
        // is simply freed again, and no node ever existed in the tree.
        Err(state::NoChild::Cancelled) => None,
        Err(state::NoChild::Full) => {
            drop(child);
            panic!(
                "phaseout: a node cannot have more than {} live children",
                state::MAX_CHILDREN
            )
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        debug_assert!(
            self.children.get_mut().is_empty(),
            "phaseout: a node was freed while children were still linked to it"
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// A full parent: `child()` must panic *after* releasing the lock, so the
    /// node stays usable (guarantee 13). Before 0.2 the limit's panic came
    /// from inside the locked section and `LOCKED` stayed set for good.
    #[test]
    #[cfg(feature = "std")]
    fn a_full_parent_panics_with_its_lock_released() {
        use super::{new_child, state, Node, NodeRef};
        use crate::sync::Ordering;

        let parent = NodeRef::new(Node::new(None, core::ptr::null(), true));
        let full = state::MAX_CHILDREN * state::ONE_CHILD;
        // As if MAX_CHILDREN children were linked (there is no memory for
        // them on 64-bit targets; tests/limits.rs makes them for real on
        // 32-bit ones).
        parent.state.store(full, Ordering::Relaxed);
        let panic = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            new_child(&parent, None, false);
        }))
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("cannot have more than"), "{message}");
        let word = parent.load();
        assert_eq!(word & state::LOCKED, 0, "the panic left the lock held");
        assert_eq!(word, full, "the refused child changed the word");
        parent.state.store(0, Ordering::Relaxed); // no children really exist
        let child = new_child(&parent, None, false).expect("the parent is unusable");
        assert_eq!(state::live_children(parent.load()), 1);
        let mut child = core::mem::ManuallyDrop::new(child);
        // SAFETY: `child` is the owner's count, not used after this; the
        // node drains here.
        assert!(unsafe { super::owner::release_owner(&mut child, false) });
        assert_eq!(parent.load() & state::LOCKED, 0);
        assert_eq!(state::live_children(parent.load()), 0);
    }

    #[test]
    fn a_node_is_eight_words() {
        // state, event, label and cause, parent, first child, previous and
        // next sibling, then the count (`Counted`'s block): 64 bytes on
        // 64-bit targets, and that is the heap block.
        assert_eq!(
            super::NodeRef::BLOCK_SIZE,
            8 * core::mem::size_of::<usize>()
        );
    }
}
