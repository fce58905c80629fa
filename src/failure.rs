//! [`Failure`]: one component that failed, as its scope keeps it.

use core::fmt;

use crate::cause::Cause;
use crate::label::Label;

/// A component that failed: recorded by [`Phaser::fail`](crate::Phaser::fail)
/// (or by the panic of a [`critical`](crate::Phaser::critical) node's owner)
/// in the node's scope, and read with `failures()` on a
/// [`Phaser`](crate::Phaser) or a [`Token`](crate::Token) of the scope.
///
/// `Display` names the node and the cause: `` `db` failed: disk full ``, or
/// `` `db` panicked `` for a critical node whose owner panicked.
///
/// # Examples
///
/// ```
/// let root = phaseout::Phaser::named("app");
/// let db = root.child_named("db").unwrap();
/// db.fail("disk full");
/// let failures = root.failures();
/// assert_eq!(failures.len(), 1);
/// assert_eq!(failures[0].label(), Some("db"));
/// assert_eq!(failures[0].cause().to_string(), "disk full");
/// assert!(!failures[0].panicked());
/// assert_eq!(failures[0].to_string(), "`db` failed: disk full");
/// ```
#[derive(Clone)]
pub struct Failure {
    label: Option<Label>,
    cause: Cause,
    panicked: bool,
}

impl Failure {
    pub(crate) fn new(label: Option<Label>, cause: Cause, panicked: bool) -> Self {
        Self {
            label,
            cause,
            panicked,
        }
    }

    /// The label of the node that failed, if it has one.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// root.child().unwrap().fail("gave up");
    /// assert_eq!(root.failures()[0].label(), None);
    /// ```
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Why it failed: the cause given to `fail`, or, for a critical node's
    /// panic, a cause that says its owner panicked.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let no_route = std::io::Error::other("no route");
    /// root.child().unwrap().fail(phaseout::Cause::new(no_route));
    /// let failure = &root.failures()[0];
    /// assert!(failure.cause().downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn cause(&self) -> &Cause {
        &self.cause
    }

    /// Whether the failure is the panic of a critical node's owner.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// let worker = root.child_named("worker").unwrap().critical();
    /// let _ = std::thread::spawn(move || {
    ///     let _worker = worker;
    ///     panic!("bug");
    /// })
    /// .join();
    /// assert!(root.failures()[0].panicked());
    /// ```
    pub fn panicked(&self) -> bool {
        self.panicked
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) => write!(f, "`{label}`")?,
            None => f.write_str("a node")?,
        }
        if self.panicked {
            // The cause would only say it again ("the owner of `x`
            // panicked").
            f.write_str(" panicked")
        } else {
            write!(f, " failed: {}", self.cause)
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("label", &self.label())
            .field("cause", &self.cause)
            .field("panicked", &self.panicked)
            .finish()
    }
}
