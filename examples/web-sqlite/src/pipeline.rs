//! pipeline: a bounded queue and a transform stage between web and db. It
//! keeps transforming after the cancel (requests in flight still send it
//! records) and drains its queue completely at its turn, when web and every
//! request have finished, so nothing acknowledged is left in it.

use phaseout::Phaser;
use tokio::sync::mpsc;

use crate::db::{Insert, NotStored};

/// The transform: keys are trimmed and lower-cased (`" Alice "` and
/// `"alice"` are one key); values are stored as sent.
fn transform(mut insert: Insert) -> Insert {
    insert.key = insert.key.trim().to_lowercase();
    insert
}

/// The pipeline's task.
pub async fn run(
    pipeline: Phaser,
    mut from_web: mpsc::Receiver<Insert>,
    to_db: mpsc::Sender<Insert>,
) {
    // Until the turn, records may still arrive: only the turn says that no
    // request is left to send one. (`Turn` is `Unpin`: `&mut turn` can sit
    // in `select!` across iterations.)
    let mut turn = pipeline.turn();
    loop {
        tokio::select! {
            Some(insert) = from_web.recv() => forward(&to_db, insert).await,
            () = &mut turn => break,
        }
    }
    // Nobody can send any more; what is queued goes on to the db, unless the
    // grace ran out (abort): then each record still queued is answered "not
    // stored" (true: it never reached the db) instead of being dropped.
    from_web.close();
    let mut drained = 0;
    while let Some(next) = pipeline.run_until_aborted(from_web.recv()).await {
        let Some(insert) = next else { break };
        forward(&to_db, insert).await;
        drained += 1;
    }
    let mut refused = 0;
    while let Ok(insert) = from_web.try_recv() {
        let _ = insert.reply.send(Err(NotStored::Aborted));
        refused += 1;
    }
    println!("pipeline: drained {drained} queued records, refused {refused} at the abort");
    println!("pipeline: stopped");
    // `to_db` and then `pipeline` drop here: the db sees the end of its
    // queue, and its turn comes.
}

async fn forward(to_db: &mpsc::Sender<Insert>, insert: Insert) {
    if let Err(mpsc::error::SendError(insert)) = to_db.send(transform(insert)).await {
        // Only if the db's thread died (a panic: the app is failing).
        let _ = insert.reply.send(Err(NotStored::DbFailed));
    }
}
