//! The three-stage shutdown (web → pipeline → db) on tokio, with tokio's
//! timer bounding the wait. Run: `cargo run --example tokio`.

use std::time::Duration;

use phaseout::Phaser;

async fn component(phaser: Phaser, name: &'static str, cleanup: Duration) {
    println!("{name}: started");
    phaser.cancelled().await;
    phaser.turn().await; // every dependent has stopped
    tokio::time::sleep(cleanup).await; // flush, close, ...
    println!("{name}: stopped");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = Phaser::named("app");
    let db = root.child_named("db").expect("root is live");
    let pipeline = db.child_named("pipeline").expect("db is live");
    let web = pipeline.child_named("web").expect("pipeline is live");
    let tasks = [
        tokio::spawn(component(db, "db", Duration::from_millis(30))),
        tokio::spawn(component(pipeline, "pipeline", Duration::from_millis(20))),
        tokio::spawn(component(web, "web", Duration::from_millis(10))),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    root.cancel();
    match root
        .turn_within(tokio::time::sleep(Duration::from_secs(5)))
        .await
    {
        Ok(()) => println!("all stopped"),
        Err(stragglers) => println!("still running:\n{stragglers}"),
    }
    for task in tasks {
        task.await.expect("component panicked");
    }
}
