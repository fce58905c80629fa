#!/usr/bin/env python3
"""End-to-end test of examples/tokio.rs: real clients, real signals.

Starts the example with `--listen 127.0.0.1:0`, connects busy clients and
one idle client, then sends SIGINT or SIGTERM while the busy clients are
still sending. Half the busy clients send a line and wait for its `OK <n>`,
as fast as the server answers; the other half send bursts of lines, so
several records are in flight at the signal. Checks:

* exit status 0, within the timeout (a hang fails, it does not block CI);
* `web: stopped`, `pipeline: stopped`, `db: stopped` in that order, and
  `all stopped` as the last line;
* the number of records db says it stored equals the number of `OK`s the
  clients received: fewer means an acknowledged record was lost, more means a
  record was stored without its `OK` reaching a client (the clients read
  every reply the server sent, so that means a reply was dropped);
* every reply was `OK <n>` with `n` never seen before; every client, the
  idle one too, was closed by the server.

Usage: ci/tokio_e2e.py [path to the built example [rounds]]
(default target/debug/examples/tokio, 1 round of the three scenarios:
SIGINT mid-stream, SIGTERM mid-stream, SIGTERM as the clients connect).
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
Prints `N passed, N failed` and exits non-zero on any failure, with the
service's output.
"""
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/debug/examples/tokio"
# Rounds of all the scenarios (more to hunt a flaky failure).
REPEAT = int(sys.argv[2]) if len(sys.argv) > 2 else 1
BUSY_CLIENTS = 8
# Lines a bursting client sends before it reads their replies.
BURST = 32
MAX_LINES_PER_CLIENT = 200_000
# Seconds a scenario may take from start to exit; the example's own grace
# period is 5 s, so a correct run is far below this.
TIMEOUT = 30
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


class Service:
    """The example in --listen mode, killed by a watchdog after TIMEOUT."""

    def __init__(self):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [BINARY, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.killed = False
        self.watchdog = threading.Timer(TIMEOUT, self._kill)
        self.watchdog.daemon = True
        self.watchdog.start()
        first = self.proc.stdout.readline().strip()
        match = re.fullmatch(r"listening on (\S+):(\d+)", first)
        if not match:
            self.finish()
            raise RuntimeError(f"expected 'listening on ADDR' first, got {first!r}")
        self.host, self.port = match.group(1), int(match.group(2))

    def _kill(self):
        self.killed = True
        self.proc.kill()

    def finish(self):
        """Waits for exit (the watchdog bounds it); returns (status, stdout)."""
        out = self.proc.stdout.read()
        self.proc.wait()
        self.watchdog.cancel()
        self.stderr.seek(0)
        err = self.stderr.read()
        if self.killed:
            out += f"\n[killed by the e2e watchdog after {TIMEOUT} s: a hang]"
        return self.proc.returncode, out, err


class Client(threading.Thread):
    """Sends `c<id> line <n>` lines, `burst` at a time, and reads their
    replies, until the server closes the connection or the bound is reached.
    An idle client connects and only waits."""

    def __init__(self, service, client_id, burst=1, idle=False):
        super().__init__(daemon=True)
        self.service, self.client_id, self.idle = service, client_id, idle
        self.burst = burst
        self.oks = []            # record numbers from `OK <n>`
        self.unexpected = []     # any other reply
        self.closed_by_server = False
        self.refused = False
        self.outcome = "not run"
        self.connected = threading.Event()
        self.first_ok = threading.Event()

    def run(self):
        try:
            sock = socket.create_connection((self.service.host, self.service.port), timeout=TIMEOUT)
        except (ConnectionRefusedError, ConnectionResetError) as e:
            self.refused = True  # the listener closed before we got in
            self.outcome = repr(e)
            self.connected.set()
            self.first_ok.set()
            return
        self.connected.set()
        reader = sock.makefile("r")
        try:
            if self.idle:
                self.first_ok.set()
                self.outcome = "idle"
                reply = reader.readline()
                self.closed_by_server = reply == ""
                self.outcome = f"idle, then read {reply!r}"
                if reply:
                    self.unexpected.append(reply)
                return
            for first in range(0, MAX_LINES_PER_CLIENT, self.burst):
                burst = "".join(f"c{self.client_id} line {n}\n"
                                for n in range(first, first + self.burst))
                sock.sendall(burst.encode())
                for _ in range(self.burst):
                    reply = reader.readline()
                    if not reply:
                        self.closed_by_server = True
                        return
                    match = re.fullmatch(r"OK (\d+)\n", reply)
                    if match:
                        self.oks.append(int(match.group(1)))
                        self.first_ok.set()
                    else:
                        self.unexpected.append(reply)
                        return
        except (ConnectionResetError, BrokenPipeError) as e:
            self.outcome = repr(e)
            # Closed with lines of ours unread: the kernel answers with a
            # reset, after the replies already received have been read.
            self.closed_by_server = True
        except socket.timeout:
            self.outcome = "timeout"
            self.unexpected.append(f"no reply within {TIMEOUT} s")
        finally:
            self.connected.set()
            self.first_ok.set()
            sock.close()


def scenario(name, sig, delay):
    service = Service()
    try:
        run_scenario(service, name, sig, delay)
    finally:
        if service.proc.poll() is None:
            service.proc.kill()  # the script itself failed: leave nothing behind


def run_scenario(service, name, sig, delay):
    # Half the busy clients wait for each reply, half send bursts (several
    # records in flight at the signal).
    clients = [Client(service, i, burst=1 if i % 2 else BURST) for i in range(BUSY_CLIENTS)]
    clients.append(Client(service, BUSY_CLIENTS, idle=True))
    for c in clients:
        c.start()
    # Every client is connected before the signal (a client connecting to a
    # process that already exited would test the kernel, not the example).
    for c in clients:
        c.connected.wait(TIMEOUT)
    if delay > 0:
        # Signal mid-stream: every busy client has had an OK and is sending.
        for c in clients:
            c.first_ok.wait(TIMEOUT)
        time.sleep(delay)
    sending = sum(1 for c in clients if not c.idle and c.is_alive())
    signal_at = time.monotonic()
    service.proc.send_signal(sig)
    code, out, err = service.finish()
    wall = time.monotonic() - signal_at
    for c in clients:
        c.join(TIMEOUT)

    lines = out.splitlines()
    order = [m.group(1) for m in re.finditer(r"^(web|pipeline|db): stopped$", out, re.M)]
    stored = re.search(r"^db: stored (\d+) records$", out, re.M)
    oks = [n for c in clients for n in c.oks]
    failed_before = failed

    check(f"{name}: exit status 0", code == 0, f"status {code}")
    if delay > 0:
        check(f"{name}: clients were still sending at the signal", sending == BUSY_CLIENTS,
              f"only {sending} of {BUSY_CLIENTS} busy clients were connected")
    check(f"{name}: order web, pipeline, db", order == ["web", "pipeline", "db"],
          f"got {order}")
    check(f"{name}: last line 'all stopped'", bool(lines) and lines[-1] == "all stopped",
          f"last line {lines[-1] if lines else None!r}")
    if stored is None:
        check(f"{name}: db printed its count", False, "no 'db: stored N records'")
    else:
        n = int(stored.group(1))
        check(f"{name}: every acknowledged record stored", n >= len(oks),
              f"{len(oks)} OKs received but db stored {n}: {len(oks) - n} acknowledged records lost")
        check(f"{name}: stored exactly what was acknowledged", n == len(oks),
              f"db stored {n}, clients received {len(oks)} OKs")
    check(f"{name}: record numbers unique", len(set(oks)) == len(oks),
          f"{len(oks) - len(set(oks))} numbers acknowledged twice")
    bad = [(c.client_id, r) for c in clients for r in c.unexpected]
    check(f"{name}: every reply was OK", not bad, f"unexpected replies {bad[:3]}")
    still_open = [(c.client_id, c.outcome) for c in clients
                  if not (c.closed_by_server or c.refused)]
    check(f"{name}: the server closed every connection, the idle one too", not still_open,
          f"clients (id, what happened) {still_open} were not closed by the server")
    if failed > failed_before or not numbers:
        # Show what the service printed: on a failure, and once anyway.
        print("".join(f"  | {line}\n" for line in lines), end="")
        if err and failed > failed_before:
            print("  stderr:\n" + "".join(f"  ! {line}\n" for line in err.splitlines()), end="")
    numbers.append(f"{name}: {len(oks)} OKs, db stored {stored.group(1) if stored else '?'}, "
                   f"{wall * 1000:.0f} ms from signal to exit")


def main():
    for _ in range(REPEAT):
        scenario("SIGINT mid-stream", signal.SIGINT, 0.5)
        scenario("SIGTERM mid-stream", signal.SIGTERM, 0.2)
        scenario("SIGTERM as clients connect", signal.SIGTERM, 0)
    print("\n".join(numbers))
    print(f"tokio e2e: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
