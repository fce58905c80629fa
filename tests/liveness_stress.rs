//! Guarantee 16 under stress: every future and blocking wait resolves,
//! whoever polls it, with a new waker on every poll (relay replacement),
//! moved between threads, kept after its `Phaser` dropped, with Phasers
//! dropped in any order and cancels/aborts racing.
//! Run: cargo test --release --test liveness_stress
#![cfg(feature = "std")]

use std::collections::VecDeque;
use std::future::{pending, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use phaseout::{Phaser, Token};

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Task {
    fut: Mutex<Option<BoxFut>>,
    queued: AtomicBool,
    name: String,
}

#[derive(Default)]
struct Queue {
    tasks: Mutex<VecDeque<Arc<Task>>>,
    /// Every task spawned, to name those unfinished when the test fails.
    all: Mutex<Vec<Arc<Task>>>,
    ready: Condvar,
    done: AtomicUsize,
    stop: AtomicBool,
}

/// A fresh waker object on every poll: never `will_wake` the previous one.
struct OnePollWaker {
    task: Arc<Task>,
    queue: Arc<Queue>,
    /// Some wakers also act (guarantee 17): cancel a token on wake.
    act: Option<Token>,
}

impl Wake for OnePollWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(token) = &self.act {
            token.cancel();
        }
        if !self.task.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .tasks
                .lock()
                .unwrap()
                .push_back(Arc::clone(&self.task));
            self.queue.ready.notify_one();
        }
    }
}

fn worker(queue: Arc<Queue>, act: Option<Token>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        let task = {
            let mut tasks = queue.tasks.lock().unwrap();
            loop {
                if let Some(task) = tasks.pop_front() {
                    break task;
                }
                if queue.stop.load(Ordering::Acquire) {
                    return;
                }
                tasks = queue
                    .ready
                    .wait_timeout(tasks, Duration::from_millis(5))
                    .unwrap()
                    .0;
            }
        };
        task.queued.store(false, Ordering::Release);
        let waker = Waker::from(Arc::new(OnePollWaker {
            task: Arc::clone(&task),
            queue: Arc::clone(&queue),
            act: if rng.u8(..) < 20 { act.clone() } else { None },
        }));
        let mut slot = task.fut.lock().unwrap();
        if let Some(fut) = slot.as_mut() {
            if fut
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                *slot = None;
                queue.done.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

fn spawn(queue: &Arc<Queue>, name: String, fut: impl Future<Output = ()> + Send + 'static) {
    let task = Arc::new(Task {
        fut: Mutex::new(Some(Box::pin(fut))),
        queued: AtomicBool::new(true),
        name,
    });
    queue.all.lock().unwrap().push(task.clone());
    queue.tasks.lock().unwrap().push_back(task);
    queue.ready.notify_one();
}

/// Yields once (so the task is re-polled, with a new waker, elsewhere).
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

fn round(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let queue = Arc::new(Queue::default());
    let root = Phaser::named("root");
    let acting = std::env::var("ACT").map_or(true, |v| v != "0");
    let acting_token = if acting && rng.bool() {
        Some(root.token())
    } else {
        None
    };
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let queue = Arc::clone(&queue);
            let act = acting_token.clone();
            thread::spawn(move || worker(queue, act, seed * 10 + i))
        })
        .collect();

    // A random tree; each node's owner is a task.
    let mut nodes: Vec<Token> = vec![root.token()];
    let mut owners: Vec<Phaser> = Vec::new();
    let mut parents: Vec<usize> = vec![usize::MAX];
    let n = rng.usize(5..40);
    {
        let mut all: Vec<Option<Phaser>> = vec![None];
        for i in 1..n {
            let parent = rng.usize(0..i);
            let child = if parent == 0 {
                root.child_named(format!("n{i}")).unwrap()
            } else {
                all[parent]
                    .as_ref()
                    .unwrap()
                    .child_named(format!("n{i}"))
                    .unwrap()
            };
            nodes.push(child.token());
            parents.push(parent);
            all.push(Some(child));
        }
        owners.extend(all.into_iter().flatten());
    }
    let expected = AtomicUsize::new(0);
    let mut blocking = Vec::new();
    for (i, owner) in owners.into_iter().enumerate() {
        let name = format!("n{}", i + 1);
        // Futures of this node kept by a supervisor after the owner drops.
        let turn = owner.turn();
        spawn(&queue, format!("{name} supervisor turn"), async move {
            yield_now().await;
            turn.await;
        });
        let within = owner.turn_within(pending::<()>());
        spawn(&queue, format!("{name} turn_within"), async move {
            assert!(within.await.is_ok());
        });
        let cancelled = owner.token().cancelled();
        spawn(&queue, format!("{name} cancelled"), async move {
            cancelled.await;
        });
        let run = owner.token().run_until_cancelled(pending::<()>());
        spawn(&queue, format!("{name} run_until_cancelled"), async move {
            assert!(run.await.is_none());
        });
        expected.fetch_add(4, Ordering::Relaxed);
        // The owner itself.
        let style = rng.u8(0..4);
        match style {
            0 => {
                // Waits for its turn, then finishes.
                spawn(&queue, format!("{name} owner"), async move {
                    owner.cancelled().await;
                    yield_now().await;
                    owner.turn().await;
                    drop(owner);
                });
                expected.fetch_add(1, Ordering::Relaxed);
            }
            1 => {
                // Returns early (drops before anything else).
                let delay = rng.u64(0..200);
                spawn(&queue, format!("{name} early"), async move {
                    for _ in 0..delay % 5 {
                        yield_now().await;
                    }
                    drop(owner);
                });
                expected.fetch_add(1, Ordering::Relaxed);
            }
            2 => {
                // A blocking owner thread.
                blocking.push(thread::spawn(move || {
                    owner.wait_cancelled();
                    owner.wait_turn();
                    drop(owner);
                }));
            }
            _ => {
                blocking.push(thread::spawn(move || {
                    owner.wait_cancelled();
                    while owner.wait_turn_timeout(Duration::from_micros(50)).is_err() {}
                    drop(owner);
                }));
            }
        }
    }
    let expected = expected.into_inner();
    // Racing cancels, aborts and token waits.
    let racers: Vec<_> = (0..2)
        .map(|k| {
            let nodes = nodes.clone();
            let seed = seed * 7 + k;
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                for _ in 0..rng.usize(0..4) {
                    let node = &nodes[rng.usize(0..nodes.len())];
                    match rng.u8(0..3) {
                        0 => node.cancel(),
                        1 => node.abort(),
                        _ => node.cancel_with("racer"),
                    }
                    thread::yield_now();
                }
                nodes[rng.usize(0..nodes.len())].wait_cancelled();
            })
        })
        .collect();
    thread::sleep(Duration::from_micros(rng.u64(0..500)));
    let root_turn = root.turn();
    spawn(&queue, "root turn".into(), root_turn);
    root.cancel();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.done.load(Ordering::Acquire) < expected + 1 {
        if Instant::now() > deadline {
            let mut stuck: Vec<String> = queue
                .all
                .lock()
                .unwrap()
                .iter()
                .filter(|task| task.fut.lock().unwrap().is_some())
                .map(|task| format!("unfinished: {}", task.name))
                .collect();
            stuck.push(format!("{}", root.report()));
            panic!(
                "seed {seed}: {} of {} futures resolved\n{}",
                queue.done.load(Ordering::Acquire),
                expected + 1,
                stuck.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    for thread in blocking {
        thread.join().unwrap();
    }
    for racer in racers {
        racer.join().unwrap();
    }
    assert!(root.is_turn(), "seed {seed}");
    queue.stop.store(true, Ordering::Release);
    for w in workers {
        w.join().unwrap();
    }
    let _ = parents;
}

#[test]
#[cfg_attr(
    miri,
    ignore = "a stress test: the model check and tests/handoff.rs cover Miri"
)]
fn every_future_resolves_under_stress() {
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in base..base + rounds {
        round(seed);
    }
}
