//! db: the SQLite writer. One thread owns the write connection, takes
//! records from the pipeline in batches, commits each batch in one
//! transaction and only then tells each request its record's id. It keeps
//! committing after the cancel (requests still in flight wait for it) and
//! stops at its turn, once the pipeline (and so web) has finished: it
//! commits what is left and closes the database.
//!
//! Why rusqlite and a thread: SQLite's API is blocking, and a thread of our
//! own says so plainly; `sqlx` would run the same blocking calls on a worker
//! thread behind an async API, and bring a much larger build (macros, a
//! pool, a runtime layer) for one writer.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use phaseout::{Cause, Phaser};
use rusqlite::{ffi, Connection, OpenFlags};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most records committed in one transaction.
const BATCH: usize = 256;

/// A record on its way to the database, with the request that waits for it.
pub struct Insert {
    pub key: String,
    pub value: String,
    /// Answered once the record is committed (its id) or known not to be.
    pub reply: oneshot::Sender<Result<i64, NotStored>>,
}

/// A committed record, as `GET /records/{id}` and `/events` show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Record {
    pub id: i64,
    pub key: String,
    pub value: String,
}

/// Why a record was not stored; the request answers with it.
#[derive(Clone, Debug)]
pub enum NotStored {
    /// The commit failed (and was rolled back): the error's text.
    CommitFailed(String),
    /// An earlier commit failed; the db stores nothing more.
    DbFailed,
    /// The pipeline was aborted before the record reached the db.
    Aborted,
}

impl fmt::Display for NotStored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStored::CommitFailed(error) => write!(f, "the commit failed: {error}"),
            NotStored::DbFailed => f.write_str("the database failed earlier"),
            NotStored::Aborted => f.write_str("aborted before it reached the database"),
        }
    }
}

/// Opens (or creates) the database at `path` in WAL mode, with the table,
/// and a second, read-only connection for `GET /records/{id}`: in WAL mode
/// readers do not wait for the writer.
pub fn open(path: &Path) -> rusqlite::Result<(Connection, Connection)> {
    let writer = Connection::open(path)?;
    // WAL: readers beside the writer. synchronous=FULL: a commit is on disk
    // (fsynced) when it returns, so a `201` survives a power cut, not only a
    // crash of the process.
    writer.pragma_update(None, "journal_mode", "WAL")?;
    writer.pragma_update(None, "synchronous", "FULL")?;
    writer.execute_batch(
        "CREATE TABLE IF NOT EXISTS records (
             id INTEGER PRIMARY KEY,
             key TEXT NOT NULL,
             value TEXT NOT NULL
         )",
    )?;
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    reader.busy_timeout(Duration::from_secs(5))?;
    Ok((writer, reader))
}

/// The db's thread: commits batches until the pipeline closes its queue,
/// then waits for its turn and closes the database. `fail_after`: the first
/// `n` commits succeed, the next fails as a full disk would
/// (`--fail-commit-after`). A failed commit fails the db node (the cause is
/// the SQLite error), which stops the whole app; the db answers every later
/// record "not stored" and still closes cleanly.
pub fn run(
    db: Phaser,
    mut writer: Connection,
    mut from_pipeline: mpsc::Receiver<Insert>,
    committed: broadcast::Sender<Record>,
    fail_after: Option<u64>,
) {
    let mut commits = 0_u64;
    let mut stored = 0_u64;
    let mut failed = false;
    let mut batch = Vec::with_capacity(BATCH);
    // `blocking_recv` returns `None` once the pipeline has dropped its
    // sender: at the end of its own stop.
    while let Some(first) = from_pipeline.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match from_pipeline.try_recv() {
                Ok(insert) => batch.push(insert),
                Err(_) => break,
            }
        }
        if failed {
            for insert in batch.drain(..) {
                let _ = insert.reply.send(Err(NotStored::DbFailed));
            }
            continue;
        }
        let inject = fail_after.is_some_and(|n| commits >= n);
        match commit(&mut writer, &batch, inject) {
            Ok(ids) => {
                commits += 1;
                stored += ids.len() as u64;
                for (insert, id) in batch.drain(..).zip(ids) {
                    let record = Record {
                        id,
                        key: insert.key,
                        value: insert.value,
                    };
                    // Nobody listening (no `/events` stream) is fine.
                    let _ = committed.send(record);
                    // The request may be gone (client hung up): the record
                    // is stored all the same.
                    let _ = insert.reply.send(Ok(id));
                }
            }
            Err(error) => {
                println!("db: commit failed: {error}");
                let reason = NotStored::CommitFailed(error.to_string());
                for insert in batch.drain(..) {
                    let _ = insert.reply.send(Err(reason.clone()));
                }
                failed = true;
                // Stops the app (the db's scope is the root), in order: web
                // refuses new records, the pipeline drains into us, and
                // `main` exits with status 2.
                db.fail(Cause::new(error));
            }
        }
    }
    // Everything upstream has finished (the queue is closed); the turn says
    // no node below us is still running.
    db.wait_turn();
    match writer.close() {
        Ok(()) => println!("db: {stored} records in {commits} commits; database closed"),
        Err((_, error)) => {
            println!("db: closing the database failed: {error}");
            db.fail(Cause::new(error));
        }
    }
    println!("db: stopped");
    // `db` drops here: the app's turn.
}

/// Inserts `batch` in one transaction and commits it; the ids in order.
/// `inject`: roll back instead, with the error a full disk gives.
fn commit(writer: &mut Connection, batch: &[Insert], inject: bool) -> rusqlite::Result<Vec<i64>> {
    let transaction = writer.transaction()?;
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut insert =
            transaction.prepare_cached("INSERT INTO records (key, value) VALUES (?1, ?2)")?;
        for record in batch {
            insert.execute((&record.key, &record.value))?;
            ids.push(transaction.last_insert_rowid());
        }
    }
    if inject {
        // Dropping the transaction rolls it back: nothing of it is stored.
        drop(transaction);
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_FULL),
            Some("database or disk is full (injected by --fail-commit-after)".into()),
        ));
    }
    transaction.commit()?;
    Ok(ids)
}

/// Reads one record through the read-only connection.
pub fn read(reader: &Connection, id: i64) -> rusqlite::Result<Option<Record>> {
    let mut select = reader.prepare_cached("SELECT id, key, value FROM records WHERE id = ?1")?;
    let mut rows = select.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(Record {
            id: row.get(0)?,
            key: row.get(1)?,
            value: row.get(2)?,
        })),
        None => Ok(None),
    }
}
