#!/usr/bin/env python3
"""End-to-end test of examples/server.rs: real load, real signals.

Starts the release server on port 0 with a fresh db file, runs 8 clients
sending PUTs as fast as they can (plus malformed lines), sends SIGTERM at
several moments (almost at once, mid-stream, idle) and SIGINT once, then
checks: exit status 0, every acknowledged record in the file exactly once,
malformed lines answered with ERR, the shutdown time printed. It also checks
the straggler path (--hang, exit 1 after the grace period, the report names
the hung component) and that a second signal exits 130.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
Prints `N passed, N failed` and exits non-zero on any failure.
"""
import os
import re
import signal
import socket
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
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="phaseout-e2e-")
        self.db = os.path.join(self.dir, "data.log")
        self.proc = subprocess.Popen(
            [SERVER, "--addr", "127.0.0.1:0", "--db", self.db, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline().strip()
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


def straggler_check():
    server = Server("--hang", "pipeline", "--grace", "1")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"PUT a b\n")
    sock.makefile("r").readline()
    sock.close()
    start = time.monotonic()
    server.signal(signal.SIGTERM)
    code, out = server.finish()
    waited = time.monotonic() - start
    check("straggler: exits 1 after the grace period", code == 1 and 0.9 < waited < 10, f"status {code} after {waited:.1f} s")
    check("straggler: the report names the hung component", re.search(r"^\s*pipeline \[", out, re.M) is not None, out)


def second_signal_check():
    server = Server("--hang", "db", "--grace", "30")
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    server.signal(signal.SIGINT)
    code, out = server.finish()
    check("second signal: exits 130 at once", code == 130, f"status {code}\n{out}")


def main():
    load_scenario("SIGTERM almost at once", signal.SIGTERM, 0.05)
    load_scenario("SIGTERM mid-stream", signal.SIGTERM, 1.0)
    load_scenario("SIGTERM idle", signal.SIGTERM, 0, idle=True)
    load_scenario("SIGINT mid-stream", signal.SIGINT, 0.5)
    protocol_checks()
    straggler_check()
    second_signal_check()
    print("\n".join(numbers))
    print(f"server e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
