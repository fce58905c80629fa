//! The seed's program with the parts people use: an axum web API, a
//! transform pipeline and SQLite. Nothing a client was told is stored (a
//! `201`) is lost on SIGTERM, on a failing disk, or when a stream will not
//! end.
//!
//! ```text
//! signals           the first SIGTERM/SIGINT cancels it: /readyz turns 503
//! app               main: after the drain delay, the staged stop
//! └── db            SQLite writer, batched commits (critical; stops last)
//!     └── pipeline  bounded queue + transform (stops once web has stopped)
//!         └── web   axum (stops first)
//!             ├── POST /records   one node per request
//!             ├── GET /records
//!             └── GET /events     one node per event stream
//! ```
//!
//! Run it with `cargo run --release -- --help` in this directory for the
//! options, the HTTP interface and the exit statuses (the text is
//! [`USAGE`]). `ci/web_sqlite_e2e.py` drives the release binary with real
//! clients and real signals.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phaseout::{NodeState, Phaser, Report};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

mod db;
mod pipeline;
mod web;

#[path = "../../common/systemd.rs"]
mod systemd;
#[path = "../../common/timeline.rs"]
mod timeline;

use systemd::{extend_stop_timeout, notify, Notify};

/// Records queued between web and the pipeline, and between the pipeline
/// and the db, before senders wait (backpressure).
const QUEUE: usize = 1024;
/// Committed records an `/events` stream may fall behind by before it is
/// told how many it missed.
const EVENTS_BACKLOG: usize = 1024;

const USAGE: &str = "\
usage: phaseout-web-sqlite [--addr ADDR] [--db PATH] [--drain-delay SECS] [--grace SECS]
                           [--abort-grace SECS] [--fail-commit-after N] [--stuck-streams] [--trace]

  --addr ADDR             listen here (default 127.0.0.1:3000; port 0: any free port).
                          The first line printed is `listening on ADDR`.
  --db PATH               the SQLite database (default ./records.db), WAL mode,
                          table records(id INTEGER PRIMARY KEY, key TEXT, value TEXT)
  --drain-delay SECS      after the signal, keep serving this long with /readyz at 503, so
                          that load balancers stop sending first (default 0; under
                          Kubernetes a few seconds, less than the grace period)
  --grace SECS            time for the work in hand once the stop begins (default 10)
  --abort-grace SECS      time after the abort before giving up (default 1)
  --fail-commit-after N   test: the first N commits succeed, the next fails as a full disk would
  --stuck-streams         test: /events streams ignore the cancel and end only at the abort
  --trace                 print phaseout's timeline of the shutdown to stderr

HTTP:
  POST /records {\"key\": \"..\", \"value\": \"..\"}
                          201 {\"id\": N} once committed; 503 + Retry-After once shutting down
                          (not stored); 500 if the commit failed (not stored); 422 on a bad body
  GET /records/N          200 {\"id\": N, \"key\": .., \"value\": ..}, or 404
  GET /events             text/event-stream: a `record` event per commit; a last `shutdown`
                          event (data: the cause) at the start of shutdown, then the end
  GET /readyz             200 while live, 503 from the start of shutdown

Shutdown starts on the first SIGTERM or SIGINT, or when a commit fails: /readyz
answers 503 from then on. After --drain-delay (a signal only), the stop: cancel (refuse
new requests, finish those in hand, end event streams, drain the pipeline, commit the
rest, close the database); after --grace, abort what is left; after --abort-grace
more, give up and print who is still running.

Exit status:
  0        stopped (within the grace, or after the abort)
  1        still running after the abort grace
  2        a component failed (a commit failed, the db panicked), or bad arguments,
           or the database or the address could not be opened
  130/143  a second SIGINT/SIGTERM (128 + its number): exit at once; every record
           answered 201 is committed already
";

/// The command line.
struct Options {
    addr: String,
    db: PathBuf,
    drain_delay: Duration,
    grace: Duration,
    abort_grace: Duration,
    fail_commit_after: Option<u64>,
    stuck_streams: bool,
}

/// `Ok(None)`: `--help` was asked for.
fn parse_options() -> Result<Option<Options>, String> {
    let mut options = Options {
        addr: "127.0.0.1:3000".into(),
        db: "records.db".into(),
        drain_delay: Duration::ZERO,
        grace: Duration::from_secs(10),
        abort_grace: Duration::from_secs(1),
        fail_commit_after: None,
        stuck_streams: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--addr" => options.addr = value()?,
            "--db" => options.db = value()?.into(),
            "--drain-delay" => options.drain_delay = seconds(&flag, &value()?)?,
            "--grace" => options.grace = seconds(&flag, &value()?)?,
            "--abort-grace" => options.abort_grace = seconds(&flag, &value()?)?,
            "--fail-commit-after" => {
                let text = value()?;
                let n = text
                    .parse()
                    .map_err(|_| format!("{flag}: not a number of commits: {text:?}"))?;
                options.fail_commit_after = Some(n);
            }
            "--stuck-streams" => options.stuck_streams = true,
            "--trace" => {} // read by `timeline::init_if_asked`
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(options))
}

fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{flag}: not a number of seconds: {text:?}"))
}

fn main() -> ExitCode {
    timeline::init_if_asked();
    let options = match parse_options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("phaseout-web-sqlite: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("phaseout-web-sqlite: cannot start tokio: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(options));
    let _ = io::stdout().flush();
    // Not `return`: dropping the runtime would wait for blocking tasks, and
    // after exit status 1 something is known to be stuck.
    std::process::exit(code);
}

async fn run(options: Options) -> i32 {
    // The whole tree exists before the first signal can come. The app
    // cannot live without its db: `critical` makes a panic on the db's
    // thread fail the app (stop everything, in order, exit 2), not only
    // the db's own subtree.
    let app = Phaser::named("app");
    let db_node = app
        .child_named("db")
        .expect("nothing cancels before the handlers exist");
    let db_node = db_node.critical();
    let pipeline_node = db_node.child_named("pipeline").expect("db is live");
    let web_node = pipeline_node.child_named("web").expect("pipeline is live");
    // The signals cancel a root of their own, not the app: readiness turns
    // `503` at once, and the app's stop starts after the drain delay
    // (below). Kept to the end: a second signal exits at once with 128 +
    // its number.
    let signalled = Phaser::named("signals");
    let _signals = match phaseout::signal::cancel_on_terminate(signalled.token()) {
        Ok(handler) => handler,
        Err(e) => {
            eprintln!("phaseout-web-sqlite: cannot install the signal handlers: {e}");
            return 2;
        }
    };
    let (writer, reader) = match db::open(&options.db) {
        Ok(connections) => connections,
        Err(e) => {
            eprintln!(
                "phaseout-web-sqlite: cannot open {}: {e}",
                options.db.display()
            );
            return 2;
        }
    };
    let listener = match TcpListener::bind(&options.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "phaseout-web-sqlite: cannot listen on {}: {e}",
                options.addr
            );
            return 2;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("phaseout-web-sqlite: {e}");
            return 2;
        }
    };
    println!("listening on {addr}");
    // Whoever started us waits for that line on a pipe.
    let _ = io::stdout().flush();
    if let Err(e) = notify(&[
        Notify::Ready,
        Notify::Status(&format!("listening on {addr}")),
    ]) {
        eprintln!("phaseout-web-sqlite: cannot notify systemd that we are ready: {e}");
    }

    let (to_pipeline, from_web) = mpsc::channel(QUEUE);
    let (to_db, from_pipeline) = mpsc::channel(QUEUE);
    let (committed, _) = broadcast::channel(EVENTS_BACKLOG);
    let web = Arc::new(web::Web {
        node: web_node,
        app: app.token(),
        signalled: signalled.token(),
        to_pipeline,
        reader: Mutex::new(reader),
        committed: committed.clone(),
        stuck_streams: options.stuck_streams,
    });
    let fail_after = options.fail_commit_after;
    let db_thread = std::thread::Builder::new()
        .name("db".into())
        .spawn(move || db::run(db_node, writer, from_pipeline, committed, fail_after));
    if let Err(e) = db_thread {
        eprintln!("phaseout-web-sqlite: cannot start the db thread: {e}");
        return 2;
    }
    let tasks = [
        tokio::spawn(pipeline::run(pipeline_node, from_web, to_db)),
        tokio::spawn(web::serve(web, listener)),
    ];

    // A signal, or a failed commit (which cancels the app itself).
    tokio::select! {
        () = signalled.cancelled() => {}
        () = app.cancelled() => {}
    }
    let started = Instant::now();
    let cause = app.cause().or_else(|| signalled.cause());
    let said = cause.as_ref().map_or("signal".into(), ToString::to_string);
    println!("shutting down: {said}");
    let _ = io::stdout().flush();
    let _ = notify(&[
        Notify::Stopping,
        Notify::Status(&format!("shutting down: {said}")),
    ]);

    // The drain delay and the stages, beside systemd's stop-timeout
    // extensions, which end with them (`None`: times too long for the
    // clock, so no end).
    let deadline = (options.drain_delay.checked_add(options.grace))
        .and_then(|budget| budget.checked_add(options.abort_grace))
        .and_then(|budget| started.checked_add(budget));
    let grace = options.grace.as_secs_f64();
    let say_aborting = |late: &Report| {
        let aborting = format!(
            "aborting: still running after {grace:.1}s grace: {}",
            holding_up(late)
        );
        println!("{aborting} (at {:.3}s)", started.elapsed().as_secs_f64());
        let _ = notify(&[Notify::Status(&aborting)]);
    };
    let stop = async {
        if !app.is_cancelled() && !options.drain_delay.is_zero() {
            // Kubernetes takes a terminating pod out of its Services while
            // our SIGTERM already runs: keep serving meanwhile, `/readyz`
            // at `503`, then stop (a failed commit cuts the delay short).
            let delay = options.drain_delay.as_secs_f64();
            println!("draining for {delay:.1}s before the stop (/readyz: 503)");
            let _ = io::stdout().flush();
            tokio::select! {
                () = tokio::time::sleep(options.drain_delay) => {}
                () = app.cancelled() => {}
            }
        }
        // The signal becomes the app's cause (a failure gave one first).
        if let Some(cause) = cause {
            app.cancel_with(cause);
        }
        app.shutdown_staged_with(
            options.grace,
            options.abort_grace,
            tokio::time::sleep,
            say_aborting,
        )
        .await
    };
    let extend = extend_stop_timeout(deadline, |at| tokio::time::sleep_until(at.into()));
    let stopped = tokio::select! {
        stopped = stop => stopped,
        never = extend => never,
    };
    if let Err(stragglers) = stopped {
        let _ = notify(&[Notify::Status(
            "gave up: still running after the abort grace",
        )]);
        println!(
            "shutdown: gave up at {:.3}s, {:.1}s after aborting; still running:\n{stragglers}",
            started.elapsed().as_secs_f64(),
            options.abort_grace.as_secs_f64()
        );
        return 1;
    }
    for task in tasks {
        if let Err(e) = task.await {
            println!("phaseout-web-sqlite: a task failed: {e}");
        }
    }
    println!(
        "shutdown complete in {:.3}s",
        started.elapsed().as_secs_f64()
    );
    let failures = app.failures(); // a failed commit, a panic on the db thread
    for failure in &failures {
        println!("exit 2: {failure}");
    }
    if failures.is_empty() {
        0
    } else {
        2
    }
}

/// Who holds the shutdown up: the nodes whose turn came but whose owner
/// has not finished, counted by label (`GET /events ×3`).
fn holding_up(report: &Report) -> String {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for entry in report.entries().iter().filter(|e| e.depth() > 0) {
        if entry.state() == NodeState::Turn {
            let name = entry
                .label()
                .map_or_else(|| format!("#{:x}", entry.id()), str::to_string);
            *count.entry(name).or_default() += 1;
        }
    }
    let named: Vec<String> = count
        .into_iter()
        .map(|(name, n)| {
            if n == 1 {
                name
            } else {
                format!("{name} ×{n}")
            }
        })
        .collect();
    named.join(", ")
}
