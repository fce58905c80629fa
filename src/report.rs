//! A snapshot of a subtree that has not drained yet: who is still running.

use alloc::vec::Vec;
use core::fmt;

use crate::failure::Failure;
use crate::label::Label;
use crate::node::{cause_of, failures, for_each_child, NodeRef, State};
use crate::Cause;

/// Where a node is in its shutdown, as seen by a [`Report`].
///
/// Drained nodes never appear in a report.
///
/// # Examples
///
/// ```
/// use phaseout::{NodeState, Phaser};
///
/// let root = Phaser::new();
/// let child = root.child().unwrap();
/// assert_eq!(root.report().entries()[0].state(), NodeState::Live);
/// root.cancel();
/// assert_eq!(root.report().entries()[0].state(), NodeState::Cancelling);
/// assert_eq!(root.report().entries()[1].state(), NodeState::Turn);
/// drop(child);
/// assert_eq!(root.report().entries()[0].state(), NodeState::Turn);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeState {
    /// Not cancelled.
    Live,
    /// Cancelled; some children have not drained yet.
    Cancelling,
    /// Cancelled and every child drained: the owner may clean up now. In a
    /// report of stragglers, a node whose turn came but whose owner has not
    /// finished (dropped its `Phaser`).
    Turn,
    /// The owner is done (its `Phaser` was dropped) but some children have
    /// not drained yet.
    Finishing,
}

impl NodeState {
    fn of(state: State) -> Self {
        if state.owner_done() {
            Self::Finishing
        } else if state.is_turn() {
            Self::Turn
        } else if state.is_cancelled() {
            Self::Cancelling
        } else {
            Self::Live
        }
    }

    /// The lower-case name used in a report.
    ///
    /// ```
    /// assert_eq!(phaseout::NodeState::Turn.as_str(), "turn");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Cancelling => "cancelling",
            Self::Turn => "turn",
            Self::Finishing => "finishing",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a [`Report`].
///
/// ```
/// let root = phaseout::Phaser::named("db");
/// let report = root.report();
/// let entry = &report.entries()[0];
/// assert_eq!(entry.label(), Some("db"));
/// assert_eq!(entry.depth(), 0);
/// assert_eq!(entry.live_children(), 0);
/// assert!(!entry.panicked());
/// ```
#[derive(Clone, Debug)]
pub struct ReportEntry {
    depth: usize,
    label: Option<Label>,
    id: usize,
    state: NodeState,
    live_children: usize,
    panicked: bool,
    aborted: bool,
    cause: Option<Cause>,
    /// Whether `Display` shows the cause: only on the highest node of the
    /// report that has it.
    show_cause: bool,
}

impl ReportEntry {
    /// How far below the reported node this one is (the reported node is 0).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The node's label, if it was created with one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// A number that tells unlabeled nodes apart while they are alive (the
    /// node's address). Shown as `#id` in place of a label.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Where the node is in its shutdown.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// Its direct children that had not drained when the report was taken.
    pub fn live_children(&self) -> usize {
        self.live_children
    }

    /// Whether the node's owner was dropped while its thread was panicking
    /// (only detected with feature `std`).
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    /// Whether the node was aborted: its grace period is over.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("app");
    /// let _worker = root.child_named("worker").unwrap();
    /// root.abort();
    /// let report = root.report();
    /// assert!(report.find("worker").unwrap().aborted());
    /// assert!(report.to_string().contains("worker: aborted"));
    /// ```
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// Why the node is shutting down, if it was cancelled with a cause (see
    /// [`Phaser::cause`](crate::Phaser::cause)). `Display` shows a cause
    /// once, on the highest node of the report that has it.
    ///
    /// ```
    /// let root = phaseout::Phaser::named("app");
    /// let _worker = root.child_named("worker").unwrap();
    /// root.cancel_with("SIGTERM");
    /// let report = root.report();
    /// assert_eq!(report.find("worker").unwrap().cause().unwrap().to_string(), "SIGTERM");
    /// assert_eq!(report.to_string().matches("SIGTERM").count(), 1);
    /// ```
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }
}

/// "1 child" or "N children".
struct Children(usize);

impl fmt::Display for Children {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 child"),
            n => write!(f, "{n} children"),
        }
    }
}

/// One line that reads as what the state means for the person waiting on
/// the shutdown: who is holding it up, and why.
impl fmt::Display for ReportEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(label) => f.write_str(label)?,
            None => write!(f, "#{:x}", self.id)?,
        }
        f.write_str(if self.aborted { ": aborted, " } else { ": " })?;
        let children = Children(self.live_children);
        match self.state {
            NodeState::Live if self.live_children == 0 => f.write_str("running, not cancelled")?,
            NodeState::Live => write!(f, "running, not cancelled, {children} live")?,
            NodeState::Cancelling if self.aborted => write!(f, "waiting for {children} to finish")?,
            NodeState::Cancelling => write!(f, "cancelled, waiting for {children} to finish")?,
            NodeState::Turn => f.write_str("its turn came, its owner has not finished")?,
            NodeState::Finishing if self.panicked => {
                write!(f, "owner panicked, waiting for {children} to finish")?;
            }
            NodeState::Finishing => write!(f, "owner finished, waiting for {children} to finish")?,
        }
        match &self.cause {
            Some(cause) if self.show_cause => write!(f, " (cause: {cause})"),
            _ => Ok(()),
        }
    }
}

/// A snapshot of a node and every node below it that has not drained yet.
///
/// Returned by [`Phaser::report`](crate::Phaser::report), and by
/// [`Phaser::turn_within`](crate::Phaser::turn_within) when the deadline
/// comes first: then it names the stragglers. Each node is read with one
/// atomic load while the tree may keep changing, so a report is a consistent
/// picture of each node, not of the whole tree at one instant.
///
/// `Display` prints an indented tree, one node a line, children in the order
/// they were created; each line says what holds the node up. `Debug` prints
/// the same tree after a heading, so a `main` that returns the report as an
/// error shows it readably.
///
/// `Report` implements [`Error`](core::error::Error): a straggler report
/// from [`turn_within`](crate::Phaser::turn_within) or
/// [`shutdown_within`](crate::Phaser::shutdown_within) goes up with `?`.
///
/// # Examples
///
/// ```
/// use phaseout::Phaser;
///
/// let db = Phaser::named("db");
/// let pipeline = db.child_named("pipeline").unwrap();
/// let _web = pipeline.child_named("web").unwrap();
/// db.cancel();
/// assert_eq!(
///     db.report().to_string(),
///     "db: cancelled, waiting for 1 child to finish\n  \
///        pipeline: cancelled, waiting for 1 child to finish\n    \
///          web: its turn came, its owner has not finished\n"
/// );
/// ```
#[derive(Clone)]
pub struct Report {
    entries: Vec<ReportEntry>,
    /// The failures recorded in the report's root, if it is a scope.
    failures: Vec<Failure>,
}

impl Report {
    /// Walks the subtree of `root` (pre-order, explicit stack).
    pub(crate) fn of(root: &NodeRef) -> Self {
        let mut entries = Vec::new();
        let mut stack = Vec::new();
        stack.push((root.clone(), 0));
        let mut children = Vec::new();
        // For each level of the current path, the cause in force there (an
        // index into `texts`): a cause is shown only where it differs from
        // the one shown above.
        let mut in_force: Vec<Option<usize>> = Vec::new();
        let mut texts: Vec<alloc::string::String> = Vec::new();
        while let Some((node, depth)) = stack.pop() {
            let state = node.state();
            if state.is_drained() {
                // About to be unlinked, or (the root) done since the caller
                // looked: nothing holds it up, so it is not a straggler.
                continue;
            }
            let cause = cause_of(&node);
            let text = cause.as_ref().map(alloc::string::ToString::to_string);
            in_force.truncate(depth);
            let above = in_force.last().copied().flatten();
            let show_cause = text.is_some() && text.as_ref() != above.map(|index| &texts[index]);
            in_force.push(match text {
                Some(text) if show_cause => {
                    texts.push(text);
                    Some(texts.len() - 1)
                }
                _ => above,
            });
            entries.push(ReportEntry {
                depth,
                label: node.label_cow(),
                id: NodeRef::as_ptr(&node) as usize,
                state: NodeState::of(state),
                live_children: state.live_children(),
                panicked: state.panicked(),
                aborted: state.is_aborted(),
                cause,
                show_cause,
            });
            // The list is newest first; pushing in that order pops oldest
            // first.
            for_each_child(&node, |child| children.push(child));
            stack.extend(children.drain(..).map(|child| (child, depth + 1)));
        }
        Self {
            entries,
            failures: failures(root),
        }
    }

    /// The failures recorded in the report's root node, if it is a scope
    /// (see [`Phaser::fail`](crate::Phaser::fail)), in the order they
    /// happened. `Display` lists them after the tree, one a line.
    ///
    /// ```
    /// let app = phaseout::Phaser::named("app");
    /// let db = app.child_named("db").unwrap();
    /// db.fail("disk full");
    /// let report = app.report();
    /// assert_eq!(report.failures()[0].label(), Some("db"));
    /// assert!(report.to_string().ends_with("failure: `db` failed: disk full\n"));
    /// ```
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// The nodes, in display order (pre-order, oldest child first).
    pub fn entries(&self) -> &[ReportEntry] {
        &self.entries
    }

    /// The first node with this label, if any.
    ///
    /// ```
    /// let db = phaseout::Phaser::named("db");
    /// let _web = db.child_named("web").unwrap();
    /// assert!(db.report().find("web").is_some());
    /// assert!(db.report().find("cache").is_none());
    /// ```
    pub fn find(&self, label: &str) -> Option<&ReportEntry> {
        self.entries
            .iter()
            .find(|entry| entry.label() == Some(label))
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entries.len() {
            1 => f.write_str("Report of 1 node:\n")?,
            n => writeln!(f, "Report of {n} nodes:")?,
        }
        fmt::Display::fmt(self, f)
    }
}

impl core::error::Error for Report {}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{:indent$}{entry}", "", indent = 2 * entry.depth)?;
        }
        for failure in &self.failures {
            writeln!(f, "failure: {failure}")?;
        }
        Ok(())
    }
}
