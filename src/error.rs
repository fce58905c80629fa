//! The error of `child()`.

use core::fmt;

use crate::label::Label;

/// The error of [`Phaser::child`](crate::Phaser::child): the node is already
/// shutting down, so it accepts no new child and none was created.
///
/// A node refuses children from the moment it (or an ancestor) is cancelled.
/// That is what makes a node's turn final: once given, no new dependent can
/// appear and take it back.
///
/// # Examples
///
/// ```
/// use phaseout::Phaser;
///
/// let db = Phaser::named("db");
/// db.cancel();
/// let err = db.child().unwrap_err();
/// assert_eq!(err.label(), Some("db"));
/// assert_eq!(format!("{err:?}"), r#"ShutdownStarted { label: Some("db") }"#);
/// assert_eq!(
///     err.to_string(),
///     "shutdown of `db` has started: it accepts no new child"
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ShutdownStarted {
    label: Option<Label>,
}

impl ShutdownStarted {
    pub(crate) fn new(label: Option<Label>) -> Self {
        Self { label }
    }

    /// The label of the node that refused the child, if it has one.
    ///
    /// ```
    /// let root = phaseout::Phaser::new();
    /// root.cancel();
    /// assert_eq!(root.child().unwrap_err().label(), None);
    /// ```
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
}

impl fmt::Display for ShutdownStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) => write!(
                f,
                "shutdown of `{label}` has started: it accepts no new child"
            ),
            None => f.write_str("shutdown of this node has started: it accepts no new child"),
        }
    }
}

/// `ShutdownStarted { label: Some("db") }`, written by hand: the derived
/// impl went through `Cow`'s and `Option`'s, which firmware that
/// `expect()`s a `child()` paid for in flash.
impl fmt::Debug for ShutdownStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.label() {
            Some(label) => write!(f, "ShutdownStarted {{ label: Some({label:?}) }}"),
            None => f.write_str("ShutdownStarted { label: None }"),
        }
    }
}

impl core::error::Error for ShutdownStarted {}
