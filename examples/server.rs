//! The seed's problem, solved: a line-based TCP service that accepts
//! records, transforms them in a pipeline and appends them to a file, and
//! loses nothing acknowledged when it is told to stop.
//!
//! ```text
//! db            appends records, fsyncs before it stops (stops last)
//! └── pipeline  transforms records (stops once web has stopped)
//!     └── web   accepts connections (stops first)
//!         └── conn 127.0.0.1:50412 ...   one node per connection
//! ```
//!
//! Run: `cargo run --release --example server --features signal -- --addr 127.0.0.1:7878 --db ./data.log [--grace 10]`
//! (port 0 picks a free port; the first line printed is `listening on ADDR`).
//!
//! Protocol, one line each way: `PUT <key> <value>` → `OK <n>` once the
//! record is in the pipeline; anything else → `ERR <reason>`; after shutdown
//! began → `ERR shutting down`; a line over 64 KiB → `ERR` and the connection
//! closes. On SIGTERM or SIGINT: web stops accepting, each connection
//! finishes its line and closes, the pipeline drains, the db flushes and
//! fsyncs, and the program prints each stage's time and exits 0. If that takes
//! longer than `--grace` seconds it prints who is still running and exits 1.
//! A second signal exits 130 at once.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phaseout::Phaser;
use smol::channel::{self, Receiver, Sender};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};

/// Longest request line, newline included.
const MAX_LINE: u64 = 64 * 1024;
/// Records queued between stages before senders wait (backpressure).
const QUEUE: usize = 1024;
/// Records the db writes between flushes.
const BATCH: usize = 256;

/// A record accepted from a client.
struct Record {
    seq: u64,
    key: String,
    value: String,
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
    /// Test-only: make this component hang at its turn.
    hang: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        addr: "127.0.0.1:7878".into(),
        db: "./data.log".into(),
        grace: Duration::from_secs(10),
        hang: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => options.addr = value()?,
            "--db" => options.db = value()?,
            "--grace" => {
                let secs: f64 = value()?.parse().map_err(|e| format!("--grace: {e}"))?;
                options.grace =
                    Duration::try_from_secs_f64(secs).map_err(|e| format!("--grace: {e}"))?;
            }
            "--hang" => options.hang = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; see the top of examples/server.rs"
                ))
            }
        }
    }
    Ok(options)
}

/// Waits forever if `--hang` names this component (to test the grace
/// period's straggler report).
async fn maybe_hang(options: &Options, component: &str) {
    if options.hang.as_deref() == Some(component) {
        std::future::pending::<()>().await;
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
    loop {
        let accepted = smol::future::or(async { Some(listener.accept().await) }, async {
            phaser.cancelled().await;
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
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
    maybe_hang(&options, "web").await;
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
        let read = smol::future::or(
            async {
                Some(
                    (&mut reader)
                        .take(MAX_LINE)
                        .read_until(b'\n', &mut line)
                        .await,
                )
            },
            async {
                phaser.cancelled().await;
                None
            },
        )
        .await;
        let reply = match read {
            None => break,                       // shutdown while idle: close
            Some(Ok(0)) | Some(Err(_)) => break, // the client closed
            Some(Ok(_)) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE => {
                let _ = writer.write_all(b"ERR line longer than 64 KiB\n").await;
                break;
            }
            Some(Ok(_)) if phaser.is_cancelled() => "ERR shutting down\n".to_string(),
            Some(Ok(_)) => handle(&line, &to_pipeline, &next_seq).await,
        };
        if writer.write_all(reply.as_bytes()).await.is_err() {
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
    let record = Record {
        seq,
        key: key.into(),
        value: value.into(),
    };
    match to_pipeline.send(record).await {
        Ok(()) => format!("OK {seq}\n"),
        Err(_) => "ERR shutting down\n".into(),
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
                    .expect("the db outlives the pipeline");
                transformed += 1;
            }
            None => break,
        }
    }
    // Our turn: web and every connection have finished, so nothing more can
    // be queued. Drain what is left.
    let stopping = Instant::now();
    let mut drained = 0u64;
    while let Ok(record) = from_web.try_recv() {
        to_db
            .send(transform(record))
            .await
            .expect("the db outlives the pipeline");
        drained += 1;
    }
    maybe_hang(&options, "pipeline").await;
    println!(
        "pipeline: drained {drained} queued records ({} in all) in {}",
        transformed + drained,
        since(stopping)
    );
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

async fn db(
    phaser: Phaser,
    from_pipeline: Receiver<Transformed>,
    file: File,
    options: Arc<Options>,
) {
    let mut out = BufWriter::new(file);
    let mut written = 0u64;
    let mut batch = 0usize;
    loop {
        let next = smol::future::or(async { from_pipeline.recv().await.ok() }, async {
            phaser.turn().await;
            None
        })
        .await;
        let Some(item) = next else { break };
        write_record(&mut out, &item);
        written += 1;
        batch += 1;
        if batch >= BATCH || from_pipeline.is_empty() {
            out.flush().expect("db write failed");
            batch = 0;
        }
    }
    let stopping = Instant::now();
    while let Ok(item) = from_pipeline.try_recv() {
        write_record(&mut out, &item);
        written += 1;
    }
    maybe_hang(&options, "db").await;
    let file = out.into_inner().expect("db write failed");
    file.sync_all().expect("db fsync failed");
    println!(
        "db: flushed and fsynced {written} records in {}",
        since(stopping)
    );
}

fn write_record(out: &mut BufWriter<File>, item: &Transformed) {
    let Record { seq, key, value } = &item.record;
    writeln!(out, "{key} {value} {seq} {:016x}", item.checksum).expect("db write failed");
}

// ===== main =====

fn main() {
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
    let _signals =
        phaseout::signal::cancel_on_terminate(root.token()).expect("install signal handlers");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.db);
    let file = file.unwrap_or_else(|e| {
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

        let (to_pipeline, from_web) = channel::bounded(QUEUE);
        let (to_db, from_pipeline) = channel::bounded(QUEUE);
        let tasks = [
            smol::spawn(db(db_node, from_pipeline, file, options.clone())),
            smol::spawn(pipeline(pipeline_node, from_web, to_db, options.clone())),
            smol::spawn(web(web_node, listener, to_pipeline, options.clone())),
        ];

        root.cancelled().await; // the first signal
        let started = Instant::now();
        println!("shutdown: signal received");
        match root.turn_within(smol::Timer::after(options.grace)).await {
            Ok(()) => {
                for task in tasks {
                    task.await;
                }
                println!("shutdown complete in {}", since(started));
                0
            }
            Err(stragglers) => {
                println!(
                    "shutdown: gave up after {:.1} s; still running:\n{stragglers}",
                    options.grace.as_secs_f64()
                );
                1
            }
        }
    });
    std::process::exit(code);
}
