//! Wakers run after event-listener has let go of its lock (with `std`).
//!
//! event-listener calls `Waker::wake` while it holds the event's lock. A
//! waker is user code: it may cancel, drop a `Phaser` (whose drain wakes
//! its parent), drop another future of the same node or poll its task
//! inline, and each of those takes an event's lock again, on this thread
//! (a deadlock) or on two threads in opposite order (a deadlock between
//! them). So phaseout never gives event-listener a user's waker. A future
//! registers a [`Relay`], a waker of ours that holds the user's. When
//! event-listener wakes a relay inside [`deliver`], the relay only records
//! itself as undelivered; once the event-listener call has returned and
//! its lock is free, `deliver` wakes the users' wakers. No lock of
//! phaseout's or event-listener's is held while a user's waker runs, so it
//! may do anything a task may (guarantee 17). event-listener stays the
//! registry of waiters; only the delivery moves.
//!
//! **A second notifier helps, it never waits.** Before, a `cancel()` that
//! found another thread still waking a node's waiters (`WAKE_PENDING`,
//! node invariant #9) waited for it on event-listener's lock, and so
//! returned only after they were woken (guarantee 14). Now the first
//! thread may be between its notify and its deliveries, and a second
//! notify finds every waiter already notified. So the relays a notify
//! recorded stay in [`UNDELIVERED`], a list shared by all threads, until
//! the thread that recorded them has woken every one; a `deliver` on the
//! same node wakes everything recorded for it by anyone, its own and the
//! others' (a second wake of a task is harmless). When it returns, every
//! waiter notified so far has been woken at least once. Event-listener's
//! lock orders the recording: a notify that comes second starts after the
//! first one's recording is complete. The one exception is a `deliver`
//! made from inside a waker that this thread runs for the same node (a
//! waker that cancels what it was woken for): it leaves what the delivery
//! it runs inside collected to that one, which finishes before its own
//! operation returns (waking those again would run that waker inside
//! itself, without end on a thread that helps another's delivery), and
//! wakes everything recorded for the node since: its own notify's records,
//! usually none, and those of other threads' notifies that came after the
//! enclosing collection, which nobody on this thread would wake otherwise.
//! Records are numbered in their list's order to tell the two apart. The
//! list is split by node address into [`SHARDS`] lists, so a delivery
//! scans only its neighbours' wakes.
//!
//! Lock order: a relay records itself under event-listener's lock, so
//! `UNDELIVERED`'s lock is taken inside it, never the other way round;
//! nothing that can take an event's lock (a user's waker, or the drop of
//! the last reference to one) runs while `UNDELIVERED` is locked.
//!
//! Every event-listener call that can wake goes through `deliver`: the
//! notify (`Node::notify_all`). The others cannot: waiters leave with
//! `discard`, which never passes a notification on, and a relay replaced
//! at re-registration is not its last reference (the future holds its own
//! until the poll returns), so no user waker is even dropped under the
//! lock.
//!
//! A waker that panics (in `wake` or when its last reference is dropped
//! here): the panic is caught ([`contain`]) so that the waiters after it
//! are still woken, and the tree operation it interrupted (a cancel walk,
//! an owner's drop) runs to its end. The first such panic is raised again
//! when that operation returns, once the tree is consistent (guarantee 13;
//! [`raise_held`]); a later one in the same operation is dropped, as is one
//! caught while the thread is already unwinding.
//!
//! Without `std` none of this exists: a waker runs inside event-listener's
//! notify, so it must only schedule its task, which is what every firmware
//! executor's waker does (crate docs, "Wakers").

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::{Cell, RefCell};
use core::task::Waker;
#[cfg(loom)]
use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
use std::sync::{Mutex, MutexGuard};

use super::Node;

/// The waker a future registers with event-listener in place of its
/// task's own (`user`).
pub(crate) struct Relay {
    user: Waker,
}

impl Relay {
    /// A relay for `user`, and the waker to register.
    pub(crate) fn new(user: &Waker) -> (Arc<Relay>, Waker) {
        let relay = Arc::new(Relay { user: user.clone() });
        let waker = Waker::from(Arc::clone(&relay));
        (relay, waker)
    }

    /// Whether this relay passes wakes on to `user`.
    pub(crate) fn relays_to(&self, user: &Waker) -> bool {
        self.user.will_wake(user)
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        if let Some(unrecorded) = record(self) {
            // Not inside a `deliver` (no path of phaseout's wakes a relay
            // elsewhere: module doc), so no event-listener lock is held
            // here and the user's waker may run at once.
            unrecorded.user.wake_by_ref();
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        Arc::clone(self).wake();
    }
}

/// A relay woken by a notify, whose user's waker the notifying thread has
/// not finished waking.
struct Undelivered {
    /// The node whose notify woke it (an address, only compared).
    node: usize,
    /// Which `deliver` recorded it: the address of a local of that call,
    /// unique among the calls in flight on all threads, and every call
    /// removes its records before it returns.
    delivery: usize,
    /// Its place in its shard's order of records ([`Shard::next`]).
    seq: usize,
    relay: Arc<Relay>,
}

/// One of the lists of [`UNDELIVERED`].
struct Shard {
    /// The `seq` the next record gets: records are numbered in the order
    /// they are pushed (wrapping; compared with [`after`]), so a delivery
    /// can tell the records it collected from those pushed after it did.
    next: usize,
    list: Vec<Undelivered>,
}

impl Shard {
    const fn new() -> Self {
        Shard {
            next: 0,
            list: Vec::new(),
        }
    }
}

/// Whether record number `seq` was pushed at or after `mark` (a shard's
/// `next` read earlier): wrapping, right while fewer than `usize::MAX / 2`
/// records are pushed between the two.
fn after(seq: usize, mark: usize) -> bool {
    seq.wrapping_sub(mark) <= usize::MAX / 2
}

/// How many lists [`UNDELIVERED`] is split into: a node's records are in
/// the list its address picks, so a delivery looks only at the wakes in
/// flight of the nodes that share its list, not at every node's.
const SHARDS: usize = 32;

/// Every relay woken and not yet delivered by the thread that recorded it,
/// by node ([`shard`]). Each list holds only the wakes in flight.
#[cfg(not(loom))]
static UNDELIVERED: [Mutex<Shard>; SHARDS] = [const { Mutex::new(Shard::new()) }; SHARDS];

// Under loom the lists' locks must be loom's, or loom would not see that a
// second notifier's look at a list comes after the first one's record.
#[cfg(loom)]
loom::lazy_static! {
    static ref UNDELIVERED: [Mutex<Shard>; SHARDS] =
        core::array::from_fn(|_| Mutex::new(Shard::new()));
}

/// The list of `node`'s records, locked.
fn undelivered(node: usize) -> MutexGuard<'static, Shard> {
    // Nodes are 64-byte blocks (32 on 32-bit targets): the low bits say
    // nothing.
    let shard = (node >> 5) % SHARDS;
    // Nothing panics while it is held (pushes, clones, moves), but a
    // poisoned list is still a list.
    UNDELIVERED[shard]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One `deliver` of this thread in its wake loop, linked to the one
/// further up the stack.
struct Frame {
    node: usize,
    /// Its shard's `next` when it collected what it wakes: it wakes every
    /// record of `node` numbered before this that was not delivered yet
    /// (or, nested, those from its enclosing frame's mark on).
    collected_to: usize,
    up: *const Frame,
}

#[cfg(not(loom))]
std::thread_local! {
    /// The first panic of a waker since the running tree operation began.
    static HELD_PANIC: RefCell<Option<Box<dyn Any + Send>>> = const { RefCell::new(None) };
    /// The node and number of the `deliver` whose notify is running on
    /// this thread. No destructor: usable at thread exit too.
    static NOTIFYING: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// The innermost `deliver` of this thread that is waking users' wakers.
    static DELIVERING: Cell<*const Frame> = const { Cell::new(core::ptr::null()) };
    /// How many relays this thread has recorded (wrapping): a `deliver`
    /// compares it before and after its notify.
    static RECORDED: Cell<usize> = const { Cell::new(0) };
    /// Whether `HELD_PANIC` holds a panic: a constant without a
    /// destructor, so the check every tree operation ends with is one
    /// load.
    static PANIC_HELD: Cell<bool> = const { Cell::new(false) };
    /// The buffer a `deliver` collects the relays to wake in, kept between
    /// calls so that a cancel walk does not allocate one per node. A
    /// nested `deliver` (from inside a waker) finds it taken and uses a
    /// fresh one.
    static TO_WAKE: Cell<Vec<Arc<Relay>>> = const { Cell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static HELD_PANIC: RefCell<Option<Box<dyn Any + Send>>> = RefCell::new(None);
    static NOTIFYING: Cell<Option<(usize, usize)>> = Cell::new(None);
    static DELIVERING: Cell<*const Frame> = Cell::new(core::ptr::null());
    static RECORDED: Cell<usize> = Cell::new(0);
    static PANIC_HELD: Cell<bool> = Cell::new(false);
    static TO_WAKE: Cell<Vec<Arc<Relay>>> = Cell::new(Vec::new());
}

/// What a thread's [`TO_WAKE`] buffer may keep of its capacity once empty:
/// enough for the waiters of a few nodes, so that a walk reuses it, and a
/// bound on what stays allocated per thread (guarantee 6).
const KEEP: usize = 16;

/// What capacity each list of [`UNDELIVERED`] keeps once empty: a cancel
/// walk records a node's waiters into the list of that node's address and
/// empties it again, so a list that gave its buffer back every time would
/// make every node with a waiter allocate and free one (measured: a
/// quarter of the instructions of cancelling a node with one waiter). A
/// bound on what stays allocated (guarantee 6): `SHARDS * KEEP_RECORDS`
/// records for the whole process, 8 KiB on a 64-bit target.
const KEEP_RECORDS: usize = 8;

/// If this thread is already waking the wakers of `node` further up its
/// stack: the innermost such delivery's mark (`collected_to`).
fn delivering(node: usize) -> Option<usize> {
    let mut frame = DELIVERING.try_with(Cell::get).unwrap_or(core::ptr::null());
    while !frame.is_null() {
        // SAFETY: every frame in the chain lives on this thread's stack in
        // a `deliver` that has not returned (it unlinks itself first).
        let f = unsafe { &*frame };
        if f.node == node {
            return Some(f.collected_to);
        }
        frame = f.up;
    }
    None
}

/// Records `relay` as undelivered if this thread is inside a notify of
/// `deliver`; gives it back if not (or if the thread's storage is already
/// gone, at thread exit).
fn record(relay: Arc<Relay>) -> Option<Arc<Relay>> {
    let notifying = NOTIFYING.try_with(Cell::get).ok().flatten();
    let Some((node, delivery)) = notifying else {
        return Some(relay);
    };
    let mut shard = undelivered(node);
    let seq = shard.next;
    shard.next = seq.wrapping_add(1);
    shard.list.push(Undelivered {
        node,
        delivery,
        seq,
        relay,
    });
    drop(shard);
    let _ = RECORDED.try_with(|recorded| recorded.set(recorded.get().wrapping_add(1)));
    None
}

/// Runs `notify`, an event-listener notify of `node`'s waiters, then wakes
/// the users' wakers of every relay recorded for `node` and not yet
/// delivered: those this notify woke, and those of any other thread's
/// notify of `node` still in progress.
pub(crate) fn deliver(node: &Node, notify: impl FnOnce()) {
    let node = core::ptr::from_ref(node) as usize;
    // This call's name for its records: the address of one of its locals.
    // Two calls in flight never share it (both frames are live), and no
    // record outlives its call, so no later call inherits one. (A global
    // counter did the same with an RMW per notify on one shared cache
    // line.)
    let name_of_this_call = 0u8;
    let delivery = core::ptr::addr_of!(name_of_this_call) as usize;
    let Ok(outer) = NOTIFYING.try_with(|cell| cell.replace(Some((node, delivery)))) else {
        return notify(); // thread exit: the relays wake directly
    };
    /// Puts the outer state back, even if `notify` unwound.
    struct Restore(Option<(usize, usize)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = NOTIFYING.try_with(|cell| cell.set(self.0));
        }
    }
    let recorded_before = RECORDED.try_with(Cell::get).unwrap_or(0);
    let restore = Restore(outer);
    notify();
    drop(restore);
    let recorded_none = RECORDED.try_with(Cell::get).unwrap_or(0) == recorded_before;

    // A deliver of a node this thread is already waking further up its
    // stack (a waker that cancels or drops what it was woken for) must not
    // wake again what an enclosing delivery collected: that would run a
    // waker inside itself (on a thread that helps another's delivery,
    // without end). The enclosing one wakes those before its operation
    // returns. It wakes everything pushed since (its own notify's records,
    // and those of other threads' deliveries still in flight that came
    // after the enclosing collection: nobody on this thread would wake
    // them otherwise). Any other deliver wakes every record of the node:
    // its own and those of other threads' deliveries still in flight
    // (guarantee 14). So each record is woken at most once per chain of
    // nested deliveries of its node.
    let enclosing = delivering(node);
    let mut to_wake = TO_WAKE.try_with(Cell::take).unwrap_or_default();
    let collected_to = {
        let shard = undelivered(node);
        to_wake.extend(
            shard
                .list
                .iter()
                .filter(|waiting| {
                    waiting.node == node && enclosing.map_or(true, |mark| after(waiting.seq, mark))
                })
                .map(|waiting| Arc::clone(&waiting.relay)),
        );
        shard.next
    };
    if to_wake.is_empty() && recorded_none {
        // Nothing to wake and nothing of ours to remove (the common nested
        // case: a waker that cancels what it was woken for).
        let _ = TO_WAKE.try_with(|buffer| buffer.set(to_wake));
        return;
    }
    let frame = Frame {
        node,
        collected_to,
        up: DELIVERING.try_with(Cell::get).unwrap_or(core::ptr::null()),
    };
    struct Unlink(*const Frame);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = DELIVERING.try_with(|head| head.set(self.0));
        }
    }
    let _ = DELIVERING.try_with(|head| head.set(&frame));
    let unlink = Unlink(frame.up);
    for relay in &to_wake {
        contain(|| relay.user.wake_by_ref());
    }
    // Only now are this call's records delivered: out of the list with
    // them. They may be dropped under the list's lock because none of them
    // is a relay's last reference: `to_wake` holds a clone of each (every
    // record of this call is in it, nested or not) until after the unlock.
    // A last reference drops the user's waker, which is user code, and
    // must not run under the lock.
    {
        let mut shard = undelivered(node);
        let list = &mut shard.list;
        list.retain(|waiting| waiting.delivery != delivery);
        if list.is_empty() {
            // No wake in flight here: a small buffer stays for the next
            // node's records, a bigger one (a node with many waiters)
            // shrinks back to it (guarantee 6).
            list.shrink_to(KEEP_RECORDS);
        }
    }
    // Outside every lock: the last references of relays (other threads'
    // records may have left the lists meanwhile) drop users' wakers here.
    // A waker's drop is user code too: its panic is held like a wake's, or
    // it would unwind out of the operation half-way (a cancel walk that
    // stops above a live child, a drain that frees a node still linked).
    // `clear` empties the buffer even then (the length is reset first, and
    // the other elements are still dropped).
    // The frame stays linked meanwhile: a drop that runs a tree operation
    // is inside this delivery, so a held panic is not raised inside it.
    contain(|| to_wake.clear());
    drop(unlink);
    if to_wake.capacity() <= KEEP {
        let _ = TO_WAKE.try_with(|buffer| buffer.set(to_wake));
    }
}

/// Runs user code inside a tree operation (a waker's `wake` or drop, a
/// freed cause's destructor, a `tracing` subscriber): a panic is caught
/// and held for the end of the operation ([`hold`]).
pub(crate) fn contain(f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)) {
        hold(panic);
    }
}

/// A waker panicked: keep the panic for the end of the tree operation
/// that notified (the first one wins; [`raise_held`]).
fn hold(panic: Box<dyn Any + Send>) {
    let mut panic = Some(panic);
    let _ = HELD_PANIC.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = panic.take();
            let _ = PANIC_HELD.try_with(|held| held.set(true));
        }
    });
    // A later panic of the same operation, or one caught at thread exit.
    if let Some(surplus) = panic {
        drop_payload(surplus);
    }
}

/// Drops a panic's payload that will not be raised. The payload is user
/// data (`panic_any`), and its destructor may panic too: that must not
/// unwind out of the operation either, so it is caught, and the payload of
/// that panic dropped the same way. A chain of destructors that keep
/// panicking is cut after a few links: the last payload is leaked.
fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..4 {
        match std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| drop(payload))) {
            Ok(()) => return,
            Err(again) => payload = again,
        }
    }
    core::mem::forget(payload);
}

/// Ends a tree operation (a cancel walk, an owner's drop) that may have
/// notified: raises the first panic of a waker it woke, now that the tree
/// is consistent. Only the outermost operation calls it: one that a waker
/// runs is inside the outer one's `deliver`, whose `catch_unwind` holds the
/// panic again for the outer operation's end. A panic held while the thread
/// is already unwinding is dropped.
#[inline]
pub(crate) fn raise_held() {
    if !PANIC_HELD.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    if !DELIVERING
        .try_with(Cell::get)
        .unwrap_or(core::ptr::null())
        .is_null()
    {
        return; // inside a waker: the outer operation raises it
    }
    let _ = PANIC_HELD.try_with(|held| held.set(false));
    let panic = HELD_PANIC
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten();
    if let Some(panic) = panic {
        if std::thread::panicking() {
            drop_payload(panic); // already unwinding: dropped, contained
        } else {
            std::panic::resume_unwind(panic);
        }
    }
}
