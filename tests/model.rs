//! Randomized model check: a plain sequential model of the contract (a
//! simple tree) and the real library, driven by the same random operations.
//!
//! Each step runs up to three operations on distinct handles *at once*, one
//! thread each, then waits for all of them (the step quiesces) and applies the
//! same operations to the model. Concurrent operations may interleave in any
//! way, so the model applies them in the one order that explains what the
//! library answered: children that were created first, then every cancel and
//! drop, then the `child()` calls that were refused (whose parent must then be
//! cancelled). After each step every observable must agree: `is_cancelled`,
//! `is_turn`, `live_children`, the report's nodes and states, and the futures
//! (one that was pending must have been woken if the model says it is ready),
//! `is_aborted` and each node's cause. Causes of nodes cancelled during a
//! step may come from any of the step's cancellations that reach them (the
//! order is the race's); the check asserts the library's answer is one of
//! them, then holds it to that answer forever after.
//!
//! Replay a failure with `PHASEOUT_MODEL_SEED=<seed>`; run longer with
//! `PHASEOUT_MODEL_SEEDS=<count>` (or `cargo test --test model -- --ignored`
//! for the soak).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::Poll;
use std::thread;

use common::{poll_once, scaled, CountingWaker};
use futures_core::FusedFuture;
use phaseout::{Cause, NodeState, Phaser, Token};

// ===== The model =====

#[derive(Clone, Debug, Default)]
struct ModelNode {
    parent: Option<usize>,
    cancelled: bool,
    aborted: bool,
    /// The cause's text once cancelled (`None` for a plain cancel).
    cause: Option<String>,
    owner_done: bool,
    drained: bool,
    live_children: Vec<usize>,
}

/// Nodes by id; a node's label is `n<id>`.
#[derive(Debug, Default)]
struct Model {
    nodes: BTreeMap<usize, ModelNode>,
}

impl Model {
    fn add(&mut self, id: usize, parent: Option<usize>) {
        if let Some(parent) = parent {
            let parent = self.nodes.get_mut(&parent).unwrap();
            assert!(!parent.cancelled);
            parent.live_children.push(id);
        }
        self.nodes.insert(
            id,
            ModelNode {
                parent,
                ..ModelNode::default()
            },
        );
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

    fn drop_owner(&mut self, node: usize) {
        self.cancel(node, Some(&owner_finished(node)));
        self.nodes.get_mut(&node).unwrap().owner_done = true;
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

    /// Label → state, aborted and cause of every un-drained node in
    /// `node`'s subtree.
    fn report(&self, node: usize) -> BTreeMap<String, (NodeState, bool, Option<String>)> {
        self.subtree(node)
            .into_iter()
            .map(|id| {
                let n = &self.nodes[&id];
                (label(id), (self.state(id), n.aborted, n.cause.clone()))
            })
            .collect()
    }
}

fn label(node: usize) -> String {
    format!("n{node}")
}

/// The cause a node gets from its own owner's drop.
fn owner_finished(node: usize) -> String {
    format!("the owner of `{}` finished", label(node))
}

fn text(cause: Option<Cause>) -> Option<String> {
    cause.map(|cause| cause.to_string())
}

// ===== Operations =====

#[derive(Clone, Copy, Debug)]
enum Op {
    Child {
        new_id: usize,
    },
    Cancel,
    TokenCancel,
    /// `cancel_with("c<cause>")`, on the `Phaser` or (odd) a token.
    CancelWith {
        cause: usize,
    },
    Abort,
    Drop,
    PollCancelled,
    PollTurn,
    PollAborted,
}

impl Op {
    /// The cause this operation gives the nodes it cancels first, if it
    /// cancels.
    fn cause(self, id: usize) -> Option<Option<String>> {
        match self {
            Op::Cancel | Op::TokenCancel | Op::Abort => Some(None),
            Op::CancelWith { cause } => Some(Some(format!("c{cause}"))),
            Op::Drop => Some(Some(owner_finished(id))),
            _ => None,
        }
    }
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
}

fn pick_op(rng: &mut fastrand::Rng, is_root: bool, next_id: &mut usize) -> Op {
    match rng.u32(0..112) {
        0..=34 => {
            *next_id += 1;
            Op::Child {
                new_id: *next_id - 1,
            }
        }
        35..=40 => Op::Cancel,
        41..=45 => Op::TokenCancel,
        46..=52 => Op::CancelWith {
            cause: rng.usize(0..1000),
        },
        53..=55 => Op::Abort,
        56..=80 if !is_root => Op::Drop,
        56..=80 => Op::Cancel,
        81..=93 => Op::PollCancelled,
        94..=99 => Op::PollAborted,
        _ => Op::PollTurn,
    }
}

/// Runs one operation on its own thread. `done` is the barrier every thread
/// reaches once its operation is over; polls re-poll after it.
fn run_op(op: Op, handle: Arc<Phaser>, start: &Barrier, done: &Barrier) -> Outcome {
    start.wait();
    let outcome = match op {
        Op::Child { new_id } => match handle.child_named(label(new_id)) {
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
        Op::Abort => {
            handle.abort();
            Outcome::Done
        }
        Op::Drop => {
            // The caller passed the only reference: this drops the Phaser.
            drop(Arc::into_inner(handle).expect("Drop gets the last reference"));
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

struct Run {
    seed: u64,
    model: Model,
    /// Handles whose owner is not done, by model id.
    live: BTreeMap<usize, Arc<Phaser>>,
    /// A token of every node ever made, by id.
    tokens: BTreeMap<usize, Token>,
}

impl Run {
    fn check(&self, step: usize) {
        let ctx =
            |what: &str, id: usize| format!("seed {} step {step}: {what} of n{id}", self.seed);
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
        }
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
        }
        let report: BTreeMap<String, (NodeState, bool, Option<String>)> = self.live[&0]
            .report()
            .entries()
            .iter()
            .map(|entry| {
                let cause = entry.cause().map(ToString::to_string);
                (
                    entry.label().unwrap().to_owned(),
                    (entry.state(), entry.aborted(), cause),
                )
            })
            .collect();
        assert_eq!(
            report,
            self.model.report(0),
            "seed {} step {step}: report",
            self.seed
        );
    }
}

fn run_model(seed: u64, steps: usize) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut run = Run {
        seed,
        model: Model::default(),
        live: BTreeMap::new(),
        tokens: BTreeMap::new(),
    };
    run.model.add(0, None);
    let root = Phaser::named(label(0));
    run.tokens.insert(0, root.token());
    run.live.insert(0, Arc::new(root));
    let mut next_id = 1;
    let mut ops_run = 0;

    for step in 0..steps {
        let width = rng.usize(1..=3).min(run.live.len());
        let ids: Vec<usize> = {
            let all: Vec<usize> = run.live.keys().copied().collect();
            let mut chosen = Vec::new();
            while chosen.len() < width {
                let id = all[rng.usize(0..all.len())];
                if !chosen.contains(&id) {
                    chosen.push(id);
                }
            }
            chosen
        };
        let ops: Vec<(usize, Op)> = ids
            .iter()
            .map(|&id| (id, pick_op(&mut rng, id == 0, &mut next_id)))
            .collect();
        ops_run += ops.len();

        let start = Barrier::new(ops.len());
        let done = Barrier::new(ops.len());
        let handles: Vec<Arc<Phaser>> = ops
            .iter()
            .map(|&(id, op)| match op {
                Op::Drop => run.live.remove(&id).unwrap(),
                _ => run.live[&id].clone(),
            })
            .collect();
        let outcomes: Vec<Outcome> = thread::scope(|scope| {
            let threads: Vec<_> = ops
                .iter()
                .zip(handles)
                .map(|(&(_, op), handle)| {
                    let (start, done) = (&start, &done);
                    scope.spawn(move || run_op(op, handle, start, done))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });

        // Linearize: created children, then cancels and drops, then refusals.
        let was_cancelled: BTreeMap<usize, bool> = run
            .model
            .nodes
            .iter()
            .map(|(&id, n)| (id, n.cancelled))
            .collect();
        let mut results: Vec<(usize, Op, Outcome)> = ops
            .iter()
            .zip(outcomes)
            .map(|(&(id, op), outcome)| (id, op, outcome))
            .collect();
        for (id, op, outcome) in &mut results {
            if let (Op::Child { new_id }, Outcome::Created(_)) = (*op, &*outcome) {
                assert!(
                    !was_cancelled[&*id],
                    "seed {seed} step {step}: n{id} was cancelled, yet accepted a child"
                );
                run.model.add(new_id, Some(*id));
                let Outcome::Created(child) = std::mem::replace(outcome, Outcome::Done) else {
                    unreachable!()
                };
                assert_eq!(child.label(), Some(label(new_id).as_str()));
                run.tokens.insert(new_id, child.token());
                run.live.insert(new_id, Arc::new(child));
            }
        }
        // Which causes may reach each node this step: those of the step's
        // cancellations of it or an ancestor (the race decides which).
        let mut possible: BTreeMap<usize, Vec<Option<String>>> = BTreeMap::new();
        for (id, op, _) in &results {
            if let Some(cause) = op.cause(*id) {
                for node in run.model.subtree(*id) {
                    possible.entry(node).or_default().push(cause.clone());
                }
            }
        }
        let reached_by_abort: Vec<usize> = results
            .iter()
            .filter(|(_, op, _)| matches!(op, Op::Abort))
            .flat_map(|(id, _, _)| run.model.subtree(*id))
            .collect();
        for (id, op, _) in &results {
            match op {
                Op::Cancel | Op::TokenCancel => run.model.cancel(*id, None),
                Op::CancelWith { cause } => run.model.cancel(*id, Some(&format!("c{cause}"))),
                Op::Abort => run.model.abort(*id),
                Op::Drop => run.model.drop_owner(*id),
                _ => {}
            }
        }
        // A node that drained in this step while an abort of this step was
        // walking towards it may or may not have been reached: either is a
        // valid order, so adopt the library's answer. Every other node the
        // abort reached must be aborted, as the model says.
        for node in reached_by_abort {
            if run.model.nodes[&node].drained {
                run.model.nodes.get_mut(&node).unwrap().aborted = run.tokens[&node].is_aborted();
            }
        }
        // Adopt the cause the library chose for each node first cancelled in
        // this step, after checking it was a possible one.
        for (&node, causes) in &possible {
            if was_cancelled.get(&node).copied().unwrap_or(false) {
                continue; // cancelled before: its cause must not change
            }
            let chosen = text(run.tokens[&node].cause());
            assert!(
                causes.contains(&chosen),
                "seed {seed} step {step}: n{node} has cause {chosen:?}, not one of {causes:?}"
            );
            run.model.nodes.get_mut(&node).unwrap().cause = chosen;
        }
        for (id, op, outcome) in &results {
            match (op, outcome) {
                (Op::Child { .. }, Outcome::Refused) => {
                    assert!(
                        run.model.nodes[id].cancelled,
                        "seed {seed} step {step}: live n{id} refused a child"
                    )
                }
                (
                    Op::PollCancelled | Op::PollTurn | Op::PollAborted,
                    Outcome::Polled {
                        first,
                        wakes,
                        second,
                    },
                ) => {
                    let ready = match op {
                        Op::PollCancelled => run.model.nodes[id].cancelled,
                        Op::PollAborted => run.model.nodes[id].aborted,
                        _ => run.model.is_turn(*id),
                    };
                    assert_eq!(
                        second.is_ready(),
                        ready,
                        "seed {seed} step {step}: {op:?} on n{id}"
                    );
                    if first.is_pending() && ready {
                        assert!(
                            *wakes > 0,
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
                _ => {}
            }
        }
        run.check(step);
    }
    // Tear down: drop everything, leaf-heavy random order; the root's turn comes.
    let root = run.live.remove(&0).unwrap();
    root.cancel();
    let mut rest: Vec<Arc<Phaser>> = std::mem::take(&mut run.live).into_values().collect();
    rng.shuffle(&mut rest);
    drop(rest);
    assert!(
        root.is_turn(),
        "seed {seed}: the root's turn must come once everything is dropped"
    );
    ops_run
}

static OPS: AtomicUsize = AtomicUsize::new(0);

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("PHASEOUT_MODEL_SEED") {
        return vec![seed.parse().expect("PHASEOUT_MODEL_SEED is a number")];
    }
    let count = std::env::var("PHASEOUT_MODEL_SEEDS")
        .ok()
        .map(|n| n.parse().expect("PHASEOUT_MODEL_SEEDS is a number"))
        .unwrap_or(scaled(200, 3));
    (0..count as u64).collect()
}

#[test]
fn model_check_random_operations_from_several_threads() {
    let steps = scaled(150, 15);
    for seed in seeds() {
        OPS.fetch_add(run_model(seed, steps), Ordering::Relaxed);
    }
    println!(
        "model check: {} operations over {} seeds agreed with the model",
        OPS.load(Ordering::Relaxed),
        seeds().len()
    );
}

#[test]
#[ignore = "soak: minutes; run with --ignored"]
fn model_check_soak() {
    let mut ops = 0;
    for seed in 1_000_000..1_010_000 {
        ops += run_model(seed, 400);
    }
    println!("model soak: {ops} operations agreed with the model");
}
