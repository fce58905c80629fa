//! Guarantee 8 (any executor): the same ordered shutdown, db ← pipeline ←
//! web, on smol, tokio, async-std, futures-executor and pollster. The library
//! depends on none of them.
#![cfg(not(loom))]

use std::sync::{Arc, Mutex};

use phaseout::Phaser;

type Log = Arc<Mutex<Vec<&'static str>>>;

/// One component: runs until cancelled, waits for its turn, records it, then
/// finishes (drops its phaser).
async fn component(phaser: Phaser, name: &'static str, log: Log) {
    phaser.cancelled().await;
    assert!(
        phaser.child().is_err(),
        "{name}: a cancelled node must refuse children"
    );
    phaser.turn().await;
    log.lock().unwrap().push(name);
}

/// Builds the tree and returns the root and the components, leaf first so
/// that a naive executor would run them in the wrong order if it could.
fn scenario() -> (Phaser, Log, Vec<(Phaser, &'static str)>) {
    let root = Phaser::named("root");
    let db = root.child_named("db").unwrap();
    let pipeline = db.child_named("pipeline").unwrap();
    let web = pipeline.child_named("web").unwrap();
    let log = Log::default();
    (
        root,
        log,
        vec![(db, "db"), (pipeline, "pipeline"), (web, "web")],
    )
}

fn check(log: &Log) {
    assert_eq!(*log.lock().unwrap(), ["web", "pipeline", "db"]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot run the I/O and timer drivers (timerfd, epoll)"
)]
fn any_executor_smol() {
    let (root, log, components) = scenario();
    smol::block_on(async {
        let tasks: Vec<_> = components
            .into_iter()
            .map(|(phaser, name)| smol::spawn(component(phaser, name, log.clone())))
            .collect();
        smol::Timer::after(std::time::Duration::from_millis(5)).await;
        root.shutdown().await;
        for task in tasks {
            task.await;
        }
    });
    check(&log);
}

/// The scenario on a tokio runtime; `settle()` (made inside the runtime)
/// lets the components start.
fn on_tokio<F: std::future::Future<Output = ()>>(
    runtime: tokio::runtime::Runtime,
    settle: impl FnOnce() -> F,
) {
    let (root, log, components) = scenario();
    runtime.block_on(async {
        let tasks: Vec<_> = components
            .into_iter()
            .map(|(phaser, name)| tokio::spawn(component(phaser, name, log.clone())))
            .collect();
        settle().await;
        root.shutdown().await;
        for task in tasks {
            task.await.unwrap();
        }
    });
    check(&log);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot run the I/O and timer drivers (timerfd, epoll)"
)]
fn any_executor_tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    on_tokio(runtime, || {
        tokio::time::sleep(std::time::Duration::from_millis(5))
    });
}

#[test]
fn any_executor_tokio_current_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    on_tokio(runtime, tokio::task::yield_now);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri cannot run the I/O and timer drivers (timerfd, epoll)"
)]
fn any_executor_async_std() {
    let (root, log, components) = scenario();
    async_std::task::block_on(async {
        let tasks: Vec<_> = components
            .into_iter()
            .map(|(phaser, name)| async_std::task::spawn(component(phaser, name, log.clone())))
            .collect();
        async_std::task::sleep(std::time::Duration::from_millis(5)).await;
        root.shutdown().await;
        for task in tasks {
            task.await;
        }
    });
    check(&log);
}

#[test]
fn any_executor_futures_local_pool() {
    // Spawning through `futures_task::LocalSpawn` keeps `futures-util` out of
    // the dev-dependencies.
    use futures_task::{LocalFutureObj, LocalSpawn};

    let (root, log, components) = scenario();
    let mut pool = futures_executor::LocalPool::new();
    for (phaser, name) in components {
        let task = LocalFutureObj::new(Box::pin(component(phaser, name, log.clone())));
        pool.spawner().spawn_local_obj(task).unwrap();
    }
    pool.run_until(root.shutdown());
    pool.run(); // let the last component record itself
    check(&log);
}

#[test]
fn any_executor_pollster_on_threads() {
    let (root, log, components) = scenario();
    let threads: Vec<_> = components
        .into_iter()
        .map(|(phaser, name)| {
            let log = log.clone();
            std::thread::spawn(move || pollster::block_on(component(phaser, name, log)))
        })
        .collect();
    pollster::block_on(root.shutdown());
    for thread in threads {
        thread.join().unwrap();
    }
    check(&log);
}
