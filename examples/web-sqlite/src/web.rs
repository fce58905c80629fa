//! web: the axum server. Every request and every event stream is a child
//! node of `web`, so web's turn (and the pipeline's, and the db's after it)
//! waits for them, not only for the connections axum tracks:
//!
//! * `POST /records` takes its node first (`Err(ShutdownStarted)`: `503`
//!   with `Retry-After`), hands the record to the pipeline and answers `201`
//!   only once the db has committed it;
//! * `GET /events` streams each committed record as it is committed; at the
//!   cancel it sends a last `shutdown` event and ends, so that the graceful
//!   shutdown is not held up by a stream that would never end (axum's
//!   `with_graceful_shutdown` waits for every connection);
//! * `GET /readyz` answers `503` from the moment shutdown starts; with
//!   `--drain-delay` web goes on serving meanwhile, so a load balancer
//!   stops sending before requests are refused.
//!
//! On the cancel, `axum::serve(..).with_graceful_shutdown(..)` stops
//! accepting and closes idle keep-alive connections; requests in flight
//! finish. If the grace runs out (abort), web stops waiting for axum.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use phaseout::{Phaser, Token};
use rusqlite::Connection;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::db::{self, Insert, Record};

/// Longest key or value accepted, in bytes.
const MAX_FIELD: usize = 64 * 1024;
/// What `Retry-After` tells a refused client: another instance should be
/// serving by then.
const RETRY_AFTER_SECS: &str = "5";

/// What every handler shares.
pub struct Web {
    /// The `web` node: each request's and each stream's node is its child.
    pub node: Phaser,
    /// For readiness, `503` from the first moment of the shutdown: the
    /// whole app (cancelled by a failure, or at the end of the drain
    /// delay) and the signals' root (cancelled by the first signal).
    pub app: Token,
    pub signalled: Token,
    pub to_pipeline: mpsc::Sender<Insert>,
    /// The read-only connection for `GET /records/{id}`.
    pub reader: Mutex<Connection>,
    /// Each record as the db commits it, for `/events`.
    pub committed: broadcast::Sender<Record>,
    /// Test-only (`--stuck-streams`): event streams ignore the cancel and
    /// end only at the abort.
    pub stuck_streams: bool,
}

/// The body of `POST /records`.
#[derive(serde::Deserialize)]
struct NewRecord {
    key: String,
    value: String,
}

/// Serves until web is cancelled and every connection has closed, or until
/// web is aborted; then waits for web's turn (every request and stream
/// node gone) and returns. Dropping the last `Arc<Web>` drops the `web`
/// node, the pipeline's sender and the read connection: the pipeline's
/// turn.
pub async fn serve(web: Arc<Web>, listener: TcpListener) {
    let router = Router::new()
        .route("/records", post(create))
        .route("/records/{id}", get(read))
        .route("/events", get(events))
        .route("/readyz", get(readyz))
        .with_state(Arc::clone(&web));
    let server = axum::serve(listener, router).with_graceful_shutdown(web.node.token().cancelled());
    match web.node.run_until_aborted(server.into_future()).await {
        Some(Ok(())) => println!("web: every connection closed"),
        Some(Err(error)) => println!("web: the server failed: {error}"),
        // axum's connection tasks are spawned: they go on, and their
        // request and stream nodes hear the abort on their own.
        None => println!("web: aborted: stopped waiting for open connections"),
    }
    println!(
        "web: requests and streams still open: {}",
        web.node.live_children()
    );
    web.node.turn().await;
    println!("web: stopped");
}

/// `503 Service Unavailable` with `Retry-After`: the refusal once shutdown
/// started, and for a record the db could no longer store.
fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
        Json(json!({ "error": reason })),
    )
        .into_response()
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

/// `POST /records`: `201 {"id": N}` once committed.
async fn create(
    State(web): State<Arc<Web>>,
    body: Result<Json<NewRecord>, JsonRejection>,
) -> Response {
    // First, before anything is handed on: a request that gets its node is
    // one that web's turn waits for; one that does not is refused.
    let Ok(request) = web.node.child_named("POST /records") else {
        return unavailable("shutting down");
    };
    let record = match body {
        Ok(Json(record)) => record,
        Err(rejection) => return rejection.into_response(),
    };
    if record.key.trim().is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "key must not be empty");
    }
    if record.key.len() > MAX_FIELD || record.value.len() > MAX_FIELD {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "key or value over 64 KiB");
    }
    let (reply, committed) = oneshot::channel();
    let insert = Insert {
        key: record.key,
        value: record.value,
        reply,
    };
    // The pipeline closes its queue only at its turn, which waits for this
    // request's node: while we hold `request`, the send cannot fail.
    if web.to_pipeline.send(insert).await.is_err() {
        return unavailable("shutting down (not stored)");
    }
    let outcome = committed.await;
    drop(request);
    match outcome {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Ok(Err(not_stored @ db::NotStored::Aborted)) => {
            unavailable(&format!("shutting down (not stored: {not_stored})"))
        }
        Ok(Err(not_stored)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("not stored: {not_stored}"),
        ),
        // Only if the db's thread died mid-batch: it may have committed.
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the database stopped; the record may or may not be stored",
        ),
    }
}

/// `GET /records/{id}`: `200` with the record, or `404`.
async fn read(State(web): State<Arc<Web>>, Path(id): Path<i64>) -> Response {
    let Ok(request) = web.node.child_named("GET /records") else {
        return unavailable("shutting down");
    };
    // SQLite blocks: off the async workers.
    let lookup = {
        let web = Arc::clone(&web);
        tokio::task::spawn_blocking(move || {
            let reader = web
                .reader
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            db::read(&reader, id)
        })
    };
    let found = lookup.await;
    drop(request);
    match found {
        Ok(Ok(Some(record))) => Json(record).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, format!("no record {id}")),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read failed: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read failed: {e}"),
        ),
    }
}

/// `GET /readyz`: `200` while live, `503` from the start of shutdown.
async fn readyz(State(web): State<Arc<Web>>) -> Response {
    if web.signalled.is_cancelled() || web.app.is_cancelled() {
        unavailable("shutting down")
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// `GET /events`: server-sent events, one `record` event per committed
/// record, and a last `shutdown` event at the cancel.
async fn events(State(web): State<Arc<Web>>) -> Response {
    let Ok(node) = web.node.child_named("GET /events") else {
        return unavailable("shutting down");
    };
    let stream = EventStream {
        node,
        committed: web.committed.subscribe(),
        stuck: web.stuck_streams,
        ended: false,
    };
    Sse::new(stream.into_events())
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One `/events` stream. It owns its node: web's turn waits until the
/// stream has ended and axum has dropped it.
struct EventStream {
    node: Phaser,
    committed: broadcast::Receiver<Record>,
    stuck: bool,
    ended: bool,
}

impl EventStream {
    fn into_events(self) -> impl Stream<Item = Result<Event, Infallible>> {
        stream::unfold(self, |mut stream| async move {
            if stream.ended {
                return None; // after the `shutdown` event; the node drops
            }
            let next = if stream.stuck {
                // Test-only: deaf to the cancel; ends at the abort, without
                // a last event.
                Some(
                    stream
                        .node
                        .run_until_aborted(stream.committed.recv())
                        .await?,
                )
            } else {
                stream
                    .node
                    .run_until_cancelled(stream.committed.recv())
                    .await
            };
            let event = match next {
                Some(Ok(record)) => Event::default()
                    .event("record")
                    .json_data(&record)
                    .unwrap_or_else(|_| Event::default().event("record")),
                Some(Err(RecvError::Lagged(missed))) => {
                    Event::default().event("lagged").data(missed.to_string())
                }
                // Cancelled (or the db is gone, which also means shutdown).
                None | Some(Err(RecvError::Closed)) => {
                    stream.ended = true;
                    let cause = stream
                        .node
                        .cause()
                        .map_or_else(|| "shutdown".to_string(), |cause| cause.to_string())
                        .replace('\r', " "); // `data` would panic on a CR
                    Event::default().event("shutdown").data(cause)
                }
            };
            Some((Ok(event), stream))
        })
    }
}
