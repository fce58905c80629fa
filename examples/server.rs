//! The seed's problem, solved: a line-based TCP service that accepts
//! records, transforms them in a pipeline and appends them to a file, and
//! loses nothing acknowledged when it is told to stop, when the disk fails,
//! or when a component hangs.
//!
//! ```text
//! server        main: waits for the first signal, then runs the staged stop
//! └── db            appends records, fsyncs before it stops (stops last)
//!     └── pipeline  transforms records (stops once web has stopped)
//!         └── web   accepts connections (stops first)
//!             └── conn 127.0.0.1:50412 ...   one node per connection
//! ```
//!
//! Run: `cargo run --release --example server --features signal -- --addr 127.0.0.1:7878 --db ./data.log [--grace 10] [--abort-grace 1]`
//! (port 0 picks a free port; the first line printed is `listening on ADDR`).
//!
//! # Protocol
//!
//! One line each way: `PUT <key> <value>` → `OK <n>` once the db has
//! written the record to the file (see [`Record::stored`]); anything else →
//! `ERR <reason>`; after shutdown began → `ERR shutting down`, or
//! `ERR shutting down (not stored)` for a record the db could no longer
//! store; a line over 64 KiB → `ERR` and the connection closes.
//!
//! # Stopping
//!
//! Shutdown starts on the first SIGTERM or SIGINT, or when the db cannot
//! write (a write or fsync error). The server prints one line
//! `shutting down: <cause>` (`SIGTERM`, `SIGINT` or the I/O error), then
//! stops in stages, each printed with its time since shutdown started:
//!
//! 1. cancel: web stops accepting, each connection closes once idle, the
//!    pipeline drains, the db writes what is queued and fsyncs;
//! 2. if that takes longer than `--grace SECS` (default 10): a line
//!    `aborting: still running after …s grace: <who>`, and the tree is
//!    aborted: connections close even mid-request, the pipeline stops
//!    draining (what it drops was never acknowledged);
//! 3. if it still has not finished `--abort-grace SECS` (default 1) later:
//!    the report of who is still running (marked `aborted`), exit 1.
//!
//! A second signal exits at once with 128 + the signal's number (130 for
//! SIGINT, 143 for SIGTERM).
//!
//! # Exit status
//!
//! 0: stopped, within the grace period or after the abort; 1: still running
//! after the abort grace; 2: the db failed (or bad arguments, or the file or
//! the address could not be opened); 130/143: a second signal.
//!
//! # Under systemd
//!
//! The server speaks systemd's notify protocol (`sd_notify(3)`) when
//! `NOTIFY_SOCKET` is set, and sends nothing otherwise: `READY=1` once it
//! listens, `STOPPING=1` as soon as shutdown starts, and while it drains,
//! `EXTEND_TIMEOUT_USEC=` every second, so that `TimeoutStopSec=` does not
//! kill a stop still within `--grace` + `--abort-grace` (and never past
//! them); `STATUS=` names the stage (`systemctl status` shows it). A unit
//! for it needs little more than:
//!
//! ```ini
//! [Service]
//! Type=notify
//! ExecStart=/usr/local/bin/server --addr 127.0.0.1:7878 --db /var/lib/server/data.log --grace 10
//! ```
//!
//! `systemctl stop` sends one SIGTERM: the staged stop below. Our
//! extensions end with `--grace` + `--abort-grace`; past them
//! `TimeoutStopSec=` (and its SIGKILL) has the last word. Extending needs
//! systemd 236 or later.
//!
//! # Test-only flags
//!
//! `--hang COMPONENT` (`web`, `pipeline` or `db`): the component ignores
//! everything at its turn, abort included. `--hang-until-abort COMPONENT`:
//! it holds on at its turn until it is aborted, then finishes.
//! `--fail-db-after N`: the db stores N records, then its next write fails
//! as a full disk would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phaseout::{Cause, NodeState, Phaser, Report, Token};
use smol::channel::{self, Receiver, Sender};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};

/// Longest request line, newline included.
const MAX_LINE: u64 = 64 * 1024;
/// Records queued between stages before senders wait (backpressure).
const QUEUE: usize = 1024;
/// Most records the db writes with one system call.
const BATCH: usize = 256;

/// A record accepted from a client.
struct Record {
    seq: u64,
    key: String,
    value: String,
    /// Where the db says "written". The connection answers `OK` only once
    /// this fires, so `OK` means "in the file" (handed to the kernel; the
    /// fsync comes at shutdown), never merely "queued": a record in flight
    /// when the disk fails was not acknowledged, and one acknowledged
    /// before the failure is already in the file. If the record is dropped
    /// instead (the db failed, or the pipeline was aborted), the sender
    /// drops with it and the connection answers `ERR`.
    stored: Sender<()>,
}

/// A record after the pipeline's transform, ready for the db.
struct Transformed {
    record: Record,
    checksum: u64,
}

/// Command-line options.
struct Options {
    addr: String,
    db: String,
    grace: Duration,
    abort_grace: Duration,
    /// Test-only: this component ignores everything at its turn.
    hang: Option<String>,
    /// Test-only: this component holds on at its turn until aborted.
    hang_until_abort: Option<String>,
    /// Test-only: the db's write of record N + 1 fails.
    fail_db_after: Option<u64>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:7878".into(),
        db: "./data.log".into(),
        grace: Duration::from_secs(10),
        abort_grace: Duration::from_secs(1),
        hang: None,
        hang_until_abort: None,
        fail_db_after: None,
    };
    let component = |flag: &str, name: String| match name.as_str() {
        "web" | "pipeline" | "db" => Ok(name),
        _ => Err(format!(
            "{flag}: expected web, pipeline or db, not {name:?}"
        )),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => options.addr = value()?,
            "--db" => options.db = value()?,
            "--grace" => options.grace = seconds(&flag, &value()?)?,
            "--abort-grace" => options.abort_grace = seconds(&flag, &value()?)?,
            "--hang" => options.hang = Some(component(&flag, value()?)?),
            "--hang-until-abort" => {
                options.hang_until_abort = Some(component(&flag, value()?)?);
            }
            "--trace" => {} // read by `timeline::init_if_asked`
            "--fail-db-after" => {
                let n = value()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                options.fail_db_after = Some(n);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; see the top of examples/server.rs"
                ))
            }
        }
    }
    Ok(options)
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("{flag}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{flag}: {e}"))
}

/// The test-only hangs, at a component's turn: `--hang` waits forever (the
/// straggler report must name it), `--hang-until-abort` until the abort
/// (the staged stop must get it out).
async fn maybe_hang(options: &Options, component: &str, phaser: &Phaser) {
    if options.hang.as_deref() == Some(component) {
        std::future::pending::<()>().await;
    }
    if options.hang_until_abort.as_deref() == Some(component) {
        phaser.aborted().await;
        println!("{component}: aborted, finishing");
    }
}

fn since(start: Instant) -> String {
    format!("{:.1} ms", start.elapsed().as_secs_f64() * 1000.0)
}

// ===== web: accept connections, one child node each =====

async fn web(
    phaser: Phaser,
    listener: TcpListener,
    to_pipeline: Sender<Record>,
    options: Arc<Options>,
) {
    let next_seq = Arc::new(AtomicU64::new(1));
    while let Some(accepted) = phaser.run_until_cancelled(listener.accept()).await {
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let Ok(conn) = phaser.child_named(format!("conn {peer}")) else {
            break; // shutdown began meanwhile
        };
        let (to_pipeline, next_seq) = (to_pipeline.clone(), next_seq.clone());
        smol::spawn(connection(conn, stream, to_pipeline, next_seq)).detach();
    }
    drop(listener); // stop accepting at once
    let stopping = Instant::now();
    println!("web: stopped accepting");
    phaser.turn().await; // every connection has closed
    maybe_hang(&options, "web", &phaser).await;
    println!("web: all connections closed after {}", since(stopping));
}

async fn connection(
    phaser: Phaser,
    stream: TcpStream,
    to_pipeline: Sender<Record>,
    next_seq: Arc<AtomicU64>,
) {
    let mut reader = BufReader::new(stream.clone());
    let mut writer = stream;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Wait for the next line, or for shutdown while idle between lines.
        let read = phaser
            .run_until_cancelled((&mut reader).take(MAX_LINE).read_until(b'\n', &mut line))
            .await;
        let reply = match read {
            None => break,                       // shutdown while idle: close
            Some(Ok(0)) | Some(Err(_)) => break, // the client closed
            Some(Ok(_)) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE => {
                let _ = writer.write_all(b"ERR line longer than 64 KiB\n").await;
                break;
            }
            Some(Ok(_)) if phaser.is_cancelled() => "ERR shutting down\n".to_string(),
            Some(Ok(_)) => {
                // Waiting for the db is bounded by the abort: once aborted,
                // close without an answer (the record is not acknowledged).
                let handled = smol::future::or(
                    async { Some(handle(&line, &to_pipeline, &next_seq).await) },
                    async {
                        phaser.aborted().await;
                        None
                    },
                );
                match handled.await {
                    Some(reply) => reply,
                    None => break,
                }
            }
        };
        // A client that does not read its answers holds us only until the
        // abort.
        let written = smol::future::or(
            async { writer.write_all(reply.as_bytes()).await.is_ok() },
            async {
                phaser.aborted().await;
                false
            },
        );
        if !written.await {
            break;
        }
    }
    drop(to_pipeline);
    drop(phaser); // this connection is done
}

async fn handle(line: &[u8], to_pipeline: &Sender<Record>, next_seq: &AtomicU64) -> String {
    let Ok(text) = std::str::from_utf8(line) else {
        return "ERR not UTF-8\n".into();
    };
    let mut words = text.trim_end_matches(['\r', '\n']).split(' ');
    let (Some("PUT"), Some(key), Some(value), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return "ERR expected: PUT <key> <value>\n".into();
    };
    if key.is_empty() || value.is_empty() {
        return "ERR empty key or value\n".into();
    }
    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
    let (stored, written) = channel::bounded(1);
    let record = Record {
        seq,
        key: key.into(),
        value: value.into(),
        stored,
    };
    if to_pipeline.send(record).await.is_err() {
        return "ERR shutting down\n".into();
    }
    // `OK` only once the record is in the file: see `Record::stored`.
    match written.recv().await {
        Ok(()) => format!("OK {seq}\n"),
        Err(_) => "ERR shutting down (not stored)\n".into(),
    }
}

// ===== pipeline: transform, until web and its connections are done =====

async fn pipeline(
    phaser: Phaser,
    from_web: Receiver<Record>,
    to_db: Sender<Transformed>,
    options: Arc<Options>,
) {
    let mut transformed = 0u64;
    loop {
        let next = smol::future::or(async { from_web.recv().await.ok() }, async {
            phaser.turn().await;
            None
        })
        .await;
        match next {
            Some(record) => {
                to_db
                    .send(transform(record))
                    .await
                    .expect("the db receives until the pipeline is done");
                transformed += 1;
            }
            None => break,
        }
    }
    // Our turn: web and every connection have finished, so nothing more can
    // be queued. Drain what is left, unless aborted: then what is left is
    // dropped, which answers its connection `ERR` (if it is still open),
    // so nothing dropped here was acknowledged.
    let stopping = Instant::now();
    let mut drained = 0u64;
    let mut dropped = 0u64;
    while let Ok(record) = from_web.try_recv() {
        let sent = smol::future::or(
            async { to_db.send(transform(record)).await.is_ok() },
            async {
                phaser.aborted().await;
                false
            },
        );
        if !sent.await {
            dropped = 1 + from_web.len() as u64;
            break;
        }
        drained += 1;
    }
    maybe_hang(&options, "pipeline", &phaser).await;
    println!(
        "pipeline: drained {drained} queued records ({} in all) in {}",
        transformed + drained,
        since(stopping)
    );
    if dropped > 0 {
        println!("pipeline: aborted, dropped {dropped} unacknowledged records");
    }
}

/// The pipeline's work per record: an FNV-1a checksum of key and value.
fn transform(record: Record) -> Transformed {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in record.key.bytes().chain([b' ']).chain(record.value.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    Transformed {
        record,
        checksum: hash,
    }
}

// ===== db: append in batches, fsync before draining =====

/// The db file: appends whole records, and never leaves a torn one.
struct Disk {
    file: File,
    /// The file's length: where the next batch starts.
    len: u64,
    /// Records stored in this run.
    stored: u64,
    /// Test-only: how many records store before a write fails.
    fail_after: Option<u64>,
    /// The batch being written, and where each record ends in it.
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Disk {
    fn open(path: &str, fail_after: Option<u64>) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len,
            stored: 0,
            fail_after,
            bytes: Vec::new(),
            ends: Vec::new(),
        })
    }

    /// Appends `batch` with as few system calls as the kernel allows.
    /// Returns how many of its records are whole in the file (a prefix of
    /// the batch), and the error that stopped the rest. A record cut in two
    /// by the error is cut off the file again, so the file holds exactly the
    /// records reported stored.
    fn append(&mut self, batch: &[Transformed]) -> (usize, Option<io::Error>) {
        self.bytes.clear();
        self.ends.clear();
        for item in batch {
            let Record {
                seq, key, value, ..
            } = &item.record;
            // Writing into a Vec cannot fail.
            let _ = writeln!(self.bytes, "{key} {value} {seq} {:016x}", item.checksum);
            self.ends.push(self.bytes.len());
        }
        // Test-only: the records past the limit fail as on a full disk,
        // after the ones before them were written.
        let mut injected = None;
        let mut end = self.bytes.len();
        if let Some(limit) = self.fail_after {
            let fit = limit.saturating_sub(self.stored);
            if fit < batch.len() as u64 {
                end = fit
                    .checked_sub(1)
                    .map_or(0, |last| self.ends[last as usize]);
                injected = Some(io::Error::other(format!(
                    "injected failure: no space left on device after {limit} records"
                )));
            }
        }
        let mut done = 0;
        let mut error = None;
        while done < end {
            match self.file.write(&self.bytes[done..end]) {
                Ok(0) => {
                    error = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let error = error.or(injected);
        let whole = self.ends.partition_point(|&end| end <= done);
        let kept = whole.checked_sub(1).map_or(0, |last| self.ends[last]);
        if kept < done {
            // A torn last line. If even this fails, the file ends with a
            // partial line that no client was told is stored.
            let _ = self.file.set_len(self.len + kept as u64);
        }
        self.len += kept as u64;
        self.stored += whole as u64;
        (whole, error)
    }
}

/// Writes `batch`, then tells each stored record's connection. On an error,
/// the db fails (which stops the whole server, with the error as the
/// cause); returns whether it did.
fn commit(disk: &mut Disk, batch: &mut Vec<Transformed>, db: &Phaser) -> bool {
    let (whole, error) = disk.append(batch);
    for item in batch.drain(..).take(whole) {
        // The channel has room for this one message; the connection may
        // be gone (aborted), which is fine.
        let _ = item.record.stored.try_send(());
    }
    // The rest of the batch drops here: their connections answer `ERR`.
    let Some(error) = error else { return false };
    println!(
        "db: write failed after {} records: {error}; storing nothing more",
        disk.stored
    );
    db.fail(Cause::new(error));
    true
}

/// Appends records in batches. The first write or fsync error fails the
/// db: the server (its scope) stops with that error as the cause, and
/// `main` finds it in the server's failures (exit 2).
async fn db(
    phaser: Phaser,
    from_pipeline: Receiver<Transformed>,
    mut disk: Disk,
    options: Arc<Options>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failed = false;
    loop {
        let next = smol::future::or(async { from_pipeline.recv().await.ok() }, async {
            phaser.turn().await;
            None
        })
        .await;
        let Some(item) = next else { break };
        if failed {
            // Keep receiving, so the pipeline can drain, but store nothing
            // after the failure: dropping the record answers `ERR`.
            continue;
        }
        batch.push(item);
        if batch.len() >= BATCH || from_pipeline.is_empty() {
            failed = commit(&mut disk, &mut batch, &phaser);
        }
    }
    let stopping = Instant::now();
    while let Ok(item) = from_pipeline.try_recv() {
        if !failed {
            batch.push(item);
            if batch.len() >= BATCH {
                failed = commit(&mut disk, &mut batch, &phaser);
            }
        }
    }
    if !failed && !batch.is_empty() {
        commit(&mut disk, &mut batch, &phaser);
    }
    maybe_hang(&options, "db", &phaser).await;
    // Even after a failed write: what was acknowledged must reach the disk.
    match disk.file.sync_all() {
        Ok(()) => println!(
            "db: flushed and fsynced {} records in {}",
            disk.stored,
            since(stopping)
        ),
        Err(error) => {
            println!("db: fsync failed: {error}");
            // Recorded even if shutdown began: the exit status says so.
            phaser.fail(Cause::new(error));
        }
    }
}

// ===== main =====

/// Cancels `server` with the signal's name as the cause (`SIGTERM`,
/// `SIGINT`) on the first SIGINT or SIGTERM, and exits with 128 + its number
/// on the second, even when both arrive at once (the library counts them in
/// the signal handler).
fn on_signals(server: Token) -> io::Result<()> {
    phaseout::signal::cancel_on_terminate(server).map(drop)
}

/// Who holds the shutdown up: the nodes whose turn came but whose owner has
/// not finished (connections counted, not named).
fn holding_up(report: &Report) -> String {
    let mut names = Vec::new();
    let mut connections = 0;
    for entry in report.entries().iter().filter(|e| e.depth() > 0) {
        if entry.state() != NodeState::Turn {
            continue; // waiting for its children, or finished
        }
        match entry.label() {
            Some(label) if label.starts_with("conn ") => connections += 1,
            Some(label) => names.push(label.to_string()),
            None => names.push(format!("#{:x}", entry.id())),
        }
    }
    match connections {
        0 => {}
        1 => names.push("1 connection".into()),
        n => names.push(format!("{n} connections")),
    }
    names.join(", ")
}

#[path = "common/systemd.rs"]
mod systemd;
#[path = "common/timeline.rs"]
mod timeline;

use systemd::{extend_stop_timeout, notify, Notify};

fn main() {
    timeline::init_if_asked();
    let options = match parse_options() {
        Ok(options) => Arc::new(options),
        Err(problem) => {
            eprintln!("server: {problem}");
            std::process::exit(2);
        }
    };
    // The whole tree exists before the first signal can arrive.
    let root = Phaser::named("server");
    let db_node = root
        .child_named("db")
        .expect("nothing cancels before the handlers exist");
    let pipeline_node = db_node.child_named("pipeline").expect("db is live");
    let web_node = pipeline_node.child_named("web").expect("pipeline is live");
    if let Err(e) = on_signals(root.token()) {
        eprintln!("server: cannot install the signal handlers: {e}");
        std::process::exit(2);
    }
    let disk = Disk::open(&options.db, options.fail_db_after).unwrap_or_else(|e| {
        eprintln!("server: cannot open {}: {e}", options.db);
        std::process::exit(2);
    });

    let code = smol::block_on(async {
        let listener = match TcpListener::bind(&options.addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("server: cannot listen on {}: {e}", options.addr);
                return 2;
            }
        };
        let addr: SocketAddr = listener.local_addr().expect("bound socket has an address");
        println!("listening on {addr}");
        // Before web starts: no client can get its first `OK` before
        // systemd hears we are ready.
        if let Err(e) = notify(&[
            Notify::Ready,
            Notify::Status(&format!("listening on {addr}")),
        ]) {
            // Under `Type=notify`, systemd would otherwise wait in vain.
            eprintln!("server: cannot notify systemd that we are ready: {e}");
        }

        let (to_pipeline, from_web) = channel::bounded(QUEUE);
        let (to_db, from_pipeline) = channel::bounded(QUEUE);
        let tasks = [
            smol::spawn(db(db_node, from_pipeline, disk, options.clone())),
            smol::spawn(pipeline(pipeline_node, from_web, to_db, options.clone())),
            smol::spawn(web(web_node, listener, to_pipeline, options.clone())),
        ];

        root.cancelled().await; // a signal, or the db failed
        let started = Instant::now();
        let cause = root
            .cause()
            .map_or("signal".into(), |cause| cause.to_string()); // no cause: Ctrl-C off Unix
        println!("shutting down: {cause}");
        // Best effort from here on: a lost message must not stop the stop.
        let _ = notify(&[
            Notify::Stopping,
            Notify::Status(&format!("shutting down: {cause}")),
        ]);

        // The stages (see the top of the file) run beside the stop-timeout
        // extensions, which end with them: `or` drops the extender as soon
        // as the stop is finished. (`None`: grace periods too long for the
        // clock, so no end either.)
        let deadline = (options.grace.checked_add(options.abort_grace))
            .and_then(|budget| started.checked_add(budget));
        let say_aborting = |late: &Report| {
            let grace = options.grace.as_secs_f64();
            let aborting = format!(
                "aborting: still running after {grace:.1}s grace: {}",
                holding_up(late)
            );
            println!("{aborting} (at {})", since(started));
            let _ = notify(&[Notify::Status(&aborting)]);
        };
        let stages = root.shutdown_staged_with(
            options.grace,
            options.abort_grace,
            smol::Timer::after,
            say_aborting,
        );
        if let Err(stragglers) =
            smol::future::or(stages, extend_stop_timeout(deadline, smol::Timer::at)).await
        {
            let _ = notify(&[Notify::Status(
                "gave up: still running after the abort grace",
            )]);
            let abort_grace = options.abort_grace.as_secs_f64();
            println!("shutdown: gave up at {}, {abort_grace:.1}s after aborting; still running:\n{stragglers}", since(started));
            return 1;
        }
        for task in tasks {
            task.await;
        }
        println!("shutdown complete in {}", since(started));
        let failures = root.failures(); // the db's write or fsync error
        for failure in &failures {
            println!("server: exit 2: {failure}");
        }
        if failures.is_empty() {
            0
        } else {
            2
        }
    });
    std::process::exit(code);
}
