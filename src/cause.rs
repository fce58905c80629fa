//! [`Cause`]: why a node is shutting down.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use core::error::Error;
use core::fmt;
use core::ptr::NonNull;

use crate::node::{count_one_more, Label};
use crate::sync::{last_count_acquire, AtomicUsize, Ordering};

/// Why a node is shutting down: the cause given to
/// [`cancel_with`](crate::Phaser::cancel_with), or the drop of an owner.
///
/// A node's cause is the cause of the **first** cancellation that reached
/// it. It is read with `cause()` on a [`Phaser`](crate::Phaser) or a
/// [`Token`](crate::Token) and shown in [`Report`](crate::Report)s.
///
/// Build one from a message (`&'static str`, `String`) or from any error
/// with [`Cause::new`], and get the error back with
/// [`downcast_ref`](Self::downcast_ref). Cloning is cheap (a reference
/// count): every node of a cancelled subtree shares one cause, and a node
/// keeps its own reference, so the cause stays readable after the nodes
/// above it are gone.
///
/// `Display` shows the message or the error itself; `Error::source` is the
/// wrapped error's source.
///
/// # Examples
///
/// ```
/// use phaseout::{Cause, Phaser};
///
/// let root = Phaser::named("server");
/// let token = root.child_named("db").unwrap().token(); // the child is dropped at once
/// root.cancel_with("SIGTERM");
/// assert_eq!(root.cause().unwrap().to_string(), "SIGTERM");
///
/// // The dropped child had been cancelled by its owner's drop first.
/// assert_eq!(token.cause().unwrap().to_string(), "the owner of `db` finished");
///
/// let disk_full = std::io::Error::other("No space left on device");
/// let cause = Cause::new(disk_full);
/// assert_eq!(cause.to_string(), "No space left on device");
/// assert!(cause.downcast_ref::<std::io::Error>().is_some());
/// ```
pub struct Cause {
    shared: NonNull<Shared>,
}

/// The heap block of a cause, shared by its clones.
struct Shared {
    /// How many `Cause`s (and node slots) refer to this block.
    refs: AtomicUsize,
    what: What,
}

/// What the cause says.
enum What {
    Message(Cow<'static, str>),
    Error(Box<dyn Error + Send + Sync>),
    /// A `Phaser` was dropped before its node was cancelled. Its label and
    /// whether its thread panicked are copied when the cause is made (a
    /// `&'static str` label copies nothing): holding the dropped node
    /// instead would let its text change later and chain nodes' frees.
    OwnerFinished {
        label: Option<Label>,
        panicked: bool,
    },
}

// SAFETY: a `Cause` gives only shared access to `What`, whose contents are
// `Send + Sync`, and its count is atomic: the same reasoning as `Arc`.
unsafe impl Send for Cause {}
// SAFETY: as above.
unsafe impl Sync for Cause {}

// Unwind safety: a `Cause` never changes after it is made (its count
// aside, which is atomic), and it hands out only shared references to what
// it wraps. A wrapped error is `Sync`, so whatever interior mutability it
// has is already guarded for use from several threads at once (a mutex
// poisons, an atomic is never half-written). So a `Cause`, and a `Report`
// or a `TurnWithin` holding one, can cross `catch_unwind` as a `Token` can
// (guarantee 21).
impl core::panic::UnwindSafe for Cause {}
impl core::panic::RefUnwindSafe for Cause {}

impl Cause {
    /// A cause that wraps an error, such as the `io::Error` that made a
    /// component give up.
    ///
    /// ```
    /// use std::io;
    ///
    /// let root = phaseout::Phaser::new();
    /// root.cancel_with(phaseout::Cause::new(io::Error::other("disk full")));
    /// let cause = root.cause().unwrap();
    /// assert_eq!(cause.to_string(), "disk full");
    /// assert_eq!(cause.downcast_ref::<io::Error>().unwrap().kind(), io::ErrorKind::Other);
    /// ```
    pub fn new<E: Error + Send + Sync + 'static>(error: E) -> Self {
        Self::from_what(What::Error(Box::new(error)))
    }

    /// The wrapped error, if this cause was made by [`Cause::new`] from an
    /// `E`.
    ///
    /// ```
    /// use std::fmt;
    ///
    /// #[derive(Debug)]
    /// struct PowerFail;
    /// impl fmt::Display for PowerFail {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    ///         f.write_str("power fail")
    ///     }
    /// }
    /// impl std::error::Error for PowerFail {}
    ///
    /// let cause = phaseout::Cause::new(PowerFail);
    /// assert!(cause.downcast_ref::<PowerFail>().is_some());
    /// assert!(cause.downcast_ref::<std::io::Error>().is_none());
    /// assert!(phaseout::Cause::from("a message").downcast_ref::<PowerFail>().is_none());
    /// ```
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        match &self.what() {
            What::Error(error) => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// The cause of a node cancelled by its own `Phaser`'s drop (and of
    /// the nodes that drop's walk reached first).
    pub(crate) fn owner_finished(label: Option<Label>, panicked: bool) -> Self {
        Self::from_what(What::OwnerFinished { label, panicked })
    }

    fn from_what(what: What) -> Self {
        let shared = Box::new(Shared {
            refs: AtomicUsize::new(1),
            what,
        });
        Self {
            shared: NonNull::from(Box::leak(shared)),
        }
    }

    fn what(&self) -> &What {
        // SAFETY: this `Cause` holds a count, so the block is alive.
        unsafe { &self.shared.as_ref().what }
    }

    /// Gives this cause's count to the caller as a pointer (for a node's
    /// cause slot); at least 4-aligned, so its two low bits are free.
    pub(crate) fn into_raw(self) -> *mut u8 {
        let ptr = self.shared.as_ptr().cast::<u8>();
        core::mem::forget(self);
        ptr
    }

    /// A new count of the cause at `ptr`, which stays where it is.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`into_raw`](Self::into_raw), and that count has not
    /// been given back with [`from_raw`](Self::from_raw) yet.
    pub(crate) unsafe fn clone_raw(ptr: *mut u8) -> Self {
        let shared = ptr.cast::<Shared>();
        // SAFETY: the count from `into_raw` keeps the block alive.
        count_one_more(unsafe { &(*shared).refs }, CAUSE);
        Self {
            // SAFETY: `into_raw` pointers are never null.
            shared: unsafe { NonNull::new_unchecked(shared) },
        }
    }

    /// Takes back the count given away by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw`, and this is the only `from_raw` for it.
    pub(crate) unsafe fn from_raw(ptr: *mut u8) -> Self {
        Self {
            // SAFETY: `into_raw` pointers are never null.
            shared: unsafe { NonNull::new_unchecked(ptr.cast::<Shared>()) },
        }
    }
}

/// Pointers to `Shared` leave the two low bits free for a tag.
const _: () = assert!(core::mem::align_of::<Shared>() >= 4);

/// A cause's name in the abort message of too many clones.
const CAUSE: &str = "a cause";

impl Clone for Cause {
    fn clone(&self) -> Self {
        // SAFETY: this `Cause` holds a count, so the block is alive.
        count_one_more(unsafe { &self.shared.as_ref().refs }, CAUSE);
        Self {
            shared: self.shared,
        }
    }
}

impl Drop for Cause {
    fn drop(&mut self) {
        // Release/Acquire as for `Arc`: every use through other clones
        // happens-before the free.
        // SAFETY: this `Cause` holds a count, so the block is alive.
        let refs = unsafe { &self.shared.as_ref().refs };
        if refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // An acquire load of the count, not a fence: `last_count_acquire`.
        last_count_acquire(refs);
        // SAFETY: that was the last count; the block came from `Box`.
        drop(unsafe { Box::from_raw(self.shared.as_ptr()) });
    }
}

impl From<&'static str> for Cause {
    /// A cause that is a message.
    ///
    /// ```
    /// let cause = phaseout::Cause::from("SIGTERM");
    /// assert_eq!(cause.to_string(), "SIGTERM");
    /// ```
    fn from(message: &'static str) -> Self {
        Self::from_what(What::Message(Cow::Borrowed(message)))
    }
}

impl From<String> for Cause {
    /// A cause that is a message built at run time.
    ///
    /// ```
    /// let cause = phaseout::Cause::from(format!("`{}` failed", "db"));
    /// assert_eq!(cause.to_string(), "`db` failed");
    /// ```
    fn from(message: String) -> Self {
        Self::from_what(What::Message(Cow::Owned(message)))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what() {
            What::Message(message) => f.write_str(message),
            What::Error(error) => fmt::Display::fmt(error, f),
            What::OwnerFinished { label, panicked } => {
                let how = if *panicked { "panicked" } else { "finished" };
                match label {
                    Some(label) => write!(f, "the owner of `{label}` {how}"),
                    None => write!(f, "the owner of a node {how}"),
                }
            }
        }
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.what() {
            What::Message(message) => f.debug_tuple("Cause").field(message).finish(),
            What::Error(error) => f.debug_tuple("Cause").field(error).finish(),
            What::OwnerFinished { .. } => f
                .debug_tuple("Cause")
                .field(&format_args!("{self}"))
                .finish(),
        }
    }
}

impl Error for Cause {
    /// The wrapped error's own source: the wrapped error itself is what
    /// `Display` shows, so it is not repeated as a source.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self.what() {
            What::Error(error) => error.source(),
            _ => None,
        }
    }
}
