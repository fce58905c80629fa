//! Feature `tracing`: the events of every transition, their fields, levels
//! and order, caught by a subscriber of the test's own.
#![cfg(feature = "tracing")]

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use phaseout::Phaser;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as the subscriber saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    level: Level,
    what: String,
    node: String,
    cause: Option<String>,
    waited: bool,
}

/// Records every `phaseout` event at or above `max`.
struct Capture {
    max: Level,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    node: String,
    cause: Option<String>,
    waited: bool,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "node" => self.node = value.to_owned(),
            "cause" => self.cause = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "waited" => self.waited = true,
            "node" => self.node = format!("{value:?}"),
            "cause" => self.cause = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "phaseout" && *metadata.level() <= self.max
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.seen.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            what: fields.message,
            node: fields.node,
            cause: fields.cause,
            waited: fields.waited,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a capturing subscriber at `max`; returns what it saw.
fn capture(max: Level, f: impl FnOnce()) -> Vec<Seen> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Capture {
        max,
        seen: seen.clone(),
    };
    tracing::subscriber::with_default(subscriber, f);
    let seen = seen.lock().unwrap().clone();
    seen
}

fn short(seen: &[Seen]) -> Vec<(String, String)> {
    seen.iter()
        .map(|s| (s.what.clone(), s.node.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(what, node)| (what.to_string(), node.to_string()))
        .collect()
}

#[test]
fn a_chain_logs_cancel_then_turns_and_drains_children_first() {
    let seen = capture(Level::TRACE, || {
        let db = Phaser::named("db");
        let pipeline = db.child_named("pipeline").unwrap();
        let web = pipeline.child_named("web").unwrap();
        db.cancel_with("SIGTERM");
        drop(web);
        drop(pipeline);
        drop(db);
    });
    assert_eq!(
        short(&seen),
        pairs(&[
            ("cancel", "db"),
            ("turn", "web"),
            ("drained", "web"),
            ("turn", "pipeline"),
            ("drained", "pipeline"),
            ("turn", "db"),
            ("drained", "db"),
        ]),
        "{seen:#?}"
    );
    assert_eq!(seen[0].cause.as_deref(), Some("SIGTERM"));
    assert!(
        seen.iter().all(|s| s.level == Level::DEBUG),
        "labeled: DEBUG"
    );
    // Turns and drains of labeled nodes say how long they waited.
    assert!(seen[1..].iter().all(|s| s.waited), "{seen:#?}");
}

#[test]
fn unlabeled_nodes_log_at_trace_with_their_id() {
    let seen = capture(Level::TRACE, || {
        let root = Phaser::named("root");
        let anonymous = root.child().unwrap();
        drop(anonymous); // its owner's drop cancels it: a cancellation starts there
        root.abort();
    });
    let anonymous: Vec<&Seen> = seen.iter().filter(|s| s.node.starts_with('#')).collect();
    assert_eq!(
        anonymous
            .iter()
            .map(|s| s.what.as_str())
            .collect::<Vec<_>>(),
        ["cancel", "drained"],
        "{seen:#?}"
    );
    assert!(anonymous.iter().all(|s| s.level == Level::TRACE));
    assert_eq!(
        anonymous[0].cause.as_deref(),
        Some("the owner of a node finished")
    );
    let root: Vec<(String, String)> = short(&seen)
        .into_iter()
        .filter(|(_, node)| node == "root")
        .collect();
    assert_eq!(
        root,
        pairs(&[
            ("cancel", "root"),
            ("turn", "root"),
            ("abort", "root"),
            ("drained", "root"), // dropped at the end of the closure
        ])
    );
}

#[test]
fn a_debug_subscriber_does_not_see_anonymous_nodes() {
    let seen = capture(Level::DEBUG, || {
        let root = Phaser::named("server");
        let requests: Vec<Phaser> = (0..1000).map(|_| root.child().unwrap()).collect();
        root.cancel();
        drop(requests);
    });
    assert_eq!(
        short(&seen),
        pairs(&[
            ("cancel", "server"),
            ("turn", "server"),
            ("drained", "server")
        ]),
        "a wide anonymous tree must not flood a DEBUG log: {seen:#?}"
    );
}

#[test]
fn a_wide_tree_logs_each_child_once_in_order() {
    let seen = capture(Level::TRACE, || {
        let root = Phaser::named("root");
        let children: Vec<Phaser> = (0..5)
            .map(|i| root.child_named(format!("c{i}")).unwrap())
            .collect();
        root.cancel();
        for child in children {
            drop(child);
        }
    });
    let mut expected = vec![("cancel".to_string(), "root".to_string())];
    // The walk cancels the children (each a leaf: its turn at once).
    let turns: Vec<(String, String)> = short(&seen)[1..6].to_vec();
    for i in 0..5 {
        assert!(
            turns.contains(&("turn".to_string(), format!("c{i}"))),
            "{seen:#?}"
        );
    }
    for i in 0..5 {
        expected.push(("drained".to_string(), format!("c{i}")));
    }
    expected.push(("turn".to_string(), "root".to_string()));
    expected.push(("drained".to_string(), "root".to_string()));
    let rest: Vec<(String, String)> = short(&seen)
        .into_iter()
        .filter(|(what, node)| !(what == "turn" && node.starts_with('c')))
        .collect();
    assert_eq!(rest, expected, "{seen:#?}");
}

/// A waker that drops a `Phaser` the moment it is woken (on the waking
/// thread), like a task polled inline that returns at its turn.
struct DropOnWake(Mutex<Option<Phaser>>);

impl std::task::Wake for DropOnWake {
    fn wake(self: Arc<Self>) {
        let phaser = self.0.lock().unwrap().take();
        drop(phaser);
    }
}

/// Guarantee 20: `turn db` comes before anything the turn woke, even when
/// the woken task drops `db` at once (in 0.2 `drained db` came first).
#[test]
fn a_turn_is_logged_before_what_it_woke() {
    let seen = capture(Level::TRACE, || {
        let db = Phaser::named("db");
        let web = db.child_named("web").unwrap();
        let mut turn = db.turn();
        db.cancel();
        let waker = std::task::Waker::from(Arc::new(DropOnWake(Mutex::new(Some(db)))));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut turn).poll(&mut cx).is_pending());
        drop(web); // db's turn: its waiter drops db at once
        assert!(std::pin::Pin::new(&mut turn).poll(&mut cx).is_ready());
    });
    assert_eq!(
        short(&seen),
        pairs(&[
            ("cancel", "db"),
            ("turn", "web"),
            ("drained", "web"),
            ("turn", "db"),
            ("drained", "db"),
        ]),
        "{seen:#?}"
    );
}

/// Guarantee 20 when the owner returned first: the last child's drain
/// gives the turn and drains the node in one step, and both are logged,
/// the turn first.
#[test]
fn an_ownerless_node_logs_its_turn_before_its_drain() {
    let seen = capture(Level::TRACE, || {
        let server = Phaser::named("server");
        let connection = server.child_named("connection").unwrap();
        drop(server); // cancels the connection; the server waits for it
        drop(connection);
    });
    assert_eq!(
        short(&seen),
        pairs(&[
            ("cancel", "server"),
            ("turn", "connection"),
            ("drained", "connection"),
            ("turn", "server"),
            ("drained", "server"),
        ]),
        "{seen:#?}"
    );
}

/// A subscriber that runs `act` at each `fail` event, from inside it (a
/// subscriber is user code: it may panic, or call into phaseout).
struct OnFail<F: Fn() + Send + Sync + 'static>(F);

impl<F: Fn() + Send + Sync + 'static> Subscriber for OnFail<F> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "phaseout"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "fail" {
            (self.0)();
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_subscriber_that_panics_at_the_fail_event_does_not_keep_the_scope_live() {
    let root = Phaser::named("app");
    let db = root.child_named("db").unwrap();
    let failed = tracing::subscriber::with_default(OnFail(|| panic!("the log is full")), || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.fail("disk full")))
    });
    assert!(failed.is_err(), "the subscriber's panic was swallowed");
    assert_eq!(root.failures().len(), 1);
    assert!(
        root.is_cancelled() && db.is_cancelled(),
        "a recorded failure left its scope running"
    );
    assert_eq!(root.cause().unwrap().to_string(), "disk full");
}

/// Two failures where the second comes between the first's record and its
/// cancel (here from the first's `fail` event; two threads do it now and
/// then): the scope's cause is the first failure's, as `failures()` says.
#[test]
fn the_scopes_cause_is_its_first_failures_cause() {
    let root = Phaser::named("app");
    let a = root.child_named("a").unwrap();
    let b = Mutex::new(Some(root.child_named("b").unwrap()));
    let fail_b = move || {
        if let Some(b) = b.lock().unwrap().take() {
            b.fail("b broke");
        }
    };
    tracing::subscriber::with_default(OnFail(fail_b), || a.fail("a broke"));
    let causes: Vec<String> = root
        .failures()
        .iter()
        .map(|f| f.cause().to_string())
        .collect();
    assert_eq!(causes, ["a broke", "b broke"]);
    assert_eq!(root.cause().unwrap().to_string(), "a broke");
    assert_eq!(a.cause().unwrap().to_string(), "a broke");
}
