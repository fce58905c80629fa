//! Guarantee 20 (feature `tracing`): a node's `turn` is logged before its
//! `drained`. Run: cargo test --release --features tracing --test timeline
#![cfg(feature = "tracing")]

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use phaseout::Phaser;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

static EVENTS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Records (node, message) in the order the events arrive. On the thread
/// named "slow", every `enabled` check takes a while: a preempted thread.
struct Capture;

#[derive(Default)]
struct Fields {
    node: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "node" {
            self.node = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "node" => self.node = format!("{value:?}").trim_matches('"').to_owned(),
            _ => {}
        }
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        if thread::current().name() == Some("slow") {
            thread::sleep(Duration::from_millis(20));
        }
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        EVENTS.lock().unwrap().push((fields.node, fields.message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The last child drains on a thread that is slow (preempted) between the
/// release of the parent's lock, which gives the parent its turn, and the
/// `turn` event. The parent's owner sees `is_turn()` (one load, no wake
/// needed), finishes and drops its `Phaser`: `drained` is logged first.
#[test]
fn turn_is_logged_before_drained_when_the_owner_sees_the_turn_by_itself() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let parent = Phaser::named("parent");
    let child = parent.child_named("child").unwrap();
    parent.cancel();
    let last = thread::Builder::new()
        .name("slow".into())
        .spawn(move || drop(child))
        .unwrap();
    while !parent.is_turn() {
        std::hint::spin_loop();
    }
    drop(parent);
    last.join().unwrap();
    let events = EVENTS.lock().unwrap().clone();
    let of_parent: Vec<&str> = events
        .iter()
        .filter(|(node, _)| node == "parent")
        .map(|(_, what)| what.as_str())
        .collect();
    eprintln!("{events:?}");
    let turn = of_parent.iter().position(|w| *w == "turn");
    let drained = of_parent.iter().position(|w| *w == "drained");
    assert!(turn.is_some() && drained.is_some(), "{of_parent:?}");
    assert!(turn < drained, "parent: {of_parent:?}");
}
