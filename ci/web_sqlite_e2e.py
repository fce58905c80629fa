#!/usr/bin/env python3
"""End-to-end test of examples/web-sqlite: real HTTP clients, real signals,
the real SQLite file.

The example promises that a `201` means "committed": nothing a client was
told is stored may be lost on SIGTERM, on a failing disk, or when an event
stream will not end; and that what it refused (`503`, `500`) is not stored.
Only the database file, opened after the process has exited, can say
whether that held, so every scenario reads it with `sqlite3`. Each scenario
starts the release binary on 127.0.0.1:0 with a fresh database file and
parses the address from its first line (`listening on ADDR`).

a. SIGTERM under load (3 runs): 16 writers (each on its own keep-alive
   connection, unique lower-case keys), one slow POST (head sent before the
   signal, body after `shutting down:`), 3 `/events` readers, 4 idle
   keep-alive connections and a `/readyz` prober; SIGTERM after ~1 s of
   load. Checks: exit status 0; every `201` is in the file with its id, key
   and value; nothing answered `503`/`500` is; records stored without an
   answer (connection dropped mid-request) are counted, not failed; no
   stored row that no writer sent; the slow POST got `503`; every reader
   got `event: shutdown` (data `SIGTERM`) last and its `record` events
   match stored rows; `/readyz` turned `503`, and every probe sent after
   the first refused POST's answer arrived was answered `503` (a load
   balancer must not be told "ready" by a server that already refuses);
   the server closed the idle connections. The server stops accepting and
   closes idle connections the moment shutdown starts, so the prober keeps
   connections with a request half sent (see ReadyProber).
   (Without a drain delay, readiness turns `503` at the same moment.)
b. A stuck stream (`--stuck-streams --grace 1 --abort-grace 1`): the reader
   gets no shutdown event, its stream ends at about the grace, the process
   exits 0 after the grace and within grace + abort grace + 1.5 s, and says
   `aborting:` naming `GET /events`. A socket stands in for systemd's
   (`NOTIFY_SOCKET`, every scenario): `READY=1` before the signal,
   `STOPPING=1`, `EXTEND_TIMEOUT_USEC=` (never past the stop's own budget)
   and `STATUS=aborting: …` after it.
c. A failing disk (`--fail-commit-after 20`) under load: the process stops
   by itself with status 2 within 10 s; `201`s stored, `500`/`503` not; at
   least one `500`; stdout names the failure.
d. A second signal (`--stuck-streams --grace 30`, one reader): SIGTERM then
   SIGTERM exits 143 at once; SIGINT then SIGINT exits 130.
e. The API: POST then GET returns the record (key trimmed and lower-cased,
   value as sent); an unknown id is 404; a bad body is 4xx; `/readyz` is
   200 while live.
f. A drain delay (`--drain-delay 0.5`), as Kubernetes needs: a plain
   keep-alive prober sees `/readyz` `503` before any writer is refused
   (`503` or a closed listener), POSTs are still acknowledged (and stored)
   after that, and until the delay is over.

Usage: python3 ci/web_sqlite_e2e.py path/to/phaseout-web-sqlite
Every socket operation, wait and join has a time-out, and a watchdog kills
everything if the whole script runs over SCRIPT_TIMEOUT. Prints PASS/FAIL
per check, the figures of each run and `N passed, N failed`; exits non-zero
on any failure (with the program's output).
"""
import collections
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
# Any one socket operation (a POST waits for an fsynced commit).
IO_TIMEOUT = 10
# The first line, `listening on ADDR`.
STARTUP_TIMEOUT = 10
# Waiting for an exit that the scenario has no tighter bound for.
EXIT_TIMEOUT = 20
# The whole script; a correct run takes well under a minute.
SCRIPT_TIMEOUT = 170
# A writer stops by itself after this long, whatever the server does.
WRITER_MAX_SECS = 30
WRITERS = 16
READERS = 3
IDLE_CONNECTIONS = 4
LOAD_SECS = 1.0
# Connections the readyz prober keeps open ahead of use.
PROBE_POOL = 8
# Between two probes while the server is ready.
PROBE_INTERVAL = 0.002
# How long the prober keeps its last connections for a refused POST.
RESERVE_WAIT = 5

passed = failed = 0
figures = []
servers = set()  # the live ones, for the watchdog


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")
    return ok


def now():
    return time.monotonic()


def join_all(threads, timeout):
    """Joins every thread within `timeout` seconds in all; the names of those
    still running."""
    deadline = now() + timeout
    for t in threads:
        t.join(max(0.0, deadline - now()))
    return [t.name for t in threads if t.is_alive()]


# --- the program -----------------------------------------------------------

class Server:
    """The example on 127.0.0.1:0 with a fresh database file. A thread reads
    its stdout line by line, another waits for its exit (so the exit time is
    exact, and no wait can hang)."""

    def __init__(self, *args):
        self.dir = tempfile.TemporaryDirectory(prefix="web-sqlite-e2e-")
        self.db = os.path.join(self.dir.name, "records.db")
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.lines = []
        self.started = threading.Event()
        self.shutting_down = threading.Event()  # it printed `shutting down:`
        self.post_refused = threading.Event()   # a client got a 503 for a POST
        self.exited = threading.Event()
        self.exit_time = None
        # A socket standing in for systemd's: the server sends its notify
        # messages (READY=1, STOPPING=1, EXTEND_TIMEOUT_USEC=, STATUS=) here.
        self.notify_path = os.path.join(self.dir.name, "notify")
        self.notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_socket.bind(self.notify_path)
        self.notify_socket.settimeout(0.2)
        self.notified = []  # (time, "KEY=value")
        threading.Thread(target=self._notifications, daemon=True).start()
        self.proc = subprocess.Popen(
            [BINARY, "--addr", f"{HOST}:0", "--db", self.db, *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env={**os.environ, "NOTIFY_SOCKET": self.notify_path})
        servers.add(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._wait, daemon=True).start()
        if not self.started.wait(STARTUP_TIMEOUT) or not self.lines:
            self.close()
            raise RuntimeError(f"no first line within {STARTUP_TIMEOUT} s")
        match = re.fullmatch(r"listening on (\S+):(\d+)", self.lines[0])
        if not match:
            self.close()
            raise RuntimeError(f"expected 'listening on ADDR' first, got {self.lines[0]!r}")
        self.host, self.port = match.group(1), int(match.group(2))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.started.set()
            if line.startswith("shutting down:"):
                self.shutting_down.set()
        self.started.set()

    def _notifications(self):
        while True:
            try:
                data = self.notify_socket.recv(4096)
            except socket.timeout:
                if self.exited.is_set():
                    return
                continue
            except OSError:
                return  # closed
            at = now()
            self.notified += [(at, line) for line in data.decode().splitlines() if line]

    def _wait(self):
        self.proc.wait()
        self.exit_time = now()
        self.exited.set()

    def signal(self, sig):
        """Sends `sig`; the time it was sent."""
        sent = now()
        self.proc.send_signal(sig)
        return sent

    def running(self):
        return not self.exited.is_set()

    def wait_exit(self, timeout):
        """The exit status, or None if still running after `timeout` s."""
        if not self.exited.wait(timeout):
            return None
        self.reader.join(5)  # the rest of stdout
        return self.proc.returncode

    def stdout(self):
        return "\n".join(self.lines)

    def rows(self):
        """{id: (key, value)} from the database file (after the exit)."""
        db = sqlite3.connect(self.db, timeout=5)
        try:
            return {i: (k, v) for i, k, v in db.execute("SELECT id, key, value FROM records")}
        finally:
            db.close()

    def dump(self):
        print("".join(f"  | {line}\n" for line in self.lines), end="")
        self.stderr.seek(0)
        err = self.stderr.read()
        if err:
            print("".join(f"  ! {line}\n" for line in err.splitlines()), end="")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.exited.wait(10)
        self.notify_socket.close()
        servers.discard(self)
        self.dir.cleanup()


def watchdog():
    print(f"FAIL the whole script: still running after {SCRIPT_TIMEOUT} s; killing everything")
    for server in list(servers):
        server.proc.kill()
    sys.stdout.flush()
    os._exit(3)


# --- clients ----------------------------------------------------------------

def connect(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=IO_TIMEOUT)
    conn.connect()
    return conn


def get(server, path):
    """One GET on a fresh connection: (status, body bytes)."""
    conn = connect(server)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post(server, body, content_type="application/json"):
    """One POST /records on a fresh connection: (status, body bytes)."""
    conn = connect(server)
    try:
        conn.request("POST", "/records", body, {"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Writer(threading.Thread):
    """POSTs records with unique lower-case keys as fast as the server
    answers, on one keep-alive connection, reconnecting when the server
    closes it. Stops at a `503`, or when a connection is refused."""

    def __init__(self, server, n):
        super().__init__(name=f"writer {n}", daemon=True)
        self.server, self.n = server, n
        self.acked = {}        # key -> (id, value): answered 201
        self.refused = {}      # key -> value: answered 503
        self.failed = {}       # key -> value: answered 500
        self.unanswered = {}   # key -> value: sent, no answer (connection dropped)
        self.unexpected = []   # any other status, or a time-out
        self.refused_at = None  # when the 503 arrived
        self.last_ack_at = None  # when the last 201 arrived
        self.first_500_at = None
        self.stop_reason, self.stopped_at = "still running", None
        self.progress = threading.Event()  # the first 201

    def stop(self, reason):
        self.stop_reason, self.stopped_at = reason, now()

    def run(self):
        conn, seq, deadline = None, 0, now() + WRITER_MAX_SECS
        try:
            while now() < deadline:
                if conn is None:
                    try:
                        conn = connect(self.server)
                    except ConnectionRefusedError:
                        return self.stop("connection refused")
                    except OSError as e:
                        return self.stop(f"connect failed: {e!r}")
                key = f"w{self.n:02d}-{seq:07d}"
                value = f"Value {seq} of Writer {self.n}"
                seq += 1
                body = json.dumps({"key": key, "value": value})
                try:
                    conn.request("POST", "/records", body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                except socket.timeout:
                    self.unanswered[key] = value
                    self.unexpected.append(f"{key}: no answer within {IO_TIMEOUT} s")
                    return self.stop("time-out")
                except (http.client.HTTPException, OSError):
                    # Closed under us: sent or not, stored or not.
                    self.unanswered[key] = value
                    conn.close()
                    conn = None
                    continue
                if resp.will_close:
                    conn.close()
                    conn = None
                if resp.status == 201:
                    self.acked[key] = (json.loads(data)["id"], value)
                    self.last_ack_at = now()
                    self.progress.set()
                elif resp.status == 503:
                    self.refused[key] = value
                    self.refused_at = now()
                    self.server.post_refused.set()
                    return self.stop("503")
                elif resp.status == 500:
                    self.failed[key] = value
                    if self.first_500_at is None:
                        self.first_500_at = now()
                else:
                    self.unexpected.append(f"{key}: {resp.status} {data[:200]!r}")
            self.stop(f"ran {WRITER_MAX_SECS} s")
        finally:
            if conn is not None:
                conn.close()
            self.progress.set()


class SlowPost(Writer):
    """One POST whose head is sent before the signal and whose body only
    once the server has printed `shutting down:`: a slow upload in hand at
    the signal. The server must wait for it and refuse it (503 with
    Retry-After), and not store it. It also makes sure every run has a
    refused POST for the readiness check."""

    def __init__(self, server):
        super().__init__(server, 99)
        self.name = "slow POST"
        self.head_sent = threading.Event()
        self.retry_after = None

    def run(self):
        key, value = "slow-post", "Sent After The Signal"
        body = json.dumps({"key": key, "value": value}).encode()
        conn = None
        try:
            conn = connect(self.server)
            conn.putrequest("POST", "/records")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            self.head_sent.set()
            if not self.server.shutting_down.wait(EXIT_TIMEOUT):
                return self.stop("the server never said 'shutting down:'")
            conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            self.retry_after = resp.getheader("Retry-After")
        except (http.client.HTTPException, OSError) as e:
            self.unanswered[key] = value
            return self.stop(f"no answer: {e!r}")
        finally:
            self.head_sent.set()
            if conn is not None:
                conn.close()
        if resp.status == 503:
            self.refused[key] = value
            self.refused_at = now()
            self.server.post_refused.set()
        elif resp.status == 201:
            self.acked[key] = (json.loads(data)["id"], value)
        else:
            self.unexpected.append(f"{key}: {resp.status} {data[:200]!r}")
        self.stop(str(resp.status))


class EventReader(threading.Thread):
    """Reads `GET /events` line by line until the stream ends; keeps each
    event as (name, data)."""

    def __init__(self, server, n):
        super().__init__(name=f"events reader {n}", daemon=True)
        self.server = server
        self.status = self.content_type = None
        self.events = []
        self.end, self.ended_at = "still reading", None
        self.connected = threading.Event()

    def run(self):
        conn = None
        try:
            conn = connect(self.server)
            conn.request("GET", "/events")
            resp = conn.getresponse()
            self.status, self.content_type = resp.status, resp.getheader("content-type", "")
            self.connected.set()
            name, data = "message", []
            while True:
                raw = resp.readline()
                if not raw:
                    self.end = "eof"
                    break
                line = raw.decode().rstrip("\r\n")
                if line == "":  # the end of an event
                    if data or name != "message":
                        self.events.append((name, "\n".join(data)))
                    name, data = "message", []
                elif line.startswith(":"):
                    continue  # keep-alive comment
                else:
                    field, _, text = line.partition(":")
                    text = text[1:] if text.startswith(" ") else text
                    if field == "event":
                        name = text
                    elif field == "data":
                        data.append(text)
        except socket.timeout:
            self.end = f"no data within {IO_TIMEOUT} s"
        except (http.client.HTTPException, OSError) as e:
            self.end = f"error {e!r}"
        finally:
            self.ended_at = now()
            self.connected.set()
            if conn is not None:
                conn.close()

    def records(self):
        return [json.loads(data) for name, data in self.events if name == "record"]


class IdleConnection(threading.Thread):
    """One GET /readyz on a keep-alive connection, then idle until the
    server closes it."""

    def __init__(self, server, n):
        super().__init__(name=f"idle connection {n}", daemon=True)
        self.server = server
        self.status = None
        self.closed_at, self.how = None, "not closed"
        self.ready = threading.Event()

    def run(self):
        conn = None
        try:
            conn = connect(self.server)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            resp.read()
            self.status = resp.status
            self.ready.set()
            conn.sock.settimeout(EXIT_TIMEOUT)
            data = conn.sock.recv(1)
            self.how = "closed" if data == b"" else f"got {data!r}"
        except socket.timeout:
            self.how = f"still open after {EXIT_TIMEOUT} s"
        except OSError as e:
            self.how = f"closed ({e!r})"
        finally:
            self.closed_at = now()
            self.ready.set()
            if conn is not None:
                conn.close()


class ReadyProber(threading.Thread):
    """Polls GET /readyz in a loop, one probe per connection, from a pool of
    PROBE_POOL connections opened ahead of use, each with the request line
    already sent; a probe sends the rest of the head and reads the answer,
    and a new connection replaces the one used. `sent` is when the head was
    completed: the server decides the answer only then. Keeps (sent,
    received, status or None).

    Why not one keep-alive connection: at the start of shutdown the server
    stops accepting and closes at once every connection that is idle, or
    open with nothing sent on it yet, so a probe sent after that on one of
    those is never answered, and a plain prober sees no 503 at all. A
    connection in the middle of a request head is in hand: it is answered
    (once) even after the start of shutdown.

    Once a probe is not answered 200, the prober opens no more connections
    and keeps the ones left until a POST has been refused (`post_refused`,
    at most RESERVE_WAIT s), then probes on each: those are the probes sent
    after the first refused POST, which must all be answered 503."""

    def __init__(self, server):
        super().__init__(name="readyz prober", daemon=True)
        self.server = server
        self.probes = []
        self.stop_event = threading.Event()

    def open(self):
        sock = socket.create_connection((self.server.host, self.server.port), timeout=IO_TIMEOUT)
        sock.sendall(b"GET /readyz HTTP/1.1\r\n")
        return sock

    def probe(self, sock):
        """Completes the request on `sock`, and closes it; keeps the probe's
        status (None: no answer)."""
        sent, status = now(), None
        try:
            sock.sendall(f"Host: {self.server.host}\r\n\r\n".encode())
            resp = http.client.HTTPResponse(sock)
            try:
                resp.begin()
                resp.read()
                status = resp.status
            finally:
                resp.close()
        except (http.client.HTTPException, OSError):
            pass  # closed under us: no answer
        finally:
            sock.close()
        self.probes.append((sent, now(), status))
        return status

    def run(self):
        pool, deadline = collections.deque(), now() + WRITER_MAX_SECS
        try:
            while not self.stop_event.is_set() and now() < deadline:
                try:
                    while len(pool) < PROBE_POOL:
                        pool.append(self.open())
                except OSError:
                    break  # refused: the shutdown has started
                if self.probe(pool.popleft()) != 200:
                    break
                time.sleep(PROBE_INTERVAL)  # leave the writers the CPU
            self.server.post_refused.wait(RESERVE_WAIT)
            while pool:
                self.probe(pool.popleft())
        finally:
            for sock in pool:
                sock.close()


class PlainProber(threading.Thread):
    """Polls GET /readyz on one keep-alive connection, as a load balancer
    does, reconnecting when the server closes it; keeps (sent, received,
    status). Stops when told, or when a connection is refused."""

    def __init__(self, server):
        super().__init__(name="plain readyz prober", daemon=True)
        self.server = server
        self.probes = []
        self.stop_event = threading.Event()

    def run(self):
        conn, deadline = None, now() + WRITER_MAX_SECS
        try:
            while not self.stop_event.is_set() and now() < deadline:
                if conn is None:
                    try:
                        conn = connect(self.server)
                    except OSError:
                        return  # refused: the listener is closed
                sent = now()
                try:
                    conn.request("GET", "/readyz")
                    resp = conn.getresponse()
                    resp.read()
                except (http.client.HTTPException, OSError):
                    conn.close()
                    conn = None
                    continue
                self.probes.append((sent, now(), resp.status))
                if resp.will_close:
                    conn.close()
                    conn = None
                time.sleep(PROBE_INTERVAL * 5)
        finally:
            if conn is not None:
                conn.close()


# --- checks shared by the scenarios ----------------------------------------

def check_records(name, writers, rows):
    """Every 201 stored as acknowledged, no 503/500 stored, nothing stored
    that no writer sent. Returns the figures."""
    by_key = {key: (i, value) for i, (key, value) in rows.items()}
    acked = {k: v for w in writers for k, v in w.acked.items()}
    refused = {k: v for w in writers for k, v in w.refused.items()}
    failed_500 = {k: v for w in writers for k, v in w.failed.items()}
    unanswered = {k: v for w in writers for k, v in w.unanswered.items()}
    lost = [k for k, (i, value) in acked.items() if rows.get(i) != (k, value)]
    check(f"{name}: every 201 is stored with its id, key and value", not lost,
          f"{len(lost)} of {len(acked)} acknowledged records missing or different, e.g. "
          + "; ".join(f"{k}: acked {acked[k]}, row {rows.get(acked[k][0])}" for k in lost[:3]))
    ids = [i for i, _ in acked.values()]
    check(f"{name}: no id acknowledged twice", len(set(ids)) == len(ids),
          f"{len(ids) - len(set(ids))} duplicates")
    stored_refused = [k for k in list(refused) + list(failed_500) if k in by_key]
    check(f"{name}: nothing answered 503 or 500 is stored", not stored_refused,
          f"{len(stored_refused)} stored, e.g. {stored_refused[:3]}")
    strangers = [k for k in by_key if k not in acked and k not in unanswered
                 and k not in refused and k not in failed_500]
    check(f"{name}: every stored row is one a writer sent", not strangers,
          f"{len(strangers)} rows nobody sent, e.g. {strangers[:3]}")
    wrong_value = [k for k in unanswered if k in by_key and by_key[k][1] != unanswered[k]]
    check(f"{name}: records stored without an answer have their value", not wrong_value,
          f"e.g. {wrong_value[:3]}")
    unexpected = [u for w in writers for u in w.unexpected]
    check(f"{name}: writers got only 201, 503 or 500, and no time-out", not unexpected,
          f"{len(unexpected)}, e.g. {unexpected[:3]}")
    return {
        "acked": len(acked), "stored": len(rows), "lost": len(lost),
        "refused": len(refused), "500": len(failed_500),
        "unanswered": len(unanswered),
        "unanswered stored": sum(1 for k in unanswered if k in by_key),
    }


def check_events(name, readers, rows, cause):
    """Each reader: a last `shutdown` event with `cause`, then the end of the
    stream; each `record` event is a stored row."""
    for n, r in enumerate(readers):
        last = r.events[-1] if r.events else None
        check(f"{name}: reader {n} got 'event: shutdown' with data {cause} last",
              last == ("shutdown", cause), f"last event {last!r}, {len(r.events)} events")
        check(f"{name}: reader {n}'s stream ended", r.end == "eof", r.end)
        bad = [e for e in r.records() if rows.get(e.get("id")) != (e.get("key"), e.get("value"))]
        check(f"{name}: reader {n}'s record events are stored rows", not bad,
              f"{len(bad)} of {len(r.records())} not in the file, e.g. {bad[:3]}")


def check_readiness(name, prober, writers, signalled):
    """`/readyz` turned 503; every probe sent after the first refused POST's
    answer had arrived was answered 503 (and there was one). Returns a line
    of figures (times in ms from the signal)."""
    answered = [(s, r, st) for s, r, st in prober.probes if st is not None]
    check(f"{name}: /readyz answered 503 at some point", any(st == 503 for _, _, st in answered),
          f"statuses seen {sorted({st for _, _, st in answered})}")
    ms = lambda t: f"{(t - signalled) * 1000:.1f}" if t is not None else "-"
    last_200 = max((r for _, r, st in answered if st == 200), default=None)
    first_503 = min((r for _, r, st in answered if st == 503), default=None)
    refusals = [w.refused_at for w in writers if w.refused_at is not None]
    first_refusal = min(refusals) if refusals else None
    after = [(s, r, st) for s, r, st in prober.probes
             if first_refusal is not None and s > first_refusal]
    after_answered = [st for _, _, st in after if st is not None]
    said = (f"readyz probes {len(prober.probes)} ({len(prober.probes) - len(answered)} "
            f"unanswered), last 200 at {ms(last_200)} ms, first 503 at {ms(first_503)} ms, "
            f"first refused POST at {ms(first_refusal)} ms, {len(after_answered)} probes "
            f"answered after it ({len(after) - len(after_answered)} unanswered)")
    if first_refusal is None:
        check(f"{name}: readiness after the first refused POST", False,
              "did not run: no POST was answered 503")
    elif not after_answered:
        check(f"{name}: readiness after the first refused POST", False,
              f"did not run: no probe sent after the first 503 POST was answered ({said})")
    else:
        not_503 = [st for st in after_answered if st != 503]
        check(f"{name}: every /readyz probe sent after the first refused POST answered 503",
              not not_503, f"{len(not_503)} of {len(after_answered)} got {sorted(set(not_503))}")
    return said


# --- scenarios --------------------------------------------------------------

def scenario(name, run, *args):
    """Runs one scenario against a fresh server; prints the server's output
    if a check failed; kills the server whatever happened."""
    failed_before = failed
    server = None
    try:
        server = Server(*args)
        run(name, server)
    except Exception as e:  # the script itself broke: a failure, not a crash
        check(f"{name}: ran to the end", False, f"{type(e).__name__}: {e}")
    finally:
        if server is not None:
            if failed > failed_before:
                server.dump()
            server.close()


def sigterm_under_load(name, server):
    readers = [EventReader(server, n) for n in range(READERS)]
    for r in readers:
        r.start()
    for r in readers:
        r.connected.wait(IO_TIMEOUT)
    check(f"{name}: event streams open", all(r.status == 200 and
          (r.content_type or "").startswith("text/event-stream") for r in readers),
          [(r.status, r.content_type, r.end) for r in readers])
    idle = [IdleConnection(server, n) for n in range(IDLE_CONNECTIONS)]
    for c in idle:
        c.start()
    for c in idle:
        c.ready.wait(IO_TIMEOUT)
    check(f"{name}: /readyz 200 on the idle connections", all(c.status == 200 for c in idle),
          [(c.status, c.how) for c in idle])
    prober = ReadyProber(server)
    prober.start()
    writers = [Writer(server, n) for n in range(WRITERS)]
    for w in writers:
        w.start()
    for w in writers:
        w.progress.wait(IO_TIMEOUT)
    slow = SlowPost(server)
    slow.start()
    slow.head_sent.wait(IO_TIMEOUT)
    time.sleep(LOAD_SECS)
    early = [(w.name, w.stop_reason) for w in writers + [slow] if w.stopped_at is not None]
    check(f"{name}: all writers still writing at the signal", not early, early)
    sent = server.signal(signal.SIGTERM)
    code = server.wait_exit(EXIT_TIMEOUT)
    wall = server.exit_time - sent if server.exit_time else None
    stuck = join_all(writers + [slow] + readers + idle, IO_TIMEOUT + 5)
    prober.stop_event.set()
    stuck += join_all([prober], IO_TIMEOUT + 5)

    check(f"{name}: exit status 0", code == 0, f"status {code}")
    check(f"{name}: every client finished", not stuck, f"still running: {stuck}")
    late = [(w.name, w.stop_reason) for w in writers
            if w.stop_reason not in ("503", "connection refused")]
    check(f"{name}: every writer stopped at a 503 or a refused connection", not late, late)
    check(f"{name}: the POST whose body came after 'shutting down:' got 503 + Retry-After",
          slow.refused and slow.retry_after is not None,
          f"{slow.stop_reason}, Retry-After {slow.retry_after!r}")
    rows = server.rows() if code is not None else {}
    counts = check_records(name, writers + [slow], rows)
    check_events(name, readers, rows, "SIGTERM")
    readiness = check_readiness(name, prober, writers + [slow], sent)
    not_closed = [(c.name, c.how) for c in idle if not c.how.startswith("closed")
                  or c.closed_at < sent]
    check(f"{name}: the server closed each idle connection after the signal", not not_closed,
          not_closed)
    said = re.search(r"^shutdown complete in (\S+)s$", server.stdout(), re.M)
    events = [len(r.records()) for r in readers]
    lagged = sum(1 for r in readers for e, _ in r.events if e == "lagged")
    figures.append(
        f"{name}: acked {counts['acked']}, stored {counts['stored']}, lost {counts['lost']}, "
        f"refused (503) {counts['refused']}, 500 {counts['500']}, "
        f"stored without an answer {counts['unanswered stored']} of {counts['unanswered']} "
        f"unanswered; SIGTERM to exit {wall * 1000:.0f} ms"
        if wall is not None else f"{name}: did not exit")
    figures.append(
        f"{name}: server said shutdown complete in {said.group(1) if said else '?'} s; "
        f"record events per reader {events}, lagged events {lagged}; {readiness}")


def drain_delay(name, server):
    """`--drain-delay 0.5`: after SIGTERM the server goes on serving for
    0.5 s with /readyz at 503, as Kubernetes wants (its endpoints are
    updated while the pod already runs its SIGTERM), then stops. A plain
    keep-alive prober must see the 503 well before any POST is refused,
    and POSTs must still be acknowledged (and stored) in between."""
    prober = PlainProber(server)
    prober.start()
    writers = [Writer(server, n) for n in range(WRITERS // 2)]
    for w in writers:
        w.start()
    for w in writers:
        w.progress.wait(IO_TIMEOUT)
    time.sleep(0.3)
    sent = server.signal(signal.SIGTERM)
    code = server.wait_exit(EXIT_TIMEOUT)
    stuck = join_all(writers, IO_TIMEOUT + 5)
    prober.stop_event.set()
    stuck += join_all([prober], IO_TIMEOUT + 5)
    check(f"{name}: exit status 0", code == 0, f"status {code}")
    check(f"{name}: every client finished", not stuck, f"still running: {stuck}")
    rows = server.rows() if code is not None else {}
    counts = check_records(name, writers, rows)
    first_503 = min((r for _, r, st in prober.probes if st == 503), default=None)
    # A writer stops at a 503 or at a refused connection: either way the
    # server no longer takes its records.
    stops = [w.stopped_at for w in writers if w.stopped_at is not None]
    first_refusal = min(stops) if stops else None
    last_ack = max((w.last_ack_at for w in writers if w.last_ack_at), default=None)
    ms = lambda t: f"{(t - sent) * 1000:.0f} ms" if t is not None else "never"
    said = (f"first /readyz 503 at {ms(first_503)}, last 201 at {ms(last_ack)}, "
            f"first writer refused at {ms(first_refusal)} after SIGTERM")
    check(f"{name}: a plain prober saw /readyz 503 before any writer was refused",
          first_503 is not None and first_refusal is not None and first_503 < first_refusal,
          said)
    check(f"{name}: POSTs were still acknowledged after /readyz turned 503",
          first_503 is not None and last_ack is not None and last_ack > first_503, said)
    check(f"{name}: and until the end of the drain delay",
          last_ack is not None and last_ack - sent >= 0.45, said)
    figures.append(f"{name}: {said}; acked {counts['acked']}, stored {counts['stored']}, "
                   f"lost {counts['lost']}")


def stuck_stream(name, server):
    reader = EventReader(server, 0)
    reader.start()
    reader.connected.wait(IO_TIMEOUT)
    check(f"{name}: event stream open", reader.status == 200, f"{reader.status} {reader.end}")
    time.sleep(0.2)  # the stream's node exists before the signal
    sent = server.signal(signal.SIGTERM)
    code = server.wait_exit(1 + 1 + 1.5 + 5)
    wall = server.exit_time - sent if server.exit_time else None
    join_all([reader], IO_TIMEOUT + 2)
    ended = reader.ended_at - sent if reader.ended_at and not reader.is_alive() else None
    check(f"{name}: exit status 0", code == 0, f"status {code}")
    check(f"{name}: exit after the grace and within grace + abort grace + 1.5 s",
          wall is not None and 0.9 <= wall <= 3.5, f"exit after {wall} s")
    check(f"{name}: no shutdown event on the stuck stream",
          all(e != "shutdown" for e, _ in reader.events), reader.events)
    check(f"{name}: the stream ended (EOF) at about the grace",
          reader.end == "eof" and ended is not None and 0.9 <= ended <= 2.5,
          f"{reader.end} after {ended} s")
    aborting = [l for l in server.lines if l.startswith("aborting:")]
    check(f"{name}: stdout says 'aborting:' naming GET /events",
          any("GET /events" in l for l in aborting), f"aborting lines {aborting}")
    # systemd's notify protocol, as a unit with Type=notify needs it.
    told = server.notified
    before = [m for t, m in told if t < sent]
    after = [m for t, m in told if t >= sent]
    extended = [int(m.split("=", 1)[1]) for m in after if m.startswith("EXTEND_TIMEOUT_USEC=")]
    check(f"{name}: READY=1 was sent before the signal", "READY=1" in before, told)
    check(f"{name}: STOPPING=1 and EXTEND_TIMEOUT_USEC= after it", "STOPPING=1" in after
          and extended, told)
    check(f"{name}: no extension asks past grace + abort grace (2 s)",
          all(0 < usec <= 2_000_000 for usec in extended), extended)
    check(f"{name}: STATUS= said it was aborting",
          any(m.startswith("STATUS=aborting:") for m in after), told)
    figures.append(f"{name}: stream ended {ended * 1000:.0f} ms and process exited "
                   f"{wall * 1000:.0f} ms after SIGTERM; {aborting[:1]}"
                   if ended is not None and wall is not None else f"{name}: no figures")


def disk_failure(name, server):
    writers = [Writer(server, n) for n in range(WRITERS)]
    started = now()
    for w in writers:
        w.start()
    code = server.wait_exit(10)
    wall = server.exit_time - started if server.exit_time else None
    stuck = join_all(writers, IO_TIMEOUT + 5)
    check(f"{name}: exit status 2 by itself within 10 s", code == 2,
          f"status {code}" if code is not None else "still running after 10 s")
    check(f"{name}: every writer finished", not stuck, f"still running: {stuck}")
    rows = server.rows() if code is not None else {}
    counts = check_records(name, writers, rows)
    check(f"{name}: at least one 500", counts["500"] > 0, "no POST answered 500")
    out = server.stdout()
    check(f"{name}: stdout names the failed commit",
          "commit failed" in out and "exit 2:" in out, "no 'commit failed' / 'exit 2:' line")
    first_500 = min((w.first_500_at for w in writers if w.first_500_at), default=None)
    after_500 = (f", {(server.exit_time - first_500) * 1000:.0f} ms after the first 500"
                 if first_500 and server.exit_time else "")
    figures.append(
        f"{name}: acked {counts['acked']}, stored {counts['stored']}, lost {counts['lost']}, "
        f"500 {counts['500']}, 503 {counts['refused']}, stored without an answer "
        f"{counts['unanswered stored']} of {counts['unanswered']}; exit "
        f"{wall * 1000:.0f} ms after the load started{after_500}"
        if wall is not None else f"{name}: no exit")


def second_signal(sig, expected):
    def run(name, server):
        reader = EventReader(server, 0)
        reader.start()
        reader.connected.wait(IO_TIMEOUT)
        check(f"{name}: event stream open", reader.status == 200, f"{reader.status} {reader.end}")
        time.sleep(0.2)
        server.signal(sig)
        time.sleep(0.3)
        check(f"{name}: still running after the first signal (the stream holds it)",
              server.running(), f"exited with {server.proc.returncode}")
        sent = server.signal(sig)
        code = server.wait_exit(3)
        wall = server.exit_time - sent if server.exit_time else None
        check(f"{name}: exit status {expected} within 3 s of the second signal",
              code == expected, f"status {code}" if code is not None else "still running after 3 s")
        check(f"{name}: stdout says shutting down", any(l.startswith("shutting down: ")
              for l in server.lines), "no 'shutting down:' line")
        join_all([reader], IO_TIMEOUT + 2)
        if wall is not None:
            figures.append(f"{name}: exit {code} {wall * 1000:.0f} ms after the second signal")
    return run


def basic_api(name, server):
    status, body = get(server, "/readyz")
    check(f"{name}: /readyz 200 while live", status == 200, f"{status} {body!r}")
    status, body = post(server, json.dumps({"key": "  MiXed Key\t", "value": " Some Value "}))
    check(f"{name}: POST /records 201", status == 201, f"{status} {body!r}")
    if status == 201:
        rid = json.loads(body)["id"]
        status, body = get(server, f"/records/{rid}")
        want = {"id": rid, "key": "mixed key", "value": " Some Value "}
        check(f"{name}: GET /records/{rid}: key trimmed and lower-cased, value as sent",
              status == 200 and json.loads(body) == want, f"{status} {body!r}, want {want}")
    status, body = get(server, "/records/987654321")
    check(f"{name}: GET of an unknown id 404", status == 404, f"{status} {body!r}")
    status, body = post(server, '{"key": "broken",')
    check(f"{name}: a bad JSON body 4xx", 400 <= status < 500, f"{status} {body!r}")
    status, body = post(server, json.dumps({"key": 7, "value": "v"}))
    check(f"{name}: a body of the wrong shape 4xx", 400 <= status < 500, f"{status} {body!r}")
    server.signal(signal.SIGTERM)
    code = server.wait_exit(EXIT_TIMEOUT)
    check(f"{name}: exit status 0", code == 0, f"status {code}")
    rows = server.rows() if code is not None else {}
    check(f"{name}: exactly the one record stored", list(rows.values()) ==
          [("mixed key", " Some Value ")], rows)


def main():
    timer = threading.Timer(SCRIPT_TIMEOUT, watchdog)
    timer.daemon = True
    timer.start()
    began = now()
    scenario("basic API", basic_api)
    for n in range(1, 4):
        scenario(f"SIGTERM under load #{n}", sigterm_under_load)
    scenario("drain delay", drain_delay, "--drain-delay", "0.5")
    scenario("stuck stream", stuck_stream, "--stuck-streams", "--grace", "1", "--abort-grace", "1")
    scenario("disk failure", disk_failure, "--fail-commit-after", "20")
    scenario("SIGTERM twice", second_signal(signal.SIGTERM, 143), "--stuck-streams", "--grace", "30")
    scenario("SIGINT twice", second_signal(signal.SIGINT, 130), "--stuck-streams", "--grace", "30")
    timer.cancel()
    print("\n".join(figures))
    print(f"web-sqlite e2e: {passed} passed, {failed} failed in {now() - began:.1f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: web_sqlite_e2e.py path/to/phaseout-web-sqlite")
    BINARY = sys.argv[1]
    main()
