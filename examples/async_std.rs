//! The three-stage shutdown (web → pipeline → db) on async-std, with its
//! timer bounding the wait. async-std is discontinued in favour of smol; this
//! shows phaseout still works there. Run: `cargo run --example async_std`.

use std::time::Duration;

use phaseout::Phaser;

async fn component(phaser: Phaser, name: &'static str, cleanup: Duration) {
    println!("{name}: started");
    phaser.cancelled().await;
    phaser.turn().await; // every dependent has stopped
    async_std::task::sleep(cleanup).await; // flush, close, ...
    println!("{name}: stopped");
}

fn main() {
    let root = Phaser::named("app");
    let db = root.child_named("db").expect("root is live");
    let pipeline = db.child_named("pipeline").expect("db is live");
    let web = pipeline.child_named("web").expect("pipeline is live");
    async_std::task::block_on(async {
        let tasks = [
            async_std::task::spawn(component(db, "db", Duration::from_millis(30))),
            async_std::task::spawn(component(pipeline, "pipeline", Duration::from_millis(20))),
            async_std::task::spawn(component(web, "web", Duration::from_millis(10))),
        ];
        async_std::task::sleep(Duration::from_millis(50)).await;
        root.cancel();
        match root
            .turn_within(async_std::task::sleep(Duration::from_secs(5)))
            .await
        {
            Ok(()) => println!("all stopped"),
            Err(stragglers) => println!("still running:\n{stragglers}"),
        }
        for task in tasks {
            task.await;
        }
    });
}
