#!/usr/bin/env python3
"""Replica creation and promotion through Keyhaven, against the same steps done by hand on
raw valkey-servers with the same settings, measured in one run on this machine.

    python3 bench/replicas.py [--runs N]

Needs scripts/setup and a built `keyhaven`: `cargo build --release` (target/release is
preferred, then target/debug; or set KEYHAVEN_BIN). Everything it
starts binds 127.0.0.1 and is stopped at the end, also on failure.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALKEY = os.path.join(ROOT, ".venv/bin/valkey-server")
KEYHAVEN = os.environ.get("KEYHAVEN_BIN") or next(
    p for p in (os.path.join(ROOT, "target/release/keyhaven"), os.path.join(ROOT, "target/debug/keyhaven"))
    if os.path.exists(p) or p.endswith("debug/keyhaven"))


class Resp:
    """A minimal RESP2 client: enough for AUTH, SET/GET, INFO and admin commands."""

    def __init__(self, port, user=None, password=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        if password is not None:
            self.call("AUTH", user, password)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 16)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args):
        parts = [str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self._read()

    def info(self, section):
        text = self.call("INFO", section)
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def uri_conn(uri):
    u = urllib.parse.urlparse(uri)
    return Resp(u.port, u.username, u.password)


def wait(what, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


class Writer(threading.Thread):
    """Writes SETs in a loop on one connection, as a busy client would."""

    def __init__(self, conn):
        super().__init__(daemon=True)
        self.conn, self.stop, self.count = conn, threading.Event(), 0

    def run(self):
        while not self.stop.is_set():
            self.count += 1
            self.conn.call("SET", f"w:{self.count}", self.count)


def iso_micros(t):
    """Microseconds of an ISO 8601 time as the API prints it (2026-11-26T08:08:02.123456Z)."""
    from datetime import datetime, timezone
    d = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1_000_000)


def stats(values):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"{statistics.median(values):8.2f} {p95:8.2f}"


# ---------------------------------------------------------------- Keyhaven

class Keyhaven:
    def __init__(self, tmp):
        self.data = os.path.join(tmp, "keyhaven")
        self.proc = subprocess.Popen(
            [KEYHAVEN, "server", "--listen", "127.0.0.1:0", "--data-dir", self.data,
             "--valkey-server", VALKEY, "--valkey-ports", "19700-19799"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "w"))
        addr = wait("keyhaven to listen", lambda: self._read("listen-addr"))
        self.api = f"http://{addr.strip()}/v1/project/default"
        self.token = self._read("admin-token").strip()

    def _read(self, name):
        try:
            with open(os.path.join(self.data, name)) as f:
                text = f.read()
            return text if text.endswith("\n") else None
        except FileNotFoundError:
            return None

    def req(self, method, path, body=None):
        r = urllib.request.Request(self.api + path, method=method,
                                   headers={"authorization": f"aivenv1 {self.token}"},
                                   data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(r) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def service(self, name):
        return self.req("GET", f"/service/{name}")[1]["service"]

    def create(self, name, replica_of=None):
        body = {"service_name": name, "service_type": "valkey", "plan": "startup-4"}
        if replica_of:
            body["service_integrations"] = [{"integration_type": "read_replica", "source_service": replica_of}]
        status, resp = self.req("POST", "/service", body)
        assert status == 200, resp

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        subprocess.run([KEYHAVEN, "down", "--data-dir", self.data], stdout=subprocess.DEVNULL)


def bench_keyhaven(tmp, runs):
    kh = Keyhaven(tmp)
    results = {"create": [], "pause": [], "promote": []}
    try:
        kh.create("primary")
        wait("primary", lambda: kh.service("primary")["state"] == "RUNNING")
        primary = uri_conn(kh.service("primary")["service_uri"])
        for i in range(runs):
            kh.create(f"r{i}", replica_of="primary")
            s = wait("replica", lambda: (lambda s: s if s["state"] == "RUNNING" else None)(kh.service(f"r{i}")))
            # The server's own clock: update_time moves when the state turns RUNNING.
            results["create"].append((iso_micros(s["update_time"]) - iso_micros(s["create_time"])) / 1000)

            writer = Writer(uri_conn(kh.service("primary")["service_uri"]))
            writer.start()
            time.sleep(0.2)
            link = kh.req("GET", f"/service/r{i}/integration")[1]["service_integrations"][0]
            start = time.monotonic()
            status, resp = kh.req("DELETE", f"/integration/{link['service_integration_id']}")
            results["promote"].append((time.monotonic() - start) * 1000)
            writer.stop.set()
            writer.join()
            assert status == 200, resp
            results["pause"].append(float(resp["message"].split("paused ")[1].split(" ms")[0]))
            kh.req("DELETE", f"/service/r{i}")
        primary.call("PING")
    finally:
        kh.stop()
    return results


# ---------------------------------------------------------------- raw Valkey

def raw_node(tmp, name, port, extra=""):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    with open(os.path.join(d, "valkey.conf"), "w") as f:
        f.write(f"bind 127.0.0.1\nport {port}\ndir {d}\nsave \"\"\nappendonly no\n"
                "repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n"
                "dual-channel-replication-enabled yes\nrepl-diskless-load on-empty-db\n" + extra)
    proc = subprocess.Popen([VALKEY, os.path.join(d, "valkey.conf")], stdout=subprocess.DEVNULL)
    conn = wait(f"{name} to answer", lambda: _try_conn(port))
    return proc, conn


def _try_conn(port):
    try:
        c = Resp(port)
        c.call("PING")
        return c
    except OSError:
        return None


def bench_raw(tmp, runs):
    """The same two operations by hand: attach a fresh replica until it is current, and
    detach it with the pause/catch-up/REPLICAOF NO ONE sequence Keyhaven uses."""
    results = {"create": [], "pause": []}
    procs = []
    try:
        pproc, primary = raw_node(tmp, "raw-primary", 19690)
        procs.append(pproc)
        for i in range(runs):
            # Like Keyhaven: a new process whose config names its primary.
            start = time.monotonic()
            rproc, replica = raw_node(tmp, f"raw-replica-{i}", 19691 + i, "replicaof 127.0.0.1 19690\n")
            procs.append(rproc)

            def current():
                target = int(primary.info("replication")["master_repl_offset"])
                r = replica.info("replication")
                return (r.get("master_link_status") == "up" and r.get("master_sync_in_progress") == "0"
                        and int(r.get("slave_repl_offset", -1)) >= target)
            wait("raw replica current", current)
            results["create"].append((time.monotonic() - start) * 1000)

            writer = Writer(Resp(19690))
            writer.start()
            time.sleep(0.2)
            start = time.monotonic()
            primary.call("CLIENT", "PAUSE", 2000, "WRITE")
            target = int(primary.info("replication")["master_repl_offset"])
            wait("raw catch-up", lambda: int(replica.info("replication")["slave_repl_offset"]) >= target)
            replica.call("REPLICAOF", "NO", "ONE")
            primary.call("CLIENT", "UNPAUSE")
            results["pause"].append((time.monotonic() - start) * 1000)
            writer.stop.set()
            writer.join()
            rproc.terminate()
            rproc.wait()
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="keyhaven-bench-")
    try:
        kh = bench_keyhaven(tmp, args.runs)
        raw = bench_raw(tmp, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.runs} runs each, {os.cpu_count()} cores, {KEYHAVEN}, Valkey from {VALKEY}")
    print(f"{'milliseconds':58} {'p50':>8} {'p95':>8}")
    print(f"{'replica create -> RUNNING (Keyhaven, its own timestamps)':58} {stats(kh['create'])}")
    print(f"{'start valkey-server as replica -> current (raw Valkey)':58} {stats(raw['create'])}")
    print(f"{'promotion: writes paused on the primary (Keyhaven)':58} {stats(kh['pause'])}")
    print(f"{'pause -> catch-up -> detach -> unpause (raw Valkey baseline)':58} {stats(raw['pause'])}")
    print(f"{'promotion: whole DELETE request (Keyhaven)':58} {stats(kh['promote'])}")


if __name__ == "__main__":
    main()
