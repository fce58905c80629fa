//! The seed's scenario: a web server feeds a pipeline that writes to a
//! database. On shutdown nothing may be lost, so the web server stops first,
//! then the pipeline drains, then the database flushes.
//!
//! ```text
//! db            (stops last)
//! └── pipeline  (depends on db)
//!     └── web   (depends on pipeline; stops first)
//! ```
//!
//! Run it with `cargo run --example ordered`; add `--features tracing --
//! --trace` to see phaseout's own events (cancel, turn, drained) with their
//! times.

use std::time::{Duration, Instant};

use phaseout::Phaser;

/// One component: works until shutdown is requested, waits for its turn
/// (every dependent has stopped), then cleans up and drops its phaser, which
/// gives its parent the turn.
async fn component(phaser: Phaser, name: &'static str, cleanup: Duration, started: Instant) {
    println!("{:>6.1?}  {name}: started", started.elapsed());
    phaser.cancelled().await;
    println!(
        "{:>6.1?}  {name}: shutdown requested, stop taking new work",
        started.elapsed()
    );
    phaser.turn().await;
    println!("{:>6.1?}  {name}: my turn, cleaning up", started.elapsed());
    smol::Timer::after(cleanup).await;
    println!("{:>6.1?}  {name}: stopped", started.elapsed());
}

#[path = "common/timeline.rs"]
mod timeline;

fn main() {
    timeline::init_if_asked(); // `--trace`: phaseout's events as a timeline
    let started = Instant::now();
    let root = Phaser::named("app");
    let db = root.child_named("db").expect("the root is live");
    let pipeline = db.child_named("pipeline").expect("db is live");
    let web = pipeline.child_named("web").expect("the pipeline is live");

    smol::block_on(async {
        let tasks = [
            smol::spawn(component(db, "db", Duration::from_millis(30), started)),
            smol::spawn(component(
                pipeline,
                "pipeline",
                Duration::from_millis(20),
                started,
            )),
            smol::spawn(component(web, "web", Duration::from_millis(10), started)),
        ];
        smol::Timer::after(Duration::from_millis(100)).await; // the program runs a while
        print!(
            "{:>6.1?}  shutting down:\n{}",
            started.elapsed(),
            root.report()
        );
        let deadline = smol::Timer::after(Duration::from_secs(5));
        root.cancel();
        match root.turn_within(deadline).await {
            Ok(()) => println!("{:>6.1?}  all stopped", started.elapsed()),
            Err(stragglers) => println!("gave up waiting for:\n{stragglers}"),
        }
        for task in tasks {
            task.await;
        }
    });
}
