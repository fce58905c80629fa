//! [`Cause`]: why a node is shutting down.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use core::error::Error;
use core::fmt;

use crate::counted::Counted;
use crate::label::Label;

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
#[derive(Clone)]
pub struct Cause(Counted<What>);

/// What a cause says: the shared part of a `Cause` and its clones.
pub(crate) enum What {
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

// Unwind safety: a `Cause` never changes after it is made (its count
// aside, which is atomic), and it hands out only shared references to what
// it wraps. A wrapped error is `Sync`, so whatever interior mutability it
// has is already guarded for use from several threads at once (a mutex
// poisons, an atomic is never half-written). So a `Cause`, and a `Report`
// or a `TurnWithin` holding one, can cross `catch_unwind` as a `Token` can
// (guarantee 21).
impl core::panic::UnwindSafe for What {}
impl core::panic::RefUnwindSafe for What {}

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
        Self(Counted::new(What::Error(Box::new(error))))
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
        match &*self.0 {
            What::Error(error) => error.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// The cause of a node cancelled by its own `Phaser`'s drop (and of
    /// the nodes that drop's walk reached first).
    pub(crate) fn owner_finished(label: Option<Label>, panicked: bool) -> Self {
        Self(Counted::new(What::OwnerFinished { label, panicked }))
    }

    /// The counted pointer, for a node's cause slot (`node/meta.rs`).
    pub(crate) fn into_counted(self) -> Counted<What> {
        self.0
    }

    /// A cause from the counted pointer of one.
    pub(crate) fn from_counted(counted: Counted<What>) -> Self {
        Self(counted)
    }
}

/// How an owner left, as a cause says it: the one spelling of it (also
/// used by the `defmt` events, which cannot format a `Cause` for free).
pub(crate) const fn owner_outcome(panicked: bool) -> &'static str {
    if panicked {
        "panicked"
    } else {
        "finished"
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
        Self(Counted::new(What::Message(Cow::Borrowed(message))))
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
        Self(Counted::new(What::Message(Cow::Owned(message))))
    }
}

impl From<Box<dyn Error + Send + Sync>> for Cause {
    /// A cause that is a boxed error, as `anyhow`-style and
    /// `Box<dyn Error>` code carries them: the box is kept as it is, so
    /// `Display` is the error's and [`downcast_ref`](Cause::downcast_ref)
    /// reaches the boxed error's own type.
    ///
    /// ```
    /// use std::{error::Error, io};
    ///
    /// fn open() -> Result<(), Box<dyn Error + Send + Sync>> {
    ///     Err(io::Error::new(io::ErrorKind::NotFound, "no database file").into())
    /// }
    ///
    /// let root = phaseout::Phaser::named("db");
    /// if let Err(error) = open() {
    ///     root.cancel_with(error); // no wrapping by hand
    /// }
    /// let cause = root.cause().unwrap();
    /// assert_eq!(cause.to_string(), "no database file");
    /// assert_eq!(cause.downcast_ref::<io::Error>().unwrap().kind(), io::ErrorKind::NotFound);
    /// ```
    fn from(error: Box<dyn Error + Send + Sync>) -> Self {
        Self(Counted::new(What::Error(error)))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            What::Message(message) => f.write_str(message),
            What::Error(error) => fmt::Display::fmt(error, f),
            What::OwnerFinished { label, panicked } => {
                let how = owner_outcome(*panicked);
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
        match &*self.0 {
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
        match &*self.0 {
            What::Error(error) => error.source(),
            _ => None,
        }
    }
}
