//! The staged stop, [`Phaser::shutdown_staged`](crate::Phaser::shutdown_staged),
//! and what it ends with, [`Stopped`].
//!
//! Cancel, wait out the grace, abort, wait out the abort grace, report: the
//! ten lines every `main` used to write, on any executor, with that
//! executor's timer passed in.

use core::future::Future;
use core::time::Duration;

use crate::futures::TurnWithin;
use crate::node::{self, NodeRef};
use crate::Report;

/// A staged stop that ended with every node drained: the `Ok` of
/// [`Phaser::shutdown_staged`](crate::Phaser::shutdown_staged).
///
/// [`aborted`](Self::aborted) says whether the grace was enough: `None` if
/// everything stopped within it, or the report of who was still running
/// when it ran out (taken just before the abort), for `main` to log.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let root = phaseout::Phaser::named("app");
/// let worker = root.child_named("worker").unwrap();
/// let sleep = |time: Duration| async move { std::thread::sleep(time) };
/// let waiter = std::thread::spawn(move || {
///     worker.wait_cancelled();
///     drop(worker); // stops within the grace
/// });
/// let stopped = pollster::block_on(root.shutdown_staged(
///     Duration::from_secs(5),
///     Duration::from_secs(1),
///     sleep,
/// ))
/// .unwrap();
/// assert!(stopped.aborted().is_none());
/// # waiter.join().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Stopped {
    aborted: Option<Report>,
}

impl Stopped {
    /// Who was still running when the grace ran out, just before the
    /// abort; `None` if no abort was needed.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let root = phaseout::Phaser::named("app");
    /// let slow = root.child_named("slow").unwrap();
    /// let waiter = std::thread::spawn(move || {
    ///     // Finishes only when told to abandon its work.
    ///     pollster::block_on(slow.aborted());
    ///     drop(slow);
    /// });
    /// let sleep = |time: Duration| async move { std::thread::sleep(time) };
    /// let stopped = pollster::block_on(root.shutdown_staged(
    ///     Duration::from_millis(10),
    ///     Duration::from_secs(5),
    ///     sleep,
    /// ))
    /// .unwrap(); // `slow` stopped once aborted, within the abort grace
    /// let report = stopped.aborted().unwrap();
    /// assert!(report.find("slow").is_some());
    /// # waiter.join().unwrap();
    /// ```
    pub fn aborted(&self) -> Option<&Report> {
        self.aborted.as_ref()
    }
}

/// The staged stop of `node`, which the caller has already cancelled.
/// `sleep` is first called when the future is first polled; `on_abort` is
/// called with the stragglers' report just before the abort, if one is
/// needed.
pub(crate) async fn staged<S, D, A>(
    node: NodeRef,
    grace: Duration,
    abort_grace: Duration,
    sleep: S,
    on_abort: A,
) -> Result<Stopped, Report>
where
    S: Fn(Duration) -> D,
    D: Future,
    A: FnOnce(&Report),
{
    match TurnWithin::new(NodeRef::clone(&node), sleep(grace)).await {
        Ok(()) => Ok(Stopped { aborted: None }),
        Err(still_running) => {
            on_abort(&still_running);
            node::abort_subtree(&node);
            TurnWithin::new(node, sleep(abort_grace)).await?;
            Ok(Stopped {
                aborted: Some(still_running),
            })
        }
    }
}
