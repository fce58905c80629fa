#!/usr/bin/env python3
"""End-to-end test of examples/server.rs: real load, real signals.

Starts the release server on port 0 with a fresh db file, runs 8 clients
sending PUTs as fast as they can (plus malformed lines), sends SIGTERM at
several moments (almost at once, mid-stream, idle) and SIGINT once, then
checks: exit status 0, the `shutting down: SIGTERM` (or SIGINT) line, every
acknowledged record in the file exactly once, malformed lines answered with
ERR, the shutdown time printed. It also checks the staged stop: a component
that ignores everything (--hang: `aborting:` line, report marked aborted,
exit 1 after grace + abort grace), one that finishes when aborted
(--hang-until-abort: exit 0 after about the grace); a db write failure under
load (--fail-db-after N: the injected error as the cause, exit 2, exactly
the N acknowledged records in the file); and that a second signal exits
128 + its number (130 SIGINT, 143 SIGTERM).

systemd's notify protocol: with NOTIFY_SOCKET pointing at a datagram socket
of ours, a slow drain (--hang-until-abort pipeline, grace 2.5 s) must send
READY=1 before the first OK, STOPPING=1 right after the signal, then
EXTEND_TIMEOUT_USEC= about once a second, each arriving before the previous
one ran out, none reaching past the grace + abort grace, and nothing after
the exit; the datagrams' timeline is printed. Without NOTIFY_SOCKET (every
other case) nothing is sent and nothing printed; with a NOTIFY_SOCKET
nobody listens on, the server warns once and serves.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
Prints each case's numbers, then `N passed, N failed`; exits non-zero on
any failure.
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SERVER = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/server"
CLIENTS = 8
MAX_RECORDS_PER_CLIENT = 20_000
passed = failed = 0
numbers = []


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


class Server:
    def __init__(self, *extra, notify_socket=None):
        self.dir = tempfile.mkdtemp(prefix="phaseout-e2e-")
        self.db = os.path.join(self.dir, "data.log")
        # Not under systemd unless a case says so, even if this script is.
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        if notify_socket is not None:
            env["NOTIFY_SOCKET"] = notify_socket
        self.launched = time.time()
        self.proc = subprocess.Popen(
            [SERVER, "--addr", "127.0.0.1:0", "--db", self.db, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        # Byte by byte, past Python's buffer: `communicate` reads the pipe
        # itself, so whatever a buffered readline took beyond the first line
        # (a line printed right after it) would be lost.
        first = b""
        while not first.endswith(b"\n"):
            byte = os.read(self.proc.stdout.fileno(), 1)
            if not byte:
                break
            first += byte
        first = first.decode().strip()
        match = re.fullmatch(r"listening on (\S+):(\d+)", first)
        if not match:
            raise RuntimeError(f"first line was {first!r}")
        self.host, self.port = match.group(1), int(match.group(2))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def finish(self, timeout=30):
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def records(self):
        with open(self.db) as f:
            return [tuple(line.split(" ")[:2]) for line in f.read().splitlines()]


class Client(threading.Thread):
    """Sends `PUT c<id>-<n> v<n>` as fast as the server answers, with a
    malformed line every 500 records, until the server says it is shutting
    down, closes, or the bound is reached."""

    def __init__(self, server, ident, stop):
        super().__init__(daemon=True)
        self.server, self.client_id, self.stop = server, ident, stop
        self.acked, self.malformed_ok, self.malformed_bad = [], 0, 0

    def run(self):
        try:
            sock = socket.create_connection((self.server.host, self.server.port), timeout=10)
            reader = sock.makefile("r")
            for n in range(MAX_RECORDS_PER_CLIENT):
                if self.stop.is_set():
                    break
                if n % 500 == 250:
                    sock.sendall(b"PUT missing-value\n")
                    reply = reader.readline()
                    if not reply:
                        break
                    if reply.startswith("ERR"):
                        self.malformed_ok += 1
                    else:
                        self.malformed_bad += 1
                key, value = f"c{self.client_id}-{n}", f"v{n}"
                sock.sendall(f"PUT {key} {value}\n".encode())
                reply = reader.readline()
                if not reply:
                    break  # closed by the server during shutdown
                if reply.startswith("OK "):
                    self.acked.append((key, value))
                elif reply.startswith("ERR shutting down"):
                    break
                else:
                    raise RuntimeError(f"unexpected reply {reply!r}")
            sock.close()
        except (ConnectionError, socket.timeout, OSError):
            pass


def load_scenario(name, sig, delay, idle=False):
    server = Server()
    stop = threading.Event()
    clients = [Client(server, i, stop) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    if idle:
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        time.sleep(0.1)
    else:
        time.sleep(delay)
    signal_at = time.monotonic()
    server.signal(sig)
    code, out = server.finish()
    wall = time.monotonic() - signal_at
    stop.set()
    for c in clients:
        c.join(timeout=30)
    acked = [r for c in clients for r in c.acked]
    stored = server.records()
    counts = {}
    for r in stored:
        counts[r] = counts.get(r, 0) + 1
    lost = [r for r in acked if counts.get(r, 0) == 0]
    dupes = [r for r, n in counts.items() if n > 1]
    shutdown = re.search(r"shutdown complete in ([\d.]+) ms", out)
    check(f"{name}: exit status 0", code == 0, f"status {code}\n{out}")
    check(f"{name}: no acknowledged record lost", not lost, f"{len(lost)} lost, e.g. {lost[:3]}")
    check(f"{name}: no record stored twice", not dupes, f"{len(dupes)} duplicates")
    check(f"{name}: order web, pipeline, db",
          out.find("web: all connections closed") < out.find("pipeline: drained") < out.find("db: flushed"), out)
    check(f"{name}: shutdown time printed", shutdown is not None, out)
    cause_lines = re.findall(r"^shutting down: .*$", out, re.M)
    check(f"{name}: one line `shutting down: {sig.name}`",
          cause_lines == [f"shutting down: {sig.name}"], out)
    check(f"{name}: malformed lines answered ERR",
          all(c.malformed_bad == 0 for c in clients), "a malformed line was accepted")
    numbers.append(f"{name}: {len(acked)} acknowledged, {len(stored)} stored, {len(lost)} lost, "
                   f"shutdown {shutdown.group(1) if shutdown else '?'} ms in the server "
                   f"({wall * 1000:.0f} ms signal to exit), {sum(c.malformed_ok for c in clients)} malformed lines refused")


def protocol_checks():
    server = Server()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    reader = sock.makefile("r")
    sock.sendall(b"HELLO\n")
    check("protocol: malformed line gets ERR", reader.readline().startswith("ERR"))
    sock.sendall(b"PUT k v\n")
    check("protocol: connection usable after ERR", reader.readline().startswith("OK "))
    sock.sendall(b"PUT k " + b"x" * (70 * 1024) + b"\n")
    reply = reader.readline()
    check("protocol: line over 64 KiB gets ERR", reply.startswith("ERR"), repr(reply))
    try:
        closed = reader.readline() == ""
    except ConnectionResetError:
        closed = True  # closed with the rest of the long line unread: a reset
    check("protocol: ... and the connection closes", closed)
    sock.close()
    server.signal(signal.SIGTERM)
    code, out = server.finish()
    check("protocol: clean exit", code == 0, out)
    check("protocol: no NOTIFY_SOCKET, nothing said about notifying", "notify" not in out.lower(), out)


def timed_stop(server, sig=signal.SIGTERM):
    """Sends `sig` after one acknowledged PUT; returns status, output and
    the seconds from the signal to the exit."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"PUT a b\n")
    sock.makefile("r").readline()
    sock.close()
    start = time.monotonic()
    server.signal(sig)
    code, out = server.finish()
    return code, out, time.monotonic() - start


def straggler_check():
    server = Server("--hang", "pipeline", "--grace", "1")
    code, out, waited = timed_stop(server)
    # Grace 1 s, then the default abort grace of 1 s.
    check("straggler: exits 1 after grace + abort grace", code == 1 and 1.9 < waited < 10,
          f"status {code} after {waited:.1f} s")
    check("straggler: the report names the hung component", re.search(r"^\s*pipeline: ", out, re.M) is not None, out)
    numbers.append(f"straggler (--hang pipeline, grace 1 s): exit {code} after {waited:.2f} s")


def hang_check():
    server = Server("--hang", "web", "--grace", "1", "--abort-grace", "0.5")
    code, out, waited = timed_stop(server)
    aborting = re.search(r"^aborting: still running after 1\.0s grace: (.*)$", out, re.M)
    check("--hang web: exits 1 after grace + abort grace", code == 1 and 1.4 < waited < 10,
          f"status {code} after {waited:.1f} s\n{out}")
    check("--hang web: `aborting:` line names web", aborting is not None and "web" in aborting.group(1), out)
    check("--hang web: the report marks web aborted", re.search(r"^\s*web: aborted", out, re.M) is not None, out)
    check("--hang web: the report shows the cause", "(cause: SIGTERM)" in out, out)
    numbers.append(f"--hang web (grace 1 s, abort grace 0.5 s): exit {code} after {waited:.2f} s, "
                   f"aborting line {aborting.group(0) if aborting else None!r}")


def hang_until_abort_check():
    server = Server("--hang-until-abort", "pipeline", "--grace", "1")
    code, out, waited = timed_stop(server, signal.SIGINT)
    aborting = re.search(r"^aborting: .*pipeline.*$", out, re.M)
    shutdown = re.search(r"shutdown complete in ([\d.]+) ms", out)
    check("--hang-until-abort pipeline: exit 0", code == 0, f"status {code}\n{out}")
    check("--hang-until-abort pipeline: `aborting:` line names pipeline", aborting is not None, out)
    # About the grace, well before the abort grace (1 s more) would end.
    check("--hang-until-abort pipeline: stops about when the grace ends", 0.95 < waited < 1.6,
          f"{waited:.2f} s")
    check("--hang-until-abort pipeline: cause SIGINT", "shutting down: SIGINT" in out, out)
    numbers.append(f"--hang-until-abort pipeline (grace 1 s): exit {code} after {waited:.2f} s "
                   f"(server: {shutdown.group(1) if shutdown else '?'} ms)")


def db_failure_check(fail_after=3000):
    """Clients under load until the db's write of record fail_after + 1
    fails: the server stops by itself."""
    server = Server("--fail-db-after", str(fail_after))
    stop = threading.Event()
    clients = [Client(server, i, stop) for i in range(CLIENTS)]
    start = time.monotonic()
    for c in clients:
        c.start()
    try:
        code, out = server.finish(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        code, out = server.finish()
    wall = time.monotonic() - start
    stop.set()
    for c in clients:
        c.join(timeout=30)
    acked = [r for c in clients for r in c.acked]
    stored = server.records()
    counts = {}
    for r in stored:
        counts[r] = counts.get(r, 0) + 1
    lost = [r for r in acked if counts.get(r, 0) == 0]
    dupes = [r for r, n in counts.items() if n > 1]
    unacked = set(stored) - set(acked)
    cause = re.findall(r"^shutting down: (.*)$", out, re.M)
    check("db failure: exit status 2", code == 2, f"status {code}\n{out}")
    check("db failure: one `shutting down:` line with the injected error",
          len(cause) == 1 and "injected failure" in cause[0], out)
    check("db failure: no acknowledged record lost", not lost, f"{len(lost)} lost, e.g. {lost[:3]}")
    check("db failure: no record stored twice", not dupes, f"{len(dupes)} duplicates")
    check(f"db failure: exactly the {fail_after} records before the failure stored",
          len(stored) == fail_after, f"{len(stored)} stored")
    check("db failure: every stored record was acknowledged", not unacked,
          f"{len(unacked)} stored without OK, e.g. {sorted(unacked)[:3]}")
    check("db failure: order web, pipeline, db",
          out.find("web: all connections closed") < out.find("pipeline: drained") < out.find("db: flushed"), out)
    numbers.append(f"db failure (--fail-db-after {fail_after}): {len(acked)} acknowledged, {len(stored)} stored, "
                   f"{len(lost)} lost, {len(unacked)} stored unacknowledged, exit {code} "
                   f"{wall:.2f} s after the clients started")


def second_signal_check(first, second, expected):
    server = Server("--hang", "db", "--grace", "30")
    server.signal(first)
    time.sleep(0.3)
    start = time.monotonic()
    server.signal(second)
    code, out = server.finish()
    waited = time.monotonic() - start
    name = f"second signal {first.name} then {second.name}"
    check(f"{name}: exits {expected} at once", code == expected and waited < 2,
          f"status {code} after {waited:.2f} s\n{out}")
    check(f"{name}: cause {first.name}", f"shutting down: {first.name}" in out, out)
    numbers.append(f"{name}: exit {code} {waited * 1000:.0f} ms after the second signal")


# Linux's SO_TIMESTAMP (asm-generic, x86, arm); Python does not name it.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29 if sys.platform.startswith("linux") else None)


class NotifySocket(threading.Thread):
    """systemd's end of sd_notify(3): a Unix datagram socket to pass as
    NOTIFY_SOCKET. Collects (time, lines) per datagram, timed by the
    kernel's arrival stamp (SO_TIMESTAMP) where there is one: then a
    datagram's time is when the server sent it, not when this thread got
    the GIL, and "before the first OK" is exact."""

    def __init__(self):
        super().__init__(daemon=True)
        self.dir = tempfile.mkdtemp(prefix="phaseout-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.kernel_times = False
        if SO_TIMESTAMP is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
                self.kernel_times = True
            except OSError:
                pass
        self.sock.settimeout(0.05)
        self.datagrams = []  # (time.time() clock, [lines])
        self.done = threading.Event()
        self.start()

    def run(self):
        timeval = struct.Struct("@ll")
        while not self.done.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(timeval.size))
            except socket.timeout:
                continue
            at = time.time()
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    sec, usec = timeval.unpack(payload[:timeval.size])
                    at = sec + usec / 1e6
            self.datagrams.append((at, data.decode().splitlines()))

    def close(self):
        self.done.set()
        self.join(timeout=5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def times(self, prefix):
        """Arrival times and values of the lines starting with `prefix`."""
        return [(at, line[len(prefix):]) for at, lines in self.datagrams
                for line in lines if line.startswith(prefix)]


def notify_check(grace=2.5, abort_grace=1.0, interval=1.0):
    """A slow drain under a NOTIFY_SOCKET: the pipeline holds on until it is
    aborted at the end of the grace, then finishes (exit 0)."""
    listener = NotifySocket()
    server = Server("--hang-until-abort", "pipeline", "--grace", str(grace),
                    "--abort-grace", str(abort_grace), notify_socket=listener.path)
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"PUT a b\n")
    reply = sock.makefile("r").readline()
    first_ok = time.time()
    sock.close()
    time.sleep(0.3)
    signal_at = time.time()
    server.signal(signal.SIGTERM)
    code, out = server.finish()
    exited = time.time()
    time.sleep(interval + 0.2)  # one more tick's worth: anything late would show
    listener.close()

    ready = listener.times("READY=1")
    stopping = listener.times("STOPPING=1")
    extends = [(at, int(usec) / 1e6) for at, usec in listener.times("EXTEND_TIMEOUT_USEC=")]
    statuses = listener.times("STATUS=")
    first = listener.datagrams[0][0] if listener.datagrams else None
    budget_end = signal_at + grace + abort_grace
    name = "notify"
    check(f"{name}: exit 0 after the grace", code == 0 and reply.startswith("OK "),
          f"status {code}, reply {reply!r}\n{out}")
    check(f"{name}: one line `shutting down: SIGTERM`, nothing new on stdout",
          re.findall(r"^shutting down: .*$", out, re.M) == ["shutting down: SIGTERM"]
          and not re.search(r"READY|STOPPING|EXTEND|STATUS|notify", out), out)
    check(f"{name}: READY=1 once, first, before the first OK",
          len(ready) == 1 and ready[0][0] == first and ready[0][0] <= first_ok,
          f"READY at {[at - first_ok for at, _ in ready]} s from the first OK")
    check(f"{name}: STOPPING=1 once, within 500 ms of the signal, before any extension",
          len(stopping) == 1 and 0 <= stopping[0][0] - signal_at < 0.5
          and all(stopping[0][0] <= at for at, _ in extends),
          f"STOPPING at {[at - signal_at for at, _ in stopping]} s from the signal")
    # About once an interval from the signal until the exit.
    expected = int((exited - signal_at) / interval) + 1
    gaps = [b[0] - a[0] for a, b in zip(extends, extends[1:])]
    check(f"{name}: EXTEND_TIMEOUT_USEC= about every {interval:.0f} s while draining",
          abs(len(extends) - expected) <= 1 and len(extends) >= 2
          and extends[0][0] - signal_at < 0.5
          and all(0.7 * interval < gap < 1.5 * interval for gap in gaps),
          f"{len(extends)} (expected about {expected}), gaps {gaps}")
    check(f"{name}: each extension arrives before the previous one ran out, the last covers the exit",
          bool(extends) and all(b[0] < a[0] + a[1] for a, b in zip(extends, extends[1:]))
          and extends[-1][0] + extends[-1][1] >= exited,
          f"{extends}, exit at {exited}")
    check(f"{name}: no extension past the grace + abort grace",
          all(at + usec <= budget_end + 0.1 for at, usec in extends),
          f"{[(at - signal_at, usec) for at, usec in extends]}, budget ends {grace + abort_grace} s after the signal")
    check(f"{name}: a STATUS= line names the abort",
          any("aborting" in text and "pipeline" in text for _, text in statuses), f"{statuses}")
    check(f"{name}: nothing after the exit",
          bool(listener.datagrams) and all(at <= exited for at, _ in listener.datagrams),
          f"last at {listener.datagrams[-1][0] - exited if listener.datagrams else None} s from the exit")

    clock = "kernel arrival" if listener.kernel_times else "receive"
    timeline = [(first_ok, "(client: first OK)"), (signal_at, "(SIGTERM sent)"),
                (exited, f"(exit {code})")]
    timeline += [(at, line) for at, lines in listener.datagrams for line in lines]
    timeline.sort(key=lambda event: event[0])
    numbers.append(f"notify (--hang-until-abort pipeline, grace {grace} s, abort grace {abort_grace} s), "
                   f"datagram lines by {clock} time, from the launch:\n"
                   + "\n".join(f"  +{at - server.launched:.4f} {text}" for at, text in timeline))


def notify_nobody_listening_check():
    """NOTIFY_SOCKET names a path nobody listens on: one warning, and the
    server serves and stops as usual."""
    path = os.path.join(tempfile.mkdtemp(prefix="phaseout-notify-"), "nobody")
    server = Server(notify_socket=path)
    code, out, _ = timed_stop(server)
    warnings = re.findall(r"^server: cannot notify systemd.*$", out, re.M)
    check("notify, nobody listening: one warning, serves, exit 0",
          code == 0 and len(warnings) == 1 and "shutdown complete" in out, f"status {code}\n{out}")


def main():
    load_scenario("SIGTERM almost at once", signal.SIGTERM, 0.05)
    load_scenario("SIGTERM mid-stream", signal.SIGTERM, 1.0)
    load_scenario("SIGTERM idle", signal.SIGTERM, 0, idle=True)
    load_scenario("SIGINT mid-stream", signal.SIGINT, 0.5)
    protocol_checks()
    straggler_check()
    hang_check()
    hang_until_abort_check()
    db_failure_check()
    second_signal_check(signal.SIGTERM, signal.SIGINT, 130)
    second_signal_check(signal.SIGTERM, signal.SIGTERM, 143)
    second_signal_check(signal.SIGINT, signal.SIGINT, 130)
    notify_check()
    notify_nobody_listening_check()
    print("\n".join(numbers))
    print(f"server e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
