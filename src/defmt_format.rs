//! `defmt::Format` for the public types (feature `defmt`).
//!
//! Firmware logs with `defmt`: strings stay on the host and only indices
//! and arguments cross the wire. Labels and causes are run-time text, so
//! they are sent as strings; a report is one line per node, indented, as
//! its `Display` shows it.

use defmt::{Display2Format, Format, Formatter};

use crate::{Cause, Failure, NodeState, Report, ReportEntry, ShutdownStarted, Stopped};

impl Format for NodeState {
    fn format(&self, f: Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str());
    }
}

impl Format for ShutdownStarted {
    fn format(&self, f: Formatter<'_>) {
        match self.label() {
            Some(label) => defmt::write!(
                f,
                "shutdown of `{=str}` has started: it accepts no new child",
                label
            ),
            None => defmt::write!(
                f,
                "shutdown of this node has started: it accepts no new child"
            ),
        }
    }
}

impl Format for Cause {
    /// The cause's `Display` (a message, an error's text, or which owner
    /// finished), formatted on the device.
    fn format(&self, f: Formatter<'_>) {
        defmt::write!(f, "{}", Display2Format(self));
    }
}

impl Format for Failure {
    /// The failure's `Display`: the node and its cause.
    fn format(&self, f: Formatter<'_>) {
        defmt::write!(f, "{}", Display2Format(self));
    }
}

impl Format for Stopped {
    /// Whether an abort was needed, and then who was still running when
    /// the grace ran out.
    fn format(&self, f: Formatter<'_>) {
        match self.aborted() {
            None => defmt::write!(f, "stopped within the grace"),
            Some(late) => defmt::write!(
                f,
                "stopped after the abort; still running when the grace ran out:\n{}",
                late
            ),
        }
    }
}

impl Format for ReportEntry {
    /// The line `Display` shows, without the indentation.
    fn format(&self, f: Formatter<'_>) {
        defmt::write!(f, "{}", Display2Format(self));
    }
}

impl Format for Report {
    /// One node a line, indented two spaces a level, then the failures,
    /// as `Display`.
    fn format(&self, f: Formatter<'_>) {
        const SPACES: &str = "                                ";
        let report = self;
        for entry in report.entries() {
            let indent = (2 * entry.depth()).min(SPACES.len());
            defmt::write!(f, "\n{=str}{}", &SPACES[..indent], entry);
        }
        for failure in report.failures() {
            defmt::write!(f, "\nfailure: {}", Display2Format(failure));
        }
    }
}
