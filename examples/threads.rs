//! The three-stage shutdown (web → pipeline → db) with plain threads and the
//! blocking API: no executor at all. Run: `cargo run --example threads`.

use std::thread;
use std::time::Duration;

use phaseout::Phaser;

fn component(phaser: Phaser, name: &'static str, cleanup: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        println!("{name}: started");
        phaser.wait_cancelled();
        phaser.wait_turn(); // every dependent has stopped
        thread::sleep(cleanup); // flush, close, ...
        println!("{name}: stopped");
    })
}

fn main() {
    let root = Phaser::named("app");
    let db = root.child_named("db").expect("root is live");
    let pipeline = db.child_named("pipeline").expect("db is live");
    let web = pipeline.child_named("web").expect("pipeline is live");
    let threads = [
        component(db, "db", Duration::from_millis(30)),
        component(pipeline, "pipeline", Duration::from_millis(20)),
        component(web, "web", Duration::from_millis(10)),
    ];
    thread::sleep(Duration::from_millis(50));
    root.cancel();
    match root.wait_turn_timeout(Duration::from_secs(5)) {
        Ok(()) => println!("all stopped"),
        Err(stragglers) => println!("still running:\n{stragglers}"),
    }
    for thread in threads {
        thread.join().expect("component panicked");
    }
}
