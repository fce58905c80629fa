//! [`Counted`]: the one reference-counted pointer of the crate, shared by
//! nodes and causes.
//!
//! It is `Arc` without the weak count, which nothing here needs. That keeps
//! the heap block of a node at exactly its size (64 bytes on 64-bit targets
//! instead of 72) and saves the weak count's atomic decrement on every free,
//! a measurable share of creating and dropping a child (benches). It also
//! works on targets without compare-and-swap through the same atomics as
//! the rest of the crate, so no extra `Arc` crate is needed there.
//!
//! Beside `Arc`'s methods it has the raw conversions the core needs: a node
//! whose owner left keeps a count of itself as a raw pointer (node
//! invariant #6), and a node's cause slot holds a count of a cause as a
//! tagged pointer (`node/meta.rs`). Those pointers point to the value;
//! they keep the block's provenance, so the count is found from them.

use alloc::boxed::Box;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::sync::{last_count_acquire, AtomicUsize, Ordering};

/// A counted, shared, immutable `T` on the heap; freed with the last count.
pub(crate) struct Counted<T> {
    block: NonNull<Block<T>>,
}

/// The heap block: the count, then the value. The count comes first so
/// that a small node's count and state word share the block's first cache
/// line (creating and dropping a child touches both); the value's offset is
/// [`VALUE_OFFSET`](Counted::VALUE_OFFSET).
#[repr(C)]
struct Block<T> {
    /// How many counts there are: `Counted`s, plus those given away as raw
    /// pointers and not taken back yet.
    refs: AtomicUsize,
    value: T,
}

// SAFETY: a `Counted<T>` gives only shared access to its `T`, and its count
// is atomic: sending one to another thread shares the `T` (so `T: Sync`),
// and the last one may drop the `T` on any thread (so `T: Send`), as `Arc`.
unsafe impl<T: Send + Sync> Send for Counted<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Counted<T> {}

// A `Counted` only hands out `&T`; whether that is unwind-safe is `T`'s
// business, as for `Arc`.
impl<T: core::panic::RefUnwindSafe> core::panic::UnwindSafe for Counted<T> {}
impl<T: core::panic::RefUnwindSafe> core::panic::RefUnwindSafe for Counted<T> {}

impl<T> Counted<T> {
    /// The size of the heap block: the value and its count.
    #[cfg(test)]
    pub(crate) const BLOCK_SIZE: usize = core::mem::size_of::<Block<T>>();

    /// Moves `value` to the heap with a count of one.
    #[inline]
    pub(crate) fn new(value: T) -> Self {
        let block = Box::new(Block {
            value,
            refs: AtomicUsize::new(1),
        });
        Self {
            block: NonNull::from(Box::leak(block)),
        }
    }

    /// Where the value is in the block.
    const VALUE_OFFSET: usize = core::mem::offset_of!(Block<T>, value);

    /// The value's address; it stays valid as long as a count is held. It
    /// keeps the whole block's provenance, so the raw conversions below can
    /// step back to the count.
    #[inline]
    pub(crate) fn as_ptr(this: &Self) -> *const T {
        // SAFETY: the block is alive (we hold a count); no reference is
        // made, only a raw pointer to the field.
        unsafe { core::ptr::addr_of!((*this.block.as_ptr()).value) }
    }

    /// The block of a value pointer from [`as_ptr`](Self::as_ptr).
    ///
    /// # Safety
    ///
    /// `ptr` came from `as_ptr` (or `into_raw`) and the block is alive.
    #[inline]
    unsafe fn block_of(ptr: *const T) -> *mut Block<T> {
        // SAFETY: `ptr` is `VALUE_OFFSET` bytes into a live block (caller),
        // with the block's provenance (`as_ptr`), so stepping back stays
        // inside the allocation.
        unsafe { ptr.byte_sub(Self::VALUE_OFFSET) }
            .cast::<Block<T>>()
            .cast_mut()
    }

    /// Gives this count away as a pointer, to be taken back with
    /// [`from_raw`](Self::from_raw). At least as aligned as the block.
    #[inline]
    pub(crate) fn into_raw(this: Self) -> *const T {
        let ptr = Self::as_ptr(&this);
        core::mem::forget(this);
        ptr
    }

    /// Takes over a count that was given away for `ptr` (with
    /// [`into_raw`](Self::into_raw), or by forgetting a `Counted`).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`as_ptr`](Self::as_ptr) or `into_raw`, and the
    /// caller owns one count of that block that no `Counted` holds.
    #[inline]
    pub(crate) unsafe fn from_raw(ptr: *const T) -> Self {
        // SAFETY: the block is alive: the caller owns a count of it.
        let block = unsafe { Self::block_of(ptr) };
        Self {
            // SAFETY: a pointer into a live block is never null.
            block: unsafe { NonNull::new_unchecked(block) },
        }
    }

    /// A new count of the value at `ptr`, which stays where it is.
    ///
    /// Only the count is borrowed, not the value: the caller may be in the
    /// middle of a step after which another thread frees the value (node
    /// invariant #7).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`as_ptr`](Self::as_ptr) or
    /// [`into_raw`](Self::into_raw), and the block is alive for this call
    /// (some count is held, or a node is linked: node invariant #6).
    #[inline]
    pub(crate) unsafe fn new_count(ptr: *const T) -> Self {
        // SAFETY: the block is alive (caller).
        let block = unsafe { Self::block_of(ptr) };
        // SAFETY: as above; only its atomic count is borrowed.
        count_one_more(unsafe { &(*block).refs });
        // SAFETY: we just took the count that the new `Counted` owns.
        unsafe { Self::from_raw(ptr) }
    }

    /// The count. Borrowed through a raw pointer to the block, so that no
    /// reference to the value is live while the count changes: after a
    /// decrement another thread may free the block (as with `Arc`, only a
    /// reference to the atomic may dangle once it is no longer used).
    #[inline]
    fn refs(&self) -> &AtomicUsize {
        // SAFETY: this `Counted` holds a count, so the block is alive.
        unsafe { &(*self.block.as_ptr()).refs }
    }
}

/// The most counts a block may have. Past it the process aborts, as `Arc`
/// does: safe code can leak counts without end (`mem::forget` of a token,
/// or of a future, which leaks no memory at all), and on a 32-bit target
/// 2^32 of them take seconds. Had the count wrapped instead, the next drop
/// would free a block that is still in use. Half the range leaves room for
/// every thread that may be between its increment and this check.
pub(crate) const MAX_COUNT: usize = isize::MAX as usize;

/// Takes one more count, or aborts if that would pass [`MAX_COUNT`].
#[inline]
fn count_one_more(refs: &AtomicUsize) {
    // Relaxed, as for `Arc`: holding a count already keeps the block alive,
    // and a new count orders nothing.
    let before = refs.fetch_add(1, Ordering::Relaxed);
    if before > MAX_COUNT {
        too_many_counts();
    }
}

/// Ends the process: a count would wrap.
#[cold]
#[inline(never)]
fn too_many_counts() -> ! {
    #[cfg(feature = "std")]
    {
        std::eprintln!(
            "phaseout: a node or a cause has more than {MAX_COUNT} references \
             (its tokens, futures and clones); aborting"
        );
        std::process::abort();
    }
    #[cfg(not(feature = "std"))]
    {
        // `core` has no abort. A panic while panicking aborts; with
        // `panic = "abort"`, as firmware usually builds, the first one does.
        struct PanicAgain;
        impl Drop for PanicAgain {
            fn drop(&mut self) {
                panic!("phaseout: too many references");
            }
        }
        let _again = PanicAgain;
        // A fixed message: formatting the limit here would cost firmware
        // flash for a line that is never expected to print.
        panic!("phaseout: a reference count would pass isize::MAX");
    }
}

impl<T> Clone for Counted<T> {
    #[inline]
    fn clone(&self) -> Self {
        count_one_more(self.refs());
        Self { block: self.block }
    }
}

impl<T> Drop for Counted<T> {
    #[inline]
    fn drop(&mut self) {
        // Release/Acquire, as for `Arc`: every use of the value through
        // other counts happens-before the thread that frees it. The acquire
        // is a load of the count, not a fence (`last_count_acquire` says why).
        if self.refs().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        last_count_acquire(self.refs());
        // SAFETY: this was the last count, so nothing else can reach the
        // block; it was allocated by `Box` in `new`.
        drop(unsafe { Box::from_raw(self.block.as_ptr()) });
    }
}

impl<T> Deref for Counted<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: we hold a count, so the block is alive.
        unsafe { &self.block.as_ref().value }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Counted;

    #[test]
    fn clones_share_and_the_last_drop_frees() {
        struct Flag<'a>(&'a core::cell::Cell<u32>);
        impl Drop for Flag<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let drops = core::cell::Cell::new(0);
        let one = Counted::new(Flag(&drops));
        let two = one.clone();
        assert_eq!(Counted::as_ptr(&one), Counted::as_ptr(&two));
        drop(one);
        assert_eq!(drops.get(), 0, "freed while a count was held");
        let raw = Counted::into_raw(two);
        // SAFETY: `raw` holds the count `into_raw` gave away.
        let three = unsafe { Counted::new_count(raw) };
        // SAFETY: the count from `into_raw`, taken back once.
        drop(unsafe { Counted::from_raw(raw) });
        assert_eq!(drops.get(), 0);
        drop(three);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    #[cfg(all(feature = "std", not(miri)))] // Miri cannot spawn the child
    fn a_count_past_the_limit_aborts_instead_of_wrapping() {
        use std::process::Command;

        /// Set in the child process that runs the aborting half.
        const CHILD: &str = "PHASEOUT_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let value = Counted::new(());
            // As if `MAX_COUNT - 1` tokens had been leaked with `mem::forget`.
            value
                .refs()
                .store(super::MAX_COUNT, crate::sync::Ordering::Relaxed);
            let at_limit = value.clone();
            core::mem::forget(at_limit);
            println!("at the limit");
            let past = value.clone(); // must abort here
            core::mem::forget(past);
            println!("past the limit");
            return;
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "counted::tests::a_count_past_the_limit_aborts_instead_of_wrapping",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stdout.contains("at the limit"), "{stdout}\n{stderr}");
        assert!(
            !stdout.contains("past the limit"),
            "the count went past the limit: {stdout}"
        );
        assert!(stderr.contains("aborting"), "{stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                output.status.signal(),
                Some(6),
                "not SIGABRT: {:?}",
                output.status
            );
        }
        #[cfg(not(unix))]
        assert!(!output.status.success());
    }
}
