//! Failures have a home: `fail` records a failure in the node's scope and
//! cancels the scope; `child_scope` contains failures; `critical` turns an
//! owner's panic into a failure; `failures()` and the report show them.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::scaled;
use phaseout::{Cause, Phaser};

fn causes(p: &Phaser) -> Vec<String> {
    p.failures().iter().map(|f| f.cause().to_string()).collect()
}

#[test]
fn fail_records_in_the_root_and_cancels_it_in_order() {
    let app = Phaser::named("app");
    let web = app.child_named("web").unwrap();
    let db = app.child_named("db").unwrap();
    let pool = db.child_named("pool").unwrap();
    pool.fail("connection refused");
    for node in [&app, &web, &db, &pool] {
        assert!(node.is_cancelled(), "{:?} was not cancelled", node.label());
        assert_eq!(node.cause().unwrap().to_string(), "connection refused");
    }
    let failures = app.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].label(), Some("pool"));
    assert!(!failures[0].panicked());
    assert!(
        db.failures().is_empty(),
        "a node that is not a scope kept a failure"
    );
    // Still in order: the root's turn waits for its children.
    assert!(!app.is_turn());
    drop((web, pool));
    drop(db);
    assert!(app.is_turn());
}

#[test]
fn the_first_cause_wins_and_every_failure_is_kept() {
    let app = Phaser::named("app");
    let a = app.child_named("a").unwrap();
    let b = app.child_named("b").unwrap();
    app.cancel_with("SIGTERM");
    a.fail("a broke");
    b.fail(Cause::new(std::io::Error::other("b broke")));
    a.fail("a broke again");
    assert_eq!(
        app.cause().unwrap().to_string(),
        "SIGTERM",
        "a later failure replaced the cause"
    );
    assert_eq!(a.cause().unwrap().to_string(), "SIGTERM");
    assert_eq!(causes(&app), ["a broke", "b broke", "a broke again"]);
    assert!(app.failures()[1]
        .cause()
        .downcast_ref::<std::io::Error>()
        .is_some());
}

#[test]
fn the_first_failure_is_the_scopes_cause() {
    let app = Phaser::new();
    let a = app.child().unwrap();
    let b = app.child().unwrap();
    a.fail("first");
    b.fail("second");
    assert_eq!(app.cause().unwrap().to_string(), "first");
    assert_eq!(b.cause().unwrap().to_string(), "first");
    assert_eq!(causes(&app), ["first", "second"]);
}

#[test]
fn a_child_scope_contains_the_failures_below_it() {
    let server = Phaser::named("server");
    let other = server.child_scope_named("conn 2").unwrap();
    let conn = server.child_scope_named("conn 1").unwrap();
    let handler = conn.child_named("handler").unwrap();
    handler.fail("bad request");
    assert!(conn.is_cancelled() && handler.is_cancelled());
    assert!(
        !server.is_cancelled(),
        "a connection's failure stopped the server"
    );
    assert!(
        !other.is_cancelled(),
        "a connection's failure stopped another"
    );
    assert_eq!(
        conn.failures()[0].to_string(),
        "`handler` failed: bad request"
    );
    assert!(server.failures().is_empty());
    // A failure of the scope node itself cancels the scope, never its parent.
    other.fail("reset by peer");
    assert!(other.is_cancelled() && !server.is_cancelled());
    assert_eq!(other.failures()[0].label(), Some("conn 2"));
    // Nested scopes: the nearest one contains it.
    let job = server.child_scope().unwrap();
    let step = job.child_scope().unwrap();
    let leaf = step.child().unwrap();
    leaf.fail("inner");
    assert!(step.is_cancelled() && !job.is_cancelled());
    assert_eq!(step.failures().len(), 1);
    assert!(job.failures().is_empty());
}

#[test]
#[cfg(feature = "std")] // a panic can only be seen with `std`
fn a_critical_nodes_panic_fails_its_scope() {
    let app = Phaser::named("app");
    let web = app.child_named("web").unwrap();
    let db = app.child_named("db").unwrap().critical();
    let dying = thread::spawn(move || {
        let _db = db;
        panic!("corrupt page");
    });
    assert!(dying.join().is_err());
    assert!(
        web.is_cancelled(),
        "the db's panic did not stop its dependents' parent"
    );
    assert_eq!(
        app.cause().unwrap().to_string(),
        "the owner of `db` panicked"
    );
    let failures = app.failures();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].panicked());
    assert_eq!(failures[0].label(), Some("db"));
    assert_eq!(failures[0].to_string(), "`db` panicked");
}

/// The executors the docs name drop a panicking task's future during the
/// unwind, so a critical component in a task that panics fails its scope
/// there too (and in a thread, above).
#[test]
#[cfg(feature = "std")]
#[cfg_attr(miri, ignore = "Miri cannot run the executors' drivers")]
fn a_critical_task_that_panics_fails_its_scope_on_each_executor() {
    fn check(executor: &str, spawn_and_join: impl FnOnce(Phaser)) {
        let app = Phaser::named("app");
        let db = app.child_named("db").unwrap().critical();
        spawn_and_join(db);
        assert!(
            app.is_cancelled(),
            "{executor}: the panic did not fail the app"
        );
        let failures = app.failures();
        assert_eq!(failures.len(), 1, "{executor}: {failures:?}");
        assert!(failures[0].panicked(), "{executor}: not marked panicked");
    }
    check("tokio", |db| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let task = runtime.spawn(async move {
            let _db = db;
            panic!("corrupt page");
        });
        assert!(runtime.block_on(task).unwrap_err().is_panic());
    });
    check("smol", |db| {
        let task = smol::spawn(async move {
            let _db = db;
            panic!("corrupt page");
        });
        let joined =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| smol::block_on(task)));
        assert!(joined.is_err(), "smol did not propagate the panic");
    });
    check("async-std", |db| {
        let task = async_std::task::spawn(async move {
            let _db = db;
            panic!("corrupt page");
        });
        let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            async_std::task::block_on(task)
        }));
        assert!(joined.is_err(), "async-std did not propagate the panic");
    });
}

/// Without `std` no panic can be seen: a critical node's panic is a plain
/// drop of its `Phaser`, which cancels only its subtree.
#[test]
#[cfg(not(feature = "std"))]
fn without_std_a_critical_panic_is_a_plain_drop() {
    let app = Phaser::named("app");
    let db = app.child_named("db").unwrap().critical();
    let below = db.child().unwrap();
    let dying = thread::spawn(move || {
        let _db = db;
        panic!("corrupt page");
    });
    assert!(dying.join().is_err());
    assert!(below.is_cancelled());
    assert!(!app.is_cancelled());
    assert!(app.failures().is_empty());
}

#[test]
fn a_plain_panic_only_cancels_its_subtree() {
    let app = Phaser::named("app");
    let web = app.child_named("web").unwrap();
    let handler = web.child_named("handler").unwrap();
    let below = handler.child().unwrap();
    let dying = thread::spawn(move || {
        let _handler = handler;
        panic!("bug in a handler");
    });
    assert!(dying.join().is_err());
    assert!(below.is_cancelled());
    assert!(
        !web.is_cancelled() && !app.is_cancelled(),
        "a plain panic stopped the server"
    );
    assert!(app.failures().is_empty());
}

#[test]
fn a_critical_owner_that_finishes_without_panicking_fails_nothing() {
    let app = Phaser::new();
    drop(app.child().unwrap().critical());
    assert!(!app.is_cancelled());
    assert!(app.failures().is_empty());
}

#[test]
fn failures_are_readable_through_a_token_after_the_scope_drained() {
    let app = Phaser::named("app");
    let watch = app.token();
    let worker = app.child_named("worker").unwrap();
    worker.fail("gave up");
    drop(worker);
    drop(app);
    assert_eq!(watch.failures()[0].to_string(), "`worker` failed: gave up");
}

#[test]
fn the_report_shows_the_failures() {
    let app = Phaser::named("app");
    let stuck = app.child_named("stuck").unwrap();
    let db = app.child_named("db").unwrap();
    db.fail("disk full");
    drop(db);
    let report = app.report();
    assert_eq!(report.failures().len(), 1);
    let text = report.to_string();
    assert!(text.contains("stuck"), "{text}");
    assert!(
        text.ends_with("failure: `db` failed: disk full\n"),
        "{text}"
    );
    drop(stuck);
}

/// Many threads fail at once while another reads: each failure is in the
/// list exactly once, in an order consistent with every read, and every
/// read sees a prefix of the final list.
#[test]
fn failures_from_many_threads_are_each_recorded_once() {
    let threads = 4;
    let each = scaled(200, 8);
    for _ in 0..scaled(20, 2) {
        let app = Phaser::new();
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let node = app.child().unwrap();
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    for i in 0..each {
                        node.fail(format!("{t}/{i}"));
                    }
                })
            })
            .collect();
        let reader = {
            let token = app.token();
            let start = Arc::clone(&start);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                start.wait();
                let mut reads = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    reads.push(
                        token
                            .failures()
                            .iter()
                            .map(|f| f.cause().to_string())
                            .collect::<Vec<_>>(),
                    );
                }
                reads
            })
        };
        for worker in workers {
            worker.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let reads = reader.join().unwrap();
        let all = causes(&app);
        assert_eq!(all.len(), threads * each, "a failure was lost or doubled");
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "a failure was recorded twice");
        for t in 0..threads {
            let mine: Vec<_> = all
                .iter()
                .filter(|c| c.starts_with(&format!("{t}/")))
                .collect();
            let expected: Vec<_> = (0..each).map(|i| format!("{t}/{i}")).collect();
            assert_eq!(
                mine,
                expected.iter().collect::<Vec<_>>(),
                "one thread's failures out of order"
            );
        }
        for read in reads {
            assert_eq!(
                read[..],
                all[..read.len()],
                "a read was not a prefix of the list"
            );
        }
    }
}

/// A failure racing its scope's drain: the failing node's owner is live
/// while it fails, so the scope cannot drain first. The failure is always
/// recorded, never refused, and a token reads it after the drain.
#[test]
fn a_failure_racing_the_scopes_drain_is_recorded() {
    for round in 0..scaled(500, 4) {
        let app = Phaser::new();
        let watch = app.token();
        let scope = app.child_scope().unwrap();
        let scope_watch = scope.token();
        let worker = scope.child().unwrap();
        let start = Arc::new(Barrier::new(2));
        let failing = {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                worker.fail(format!("round {round}"));
                drop(worker);
            })
        };
        let draining = thread::spawn(move || {
            start.wait();
            scope.cancel();
            drop(scope); // drains as soon as the worker has
        });
        failing.join().unwrap();
        draining.join().unwrap();
        assert_eq!(
            scope_watch.failures().len(),
            1,
            "round {round}: the failure was lost against the drain"
        );
        assert!(watch.failures().is_empty());
        drop(app);
    }
}
