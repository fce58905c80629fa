//! The child-list lock: the `LOCKED` bit of a node's state word, and how a
//! thread waits for it.
//!
//! Taking the lock is one compare-and-swap that sets `LOCKED`; releasing it
//! is one write of the word's final value. Every other writer of the word
//! waits while `LOCKED` is set ([`update`]), so the holder knows the whole
//! word and can compute that final value itself.
//!
//! # Waiting: spin briefly, then sleep
//!
//! A holder normally keeps the lock for a few dozen nanoseconds, so a waiter
//! first spins a little. But a holder can be preempted: by the scheduler on
//! an oversubscribed machine, or for good when the waiter is a real-time
//! thread of higher priority on the same CPU, which would then spin forever.
//! So with `std`, after [`SPINS`] looks a waiter **sleeps until the holder
//! releases the lock**:
//!
//! 1. the sleeper registers a listener on the parking event of the word's
//!    address;
//! 2. it sets `LOCK_SLEEPERS` with a compare-and-swap that succeeds only
//!    while `LOCKED` is set. This is a write even when the bit is already
//!    set, so the holder's release below reads it;
//! 3. it sleeps on the listener, and re-checks when woken.
//!
//! The holder releases with a swap, a read-modify-write. If the value it
//! replaced has `LOCK_SLEEPERS`, it wakes every sleeper of that parking
//! event. No sleeper is missed: its step 2 either comes before the swap in
//! the word's modification order (then the swap reads `LOCK_SLEEPERS`, and
//! through release/acquire the listener of step 1 is registered before the
//! wake), or after it (then the swap cleared `LOCKED`, the compare-and-swap
//! fails and the sleeper does not sleep).
//!
//! The parking events are a static table indexed by address, not a field
//! of the node: once the lock is released the node may be freed at once
//! (node invariant #7), so the holder must not touch it again. Nodes that
//! share a slot only wake each other spuriously; a woken thread re-checks.
//!
//! An uncontended lock costs one compare-and-swap to take and one swap to
//! release; the wake is paid only when somebody sleeps.
//!
//! # Without `std`
//!
//! There is no thread to put to sleep, so a waiter spins and the release is
//! a plain store. With feature `critical-section` the holder runs with
//! interrupts off, so an interrupt handler never spins on a lock held by
//! the code it interrupted, and on a single core nobody else can hold it.
//! Without that feature, an interrupt handler (or a higher-priority RTOS
//! task on the same core) that touches a node whose child list the
//! interrupted code holds spins forever: firmware that cancels from an
//! interrupt must enable `critical-section`.

use crate::sync::{spin_loop, AtomicUsize, Ordering};

use super::state::{LOCKED, LOCK_SLEEPERS};

/// How many times a waiter looks at a locked word before it sleeps (with
/// `std`). A holder's critical section is a few pointer writes, except for
/// the cancel walk and reports that collect a long child list; this covers
/// the first kind. Under loom, none: a spinning thread yields to the
/// holder there, so it would never sleep, and the sleep handshake is what
/// the models must explore.
#[cfg(feature = "std")]
const SPINS: u32 = if cfg!(loom) { 0 } else { 100 };

/// Changes the word with `change` (given the current value, it returns the
/// new one, or `None` to leave the word as it is) as one compare-and-swap,
/// waiting while the child-list lock is held. Returns the value before.
///
/// When `change` returns `Some`, this always writes, even the same value:
/// a waiter announcing itself relies on that (node invariant #4).
#[inline]
pub(super) fn update(word: &AtomicUsize, mut change: impl FnMut(usize) -> Option<usize>) -> usize {
    let mut current = word.load(Ordering::Acquire);
    loop {
        if current & LOCKED != 0 {
            current = wait_unlocked(word);
            continue;
        }
        let Some(next) = change(current) else {
            return current;
        };
        match word.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(prev) => return prev,
            Err(actual) => current = actual,
        }
    }
}

/// Takes the lock; returns the word as it was (without `LOCKED`).
#[inline]
pub(super) fn lock(word: &AtomicUsize) -> usize {
    update(word, |current| Some(current | LOCKED))
}

/// Holds the lock of one word; releasing it writes the word's new value.
///
/// If it is dropped without [`release`](Self::release) (the critical
/// section panicked), it writes back the value from before the lock, so a
/// panic never leaves the lock held (guarantee 13). A critical section
/// must therefore not change what it guards before its last step that can
/// panic.
pub(super) struct Held<'a> {
    word: &'a AtomicUsize,
    before: usize,
}

impl<'a> Held<'a> {
    /// Takes the lock of `word`.
    #[inline]
    pub(super) fn take(word: &'a AtomicUsize) -> Self {
        let before = lock(word);
        Self { word, before }
    }

    /// The word as it was when the lock was taken, without `LOCKED`.
    #[inline]
    pub(super) fn before(&self) -> usize {
        self.before
    }

    /// Releases the lock, writing `next` (without `LOCKED`) as the word's
    /// value. After this, the node may be freed by another thread at any
    /// moment: nothing of it is touched again here.
    #[inline]
    pub(super) fn release(self, next: usize) {
        // Checked while the guard still restores the word if it fires.
        debug_assert!(
            next & (LOCKED | LOCK_SLEEPERS) == 0,
            "phaseout: a lock holder wrote LOCKED"
        );
        let word = self.word;
        core::mem::forget(self);
        unlock(word, next);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        unlock(self.word, self.before);
    }
}

/// Writes `next` and so releases the lock; wakes sleepers if there are any.
#[inline]
fn unlock(word: &AtomicUsize, next: usize) {
    #[cfg(feature = "std")]
    {
        // Only the address is kept: it names the parking slot.
        let key = word as *const AtomicUsize as usize;
        let prev = word.swap(next, Ordering::AcqRel);
        if prev & LOCK_SLEEPERS != 0 {
            parking::wake_all(key);
        }
    }
    #[cfg(not(feature = "std"))]
    word.store(next, Ordering::Release);
}

/// Waits until `word` is not locked; returns the value that showed it.
/// Spins (without `std`, for as long as it takes), then sleeps.
#[cold]
fn wait_unlocked(word: &AtomicUsize) -> usize {
    #[cfg(feature = "std")]
    let mut looks = 0;
    loop {
        #[cfg(feature = "std")]
        {
            if looks == SPINS {
                return parking::sleep_while_locked(word);
            }
            looks += 1;
        }
        spin_loop();
        let current = word.load(Ordering::Acquire);
        if current & LOCKED == 0 {
            return current;
        }
    }
}

/// Where threads sleep while a lock is held (module doc).
#[cfg(feature = "std")]
mod parking {
    use event_listener::{Event, Listener};

    use super::{AtomicUsize, Ordering, LOCKED, LOCK_SLEEPERS};

    /// How many parking events there are. Sleeping is rare (a preempted
    /// holder), so a few suffice; more only make spurious wake-ups rarer.
    const SLOTS: usize = 64;

    #[cfg(not(loom))]
    static EVENTS: [Event; SLOTS] = [const { Event::new() }; SLOTS];

    #[cfg(loom)]
    loom::lazy_static! {
        static ref EVENTS: Vec<Event> = (0..SLOTS).map(|_| Event::new()).collect();
    }

    /// The parking event of the word at address `key`.
    fn event(key: usize) -> &'static Event {
        // Nodes are heap blocks of at least 32 bytes: drop the low bits,
        // then spread the rest over the slots.
        let slot = (key >> 5).wrapping_mul(0x9E37_79B9) >> 7;
        &EVENTS[slot % SLOTS]
    }

    /// Sleeps until `word` is not locked; returns the value that showed it.
    pub(super) fn sleep_while_locked(word: &AtomicUsize) -> usize {
        let event = event(word as *const AtomicUsize as usize);
        loop {
            let listener = event.listen();
            let mut current = word.load(Ordering::Acquire);
            loop {
                if current & LOCKED == 0 {
                    return current;
                }
                // Always a write (see the module doc), and only while locked.
                match word.compare_exchange_weak(
                    current,
                    current | LOCK_SLEEPERS,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => current = actual,
                }
            }
            listener.wait();
            let current = word.load(Ordering::Acquire);
            if current & LOCKED == 0 {
                return current;
            }
        }
    }

    /// Wakes every thread sleeping on the parking event of address `key`.
    pub(super) fn wake_all(key: usize) {
        // Relaxed: the holder's swap already read each sleeper's
        // announcement with acquire, so their listeners are visible.
        event(key).notify_relaxed(usize::MAX);
    }
}
