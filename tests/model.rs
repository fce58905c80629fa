//! Randomized model check: a plain sequential model of the contract (a
//! simple tree) and the real library, driven by the same random operations.
//!
//! Each step runs up to three operations *at once*, one thread each, then
//! waits for all of them (the step quiesces) and applies the same operations
//! to the model. Operations on handles use distinct nodes (but for the extra
//! failures below); operations on futures use distinct futures. Concurrent
//! operations may interleave in any way, so the model applies them in the
//! one order that explains what the library answered: children that were
//! created first, then every cancel, failure and drop, then what the wakers
//! did (below), in the order they did it, then the `child()` calls that were
//! refused (whose parent must then be cancelled). After each step every
//! observable must agree: `is_cancelled`, `is_turn`, `live_children`, the
//! report's nodes, states and `panicked` marks, `is_aborted`, each node's
//! cause and each node's `failures()`. Causes of nodes cancelled during a
//! step may come from any of the step's cancellations that reach them (the
//! order is the race's); the check asserts the library's answer is one of
//! them, then holds it to that answer forever after.
//!
//! # Supervision
//!
//! Children are made with `child_named` or (a quarter of them)
//! `child_scope_named`, and a fifth are made `critical()`; the root is a
//! scope. `fail("e<n>")` is about as frequent as `cancel_with`, and a step
//! with a failure often gets more of them on other threads, on any held
//! `Phaser` (the same one too), so that failures race into one scope. A
//! fifth of the drops happen while the dropping thread panics (the
//! `Phaser` dropped during the unwind of a panic caught at once, started
//! with `resume_unwind` so that the panic hook stays quiet); an armed
//! waker's drop may panic likewise, and any drop done from inside a waker
//! that a panicking drop woke is a panicking drop too (the waker logs
//! `thread::panicking()`). The model: a failure is recorded, labeled, in
//! the node's scope (the nearest scope at or above it), which is then
//! cancelled with the cause of the scope's first failure (racing failures
//! all give that of `failures()[0]`), under the usual first-cause-wins
//! rule; a critical node's panic is such a failure, with the cause "the
//! owner of `n<id>` panicked" and `panicked()` true, before the drop's own
//! cancel; a panic of a node that is not critical, or any panic without
//! `std`, is a drop as before (its cause says `panicked` with `std`).
//! After each step, every node's `failures()`, through its `Phaser` if it
//! is held and through its `Token` always (after it drained too), and the
//! root report's `failures()`, must equal the model's: label, cause text
//! and `panicked()`, each failure once. Failures recorded in one step raced,
//! so they may come in any order after the earlier ones; the check accepts
//! any such order, then adopts it. A failure's cancel is a cancel for the
//! futures below too: one waiting on a node of the failed scope must have
//! been woken, and be ready when polled. The teardown drops one `Phaser` at
//! a time, a sixth of them panicking, and checks every token after each
//! drop.
//!
//! A failure or a cancel of the root ends the tree's growth (no child is
//! accepted after it). So that scopes below a live root are exercised, in
//! half of the seeds every random choice that would cancel the root
//! (operations on handles, the extra failures, the acts of armed wakers,
//! panics of critical nodes in the root's scope) is redrawn or dropped but
//! for one in `ROOT_GUARD`; the other half keeps the plain mix.
//!
//! # Futures are actors
//!
//! Besides the short-lived polls of one step (`PollCancelled`, `PollTurn`,
//! `PollAborted`: the future lives and dies inside the step), any future can
//! be *taken* — `cancelled()`, `aborted()`, `turn()`, `turn_within(d)`,
//! `shutdown_within(d)` (which cancels when called) and
//! `run_until_cancelled(pending())` — from any `Phaser` that is still held,
//! or (`cancelled`, `aborted`, `run_until_cancelled`) from the `Token` of
//! any node, drained or not, at any step, on a step's thread. It then lives
//! in a *pool*, independent of the handle it came from: the `Phaser` may be
//! dropped long before it, in any order with its children. Steps poll pooled
//! futures (on their threads, concurrently with the tree's operations), drop
//! them at random times, and fire deadlines. Each pooled future has its own
//! waker that counts its wakes (`common::CountingWaker`). The deadlines of
//! `turn_within`/`shutdown_within` are futures the run controls: one never
//! fires, one has fired from the start, and the others fire at a step chosen
//! at random (waking whoever polled them), so every result is deterministic.
//!
//! After every step (and after each drop of the teardown), for every pooled
//! future:
//!
//! - **Safety.** A poll that was `Ready` agrees with the model: `cancelled`
//!   and `run_until_cancelled` (whose output must be `None`) need the node
//!   cancelled, `aborted` needs it aborted, `turn` needs its turn (cancelled
//!   with no live child; a node whose owner dropped and which drained counts
//!   too), `turn_within`/`shutdown_within` give `Ok` only at the turn and
//!   `Err` only if their deadline had fired and it was not the node's turn
//!   when the step began (so one with an unfired deadline is never `Err`).
//!   A ready future stays ready with the same output, and `is_terminated`
//!   says whether it was ready.
//! - **Liveness.** A future that was `Pending` at its last poll and whose
//!   condition now holds in the model (or whose deadline fired) must have
//!   been woken since that poll (its count grew). Then the check does what an
//!   executor does: it polls again every future that was woken (whether its
//!   condition holds or not), and one whose condition holds must be `Ready`
//!   now. A future left pending with nobody to wake it is a red test naming
//!   the seed, the future and the operations on its node and the nodes around
//!   it — not a hang.
//!
//! # Wakers that act
//!
//! Every pooled future's waker can also be *armed*, between steps, with one act that it performs at its next
//! wake, from inside `wake()`, on whatever thread wakes it: drop a child's
//! `Phaser`, drop a `Phaser` (perhaps its own node's), cancel a node, or drop
//! another pooled future (perhaps one waiting on the same node). A `Phaser`
//! an armed waker will drop is *parked*: taken out of the live handles into a
//! slot the waker empties with a short critical section, dropping the
//! `Phaser` after releasing it; no lock of the test is ever held while it
//! calls into phaseout, so a deadlock is the library's. Pooled futures sit in
//! such slots too (a poll takes the future out and puts it back; a drop asked
//! for during a poll is done by the poller). Each act is logged with a
//! sequence number, and the model applies the step's acts after its
//! operations, in that order. An armed waker whose future is ready or dropped
//! is disarmed, and its parked `Phaser` goes back to the live handles. This
//! is guarantee 17 (a waker may do anything a task may); on 0.2's core, which
//! let event-listener call wakers under its lock, it deadlocked within a few
//! seeds. `PHASEOUT_MODEL_ACTING_WAKERS=0` turns it off.
//!
//! # Bounds and replay
//!
//! Each seed runs on its own thread under a watchdog: a step that makes no
//! progress for 30 s (a deadlock) fails the test naming the seed and the
//! step's operations, instead of hanging it.
//!
//! The default run is 400 seeds of 150 steps (200 in a debug build, which
//! `ci/test.sh` runs three times). Replay a failure with
//! `PHASEOUT_MODEL_SEED=<seed>`: it makes the same random choices, but the
//! threads' races (a child created or refused) can lead it elsewhere, so a
//! replay may need a few tries. Run longer with `PHASEOUT_MODEL_SEEDS=<count>`
//! (or `cargo test --release --test model -- --ignored` for the soak);
//! `PHASEOUT_MODEL_ACTING_WAKERS=0` leaves wakers unarmed (above).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, Pending};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{poll_once, scaled, CountingWaker};
use futures_core::FusedFuture;
use phaseout::futures::{Aborted, Cancelled, RunUntilCancelled, Turn, TurnWithin};
use phaseout::{Cause, Failure, NodeState, Phaser, Token};

// ===== The model =====

#[derive(Clone, Debug, Default)]
struct ModelNode {
    parent: Option<usize>,
    cancelled: bool,
    aborted: bool,
    /// The cause's text once cancelled (`None` for a plain cancel).
    cause: Option<String>,
    owner_done: bool,
    /// Its owner's drop ran while the thread panicked (as the library can
    /// see it: never without `std`).
    panicked: bool,
    drained: bool,
    live_children: Vec<usize>,
    /// Made with `child_scope_named` (or a root).
    scope: bool,
    /// Its `Phaser` was made `critical()`.
    critical: bool,
    /// A scope's failures, oldest first (always empty for other nodes).
    failures: Vec<FailureText>,
}

/// A `Failure` as the check compares it: label, cause text, `panicked()`.
type FailureText = (Option<String>, String, bool);

fn failure_texts(failures: Vec<Failure>) -> Vec<FailureText> {
    failures
        .iter()
        .map(|f| {
            (
                f.label().map(str::to_owned),
                f.cause().to_string(),
                f.panicked(),
            )
        })
        .collect()
}

/// Whether the library sees an owner's panic at all (it needs `std`;
/// without it a panicking drop is a plain drop).
const PANICS_SEEN: bool = cfg!(feature = "std");

/// Nodes by id; a node's label is `n<id>`.
#[derive(Debug, Default)]
struct Model {
    nodes: BTreeMap<usize, ModelNode>,
    /// The scopes that recorded failures since the step began, each with
    /// its number of failures before the step.
    touched: BTreeMap<usize, usize>,
}

impl Model {
    fn add(&mut self, id: usize, parent: Option<usize>, scope: bool, critical: bool) {
        if let Some(parent) = parent {
            let parent = self.nodes.get_mut(&parent).unwrap();
            assert!(!parent.cancelled);
            parent.live_children.push(id);
        }
        self.nodes.insert(
            id,
            ModelNode {
                parent,
                scope: scope || parent.is_none(),
                critical,
                ..ModelNode::default()
            },
        );
    }

    /// The nearest scope at or above `node`.
    fn scope_of(&self, node: usize) -> usize {
        let mut at = node;
        while !self.nodes[&at].scope {
            at = self.nodes[&at].parent.expect("a root is a scope");
        }
        at
    }

    /// `node` failed: the failure goes to its scope, which is cancelled
    /// with the cause of its first failure.
    fn fail(&mut self, node: usize, cause: &str, panicked: bool) {
        let scope = self.scope_of(node);
        let n = self.nodes.get_mut(&scope).unwrap();
        self.touched.entry(scope).or_insert(n.failures.len());
        n.failures
            .push((Some(label(node)), cause.to_owned(), panicked));
        let first = n.failures[0].1.clone();
        self.cancel(scope, Some(&first));
    }

    /// The walks an owner's drop makes: where each starts and what it
    /// gives. A critical node's panic fails its scope, whose walk cancels
    /// the node's whole subtree before the drop's own walk, which then
    /// gives nothing.
    fn drop_cancellations(&self, node: usize, panicking: bool) -> Vec<(usize, Given)> {
        let panicked = panicking && PANICS_SEEN;
        if panicked && self.nodes[&node].critical {
            vec![(self.scope_of(node), Given::FirstFailure)]
        } else {
            vec![(node, Given::Cause(Some(owner_cause(node, panicked))))]
        }
    }

    /// The nodes of `node`'s subtree that are not drained.
    fn subtree(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![node];
        while let Some(node) = stack.pop() {
            out.push(node);
            stack.extend(self.nodes[&node].live_children.iter().copied());
        }
        out
    }

    /// Cancels the subtree; nodes cancelled first here get `cause`.
    fn cancel(&mut self, node: usize, cause: Option<&str>) {
        for node in self.subtree(node) {
            let n = self.nodes.get_mut(&node).unwrap();
            if !n.cancelled {
                n.cause = cause.map(str::to_owned);
            }
            n.cancelled = true;
        }
    }

    fn abort(&mut self, node: usize) {
        self.cancel(node, None);
        for node in self.subtree(node) {
            self.nodes.get_mut(&node).unwrap().aborted = true;
        }
    }

    /// The owner of `node` drops it; `panicking`: while its thread
    /// unwinds.
    fn drop_owner(&mut self, node: usize, panicking: bool) {
        let panicked = panicking && PANICS_SEEN;
        if panicked && self.nodes[&node].critical {
            self.fail(node, &owner_cause(node, true), true);
        }
        self.cancel(node, Some(&owner_cause(node, panicked)));
        let n = self.nodes.get_mut(&node).unwrap();
        n.owner_done = true;
        n.panicked = panicked;
        let mut current = Some(node);
        while let Some(node) = current {
            let n = &self.nodes[&node];
            if !n.owner_done || !n.live_children.is_empty() || n.drained {
                break;
            }
            self.nodes.get_mut(&node).unwrap().drained = true;
            current = self.nodes.get_mut(&node).unwrap().parent;
            if let Some(parent) = current {
                self.nodes
                    .get_mut(&parent)
                    .unwrap()
                    .live_children
                    .retain(|&child| child != node);
            }
        }
    }

    fn is_turn(&self, node: usize) -> bool {
        self.nodes[&node].cancelled && self.nodes[&node].live_children.is_empty()
    }

    fn state(&self, node: usize) -> NodeState {
        let n = &self.nodes[&node];
        if n.owner_done {
            NodeState::Finishing
        } else if self.is_turn(node) {
            NodeState::Turn
        } else if n.cancelled {
            NodeState::Cancelling
        } else {
            NodeState::Live
        }
    }

    /// Label → state, aborted, panicked and cause of every un-drained node
    /// in `node`'s subtree.
    fn report(&self, node: usize) -> BTreeMap<String, ReportLine> {
        self.subtree(node)
            .into_iter()
            .map(|id| {
                let n = &self.nodes[&id];
                (
                    label(id),
                    (self.state(id), n.aborted, n.panicked, n.cause.clone()),
                )
            })
            .collect()
    }
}

fn label(node: usize) -> String {
    format!("n{node}")
}

/// What a cancellation walk gives the nodes it cancels first.
#[derive(Clone, Debug)]
enum Given {
    /// This cause, or none (a plain cancel).
    Cause(Option<String>),
    /// A failure's walk: the cause of the first failure recorded in its
    /// scope (its own, unless another came first: racing failures leave
    /// the cause of `failures()[0]`).
    FirstFailure,
}

/// A report entry as the check compares it: state, aborted, panicked,
/// cause.
type ReportLine = (NodeState, bool, bool, Option<String>);

/// The cause a node gets from its own owner's drop (also the cause of a
/// critical node's panic as a failure).
fn owner_cause(node: usize, panicked: bool) -> String {
    let how = if panicked { "panicked" } else { "finished" };
    format!("the owner of `{}` {how}", label(node))
}

/// The payload of the panics the run makes; `resume_unwind` starts them
/// without the panic hook, so they print nothing.
struct OwnerPanics;

/// Drops `phaser` as its owner would if it panicked: during the unwind of a
/// panic that is caught right away.
fn drop_panicking(phaser: Option<Phaser>) {
    let unwound = std::panic::catch_unwind(move || {
        let _owner = phaser;
        std::panic::resume_unwind(Box::new(OwnerPanics));
    });
    let payload = unwound.expect_err("the owner's panic unwinds");
    assert!(payload.is::<OwnerPanics>(), "another panic in a drop");
}

fn text(cause: Option<Cause>) -> Option<String> {
    cause.map(|cause| cause.to_string())
}

// ===== Futures as actors =====

/// Whether pooled futures' wakers may be armed to act from inside `wake()`
/// (on unless `PHASEOUT_MODEL_ACTING_WAKERS=0`).
fn acting_wakers() -> bool {
    // Without `std` a waker runs inside event-listener's notify and must
    // only schedule its task (crate docs, "Wakers").
    cfg!(feature = "std")
        && std::env::var("PHASEOUT_MODEL_ACTING_WAKERS").map_or(true, |value| value != "0")
}

/// The test's own locks: a panic elsewhere must not turn into a second one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which future a pooled one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cancelled,
    Aborted,
    Turn,
    TurnWithin,
    ShutdownWithin,
    RunUntilCancelled,
}

impl Kind {
    fn has_deadline(self) -> bool {
        matches!(self, Kind::TurnWithin | Kind::ShutdownWithin)
    }
}

/// What a pooled future resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Unit,
    /// `turn_within` / `shutdown_within`: whether it was `Ok`.
    Within {
        ok: bool,
    },
    /// `run_until_cancelled(pending())`: whether it was `Some`.
    Run {
        some: bool,
    },
}

/// A deadline the run controls: pending until fired, then ready. Whoever
/// polled it before is woken when it fires.
#[derive(Debug)]
struct DeadlineState {
    fired: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl DeadlineState {
    fn new(fired: bool) -> Arc<Self> {
        Arc::new(Self {
            fired: AtomicBool::new(fired),
            wakers: Mutex::new(Vec::new()),
        })
    }

    fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Fires it, then wakes its pollers with no lock held (their wakers may
    /// act).
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for waker in wakers {
            waker.wake();
        }
    }
}

#[derive(Debug)]
struct Deadline(Arc<DeadlineState>);

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_fired() {
            return Poll::Ready(());
        }
        {
            let mut wakers = lock(&self.0.wakers);
            if !wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Registered, then re-checked: a `fire` in between sees the waker.
        if self.0.is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Any future of the pool.
#[derive(Debug)]
enum AnyFuture {
    Cancelled(Cancelled),
    Aborted(Aborted),
    Turn(Turn),
    Within(TurnWithin<Deadline>),
    Run(RunUntilCancelled<Pending<()>>),
}

/// One poll of a pooled future.
#[derive(Clone, Copy, Debug)]
struct Polled {
    /// The waker's count just before the poll.
    wakes_before: usize,
    poll: Poll<Output>,
    /// `is_terminated()` right after it.
    terminated: bool,
}

impl AnyFuture {
    fn poll(&mut self, counter: &Counter, waker: &Waker) -> Polled {
        let wakes_before = counter.wakes();
        let (poll, terminated) = match self {
            AnyFuture::Cancelled(f) => (
                poll_once(f, waker).map(|()| Output::Unit),
                f.is_terminated(),
            ),
            AnyFuture::Aborted(f) => (
                poll_once(f, waker).map(|()| Output::Unit),
                f.is_terminated(),
            ),
            AnyFuture::Turn(f) => (
                poll_once(f, waker).map(|()| Output::Unit),
                f.is_terminated(),
            ),
            AnyFuture::Within(f) => (
                poll_once(f, waker).map(|result| Output::Within { ok: result.is_ok() }),
                f.is_terminated(),
            ),
            AnyFuture::Run(f) => (
                poll_once(f, waker).map(|output| Output::Run {
                    some: output.is_some(),
                }),
                f.is_terminated(),
            ),
        };
        Polled {
            wakes_before,
            poll,
            terminated,
        }
    }
}

/// Takes a future of `kind` from a `Phaser`.
fn take_from_phaser(
    phaser: &Phaser,
    kind: Kind,
    deadline: Option<Arc<DeadlineState>>,
) -> AnyFuture {
    let deadline = || Deadline(deadline.clone().expect("a deadline for a *_within future"));
    match kind {
        Kind::Cancelled => AnyFuture::Cancelled(phaser.cancelled()),
        Kind::Aborted => AnyFuture::Aborted(phaser.aborted()),
        Kind::Turn => AnyFuture::Turn(phaser.turn()),
        Kind::TurnWithin => AnyFuture::Within(phaser.turn_within(deadline())),
        Kind::ShutdownWithin => AnyFuture::Within(phaser.shutdown_within(deadline())),
        Kind::RunUntilCancelled => {
            AnyFuture::Run(phaser.run_until_cancelled(std::future::pending()))
        }
    }
}

/// Takes a future of `kind` from a `Token` (which has no turn).
fn take_from_token(token: &Token, kind: Kind) -> AnyFuture {
    match kind {
        Kind::Cancelled => AnyFuture::Cancelled(token.cancelled()),
        Kind::Aborted => AnyFuture::Aborted(token.aborted()),
        Kind::RunUntilCancelled => {
            AnyFuture::Run(token.run_until_cancelled(std::future::pending()))
        }
        _ => unreachable!("a token has no {kind:?}"),
    }
}

/// Where a pooled future lives, so that a poll, a drop by a step and a drop
/// by some waker on another thread never need a lock across a call into
/// phaseout: each takes the future out in a short critical section.
#[derive(Debug)]
enum SlotState {
    Present(AnyFuture),
    /// Out for a poll; `drop_requested`: the poller drops it when done.
    Polling {
        drop_requested: bool,
    },
    Gone,
}

#[derive(Debug)]
struct Slot(Mutex<SlotState>);

impl Slot {
    fn new(future: AnyFuture) -> Arc<Self> {
        Arc::new(Self(Mutex::new(SlotState::Present(future))))
    }

    fn take_for_poll(&self) -> Option<AnyFuture> {
        let mut state = lock(&self.0);
        match std::mem::replace(
            &mut *state,
            SlotState::Polling {
                drop_requested: false,
            },
        ) {
            SlotState::Present(future) => Some(future),
            other => {
                *state = other;
                None
            }
        }
    }

    fn put_back(&self, future: AnyFuture) {
        let to_drop = {
            let mut state = lock(&self.0);
            if let SlotState::Polling {
                drop_requested: true,
            } = *state
            {
                *state = SlotState::Gone;
                Some(future)
            } else {
                *state = SlotState::Present(future);
                None
            }
        };
        drop(to_drop); // outside the lock: a drop calls into phaseout
    }

    /// Drops the future (or has its poller drop it). Whether it was there.
    fn drop_future(&self) -> bool {
        let taken = {
            let mut state = lock(&self.0);
            match std::mem::replace(&mut *state, SlotState::Gone) {
                SlotState::Present(future) => Some(Some(future)),
                SlotState::Polling { .. } => {
                    *state = SlotState::Polling {
                        drop_requested: true,
                    };
                    Some(None)
                }
                SlotState::Gone => None,
            }
        };
        let was_there = taken.is_some();
        drop(taken); // outside the lock
        was_there
    }

    fn is_gone(&self) -> bool {
        matches!(*lock(&self.0), SlotState::Gone)
    }
}

/// A parked `Phaser`: held for the waker that will drop it.
type Parked = Arc<Mutex<Option<Phaser>>>;

/// What an armed waker does at its next wake, from inside `wake()`.
enum Act {
    /// `panic`: the waker drops it while panicking (`drop_panicking`).
    DropPhaser {
        node: usize,
        phaser: Parked,
        panic: bool,
    },
    Cancel {
        node: usize,
        token: Token,
    },
    DropFuture {
        fid: usize,
        slot: Arc<Slot>,
    },
}

impl std::fmt::Debug for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Act::DropPhaser {
                node, panic: false, ..
            } => write!(f, "drop n{node}'s Phaser"),
            Act::DropPhaser {
                node, panic: true, ..
            } => write!(f, "drop n{node}'s Phaser, panicking"),
            Act::Cancel { node, .. } => write!(f, "cancel n{node}"),
            Act::DropFuture { fid, .. } => write!(f, "drop f{fid}"),
        }
    }
}

/// What a waker did.
#[derive(Clone, Copy, Debug)]
enum Acted {
    /// `panicking`: the thread was unwinding during the drop (the waker's
    /// own panic, or a panicking drop on the thread that woke it).
    DroppedPhaser {
        node: usize,
        panicking: bool,
    },
    Cancelled(usize),
    /// The future, and whether it was still there.
    DroppedFuture(usize, bool),
}

/// The acts of all wakers, in the order they began.
#[derive(Default)]
struct ActLog {
    seq: AtomicUsize,
    /// (sequence number, the acting waker's future, what it did)
    acted: Mutex<Vec<(usize, usize, Acted)>>,
    /// The acts begun and not finished, by sequence number: what the
    /// watchdog names if a step hangs.
    in_flight: Mutex<BTreeMap<usize, String>>,
}

/// A counting waker that may be armed with one act.
struct ActingWaker {
    fid: usize,
    /// `f<fid> = n<node>.<kind>`, for the watchdog.
    name: String,
    wakes: AtomicUsize,
    act: Mutex<Option<Act>>,
    log: Arc<ActLog>,
}

impl ActingWaker {
    fn act_now(&self) {
        // Taken out in a short critical section; acted on with no lock held.
        let act = lock(&self.act).take();
        let Some(act) = act else { return };
        let seq = self.log.seq.fetch_add(1, Ordering::SeqCst);
        let doing = format!(
            "the waker of {} ({:?}) on {:?}",
            self.name,
            act,
            thread::current().name().unwrap_or("a step's thread")
        );
        lock(&self.log.in_flight).insert(seq, doing);
        let acted = match act {
            Act::DropPhaser {
                node,
                phaser,
                panic,
            } => {
                let phaser = lock(&phaser).take();
                let panicking = panic || thread::panicking();
                if panic {
                    drop_panicking(phaser);
                } else {
                    drop(phaser);
                }
                Acted::DroppedPhaser { node, panicking }
            }
            Act::Cancel { node, token } => {
                token.cancel();
                Acted::Cancelled(node)
            }
            Act::DropFuture { fid, slot } => Acted::DroppedFuture(fid, slot.drop_future()),
        };
        lock(&self.log.in_flight).remove(&seq);
        lock(&self.log.acted).push((seq, self.fid, acted));
    }
}

impl Wake for ActingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.act_now();
    }
}

/// A pooled future's waker: plain counting, or one that may act.
#[derive(Clone)]
enum Counter {
    Plain(Arc<CountingWaker>),
    Acting(Arc<ActingWaker>),
}

impl Counter {
    /// `acting`: the future's id and name, and the log of acts.
    fn new(acting: Option<(usize, String, &Arc<ActLog>)>) -> (Self, Waker) {
        match acting {
            None => {
                let (counter, waker) = CountingWaker::new();
                (Counter::Plain(counter), waker)
            }
            Some((fid, name, log)) => {
                let counter = Arc::new(ActingWaker {
                    fid,
                    name,
                    wakes: AtomicUsize::new(0),
                    act: Mutex::new(None),
                    log: log.clone(),
                });
                (Counter::Acting(counter.clone()), Waker::from(counter))
            }
        }
    }

    fn wakes(&self) -> usize {
        match self {
            Counter::Plain(counter) => counter.wakes(),
            Counter::Acting(counter) => counter.wakes.load(Ordering::SeqCst),
        }
    }

    fn is_armed(&self) -> bool {
        match self {
            Counter::Plain(_) => false,
            Counter::Acting(counter) => lock(&counter.act).is_some(),
        }
    }

    fn armed(&self) -> Option<String> {
        match self {
            Counter::Plain(_) => None,
            Counter::Acting(counter) => lock(&counter.act).as_ref().map(|act| format!("{act:?}")),
        }
    }

    fn arm(&self, act: Act) {
        if let Counter::Acting(counter) = self {
            *lock(&counter.act) = Some(act);
        }
    }

    /// Takes back the act it has not done yet.
    fn disarm(&self) -> Option<Act> {
        match self {
            Counter::Plain(_) => None,
            Counter::Acting(counter) => lock(&counter.act).take(),
        }
    }
}

/// How a pooled future answered its last poll.
#[derive(Clone, Copy, Debug)]
enum Last {
    Never,
    Pending { wakes_before: usize },
    Ready(Output),
}

struct Pooled {
    node: usize,
    kind: Kind,
    /// Index into the run's deadlines, for `*_within`.
    deadline: Option<usize>,
    slot: Arc<Slot>,
    counter: Counter,
    waker: Waker,
    last: Last,
}

/// A future about to be taken in a step, with its waker made beforehand.
struct Take {
    kind: Kind,
    poll: bool,
    counter: Counter,
    waker: Waker,
    deadline: Option<Arc<DeadlineState>>,
}

impl Take {
    fn run(self, future: AnyFuture) -> Outcome {
        let mut future = future;
        let polled = self.poll.then(|| future.poll(&self.counter, &self.waker));
        Outcome::Taken { future, polled }
    }
}

// ===== Operations =====

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `child_named`, or (`scope`) `child_scope_named`; the new `Phaser`
    /// is made `critical()` if `critical`.
    Child {
        new_id: usize,
        scope: bool,
        critical: bool,
    },
    Cancel,
    TokenCancel,
    /// `cancel_with("c<cause>")`, on the `Phaser` or (odd) a token.
    CancelWith {
        cause: usize,
    },
    /// `fail("e<cause>")`.
    Fail {
        cause: usize,
    },
    Abort,
    /// Drops the `Phaser`; `panic`: while its thread panics
    /// (`drop_panicking`).
    Drop {
        panic: bool,
    },
    PollCancelled,
    PollTurn,
    PollAborted,
    /// Takes pooled future `f<fid>` from the `Phaser`; polls it at once if
    /// `poll`.
    Take {
        fid: usize,
        kind: Kind,
        poll: bool,
    },
}

impl Op {
    /// The cancellations this operation on `id` makes: where each walk
    /// starts and the cause it gives the nodes it cancels first.
    fn cancellations(self, id: usize, model: &Model) -> Vec<(usize, Given)> {
        match self {
            Op::Cancel | Op::TokenCancel | Op::Abort => vec![(id, Given::Cause(None))],
            Op::Take {
                kind: Kind::ShutdownWithin,
                ..
            } => vec![(id, Given::Cause(None))],
            Op::CancelWith { cause } => vec![(id, Given::Cause(Some(format!("c{cause}"))))],
            Op::Fail { .. } => vec![(model.scope_of(id), Given::FirstFailure)],
            Op::Drop { panic } => model.drop_cancellations(id, panic),
            _ => Vec::new(),
        }
    }
}

fn fail_cause(cause: usize) -> String {
    format!("e{cause}")
}

/// One actor of a step.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// An operation on a held `Phaser` (distinct nodes in a step).
    Handle { id: usize, op: Op },
    /// Takes pooled future `f<fid>` from the `Token` of any node, drained
    /// or not.
    TakeFromToken {
        id: usize,
        fid: usize,
        kind: Kind,
        poll: bool,
    },
    /// Polls a pooled future (distinct futures in a step).
    Poll { fid: usize },
    /// Drops a pooled future.
    DropFuture { fid: usize },
    /// Fires deadline `d<deadline>`.
    Fire { deadline: usize },
}

/// What a step's thread gets.
enum Job {
    Handle {
        op: Op,
        handle: Arc<Phaser>,
        take: Option<Take>,
    },
    TokenTake {
        token: Token,
        take: Take,
    },
    Poll {
        slot: Arc<Slot>,
        counter: Counter,
        waker: Waker,
    },
    DropFuture {
        slot: Arc<Slot>,
    },
    Fire {
        deadline: Arc<DeadlineState>,
    },
}

#[derive(Debug)]
enum Outcome {
    Created(Phaser),
    Refused,
    Done,
    /// First poll, wakes between the polls, second poll (after every other
    /// operation of the step finished).
    Polled {
        first: Poll<()>,
        wakes: usize,
        second: Poll<()>,
    },
    /// A future taken for the pool, and its first poll if it had one.
    Taken {
        future: AnyFuture,
        polled: Option<Polled>,
    },
    /// A pooled future's poll (`None`: a waker had dropped it already).
    FuturePolled(Option<Polled>),
}

fn pick_op(rng: &mut fastrand::Rng, is_root: bool, next_id: &mut usize) -> Op {
    match rng.u32(0..147) {
        0..=34 => {
            *next_id += 1;
            Op::Child {
                new_id: *next_id - 1,
                scope: rng.u32(0..4) == 0,
                critical: rng.u32(0..5) == 0,
            }
        }
        35..=40 => Op::Cancel,
        41..=45 => Op::TokenCancel,
        46..=52 => Op::CancelWith {
            cause: rng.usize(0..1000),
        },
        53..=55 => Op::Abort,
        56..=80 if !is_root => Op::Drop {
            panic: rng.u32(0..5) == 0,
        },
        56..=80 => Op::Cancel,
        81..=93 => Op::PollCancelled,
        94..=99 => Op::PollAborted,
        100..=111 => Op::PollTurn,
        // The caller fills in the future.
        112..=139 => Op::Take {
            fid: 0,
            kind: Kind::Turn,
            poll: false,
        },
        _ => Op::Fail {
            cause: rng.usize(0..1000),
        },
    }
}

/// The kind of a future taken from a `Phaser` or (`phaser == false`) a
/// token.
fn pick_kind(rng: &mut fastrand::Rng, phaser: bool) -> Kind {
    if phaser {
        match rng.u32(0..100) {
            0..=34 => Kind::Turn,
            35..=59 => Kind::TurnWithin,
            60..=65 => Kind::ShutdownWithin,
            66..=79 => Kind::Cancelled,
            80..=87 => Kind::Aborted,
            _ => Kind::RunUntilCancelled,
        }
    } else {
        match rng.u32(0..100) {
            0..=49 => Kind::Cancelled,
            50..=69 => Kind::Aborted,
            _ => Kind::RunUntilCancelled,
        }
    }
}

/// Runs one job on its own thread. `done` is the barrier every thread
/// reaches once its operation is over; the step's polls re-poll after it.
fn run_job(job: Job, start: &Barrier, done: &Barrier) -> Outcome {
    let (op, handle, take) = match job {
        Job::Handle { op, handle, take } => (op, handle, take),
        other => {
            start.wait();
            let outcome = match other {
                Job::Handle { .. } => unreachable!(),
                Job::TokenTake { token, take } => {
                    let future = take_from_token(&token, take.kind);
                    take.run(future)
                }
                Job::Poll {
                    slot,
                    counter,
                    waker,
                } => Outcome::FuturePolled(slot.take_for_poll().map(|mut future| {
                    let polled = future.poll(&counter, &waker);
                    slot.put_back(future);
                    polled
                })),
                Job::DropFuture { slot } => {
                    slot.drop_future();
                    Outcome::Done
                }
                Job::Fire { deadline } => {
                    deadline.fire();
                    Outcome::Done
                }
            };
            done.wait();
            return outcome;
        }
    };
    start.wait();
    let outcome = match op {
        Op::Child {
            new_id,
            scope,
            critical,
        } => match if scope {
            handle.child_scope_named(label(new_id))
        } else {
            handle.child_named(label(new_id))
        } {
            Ok(child) if critical => Outcome::Created(child.critical()),
            Ok(child) => Outcome::Created(child),
            Err(err) => {
                assert_eq!(err.label(), handle.label());
                Outcome::Refused
            }
        },
        Op::Cancel => {
            handle.cancel();
            Outcome::Done
        }
        Op::TokenCancel => {
            handle.token().cancel();
            Outcome::Done
        }
        Op::CancelWith { cause } if cause % 2 == 0 => {
            handle.cancel_with(format!("c{cause}"));
            Outcome::Done
        }
        Op::CancelWith { cause } => {
            handle.token().cancel_with(format!("c{cause}"));
            Outcome::Done
        }
        Op::Fail { cause } => {
            handle.fail(fail_cause(cause));
            Outcome::Done
        }
        Op::Abort => {
            handle.abort();
            Outcome::Done
        }
        Op::Take { kind, .. } => {
            let take = take.expect("a Take job has its waker");
            let future = take_from_phaser(&handle, kind, take.deadline.clone());
            take.run(future)
        }
        Op::Drop { panic } => {
            // The caller passed the only reference: this drops the Phaser.
            let phaser = Arc::into_inner(handle).expect("Drop gets the last reference");
            if panic {
                drop_panicking(Some(phaser));
            } else {
                drop(phaser);
            }
            done.wait();
            return Outcome::Done;
        }
        Op::PollCancelled => {
            let (counter, waker) = CountingWaker::new();
            let mut future = handle.cancelled();
            let first = poll_once(&mut future, &waker);
            done.wait();
            let wakes = counter.wakes();
            let second = poll_once(&mut future, &waker);
            assert_eq!(future.is_terminated(), second.is_ready());
            return Outcome::Polled {
                first,
                wakes,
                second,
            };
        }
        Op::PollAborted => {
            let (counter, waker) = CountingWaker::new();
            let mut future = handle.token().aborted();
            let first = poll_once(&mut future, &waker);
            done.wait();
            let wakes = counter.wakes();
            let second = poll_once(&mut future, &waker);
            assert_eq!(future.is_terminated(), second.is_ready());
            return Outcome::Polled {
                first,
                wakes,
                second,
            };
        }
        Op::PollTurn => {
            let (counter, waker) = CountingWaker::new();
            let mut future = handle.turn();
            let first = poll_once(&mut future, &waker);
            done.wait();
            let wakes = counter.wakes();
            let second = poll_once(&mut future, &waker);
            return Outcome::Polled {
                first,
                wakes,
                second,
            };
        }
    };
    done.wait();
    outcome
}

// ===== The check =====

/// At most this many futures in the pool at once.
const POOL_CAP: usize = 24;
/// At most this many `Phaser`s parked for armed wakers at once.
const MAX_PARKED: usize = 4;
/// In half the seeds, an operation that would cancel the root is drawn
/// again, but for one in this many: the tree lives long enough to grow.
const ROOT_GUARD: u32 = 64;

/// One line of a run's history: what happened, to which nodes and futures.
struct TraceLine {
    at: String,
    nodes: Vec<usize>,
    futures: Vec<usize>,
    text: String,
}

struct Run {
    seed: u64,
    rng: fastrand::Rng,
    model: Model,
    /// Handles whose owner is not done and that no waker holds, by model id.
    live: BTreeMap<usize, Arc<Phaser>>,
    /// A token of every node ever made, by id.
    tokens: BTreeMap<usize, Token>,
    next_id: usize,
    /// The pooled futures, by id (`f<fid>`).
    pool: BTreeMap<usize, Pooled>,
    next_fid: usize,
    /// `d0` never fires, `d1` fired from the start, the others fire when a
    /// step fires them.
    deadlines: Vec<Arc<DeadlineState>>,
    /// `Phaser`s held for an armed waker that will drop them, by node.
    parked: BTreeMap<usize, Parked>,
    log: Arc<ActLog>,
    acting: bool,
    /// 1 or `ROOT_GUARD`: how much rarer an operation that cancels the
    /// root is made.
    root_guard: u32,
    trace: Vec<TraceLine>,
    /// Where the run is, for messages.
    at: String,
}

impl Run {
    fn new(seed: u64, log: Arc<ActLog>) -> Self {
        let mut run = Run {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            model: Model::default(),
            live: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_id: 1,
            pool: BTreeMap::new(),
            next_fid: 0,
            deadlines: vec![DeadlineState::new(false), DeadlineState::new(true)],
            parked: BTreeMap::new(),
            log,
            acting: acting_wakers(),
            root_guard: 1,
            trace: Vec::new(),
            at: "start".to_owned(),
        };
        if run.rng.bool() {
            run.root_guard = ROOT_GUARD;
        }
        run.model.add(0, None, true, false);
        let root = Phaser::named(label(0));
        run.tokens.insert(0, root.token());
        run.live.insert(0, Arc::new(root));
        run
    }

    fn note(&mut self, nodes: &[usize], futures: &[usize], text: String) {
        self.trace.push(TraceLine {
            at: self.at.clone(),
            nodes: nodes.to_vec(),
            futures: futures.to_vec(),
            text,
        });
    }

    /// The model's view of a node, for messages.
    fn describe(&self, node: usize) -> String {
        let n = &self.model.nodes[&node];
        let children: Vec<String> = n.live_children.iter().map(|&c| label(c)).collect();
        format!(
            "n{node} (parent {:?}): cancelled {}, aborted {}, owner done {}, drained {}, \
             live children [{}], turn {}",
            n.parent.map(label),
            n.cancelled,
            n.aborted,
            n.owner_done,
            n.drained,
            children.join(", "),
            self.model.is_turn(node)
        )
    }

    /// Fails the test for pooled future `fid`, with the history of its node,
    /// the nodes above and below it, and the future itself.
    fn fail_future(&self, fid: usize, what: &str) -> ! {
        let p = &self.pool[&fid];
        let node = p.node;
        let mut relevant = BTreeSet::from([node]);
        let mut up = self.model.nodes[&node].parent;
        while let Some(ancestor) = up {
            relevant.insert(ancestor);
            up = self.model.nodes[&ancestor].parent;
        }
        for &other in self.model.nodes.keys() {
            let mut up = Some(other);
            while let Some(current) = up {
                if current == node {
                    relevant.insert(other);
                    break;
                }
                up = self.model.nodes[&current].parent;
            }
        }
        let lines: Vec<String> = self
            .trace
            .iter()
            .filter(|line| {
                line.futures.contains(&fid) || line.nodes.iter().any(|n| relevant.contains(n))
            })
            .map(|line| format!("    {}: {}", line.at, line.text))
            .collect();
        let shown = &lines[lines.len().saturating_sub(80)..];
        let states: Vec<String> = relevant
            .iter()
            .map(|&n| format!("    {}", self.describe(n)))
            .collect();
        panic!(
            "seed {seed} {at}: f{fid} = n{node}.{kind:?} (deadline {deadline:?}, last poll {last:?}, \
             {wakes} wakes): {what}\n  replay: PHASEOUT_MODEL_SEED={seed}{acting} \
             cargo test --release --test model\n  the model now:\n{states}\n  \
             history of f{fid}, n{node} and the nodes around it ({shown} of {total} lines):\n{lines}",
            seed = self.seed,
            at = self.at,
            kind = p.kind,
            deadline = p.deadline.map(|d| format!("d{d}, fired {}", self.deadlines[d].is_fired())),
            last = p.last,
            wakes = p.counter.wakes(),
            acting = if self.acting { "" } else { " PHASEOUT_MODEL_ACTING_WAKERS=0" },
            states = states.join("\n"),
            shown = shown.len(),
            total = lines.len(),
            lines = shown.join("\n"),
        )
    }

    /// Whether the model says pooled future `fid` may be ready (not
    /// counting a deadline).
    fn condition(&self, fid: usize) -> bool {
        let p = &self.pool[&fid];
        let n = &self.model.nodes[&p.node];
        match p.kind {
            Kind::Cancelled | Kind::RunUntilCancelled => n.cancelled,
            Kind::Aborted => n.aborted,
            Kind::Turn | Kind::TurnWithin | Kind::ShutdownWithin => self.model.is_turn(p.node),
        }
    }

    fn deadline_fired(&self, fid: usize) -> bool {
        self.pool[&fid]
            .deadline
            .is_some_and(|d| self.deadlines[d].is_fired())
    }

    /// Safety: a ready output must agree with the model. `turn_at_start`:
    /// whether it was the node's turn when the poll began (for `Err`).
    fn check_ready(&self, fid: usize, output: Output, turn_at_start: bool) {
        let p = &self.pool[&fid];
        let n = &self.model.nodes[&p.node];
        let turn = self.model.is_turn(p.node);
        let within = p.kind.has_deadline();
        let problem = match (p.kind, output) {
            (Kind::Cancelled, Output::Unit)
            | (Kind::RunUntilCancelled, Output::Run { some: false }) => {
                (!n.cancelled).then_some("ready, but the node is not cancelled")
            }
            (Kind::RunUntilCancelled, Output::Run { some: true }) => {
                Some("Some(..), but its future never completes")
            }
            (Kind::Aborted, Output::Unit) => {
                (!n.aborted).then_some("ready, but the node is not aborted")
            }
            (Kind::Turn, Output::Unit) => (!turn).then_some("ready, but it is not the node's turn"),
            (_, Output::Within { ok: true }) if within => {
                (!turn).then_some("Ok, but it is not the node's turn")
            }
            (_, Output::Within { ok: false }) if within && !self.deadline_fired(fid) => {
                Some("Err, but its deadline has not fired")
            }
            (_, Output::Within { ok: false }) if within => {
                turn_at_start.then_some("Err, but it was already the node's turn when polled")
            }
            _ => Some("an output of the wrong kind"),
        };
        if let Some(problem) = problem {
            self.fail_future(fid, &format!("safety: {problem} (output {output:?})"));
        }
    }

    /// Records a poll of pooled future `fid` and checks it.
    fn record_poll(&mut self, fid: usize, polled: Polled, turn_at_start: bool) {
        if polled.terminated != polled.poll.is_ready() {
            self.fail_future(
                fid,
                &format!(
                    "is_terminated() is {} after {:?}",
                    polled.terminated, polled.poll
                ),
            );
        }
        match (self.pool[&fid].last, polled.poll) {
            (Last::Ready(before), Poll::Ready(now)) if before != now => {
                self.fail_future(fid, &format!("ready with {before:?}, then with {now:?}"))
            }
            (Last::Ready(_), Poll::Pending) => self.fail_future(fid, "ready, then pending"),
            // Its first ready poll: the output must agree with the model (a
            // later one repeats it).
            (Last::Never | Last::Pending { .. }, Poll::Ready(output)) => {
                self.check_ready(fid, output, turn_at_start)
            }
            _ => {}
        }
        self.pool.get_mut(&fid).unwrap().last = match polled.poll {
            Poll::Pending => Last::Pending {
                wakes_before: polled.wakes_before,
            },
            Poll::Ready(output) => Last::Ready(output),
        };
    }

    /// Polls pooled future `fid` between steps, as an executor would.
    fn repoll(&mut self, fid: usize, why: &str) -> Poll<Output> {
        let p = &self.pool[&fid];
        let mut future = p
            .slot
            .take_for_poll()
            .expect("a pooled future is in its slot between steps");
        let polled = future.poll(&p.counter, &p.waker);
        p.slot.put_back(future);
        let node = p.node;
        self.note(
            &[node],
            &[fid],
            format!("{why}: poll f{fid} → {:?}", polled.poll),
        );
        let turn = self.model.is_turn(node);
        self.record_poll(fid, polled, turn);
        polled.poll
    }

    /// Liveness, for every pooled future: one pending at its last poll
    /// whose condition now holds (or whose deadline fired) was woken since;
    /// then every woken one is polled again, and must be ready if due.
    fn check_futures(&mut self) {
        let fids: Vec<usize> = self.pool.keys().copied().collect();
        for fid in fids {
            let Last::Pending { wakes_before } = self.pool[&fid].last else {
                continue;
            };
            let holds = self.condition(fid);
            let due = holds || self.deadline_fired(fid);
            let wakes = self.pool[&fid].counter.wakes();
            if due && wakes == wakes_before {
                let why = if holds {
                    "its condition holds in the model"
                } else {
                    "its deadline fired"
                };
                self.fail_future(
                    fid,
                    &format!(
                        "liveness: lost wake-up: it was pending at its last poll and now {why}, \
                         but its waker was not called since (it would never be polled again)"
                    ),
                );
            }
            if wakes > wakes_before || due {
                let why = format!("woken {}x", wakes - wakes_before);
                if self.repoll(fid, &why).is_pending() && due {
                    self.fail_future(
                        fid,
                        "liveness: woken and polled again, but still pending though it is due",
                    );
                }
            }
        }
    }

    /// An armed waker's act that will not happen now: its parked `Phaser`
    /// goes back to the live handles.
    fn reclaim(&mut self, act: Act) {
        if let Act::DropPhaser { node, phaser, .. } = act {
            let phaser = lock(&phaser)
                .take()
                .expect("an act not done leaves its Phaser parked");
            self.parked.remove(&node);
            self.live.insert(node, Arc::new(phaser));
            self.note(
                &[node],
                &[],
                format!("n{node}'s Phaser is no longer parked"),
            );
        }
    }

    /// Takes `node`'s `Phaser` out of the live handles for a waker.
    fn park(&mut self, node: usize) -> Parked {
        let phaser = Arc::into_inner(self.live.remove(&node).unwrap())
            .expect("between steps the run holds the only reference");
        let parked = Arc::new(Mutex::new(Some(phaser)));
        self.parked.insert(node, parked.clone());
        parked
    }

    /// With acting wakers, sometimes arms the waker of a pooled future that
    /// is not ready yet with one act.
    fn maybe_arm(&mut self) {
        if !self.acting || self.rng.u32(0..100) >= 35 {
            return;
        }
        let candidates: Vec<usize> = self
            .pool
            .iter()
            .filter(|(_, p)| !matches!(p.last, Last::Ready(_)) && !p.counter.is_armed())
            .map(|(&fid, _)| fid)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let fid = candidates[self.rng.usize(0..candidates.len())];
        let node = self.pool[&fid].node;
        let can_park = self.parked.len() < MAX_PARKED;
        let act = match self.rng.u32(0..100) {
            0..=29 => {
                // A child's Phaser.
                let children: Vec<usize> = self
                    .live
                    .keys()
                    .copied()
                    .filter(|&c| self.model.nodes[&c].parent == Some(node))
                    .collect();
                if children.is_empty() || !can_park {
                    return;
                }
                let child = children[self.rng.usize(0..children.len())];
                Act::DropPhaser {
                    node: child,
                    panic: self.pick_panic(child),
                    phaser: self.park(child),
                }
            }
            30..=54 => {
                // Its own node's Phaser, or any.
                let others: Vec<usize> = self.live.keys().copied().filter(|&id| id != 0).collect();
                if others.is_empty() || !can_park {
                    return;
                }
                let target = if node != 0 && self.live.contains_key(&node) && self.rng.bool() {
                    node
                } else {
                    others[self.rng.usize(0..others.len())]
                };
                Act::DropPhaser {
                    node: target,
                    panic: self.pick_panic(target),
                    phaser: self.park(target),
                }
            }
            55..=79 => {
                // Cancel its node, its parent or any node.
                let all: Vec<usize> = self.tokens.keys().copied().collect();
                let target = match self.rng.u32(0..3) {
                    0 => node,
                    1 => self.model.nodes[&node].parent.unwrap_or(node),
                    _ => all[self.rng.usize(0..all.len())],
                };
                if target == 0 && self.spare_root() {
                    return;
                }
                Act::Cancel {
                    node: target,
                    token: self.tokens[&target].clone(),
                }
            }
            _ => {
                // Drop another pooled future, rather one on the same node.
                let others: Vec<usize> = self.pool.keys().copied().filter(|&f| f != fid).collect();
                let same: Vec<usize> = others
                    .iter()
                    .copied()
                    .filter(|f| self.pool[f].node == node)
                    .collect();
                let from = if !same.is_empty() && self.rng.bool() {
                    same
                } else {
                    others
                };
                if from.is_empty() {
                    return;
                }
                let other = from[self.rng.usize(0..from.len())];
                Act::DropFuture {
                    fid: other,
                    slot: self.pool[&other].slot.clone(),
                }
            }
        };
        let (target_node, target_fid) = match &act {
            Act::DropPhaser { node, .. } | Act::Cancel { node, .. } => (Some(*node), None),
            Act::DropFuture { fid, .. } => (None, Some(*fid)),
        };
        let nodes: Vec<usize> = [Some(node), target_node].into_iter().flatten().collect();
        let futures: Vec<usize> = [Some(fid), target_fid].into_iter().flatten().collect();
        self.note(&nodes, &futures, format!("arm f{fid}'s waker: {act:?}"));
        self.pool[&fid].counter.arm(act);
    }

    /// Whether to spare the root an operation that would cancel it (see
    /// `ROOT_GUARD`).
    fn spare_root(&mut self) -> bool {
        self.root_guard > 1
            && !self.model.nodes[&0].cancelled
            && self.rng.u32(0..self.root_guard) != 0
    }

    /// Whether a `Phaser` dropped by a waker panics: sometimes, unless its
    /// failure would cancel a root that is spared.
    fn pick_panic(&mut self, node: usize) -> bool {
        self.rng.u32(0..4) == 0
            && !(self.model.nodes[&node].critical
                && self.model.scope_of(node) == 0
                && self.spare_root())
    }

    fn new_fid(&mut self) -> usize {
        self.next_fid += 1;
        self.next_fid - 1
    }

    /// A deadline for a `*_within` future: never, already fired, or one
    /// that a later step fires.
    fn pick_deadline(&mut self) -> usize {
        match self.rng.u32(0..100) {
            0..=39 => 0,
            40..=54 => 1,
            _ => {
                let unfired = self.unfired_deadlines();
                if unfired.len() < 3 && (unfired.is_empty() || self.rng.bool()) {
                    self.deadlines.push(DeadlineState::new(false));
                    self.deadlines.len() - 1
                } else {
                    unfired[self.rng.usize(0..unfired.len())]
                }
            }
        }
    }

    fn unfired_deadlines(&self) -> Vec<usize> {
        (2..self.deadlines.len())
            .filter(|&d| !self.deadlines[d].is_fired())
            .collect()
    }

    /// A step's actors: up to three, on distinct nodes' `Phaser`s (but for
    /// the extra failures of a step that has one) and distinct pooled
    /// futures.
    fn pick(&mut self) -> Vec<Pick> {
        let width = self.rng.usize(1..=3);
        let mut picks: Vec<Pick> = Vec::new();
        let mut nodes = BTreeSet::new();
        // Nodes of the extra failures (below), which may repeat.
        let mut failing_nodes = BTreeSet::new();
        let mut futures = BTreeSet::new();
        for _ in 0..width * 3 {
            if picks.len() == width {
                break;
            }
            let takes = picks
                .iter()
                .filter(|pick| {
                    matches!(
                        pick,
                        Pick::TakeFromToken { .. }
                            | Pick::Handle {
                                op: Op::Take { .. },
                                ..
                            }
                    )
                })
                .count();
            let room = self.pool.len() + takes < POOL_CAP;
            // A step with a failure often has more, racing to their scopes:
            // on any held `Phaser` (the same one too) that it does not drop.
            let failing = picks.iter().find_map(|pick| match *pick {
                Pick::Handle {
                    id,
                    op: Op::Fail { .. },
                } => Some(id),
                _ => None,
            });
            if let Some(first) = failing.filter(|_| self.rng.bool()) {
                let dropping: BTreeSet<usize> = picks
                    .iter()
                    .filter_map(|pick| match *pick {
                        Pick::Handle {
                            id,
                            op: Op::Drop { .. },
                        } => Some(id),
                        _ => None,
                    })
                    .collect();
                // Half of them in the first one's scope.
                let scope = self.model.scope_of(first);
                let same = self.rng.bool();
                let held: Vec<usize> = self
                    .live
                    .keys()
                    .copied()
                    .filter(|&id| {
                        !dropping.contains(&id) && (!same || self.model.scope_of(id) == scope)
                    })
                    .collect();
                let id = held[self.rng.usize(0..held.len())];
                if self.model.scope_of(id) == 0 && self.spare_root() {
                    continue;
                }
                failing_nodes.insert(id);
                picks.push(Pick::Handle {
                    id,
                    op: Op::Fail {
                        cause: self.rng.usize(0..1000),
                    },
                });
                continue;
            }
            if self.rng.u32(0..100) < 60 {
                let free: Vec<usize> = self
                    .live
                    .keys()
                    .copied()
                    .filter(|id| !nodes.contains(id) && !failing_nodes.contains(id))
                    .collect();
                if free.is_empty() {
                    continue;
                }
                let id = free[self.rng.usize(0..free.len())];
                let op = loop {
                    let mut op = pick_op(&mut self.rng, id == 0, &mut self.next_id);
                    if let Op::Take { .. } = op {
                        op = if room {
                            Op::Take {
                                fid: self.new_fid(),
                                kind: pick_kind(&mut self.rng, true),
                                poll: self.rng.u32(0..10) < 7,
                            }
                        } else {
                            Op::PollTurn
                        };
                    }
                    let cancels_root = op
                        .cancellations(id, &self.model)
                        .iter()
                        .any(|&(from, _)| from == 0);
                    if !cancels_root || !self.spare_root() {
                        break op;
                    }
                };
                nodes.insert(id);
                picks.push(Pick::Handle { id, op });
            } else {
                let free: Vec<usize> = self
                    .pool
                    .keys()
                    .copied()
                    .filter(|f| !futures.contains(f))
                    .collect();
                let r = self.rng.u32(0..100);
                if room && (r < 25 || free.is_empty()) {
                    let ids: Vec<usize> = self.tokens.keys().copied().collect();
                    let id = ids[self.rng.usize(0..ids.len())];
                    picks.push(Pick::TakeFromToken {
                        id,
                        fid: self.new_fid(),
                        kind: pick_kind(&mut self.rng, false),
                        poll: self.rng.u32(0..10) < 7,
                    });
                } else if !free.is_empty() {
                    let fid = free[self.rng.usize(0..free.len())];
                    let unfired = self.unfired_deadlines();
                    let pick = if r < 78 {
                        Pick::Poll { fid }
                    } else if r < 94 || unfired.is_empty() {
                        Pick::DropFuture { fid }
                    } else {
                        Pick::Fire {
                            deadline: unfired[self.rng.usize(0..unfired.len())],
                        }
                    };
                    if !matches!(pick, Pick::Fire { .. }) {
                        futures.insert(fid);
                    }
                    picks.push(pick);
                }
            }
        }
        if picks.is_empty() {
            picks.push(Pick::Handle {
                id: 0,
                op: Op::PollCancelled,
            });
        }
        picks
    }

    fn check(&self) {
        let ctx =
            |what: &str, id: usize| format!("seed {} {}: {what} of n{id}", self.seed, self.at);
        for (&id, handle) in &self.live {
            let node = &self.model.nodes[&id];
            assert_eq!(
                handle.is_cancelled(),
                node.cancelled,
                "{}",
                ctx("is_cancelled", id)
            );
            assert_eq!(
                handle.is_turn(),
                self.model.is_turn(id),
                "{}",
                ctx("is_turn", id)
            );
            assert_eq!(
                handle.live_children(),
                node.live_children.len(),
                "{}",
                ctx("live_children", id)
            );
            assert_eq!(
                handle.is_aborted(),
                node.aborted,
                "{}",
                ctx("is_aborted", id)
            );
            assert_eq!(
                failure_texts(handle.failures()),
                node.failures,
                "{}",
                ctx("failures", id)
            );
        }
        self.check_tokens();
        let report = self.live[&0].report();
        let entries: BTreeMap<String, ReportLine> = report
            .entries()
            .iter()
            .map(|entry| {
                let cause = entry.cause().map(ToString::to_string);
                (
                    entry.label().unwrap().to_owned(),
                    (entry.state(), entry.aborted(), entry.panicked(), cause),
                )
            })
            .collect();
        assert_eq!(
            entries,
            self.model.report(0),
            "seed {} {}: report",
            self.seed,
            self.at
        );
        assert_eq!(
            failure_texts(report.failures().to_vec()),
            self.model.nodes[&0].failures,
            "seed {} {}: the report's failures",
            self.seed,
            self.at
        );
    }

    /// What every node's `Token` says, drained or not: cancelled, aborted,
    /// cause and failures.
    fn check_tokens(&self) {
        let ctx =
            |what: &str, id: usize| format!("seed {} {}: {what} of n{id}", self.seed, self.at);
        for (&id, token) in &self.tokens {
            let node = &self.model.nodes[&id];
            assert_eq!(token.is_cancelled(), node.cancelled, "{}", ctx("token", id));
            assert_eq!(
                token.is_aborted(),
                node.aborted,
                "{}",
                ctx("token aborted", id)
            );
            assert_eq!(text(token.cause()), node.cause, "{}", ctx("cause", id));
            assert_eq!(
                failure_texts(token.failures()),
                node.failures,
                "{}",
                ctx("token failures", id)
            );
        }
    }

    /// Runs one step; returns how many operations it ran.
    fn step(&mut self, step: usize, progress: &mpsc::Sender<String>) -> usize {
        let seed = self.seed;
        self.at = format!("step {step}");
        let picks = self.pick();
        let armed: Vec<String> = self
            .pool
            .iter()
            .filter_map(|(fid, p)| p.counter.armed().map(|act| format!("f{fid}: {act}")))
            .collect();
        let _ = progress.send(format!(
            "step {step}: {picks:?} (armed wakers: [{}])",
            armed.join(", ")
        ));

        // The wakers (and deadlines) of the futures this step takes.
        let mut takes: BTreeMap<usize, (Kind, Option<usize>, Counter, Waker)> = BTreeMap::new();
        for pick in &picks {
            let (id, fid, kind) = match *pick {
                Pick::Handle {
                    id,
                    op: Op::Take { fid, kind, .. },
                }
                | Pick::TakeFromToken { id, fid, kind, .. } => (id, fid, kind),
                _ => continue,
            };
            let deadline = kind.has_deadline().then(|| self.pick_deadline());
            let name = format!("f{fid} = n{id}.{kind:?}");
            let (counter, waker) = Counter::new(self.acting.then_some((fid, name, &self.log)));
            takes.insert(fid, (kind, deadline, counter, waker));
        }
        let make_take = |fid: usize, poll: bool, deadlines: &[Arc<DeadlineState>]| {
            let (kind, deadline, counter, waker) = &takes[&fid];
            Take {
                kind: *kind,
                poll,
                counter: counter.clone(),
                waker: waker.clone(),
                deadline: deadline.map(|d| deadlines[d].clone()),
            }
        };

        let was_cancelled: BTreeMap<usize, bool> = self
            .model
            .nodes
            .iter()
            .map(|(&id, n)| (id, n.cancelled))
            .collect();
        let turn_before: BTreeMap<usize, bool> = self
            .model
            .nodes
            .keys()
            .map(|&id| (id, self.model.is_turn(id)))
            .collect();

        let mut jobs = Vec::new();
        for pick in &picks {
            jobs.push(match *pick {
                Pick::Handle { id, op } => Job::Handle {
                    op,
                    handle: match op {
                        Op::Drop { .. } => self.live.remove(&id).unwrap(),
                        _ => self.live[&id].clone(),
                    },
                    take: match op {
                        Op::Take { fid, poll, .. } => Some(make_take(fid, poll, &self.deadlines)),
                        _ => None,
                    },
                },
                Pick::TakeFromToken { id, fid, poll, .. } => Job::TokenTake {
                    token: self.tokens[&id].clone(),
                    take: make_take(fid, poll, &self.deadlines),
                },
                Pick::Poll { fid } => {
                    let p = &self.pool[&fid];
                    Job::Poll {
                        slot: p.slot.clone(),
                        counter: p.counter.clone(),
                        waker: p.waker.clone(),
                    }
                }
                Pick::DropFuture { fid } => Job::DropFuture {
                    slot: self.pool[&fid].slot.clone(),
                },
                Pick::Fire { deadline } => Job::Fire {
                    deadline: self.deadlines[deadline].clone(),
                },
            });
        }
        let start = Barrier::new(jobs.len());
        let done = Barrier::new(jobs.len());
        let outcomes: Vec<Outcome> = thread::scope(|scope| {
            let threads: Vec<_> = jobs
                .into_iter()
                .enumerate()
                .map(|(i, job)| {
                    let (start, done) = (&start, &done);
                    thread::Builder::new()
                        .name(format!("step {step} actor {i}"))
                        .spawn_scoped(scope, move || run_job(job, start, done))
                        .unwrap()
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let ops_run = picks.len();

        // Linearize: created children, then cancels and drops, then what the
        // wakers did (in the order they did it), then refusals.
        let mut results: Vec<(Pick, Outcome)> = picks.into_iter().zip(outcomes).collect();
        for (pick, outcome) in &mut results {
            if let (
                Pick::Handle {
                    id,
                    op:
                        Op::Child {
                            new_id,
                            scope,
                            critical,
                        },
                },
                Outcome::Created(_),
            ) = (*pick, &*outcome)
            {
                assert!(
                    !was_cancelled[&id],
                    "seed {seed} step {step}: n{id} was cancelled, yet accepted a child"
                );
                self.model.add(new_id, Some(id), scope, critical);
                let Outcome::Created(child) = std::mem::replace(outcome, Outcome::Done) else {
                    unreachable!()
                };
                assert_eq!(child.label(), Some(label(new_id).as_str()));
                self.tokens.insert(new_id, child.token());
                self.live.insert(new_id, Arc::new(child));
            }
        }
        let mut acts = std::mem::take(&mut *lock(&self.log.acted));
        acts.sort_by_key(|&(seq, _, _)| seq);
        // Which causes may reach each node this step: those of the step's
        // cancellations of it or an ancestor (the race decides which).
        let mut cancellations: Vec<(usize, Given)> = Vec::new();
        for (pick, _) in &results {
            if let Pick::Handle { id, op } = *pick {
                cancellations.extend(op.cancellations(id, &self.model));
            }
        }
        for &(_, _, acted) in &acts {
            match acted {
                Acted::DroppedPhaser { node, panicking } => {
                    cancellations.extend(self.model.drop_cancellations(node, panicking))
                }
                Acted::Cancelled(node) => cancellations.push((node, Given::Cause(None))),
                Acted::DroppedFuture(..) => {}
            }
        }
        let mut possible: BTreeMap<usize, Vec<Option<String>>> = BTreeMap::new();
        for (id, given) in cancellations {
            let cause = match given {
                Given::Cause(cause) => cause,
                // The library's list is complete now (its order is checked
                // below).
                Given::FirstFailure => failure_texts(self.tokens[&id].failures())
                    .into_iter()
                    .next()
                    .map(|(_, cause, _)| cause),
            };
            for node in self.model.subtree(id) {
                possible.entry(node).or_default().push(cause.clone());
            }
        }
        let reached_by_abort: Vec<usize> = results
            .iter()
            .filter_map(|(pick, _)| match *pick {
                Pick::Handle { id, op: Op::Abort } => Some(id),
                _ => None,
            })
            .flat_map(|id| self.model.subtree(id))
            .collect();
        for (pick, _) in &results {
            let Pick::Handle { id, op } = *pick else {
                continue;
            };
            match op {
                Op::Cancel | Op::TokenCancel => self.model.cancel(id, None),
                Op::Take {
                    kind: Kind::ShutdownWithin,
                    ..
                } => self.model.cancel(id, None),
                Op::CancelWith { cause } => self.model.cancel(id, Some(&format!("c{cause}"))),
                Op::Fail { cause } => self.model.fail(id, &fail_cause(cause), false),
                Op::Abort => self.model.abort(id),
                Op::Drop { panic } => self.model.drop_owner(id, panic),
                _ => {}
            }
        }
        for &(_, waker_fid, acted) in &acts {
            let waker_node = self.pool.get(&waker_fid).map(|p| p.node);
            let (target_node, target_fid) = match acted {
                Acted::DroppedPhaser { node, panicking } => {
                    let parked = self
                        .parked
                        .remove(&node)
                        .expect("a waker drops only a parked Phaser");
                    assert!(
                        lock(&parked).is_none(),
                        "seed {seed} step {step}: the waker of f{waker_fid} left n{node}'s Phaser"
                    );
                    self.model.drop_owner(node, panicking);
                    (Some(node), None)
                }
                Acted::Cancelled(node) => {
                    self.model.cancel(node, None);
                    (Some(node), None)
                }
                Acted::DroppedFuture(fid, _) => (None, Some(fid)),
            };
            let acted = match acted {
                Acted::DroppedFuture(fid, false) => {
                    format!("dropped f{fid}, which was gone already")
                }
                other => format!("{other:?}"),
            };
            let nodes: Vec<usize> = [waker_node, target_node].into_iter().flatten().collect();
            let futures: Vec<usize> = [Some(waker_fid), target_fid]
                .into_iter()
                .flatten()
                .collect();
            self.note(
                &nodes,
                &futures,
                format!("the waker of f{waker_fid} acted: {acted:?}"),
            );
        }
        // A node that drained in this step while an abort of this step was
        // walking towards it may or may not have been reached: either is a
        // valid order, so adopt the library's answer. Every other node the
        // abort reached must be aborted, as the model says.
        for node in reached_by_abort {
            if self.model.nodes[&node].drained {
                self.model.nodes.get_mut(&node).unwrap().aborted = self.tokens[&node].is_aborted();
            }
        }
        // Adopt the cause the library chose for each node first cancelled in
        // this step, after checking it was a possible one.
        for (&node, causes) in &possible {
            if was_cancelled.get(&node).copied().unwrap_or(false) {
                continue; // cancelled before: its cause must not change
            }
            let chosen = text(self.tokens[&node].cause());
            assert!(
                causes.contains(&chosen),
                "seed {seed} step {step}: n{node} has cause {chosen:?}, not one of {causes:?}"
            );
            self.model.nodes.get_mut(&node).unwrap().cause = chosen;
        }
        // Failures recorded in this step may be in any order among
        // themselves (they raced), after those recorded before, each once:
        // check that, then adopt the library's order.
        for (scope, before) in std::mem::take(&mut self.model.touched) {
            let recorded = failure_texts(self.tokens[&scope].failures());
            let expected = &self.model.nodes[&scope].failures;
            let mut new_recorded = recorded.get(before..).unwrap_or_default().to_vec();
            let mut new_expected = expected[before..].to_vec();
            new_recorded.sort();
            new_expected.sort();
            assert!(
                recorded.len() == expected.len()
                    && recorded[..before] == expected[..before]
                    && new_recorded == new_expected,
                "seed {seed} step {step}: the failures of n{scope} are {recorded:?}; expected \
                 {:?}, then this step's {:?} in any order",
                &expected[..before],
                &expected[before..],
            );
            self.model.nodes.get_mut(&scope).unwrap().failures = recorded;
        }
        for (pick, outcome) in results {
            match (pick, outcome) {
                (
                    Pick::Handle {
                        id,
                        op: Op::Child { .. },
                    },
                    Outcome::Refused,
                ) => {
                    self.note(&[id], &[], format!("n{id}.child() refused"));
                    assert!(
                        self.model.nodes[&id].cancelled,
                        "seed {seed} step {step}: live n{id} refused a child"
                    )
                }
                (
                    Pick::Handle { id, op },
                    Outcome::Polled {
                        first,
                        wakes,
                        second,
                    },
                ) => {
                    let ready = match op {
                        Op::PollCancelled => self.model.nodes[&id].cancelled,
                        Op::PollAborted => self.model.nodes[&id].aborted,
                        _ => self.model.is_turn(id),
                    };
                    assert_eq!(
                        second.is_ready(),
                        ready,
                        "seed {seed} step {step}: {op:?} on n{id}"
                    );
                    if first.is_pending() && ready {
                        assert!(
                            wakes > 0,
                            "seed {seed} step {step}: lost wake-up for {op:?} on n{id}"
                        );
                    }
                    if first.is_ready() {
                        assert!(
                            second.is_ready(),
                            "seed {seed} step {step}: {op:?} ready, then not"
                        );
                    }
                }
                (
                    Pick::Handle {
                        id,
                        op: Op::Take { fid, .. },
                    }
                    | Pick::TakeFromToken { id, fid, .. },
                    Outcome::Taken { future, polled },
                ) => {
                    let (kind, deadline, counter, waker) = takes.remove(&fid).unwrap();
                    let via = if matches!(pick, Pick::Handle { .. }) {
                        ""
                    } else {
                        ".token()"
                    };
                    let deadline_text = deadline.map(|d| format!("(d{d})")).unwrap_or_default();
                    self.pool.insert(
                        fid,
                        Pooled {
                            node: id,
                            kind,
                            deadline,
                            slot: Slot::new(future),
                            counter,
                            waker,
                            last: Last::Never,
                        },
                    );
                    self.note(
                        &[id],
                        &[fid],
                        format!(
                            "f{fid} = n{id}{via}.{kind:?}{deadline_text}, polled: {:?}",
                            polled.map(|p| p.poll)
                        ),
                    );
                    if let Some(polled) = polled {
                        self.record_poll(fid, polled, turn_before[&id]);
                    }
                }
                (Pick::Handle { id, op }, _) => {
                    let nodes = match op {
                        Op::Child { new_id, .. } => vec![id, new_id],
                        _ => vec![id],
                    };
                    self.note(&nodes, &[], format!("n{id}: {op:?}"));
                }
                (Pick::Poll { fid }, Outcome::FuturePolled(polled)) => {
                    let node = self.pool[&fid].node;
                    self.note(
                        &[node],
                        &[fid],
                        format!("poll f{fid} → {:?}", polled.map(|p| p.poll)),
                    );
                    if let Some(polled) = polled {
                        self.record_poll(fid, polled, turn_before[&node]);
                    }
                }
                (Pick::DropFuture { fid }, _) => {
                    let node = self.pool[&fid].node;
                    self.note(&[node], &[fid], format!("drop f{fid}"));
                }
                (Pick::Fire { deadline }, _) => {
                    let futures: Vec<usize> = self
                        .pool
                        .iter()
                        .filter(|(_, p)| p.deadline == Some(deadline))
                        .map(|(&fid, _)| fid)
                        .collect();
                    self.note(&[], &futures, format!("fire d{deadline}"));
                }
                (pick, outcome) => unreachable!("{pick:?} gave {outcome:?}"),
            }
        }
        // Futures dropped in this step (by a step or a waker) leave the pool;
        // an armed waker's act that will not happen now gives its Phaser back.
        let gone: Vec<usize> = self
            .pool
            .iter()
            .filter(|(_, p)| p.slot.is_gone())
            .map(|(&fid, _)| fid)
            .collect();
        for fid in gone {
            let pooled = self.pool.remove(&fid).unwrap();
            if let Some(act) = pooled.counter.disarm() {
                self.reclaim(act);
            }
        }
        for (node, parked) in &self.parked {
            assert!(
                lock(parked).is_some(),
                "seed {seed} step {step}: n{node}'s parked Phaser vanished"
            );
        }
        self.check();
        self.check_futures();
        let ready: Vec<usize> = self
            .pool
            .iter()
            .filter(|(_, p)| matches!(p.last, Last::Ready(_)))
            .map(|(&fid, _)| fid)
            .collect();
        for fid in ready {
            if let Some(act) = self.pool[&fid].counter.disarm() {
                self.reclaim(act);
            }
        }
        self.maybe_arm();
        ops_run
    }

    /// Drops everything, leaf-heavy random order, one at a time, checking
    /// the pool after each drop; the root's turn comes, and every future
    /// whose condition holds resolves.
    fn teardown(&mut self) {
        self.at = "teardown".to_owned();
        let acts: Vec<Act> = self
            .pool
            .values()
            .filter_map(|p| p.counter.disarm())
            .collect();
        for act in acts {
            self.reclaim(act);
        }
        assert!(self.parked.is_empty());
        let root = self.live.remove(&0).unwrap();
        root.cancel();
        self.model.cancel(0, None);
        self.note(&[0], &[], "n0: Cancel".to_owned());
        self.check_futures();
        let mut rest: Vec<usize> = self.live.keys().copied().collect();
        self.rng.shuffle(&mut rest);
        for id in rest {
            if !self.pool.is_empty() && self.rng.u32(0..5) == 0 {
                let fids: Vec<usize> = self.pool.keys().copied().collect();
                let fid = fids[self.rng.usize(0..fids.len())];
                let pooled = self.pool.remove(&fid).unwrap();
                pooled.slot.drop_future();
                self.note(&[pooled.node], &[fid], format!("drop f{fid}"));
            }
            let phaser = Arc::into_inner(self.live.remove(&id).unwrap())
                .expect("the teardown holds the only reference");
            let panic = self.rng.u32(0..6) == 0;
            if panic {
                drop_panicking(Some(phaser));
            } else {
                drop(phaser);
            }
            // One drop at a time: the failures' order is the model's.
            self.model.drop_owner(id, panic);
            self.model.touched.clear();
            self.note(&[id], &[], format!("n{id}: Drop {{ panic: {panic} }}"));
            self.check_tokens();
            self.check_futures();
        }
        assert!(
            root.is_turn(),
            "seed {}: the root's turn must come once everything is dropped",
            self.seed
        );
        drop(Arc::into_inner(root).expect("the teardown holds the only reference"));
        self.model.drop_owner(0, false);
        self.note(&[0], &[], "n0: Drop".to_owned());
        self.check_tokens();
        self.check_futures();
        // A future never polled resolves at its first poll if it can.
        let fids: Vec<usize> = self.pool.keys().copied().collect();
        for fid in fids {
            let due = self.condition(fid) || self.deadline_fired(fid);
            if matches!(self.pool[&fid].last, Last::Never)
                && due
                && self.repoll(fid, "first").is_pending()
            {
                self.fail_future(fid, "liveness: due, yet pending at its first poll");
            }
        }
        self.pool.clear();
    }
}

fn run_model(seed: u64, steps: usize, log: Arc<ActLog>, progress: &mpsc::Sender<String>) -> usize {
    let mut run = Run::new(seed, log);
    let mut ops_run = 0;
    for step in 0..steps {
        ops_run += run.step(step, progress);
    }
    let _ = progress.send("teardown".to_owned());
    run.teardown();
    ops_run
}

/// Runs one seed on its own thread under a watchdog: no progress (a step
/// that does not finish) for this long fails the test rather than hang it.
fn run_watched(seed: u64, steps: usize) -> usize {
    let timeout = Duration::from_secs(if cfg!(miri) { 24 * 3600 } else { 30 });
    let (progress, heartbeats) = mpsc::channel();
    let log = Arc::new(ActLog::default());
    let worker = thread::Builder::new()
        .name(format!("model seed {seed}"))
        .spawn({
            let log = log.clone();
            move || run_model(seed, steps, log, &progress)
        })
        .unwrap();
    let mut last = "the start".to_owned();
    loop {
        match heartbeats.recv_timeout(timeout) {
            Ok(at) => last = at,
            Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
                Ok(ops) => return ops,
                Err(panic) => {
                    eprintln!(
                        "model check failed at seed {seed} (replay: PHASEOUT_MODEL_SEED={seed})"
                    );
                    std::panic::resume_unwind(panic)
                }
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let in_flight: Vec<String> = lock(&log.in_flight)
                    .values()
                    .map(|act| format!("\n    {act}"))
                    .collect();
                panic!(
                    "seed {seed}: no progress for {timeout:?} in {last}: a deadlock or a hang \
                     (or an operation's thread panicked: see above); replay: \
                     PHASEOUT_MODEL_SEED={seed}{}\n  acts of wakers begun and not finished:{}",
                    if acting_wakers() {
                        ""
                    } else {
                        " PHASEOUT_MODEL_ACTING_WAKERS=0"
                    },
                    if in_flight.is_empty() {
                        " none".to_owned()
                    } else {
                        in_flight.concat()
                    }
                )
            }
        }
    }
}

static OPS: AtomicUsize = AtomicUsize::new(0);

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("PHASEOUT_MODEL_SEED") {
        return vec![seed.parse().expect("PHASEOUT_MODEL_SEED is a number")];
    }
    let count = std::env::var("PHASEOUT_MODEL_SEEDS")
        .ok()
        .map(|n| n.parse().expect("PHASEOUT_MODEL_SEEDS is a number"))
        .unwrap_or(scaled(if cfg!(debug_assertions) { 200 } else { 400 }, 3));
    (0..count as u64).collect()
}

#[test]
fn model_check_random_operations_from_several_threads() {
    let steps = scaled(150, 15);
    for seed in seeds() {
        OPS.fetch_add(run_watched(seed, steps), Ordering::Relaxed);
    }
    println!(
        "model check: {} operations over {} seeds agreed with the model{}",
        OPS.load(Ordering::Relaxed),
        seeds().len(),
        if acting_wakers() {
            " (acting wakers)"
        } else {
            ""
        }
    );
}

#[test]
#[ignore = "soak: minutes; run with --ignored"]
fn model_check_soak() {
    let mut ops = 0;
    for seed in 1_000_000..1_010_000 {
        ops += run_watched(seed, 400);
    }
    println!("model soak: {ops} operations agreed with the model");
}
