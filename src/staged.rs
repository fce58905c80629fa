//! The staged stop, [`Phaser::shutdown_staged`](crate::Phaser::shutdown_staged),
//! and what it ends with, [`Stopped`].
//!
//! Cancel, wait out the grace, abort, wait out the abort grace, report: the
//! ten lines every `main` used to write, on any executor, with that
//! executor's timer passed in.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use futures_core::FusedFuture;

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

/// The staged stop: the future of
/// [`Phaser::shutdown_staged`](crate::Phaser::shutdown_staged) and
/// [`shutdown_staged_with`](crate::Phaser::shutdown_staged_with).
///
/// It waits for the node's turn within the grace; if the grace runs out,
/// it calls `on_abort` with the report of who is still running, aborts the
/// subtree and waits within the abort grace. Like every future of the
/// crate it owns what it needs (`Send + 'static` when `sleep`, its timer
/// futures and `on_abort` are), is a [`FusedFuture`] and stays ready with
/// the same output once ready. Dropping it stops the waiting, not the
/// shutdown: the subtree stays cancelled (and aborted, if it was).
///
/// ```
/// use std::time::Duration;
///
/// let root = phaseout::Phaser::named("app");
/// let sleep = |time: Duration| async move { std::thread::sleep(time) };
/// let stop: phaseout::Staged<_, _> =
///     root.shutdown_staged(Duration::from_secs(5), Duration::from_secs(1), sleep);
/// assert!(pollster::block_on(stop).unwrap().aborted().is_none());
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Staged<S, D, A = fn(&Report)> {
    node: NodeRef,
    grace: Duration,
    abort_grace: Duration,
    sleep: S,
    /// Taken when called (once at most).
    on_abort: Option<A>,
    stage: Stage<D>,
}

/// Where a [`Staged`] stop is.
enum Stage<D> {
    /// Not polled yet: the grace has not started.
    Created,
    Grace(TurnWithin<D>),
    /// Aborted; `late` is who was still running when the grace ran out.
    AbortGrace {
        turn: TurnWithin<D>,
        late: Report,
    },
    Done(Result<Stopped, Report>),
}

impl<S, D, A> Staged<S, D, A> {
    /// The staged stop of `node`, which the caller has already cancelled.
    pub(crate) fn new(
        node: NodeRef,
        grace: Duration,
        abort_grace: Duration,
        sleep: S,
        on_abort: A,
    ) -> Self {
        Self {
            node,
            grace,
            abort_grace,
            sleep,
            on_abort: Some(on_abort),
            stage: Stage::Created,
        }
    }
}

// No field is pinned structurally: the timer futures are boxed inside
// `TurnWithin`, and `sleep` and `on_abort` are only called.
impl<S, D, A> Unpin for Staged<S, D, A> {}

/// Aborts the subtree when dropped: after `on_abort`, even if it panics
/// (the grace has run out either way).
struct AbortOnDrop<'a>(&'a NodeRef);

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        node::abort_subtree(self.0);
    }
}

impl<S, D, A> Future for Staged<S, D, A>
where
    S: Fn(Duration) -> D,
    D: Future,
    A: FnOnce(&Report),
{
    type Output = Result<Stopped, Report>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Created => {
                    let timer = (this.sleep)(this.grace);
                    this.stage = Stage::Grace(TurnWithin::new(NodeRef::clone(&this.node), timer));
                }
                Stage::Grace(turn) => match Pin::new(turn).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => this.stage = Stage::Done(Ok(Stopped { aborted: None })),
                    Poll::Ready(Err(late)) => {
                        let abort = AbortOnDrop(&this.node);
                        if let Some(on_abort) = this.on_abort.take() {
                            on_abort(&late);
                        }
                        drop(abort);
                        let timer = (this.sleep)(this.abort_grace);
                        let turn = TurnWithin::new(NodeRef::clone(&this.node), timer);
                        this.stage = Stage::AbortGrace { turn, late };
                    }
                },
                Stage::AbortGrace { turn, late } => match Pin::new(turn).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        let aborted = Some(late.clone());
                        this.stage = Stage::Done(result.map(|()| Stopped { aborted }));
                    }
                },
                Stage::Done(result) => return Poll::Ready(result.clone()),
            }
        }
    }
}

impl<S, D, A> FusedFuture for Staged<S, D, A>
where
    S: Fn(Duration) -> D,
    D: Future,
    A: FnOnce(&Report),
{
    fn is_terminated(&self) -> bool {
        matches!(self.stage, Stage::Done(_))
    }
}

impl<S, D, A> fmt::Debug for Staged<S, D, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match &self.stage {
            Stage::Created => "created",
            Stage::Grace(_) => "grace",
            Stage::AbortGrace { .. } => "abort grace",
            Stage::Done(Ok(_)) => "stopped",
            Stage::Done(Err(_)) => "stragglers after the abort grace",
        };
        f.debug_struct("Staged")
            .field("label", &self.node.label())
            .field("grace", &self.grace)
            .field("abort_grace", &self.abort_grace)
            .field("stage", &stage)
            .finish_non_exhaustive()
    }
}
