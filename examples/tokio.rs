//! A small line-based TCP service on tokio that loses nothing it
//! acknowledged when it is told to stop.
//!
//! ```text
//! app
//! └── db            stores records (stops last)
//!     └── pipeline  uppercases records on their way to db
//!         └── web   accepts connections (stops first)
//!             └── conn 127.0.0.1:50412 ...   one node per connection
//! ```
//!
//! Protocol: each line a client sends is one record; the reply is `OK <n>`
//! (`n` numbers the records) once the record has been handed to the pipeline,
//! never before, so an `OK` always means "it will be stored".
//!
//! On shutdown, web closes its listener; each connection finishes the line
//! in hand and closes; once every connection is gone it is the pipeline's
//! turn: it drains its queue into db; then it is db's turn: it stores what is
//! left and says how many records it stored. Each component prints
//! `<name>: stopped` as it finishes, so the output reads web, pipeline, db,
//! then `all stopped`.
//!
//! `main` stops in stages ([`Phaser::shutdown_staged`]): cancel, up to 5 s
//! for the work in hand, then abort, up to 1 s more. Exit status: 0 when
//! everything stopped; 1 if a component was still running after the abort
//! (the report names it); 2 if a component failed: db is `critical`, so a
//! panic in its task stops the whole app, in order, and is listed.
//!
//! Run:
//!
//! * `cargo run --example tokio`: a self-contained demo. It listens on a free
//!   port, runs a few clients in-process, then shuts down as if a signal
//!   came, and exits.
//! * `cargo run --example tokio -- --listen 127.0.0.1:7878`: serves until
//!   SIGINT or SIGTERM (Ctrl-C). The first line printed is
//!   `listening on ADDR`. Try `nc 127.0.0.1 7878`. `ci/tokio_e2e.py` drives
//!   this mode with real clients and real signals.

use std::error::Error;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phaseout::futures::Turn;
use phaseout::Phaser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long the components may take to finish their work in hand once
/// shutdown begins; then they are aborted.
const GRACE: Duration = Duration::from_secs(5);
/// How long they may take after the abort before `main` gives up and names
/// the components still running.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// Records queued between stages before senders wait (backpressure).
const QUEUE: usize = 64;
/// Demo mode: clients, and lines each one sends.
const DEMO_CLIENTS: usize = 3;
const DEMO_LINES: usize = 3;

/// One line a client sent.
struct Record {
    id: u64,
    text: String,
}

// ===== web: accept connections, one child node each =====

async fn web(web: Phaser, listener: TcpListener, to_pipeline: mpsc::Sender<Record>) {
    let next_id = Arc::new(AtomicU64::new(1));
    // Cancellation is checked before each accept: once shutdown begins, no
    // new connection is taken, even one already waiting in the backlog.
    while let Some(accepted) = web.run_until_cancelled(listener.accept()).await {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // E.g. out of file descriptors: the listener still works,
                // so log, give the system a moment, and keep serving.
                eprintln!("web: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The connection's node is a child of web, so web's turn waits for
        // it. Err means web was cancelled meanwhile: refuse the connection
        // (dropping the stream closes it).
        let Ok(conn) = web.child_named(format!("conn {peer}")) else {
            break;
        };
        let (to_pipeline, next_id) = (to_pipeline.clone(), Arc::clone(&next_id));
        tokio::spawn(async move {
            if let Err(e) = connection(conn, stream, to_pipeline, next_id).await {
                eprintln!("web: connection {peer}: {e}");
            }
        });
    }
    drop(listener); // stop accepting at once: clients get "refused" now
    println!(
        "web: closed the listener; connections still open: {}",
        web.live_children()
    );
    web.turn().await; // every connection has finished
    println!("web: stopped");
    // `web` drops here: with its connections gone, the pipeline's turn comes.
}

/// Serves one connection. It owns `conn`, its node: when this returns (or
/// fails), the node is dropped and web no longer waits for it.
async fn connection(
    conn: Phaser,
    stream: TcpStream,
    to_pipeline: mpsc::Sender<Record>,
    next_id: Arc<AtomicU64>,
) -> io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    // `next_line` is cancellation safe, so a shutdown that comes while the
    // client is idle or mid-line loses nothing that was acknowledged. Once
    // cancelled, no new line is read; the one in hand below is finished.
    while let Some(line) = conn.run_until_cancelled(lines.next_line()).await {
        let Some(text) = line? else {
            break; // the client closed the connection
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        // Hand the record on first, acknowledge second: an `OK` for a record
        // that is not yet in the pipeline's queue could be lost. The
        // pipeline only closes its queue at its turn, which waits for this
        // node, so the send cannot fail while we hold `conn`.
        if to_pipeline.send(Record { id, text }).await.is_err() {
            writer.write_all(b"ERR shutting down\n").await?;
            break;
        }
        writer.write_all(format!("OK {id}\n").as_bytes()).await?;
    }
    // Dropping the stream closes the connection; dropping `conn` (after it)
    // tells web this connection is done.
    Ok(())
}

// ===== pipeline: transform, until every connection is done =====

async fn pipeline(
    pipeline: Phaser,
    mut from_web: mpsc::Receiver<Record>,
    to_db: mpsc::Sender<Record>,
) {
    // Keep transforming after cancellation: connections may still be
    // finishing their last line. Only the turn says that nothing more can
    // arrive. (`Turn` is `Unpin`, so `&mut turn` can sit in `select!`.)
    let mut turn = pipeline.turn();
    loop {
        tokio::select! {
            Some(record) = from_web.recv() => forward(&to_db, record).await,
            () = &mut turn => break,
        }
    }
    // Every sender is gone or idle; close the queue and drain what is left.
    from_web.close();
    let mut drained = 0;
    while let Some(record) = from_web.recv().await {
        forward(&to_db, record).await;
        drained += 1;
    }
    println!("pipeline: drained {drained} queued records");
    println!("pipeline: stopped");
    // `pipeline` drops here: db's turn comes.
}

async fn forward(to_db: &mpsc::Sender<Record>, record: Record) {
    let record = Record {
        id: record.id,
        text: record.text.to_uppercase(),
    };
    to_db
        .send(record)
        .await
        .expect("db closes its queue only at its turn, after the pipeline finished");
}

// ===== db: store records until its turn =====

/// Stores records until `turn` (db's turn: everything upstream finished),
/// then the rest of the queue; returns what it stored. It takes the turn as
/// an owned future, not the `Phaser`: waiting is all it needs.
async fn store(mut from_pipeline: mpsc::Receiver<Record>, mut turn: Turn) -> Vec<Record> {
    let mut stored = Vec::new();
    loop {
        tokio::select! {
            Some(record) = from_pipeline.recv() => stored.push(record),
            () = &mut turn => break,
        }
    }
    from_pipeline.close();
    while let Some(record) = from_pipeline.recv().await {
        stored.push(record);
    }
    stored
}

// ===== main =====

/// What to do, from the command line.
enum Mode {
    /// No arguments: run clients in-process, then stop.
    Demo,
    /// `--listen ADDR`: serve until SIGINT or SIGTERM.
    Listen(String),
}

fn parse_args() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Mode::Demo),
        [flag, addr] if flag == "--listen" => Ok(Mode::Listen(addr.clone())),
        _ => Err(format!(
            "usage: tokio [--listen ADDR] (got {args:?}); see the top of examples/tokio.rs"
        )),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    let mode = parse_args()?;
    // The whole tree exists before anything can cancel it, so these only
    // fail on a bug. The app cannot live without its db: `critical` makes a
    // panic in db's task fail the app (stop everything, in order, and say
    // so) rather than only the db's own subtree.
    let root = Phaser::named("app");
    let db = root.child_named("db")?.critical();
    let pipeline_node = db.child_named("pipeline")?;
    let web_node = pipeline_node.child_named("web")?;

    let addr = match &mode {
        Mode::Demo => "127.0.0.1:0",
        Mode::Listen(addr) => addr.as_str(),
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr()?;

    let (to_pipeline, from_web) = mpsc::channel(QUEUE);
    let (to_db, from_pipeline) = mpsc::channel(QUEUE);
    // db's task waits for db's turn through an owned `Turn` future: it
    // borrows nothing, so it moves into the task. The `Phaser` goes along
    // only to be dropped once the records are stored, which gives app its
    // turn.
    let turn = db.turn();
    let tasks = [
        tokio::spawn(async move {
            let stored = store(from_pipeline, turn).await;
            println!("db: stored {} records", stored.len());
            println!("db: stopped");
            drop(db);
        }),
        tokio::spawn(pipeline(pipeline_node, from_web, to_db)),
        tokio::spawn(web(web_node, listener, to_pipeline)),
    ];

    let mut clients = Vec::new();
    match mode {
        Mode::Demo => {
            clients = demo(addr).await?;
            println!("demo: every client has its OKs; shutting down as if SIGTERM came");
        }
        Mode::Listen(_) => {
            // Install the handlers before announcing the address: a signal
            // sent right after that line must not kill the process outright.
            let signal = terminate_signal()?;
            println!("listening on {addr}");
            // Whoever started us (ci/tokio_e2e.py) waits for this line on a
            // pipe: do not leave it to the buffering of stdout.
            io::stdout().flush()?;
            let name = signal.await?;
            println!("shutdown: {name} received");
        }
    }
    // Cancel, wait out the grace, abort, wait out the abort grace.
    let stopped = match root
        .shutdown_staged(GRACE, ABORT_GRACE, tokio::time::sleep)
        .await
    {
        Ok(stopped) => stopped,
        Err(stragglers) => {
            eprintln!("gave up; still running after the abort:\n{stragglers}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(late) = stopped.aborted() {
        eprintln!("aborted after the grace:\n{late}");
    }
    let failures = root.failures(); // db's panic, if it had one
    for failure in &failures {
        eprintln!("{failure}");
    }
    if !failures.is_empty() {
        return Ok(ExitCode::from(2));
    }
    // Every component has finished (the turn above); collect the tasks so a
    // panic in one that is not critical surfaces as an error here.
    for task in tasks {
        task.await?;
    }
    for client in clients {
        client.await??;
    }
    println!("all stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves with the signal's name at the first SIGINT or SIGTERM. The
/// handlers are installed when this is called, not when the future is first
/// polled.
#[cfg(unix)]
fn terminate_signal() -> io::Result<impl Future<Output = io::Result<&'static str>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => Ok("SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    })
}

/// Elsewhere: Ctrl-C.
#[cfg(not(unix))]
fn terminate_signal() -> io::Result<impl Future<Output = io::Result<&'static str>>> {
    Ok(async { tokio::signal::ctrl_c().await.map(|()| "Ctrl-C") })
}

// ===== demo mode: in-process clients =====

/// Connects the demo clients, sends their lines and waits for every `OK`.
/// Each client then stays connected, idle, until the server closes the
/// connection: shutdown has to end idle connections too. Returns the
/// clients' tasks, which finish when the server has closed them.
async fn demo(addr: SocketAddr) -> io::Result<Vec<tokio::task::JoinHandle<io::Result<()>>>> {
    let (acked, mut all_acked) = mpsc::channel(DEMO_CLIENTS);
    let mut clients = Vec::new();
    for client in 0..DEMO_CLIENTS {
        let stream = TcpStream::connect(addr).await?;
        let acked = acked.clone();
        clients.push(tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut replies = BufReader::new(reader).lines();
            let mut oks = Vec::new();
            for line in 0..DEMO_LINES {
                writer
                    .write_all(format!("client {client} line {line}\n").as_bytes())
                    .await?;
                match replies.next_line().await? {
                    Some(reply) if reply.starts_with("OK ") => oks.push(reply),
                    other => {
                        return Err(io::Error::other(format!(
                            "client {client}: expected OK, got {other:?}"
                        )))
                    }
                }
            }
            // `main` may be gone only if it failed; then nobody listens.
            let _ = acked.send((client, oks)).await;
            // Dropped now, not at the end of the task, so `main` sees the
            // end of the reports while this client stays connected.
            drop(acked);
            // Idle until the server closes the connection at shutdown.
            match replies.next_line().await? {
                None => Ok(()),
                Some(reply) => Err(io::Error::other(format!(
                    "client {client}: unexpected {reply:?}"
                ))),
            }
        }));
    }
    drop(acked);
    let mut reports = Vec::new();
    while let Some(report) = all_acked.recv().await {
        reports.push(report);
    }
    if reports.len() < DEMO_CLIENTS {
        // A client failed before its OKs; its task holds the error.
        for client in clients {
            client.await??;
        }
        return Err(io::Error::other("a demo client stopped early"));
    }
    // Print in client order so the output reads the same on every run
    // (the record numbers still depend on timing).
    reports.sort();
    for (client, oks) in reports {
        println!("client {client}: {}", oks.join(", "));
    }
    Ok(clients)
}
