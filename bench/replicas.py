#!/usr/bin/env python3
"""Replica creation and promotion through Keyhaven, against the same steps done by hand on
raw valkey-servers configured exactly like Keyhaven's nodes, measured in one run.

    .venv/bin/python bench/replicas.py          # quick: target/debug/keyhaven (the test build), 40 runs, ~1 min
    .venv/bin/python bench/replicas.py --full   # cargo build --release -p keyhaven, 100 runs, ~3 min
    .venv/bin/python bench/replicas.py --runs N --bin PATH --keys K --json out.json

It speaks to Valkey through valkey-py (the `valkey` package, which scripts/setup installs into
.venv); started by another python3 without it, it runs itself again under .venv/bin/python.

It prints a Markdown table (RELIABILITY.md's) and fails, naming the reason, when a check
below does not hold.

Like with like:
- The raw nodes' valkey.conf is Keyhaven's own: read from the Keyhaven data directory of the
  same run (its primary's, and its first replica's while it is still a replica), with only
  port, dir, pidfile, logfile and the replicaof address changed. Then `CONFIG GET *` and
  `ACL LIST` of each raw node are compared with its Keyhaven counterpart (before and after
  a promotion) and the bench stops if anything but those differs.
- Both primaries hold the same preloaded dataset; the writer's keys are removed after each
  run, so every replica syncs the same data.
- The raw promotion does what Keyhaven's does to the nodes (promotion.rs): an RDB snapshot on
  the replica (waited for only when the one on disk holds no key while the replica holds
  some, and then only until its file holds keys), CLIENT PAUSE WRITE on the
  primary, read its offset, wait for the replica, REPLICAOF NO ONE, CLIENT UNPAUSE, then turn
  on the promoted node's AOF (written after the answer, as Keyhaven's is).
- Both write pauses are measured the same way, from a client: one writer process (not a
  thread: no GIL shared with the bench) writes SETs one at a time to the primary during
  each promotion and timestamps every acknowledgement; the write pause is the longest gap
  between consecutive acknowledgements during the promotion. Keyhaven's self-reported
  pause (its log's write_pause_us) is shown beside it.
- The writer reports how many writes it made and the bench fails if it died or made none;
  on the promoted node, its keys must be a gap-free prefix holding every write acknowledged
  before the pause began, and nothing acknowledged after the promotion ended.
- Keyhaven and raw runs alternate, and which goes first alternates too, so both see the
  same machine.
- Percentiles are shown only when the run count carries them: p90 from 20 runs, p95 from
  40; below that only p50 and max.

Needs scripts/setup. Everything binds 127.0.0.1 on free ports and is stopped at the end,
also on failure (and `keyhaven down --data-dir` is run).
"""

import argparse
import array
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import valkey  # valkey-py, pinned by scripts/setup into .venv
except ImportError:
    _venv = os.path.join(ROOT, ".venv")
    _python = os.path.join(_venv, "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(_venv) and os.access(_python, os.X_OK):
        os.execv(_python, [_python, os.path.abspath(__file__), *sys.argv[1:]])  # run again under .venv
    raise SystemExit("bench/replicas.py needs the valkey package (valkey-py): run scripts/setup, "
                     "then .venv/bin/python bench/replicas.py")

VALKEY = os.path.join(ROOT, ".venv/bin/valkey-server")
PRELOAD_VALUE = "v" * 100
WARMUP_S = 0.2  # writing before each promotion (also the noise-floor window)
AFTER_S = 0.05  # writing after each promotion


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- the Valkey client

def connect(port, user=None, password=None, timeout=10):
    """A valkey-py client holding one connection, opened and authenticated (AUTH user
    password) here. No retries, which would hide a failed write or redo it, and no CLIENT
    SETINFO: the handshake is the AUTH alone. TCP_NODELAY is valkey-py's default. INFO comes
    back parsed by valkey-py: numbers as ints, each slaveN line as a dict."""
    return valkey.Valkey(host="127.0.0.1", port=port, username=user, password=password,
                         socket_timeout=timeout, socket_connect_timeout=timeout,
                         decode_responses=True, encoding_errors="replace", single_connection_client=True,
                         retry=None, retry_on_timeout=False, lib_name=None, lib_version=None)


def try_conn(port, user=None, password=None):
    try:
        c = connect(port, user, password, timeout=2)
        c.ping()
        return c
    except (OSError, valkey.ValkeyError):
        return None


def wait(what, cond, timeout=30.0, poll=0.002):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(poll)


def die_with_parent():
    """preexec_fn: the child gets SIGTERM if the bench dies without cleaning up (SIGKILL)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------- the writer

def _writer_main(port, user, password, prefix, stop, acked, out):
    """One client, one SET at a time, each acknowledgement timestamped (epoch ns, the clock
    Keyhaven's log uses)."""
    acks = array.array("q")
    made, error = 0, None
    try:
        c = connect(port, user, password)
        now = time.time_ns
        while not stop.value:
            made += 1
            reply = c.set(f"{prefix}:{made}", made)
            if reply is not True:
                raise RuntimeError(f"SET answered {reply!r}")
            acks.append(now())
            acked.value = made
    except BaseException as e:  # reported, and the bench fails on it
        error = f"{type(e).__name__}: {e}"
    out.send((made, acks.tobytes(), error))
    out.close()


class Writer:
    def __init__(self, port, user, password, prefix):
        ctx = multiprocessing.get_context("fork")
        self.prefix = prefix
        self.stop_flag = ctx.RawValue("b", 0)
        self.acked = ctx.RawValue("q", 0)
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_writer_main, daemon=True,
                                args=(port, user, password, prefix, self.stop_flag, self.acked, send))
        self.proc.start()
        send.close()
        self.result = None

    def wait_acked(self, n, what):
        wait(f"the writer's {what}", lambda: self.acked.value >= n or not self.proc.is_alive(), timeout=10)
        if self.acked.value < n:
            raise BenchError(f"the writer stopped after {self.acked.value} writes ({what}): {self.finish()}")

    def finish(self):
        """Stops the writer; returns its acknowledgement times (ns). Fails loudly when it died,
        made no write, or its count and its timestamps disagree."""
        if self.result is not None:
            return self.result
        self.stop_flag.value = 1
        if not self.recv.poll(15):
            self.proc.kill()
            raise BenchError("the writer did not report")
        made, raw, error = self.recv.recv()
        self.proc.join(5)
        acks = array.array("q")
        acks.frombytes(raw)
        if error:
            raise BenchError(f"the writer failed after {made} writes ({len(acks)} acknowledged): {error}")
        if made == 0 or len(acks) != made:
            raise BenchError(f"the writer made {made} writes with {len(acks)} acknowledgements")
        if self.proc.exitcode not in (0, None):
            raise BenchError(f"the writer exited with {self.proc.exitcode}")
        self.result = acks
        return acks

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ---------------------------------------------------------------- the probe

def _probe_main(port, user, password, go, out):
    """Once `go` is set, SETs a probe key on the replica until one succeeds (a replica
    answers READONLY until it is promoted); reports the epoch ns of that first success."""
    first, error, tries = None, None, 0
    try:
        c = connect(port, user, password)
        c.ping()
        out.send(("ready", None, None))
        while not go.value:
            time.sleep(0.0002)
        deadline = time.monotonic() + 120
        while first is None:
            tries += 1
            try:
                if c.set("keyhaven-bench:probe", tries) is True:
                    first = time.time_ns()
            except valkey.exceptions.ReadOnlyError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica was still read-only after 120 s")
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
    out.send(("done", first, error))
    out.close()


class Probe:
    """When a promoted node first takes a write, seen by a client of its own: started
    before the promotion, released at its start (`go`)."""

    def __init__(self, port, user, password):
        ctx = multiprocessing.get_context("fork")
        self.go = ctx.RawValue("b", 0)
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_probe_main, daemon=True, args=(port, user, password, self.go, send))
        self.proc.start()
        send.close()
        if not self.recv.poll(15) or self.recv.recv()[0] != "ready":
            self.kill()
            raise BenchError("the write probe could not connect to the replica")

    def release(self):
        self.go.value = 1

    def writable_at(self):
        """Epoch ns of the first write the promoted node took."""
        if not self.recv.poll(125):
            self.kill()
            raise BenchError("the write probe did not report")
        _, first, error = self.recv.recv()
        self.proc.join(5)
        if error or first is None:
            raise BenchError(f"the write probe failed: {error}")
        return first

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def analyse(acks, start_ns, end_ns, pause_ns, pause_end_ns):
    """The writer's view of one promotion: the longest gap between consecutive
    acknowledgements that overlaps the promotion [start, end]; the longest that overlaps the
    pause itself [pause, pause end] (located by the pause's own timestamps); the longest in
    the warm-up before the promotion (the noise floor); and how many writes were acknowledged
    before the pause and before the end."""
    before = sum(1 for t in acks if t < start_ns)
    after = sum(1 for t in acks if t > end_ns)
    if before == 0 or after == 0:
        raise BenchError(f"the writer did not write across the promotion ({before} acks before, {after} after)")
    gaps = [(b - a, a) for a, b in zip(acks, acks[1:]) if b >= start_ns and a <= end_ns]
    at_pause = max((g for g, a in gaps if a <= pause_end_ns and a + g >= pause_ns), default=0)
    warm = [t for t in acks if start_ns - int(WARMUP_S * 0.9e9) <= t < start_ns]
    floor = max((b - a for a, b in zip(warm, warm[1:])), default=0)
    top = sorted(gaps, reverse=True)[:3]
    return {
        "gap_ms": top[0][0] / 1e6 if top else 0.0,
        "gap_at_pause_ms": at_pause / 1e6,
        # where the longest gaps began, in ms from the start of the promotion and from the pause
        "top_gaps": [(round(g / 1e6, 3), round((a - start_ns) / 1e6, 2), round((a - pause_ns) / 1e6, 2))
                     for g, a in top],
        "floor_ms": floor / 1e6,
        "acked_before_pause": sum(1 for t in acks if t < pause_ns),
        "acked_before_end": sum(1 for t in acks if t <= end_ns),
        "writes": len(acks),
        "writes_per_s_before": len(warm) / (WARMUP_S * 0.9),
    }


def check_prefix(conn, prefix, writes, acked_before_pause, acked_before_end, who):
    """The writer's keys on the promoted node: a gap-free prefix 1..k with every write
    acknowledged before the pause, and nothing acknowledged after the promotion ended (the
    one write that may be in flight then is allowed)."""
    present = []
    for lo in range(1, writes + 1, 1000):
        keys = [f"{prefix}:{i}" for i in range(lo, min(writes, lo + 999) + 1)]
        present.extend(v is not None for v in conn.mget(keys))
    k = 0
    while k < len(present) and present[k]:
        k += 1
    if any(present[k:]):
        hole = k + 1 + present[k:].index(True)
        raise BenchError(f"{who}: {prefix}:{k + 1} is missing on the promoted node but {prefix}:{hole} is there")
    if k < acked_before_pause:
        raise BenchError(f"{who}: the promoted node has {prefix}:1..{k}, but {prefix}:{acked_before_pause} "
                         "was acknowledged before the pause")
    if k > acked_before_end + 1:
        raise BenchError(f"{who}: the promoted node has {prefix}:{k}, acknowledged after the promotion ended "
                         f"({acked_before_end} were acknowledged by then)")
    return k


def writer_figures(acks, start_ns, end_ns, pause_ns, pause_end_ns, promoted, prefix, who):
    """The writer's figures for one promotion, after checking its keys on the promoted node
    (a connection, closed here) with `check_prefix`."""
    a = analyse(acks, start_ns, end_ns, pause_ns, pause_end_ns)
    try:
        k = check_prefix(promoted, prefix, a["writes"], a["acked_before_pause"], a["acked_before_end"], who)
    finally:
        promoted.close()
    return {"pause_gap_ms": a["gap_ms"], "gap_at_pause_ms": a["gap_at_pause_ms"], "top_gaps": a["top_gaps"],
            "floor_ms": a["floor_ms"], "writes": a["writes"], "prefix": k,
            "acked_before_pause": a["acked_before_pause"], "writes_per_s": a["writes_per_s_before"]}


def unlink_keys(conn, prefix, n):
    for lo in range(1, n + 1, 1000):
        conn.unlink(*[f"{prefix}:{i}" for i in range(lo, min(n, lo + 999) + 1)])


def preload(conn, keys):
    for lo in range(0, keys, 1000):
        pipe = conn.pipeline(transaction=False)  # sent at once, no MULTI
        for i in range(lo, min(keys, lo + 1000)):
            pipe.set(f"pre:{i}", PRELOAD_VALUE)
        replies = pipe.execute()
        if any(r is not True for r in replies):
            raise BenchError(f"preload failed: {replies[:3]}")


# ---------------------------------------------------------------- configs

def conf_password(conf, user):
    m = re.search(rf"^user {re.escape(user)} on >(\S+)", conf, re.M)
    if not m:
        raise BenchError(f"no user {user} in the node's valkey.conf")
    return m.group(1)


def derive_conf(conf, source_path, port, d, primary_port=None):
    """Keyhaven's valkey.conf with only port, paths and the primary's address changed."""
    out, changed = [], set()
    src_dir = os.path.dirname(source_path)
    for line in conf.splitlines():
        key = line.split(" ", 1)[0]
        if line.startswith("#"):
            line = f"# bench/replicas.py: {source_path} with port, paths and replicaof changed"
        elif key == "port":
            line = f"port {port}"
        elif key == "dir":
            line = f"dir {d}"
        elif key in ("pidfile", "logfile"):
            line = f"{key} {os.path.join(d, os.path.basename(line.split(' ', 1)[1]))}"
        elif key == "replicaof":
            if primary_port is None:
                raise BenchError("a primary's config names a primary")
            line = f"replicaof 127.0.0.1 {primary_port}"
        elif src_dir in line:
            raise BenchError(f"Keyhaven's config has a path the bench does not know how to move: {line}")
        changed.add(key)
        out.append(line)
    want = {"port", "dir", "pidfile", "logfile"} | ({"replicaof"} if primary_port else set())
    if not want <= changed:
        raise BenchError(f"Keyhaven's config lacks {sorted(want - changed)}")
    return "\n".join(out) + "\n"


NODE_SPECIFIC = {"port", "dir", "pidfile", "logfile", "replicaof", "slaveof"}


def compare_nodes(kh_conn, raw_conn, what):
    """Every setting and user must match, but for port, paths and the primary's address."""
    kc, rc = kh_conn.config_get("*"), raw_conn.config_get("*")
    diff = sorted(k for k in kc.keys() | rc.keys() if k not in NODE_SPECIFIC and kc.get(k) != rc.get(k))
    if diff:
        raise BenchError(f"{what}: raw and Keyhaven nodes differ in " +
                         ", ".join(f"{k} ({kc.get(k)!r} vs {rc.get(k)!r})" for k in diff))
    if sorted(kh_conn.acl_list()) != sorted(raw_conn.acl_list()):
        raise BenchError(f"{what}: raw and Keyhaven nodes have different users")
    return len(kc)


def rdb_holds_keys(path):
    """Whether the RDB at `path` holds any key, read from its header as Keyhaven's
    runtime/src/rdb.rs reads it; None when there is none or it cannot tell."""
    try:
        with open(path, "rb") as f:
            b = f.read(64 * 1024)
    except OSError:
        return None
    if b.startswith(b"VALKEY"):
        i = 9
    elif b.startswith(b"REDIS"):
        i = 9
    else:
        return None

    def length(i):
        first = b[i]
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, None, i + 1
        if kind == 1:
            return ((first & 0x3F) << 8) | b[i + 1], None, i + 2
        if first == 0x80:
            return int.from_bytes(b[i + 1:i + 5], "big"), None, i + 5
        if first == 0x81:
            return int.from_bytes(b[i + 1:i + 9], "big"), None, i + 9
        if kind == 3:
            return None, first & 0x3F, i + 1
        raise IndexError

    def string(i):
        n, enc, i = length(i)
        if enc is None:
            return i + n
        if enc in (0, 1, 2):
            return i + (1, 2, 4)[enc]
        if enc == 3:
            clen, _, i = length(i)
            _, _, i = length(i)
            return i + clen
        raise IndexError

    try:
        while True:
            op = b[i]
            i += 1
            if op == 0xFE:
                return True
            if op == 0xFF:
                return False
            if op == 0xFA:
                i = string(string(i))
            elif op == 0xF5:
                i = string(i)
            else:
                return None
    except IndexError:
        return None


def snapshot(conn, wait_for_it=True, path=None):
    """A BGSAVE of our own, as promotion.rs takes one: waited for only when the snapshot on
    disk holds no key while the replica does (`wait_for_it`), and then until its file at
    `path` holds keys (Valkey renames it into place fsynced) or Valkey reports it done."""
    started = False
    deadline = time.monotonic() + 60
    while True:
        i = conn.info("persistence")
        running = i.get("rdb_bgsave_in_progress") == 1
        if started and not running:
            if i.get("rdb_last_bgsave_status") != "ok":
                raise BenchError(f"snapshot failed: {i.get('rdb_last_bgsave_status')}")
            return
        if not started and not running:
            try:
                conn.bgsave(schedule=False)
                started = True
            except valkey.ResponseError as e:
                if "in progress" not in str(e):
                    raise
            continue
        if not wait_for_it:
            return
        if started and path and rdb_holds_keys(path) is True:
            return
        if time.monotonic() > deadline:
            raise BenchError("snapshot took over 60 s")
        time.sleep(0.005)


def replica_current(primary, replica, replica_port):
    """Keyhaven's test for a current replica (reconciler.rs): link up, not syncing or
    loading, offset at or past the primary's, and listed online by the primary."""
    p = primary.info("replication")
    r = replica.info("replication")
    online = any(isinstance(v, dict) and v.get("port") == replica_port and v.get("state") == "online"
                 for k, v in p.items() if re.fullmatch(r"slave\d+", k))
    return (r.get("master_link_status") == "up" and r.get("master_sync_in_progress") == 0
            and int(r.get("slave_repl_offset", -1)) >= int(p["master_repl_offset"]) and online)


# ---------------------------------------------------------------- Keyhaven

def iso_us(t):
    from datetime import datetime, timezone
    d = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(d.timestamp()) * 1_000_000 + d.microsecond


class Keyhaven:
    def __init__(self, binary, tmp, ports):
        self.bin = binary
        self.data = os.path.join(tmp, "keyhaven")
        self.log_path = os.path.join(tmp, "keyhaven-server.log")
        self.proc = None
        self.proc = subprocess.Popen(
            [binary, "server", "--listen", "127.0.0.1:0", "--data-dir", self.data,
             "--valkey-server", VALKEY, "--valkey-ports", f"{ports[0]}-{ports[1]}"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), preexec_fn=die_with_parent)
        addr = wait("keyhaven to listen", lambda: self._read("listen-addr") or self._died(), poll=0.01)
        self.api = f"http://{addr.strip()}/v1/project/default"
        self.token = self._read("admin-token").strip()

    def _died(self):
        if self.proc.poll() is not None:
            raise BenchError(f"keyhaven server exited with {self.proc.returncode}: {self.log()[-2000:]}")

    def _read(self, name):
        try:
            with open(os.path.join(self.data, name)) as f:
                text = f.read()
            return text if text.endswith("\n") else None
        except FileNotFoundError:
            return None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def req(self, method, path, body=None):
        r = urllib.request.Request(self.api + path, method=method,
                                   headers={"authorization": f"aivenv1 {self.token}"},
                                   data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def service(self, name):
        status, body = self.req("GET", f"/service/{name}")
        if status != 200:
            raise BenchError(f"GET service {name}: {status} {body}")
        return body["service"]

    def create(self, name, replica_of=None):
        # Plain connections to the valkey-servers, as the raw side has (the TLS endpoint and
        # the reader endpoint are measured in bench/endpoint.py).
        body = {"service_name": name, "service_type": "valkey", "plan": "startup-4",
                "user_config": {"valkey_ssl": False}}
        if replica_of:
            body["service_integrations"] = [{"integration_type": "read_replica", "source_service": replica_of}]
        status, resp = self.req("POST", "/service", body)
        if status != 200:
            raise BenchError(f"create {name}: {status} {resp}")

    def wait_running(self, name, poll=0.005):
        return wait(f"{name} RUNNING", lambda: (lambda s: s if s["state"] == "RUNNING" else None)(self.service(name)),
                    timeout=60, poll=poll)

    def node_conf_path(self, port):
        nodes = os.path.join(self.data, "nodes")
        for d in os.listdir(nodes):
            path = os.path.join(nodes, d, "valkey.conf")
            try:
                with open(path) as f:
                    if f"\nport {port}\n" in f.read():
                        return path
            except FileNotFoundError:
                pass
        raise BenchError(f"no Keyhaven node directory for port {port}")

    def node_conf(self, port):
        path = self.node_conf_path(port)
        with open(path) as f:
            return path, f.read()

    def promoted_log(self, name):
        """Keyhaven's own account of a promotion (its log line)."""
        def find():
            for line in reversed(self.log().splitlines()):
                if "replica promoted to primary" in line and f" replica={name} " in line:
                    return line
            return None
        line = wait(f"the log line of {name}'s promotion", find, timeout=5, poll=0.01)
        field = lambda k: int(re.search(rf"\b{k}=(\d+)", line).group(1))
        return field("write_pause_us"), field("pause_started_at"), field("behind_at_pause")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run([self.bin, "down", "--data-dir", self.data],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def uri_parts(uri):
    u = urllib.parse.urlparse(uri)
    return u.port, u.username, urllib.parse.unquote(u.password)


class KeyhavenSide:
    name = "Keyhaven"

    def __init__(self, binary, tmp, ports, keys):
        self.kh = Keyhaven(binary, tmp, ports)
        self.kh.create("primary")
        s = self.kh.wait_running("primary")
        self.port, self.user, self.password = uri_parts(s["service_uri"])
        self.primary_conf_path, self.primary_conf = self.kh.node_conf(self.port)
        self.admin_pw = conf_password(self.primary_conf, "keyhaven-admin")
        self.primary = connect(self.port, self.user, self.password)
        self.primary_admin = connect(self.port, "keyhaven-admin", self.admin_pw)
        preload(self.primary, keys)

    def create(self, i):
        h = {"name": f"r{i}", "prefix": f"kh{i}"}
        t0 = time.monotonic()
        self.kh.create(h["name"], replica_of="primary")
        s = self.kh.wait_running(h["name"])
        h["create_client_ms"] = (time.monotonic() - t0) * 1000
        h["create_ms"] = (iso_us(s["update_time"]) - iso_us(s["create_time"])) / 1000
        h["port"], h["user"], h["password"] = uri_parts(s["service_uri"])
        h["conf"] = self.kh.node_conf(h["port"])
        h["admin"] = connect(h["port"], "keyhaven-admin", conf_password(h["conf"][1], "keyhaven-admin"))
        return h

    def promote(self, h, idle=False):
        """DELETE of the replica's link, under the writer's load (or `idle`: no writer)."""
        writer = None if idle else Writer(self.port, self.user, self.password, h["prefix"])
        probe = Probe(h["port"], h["user"], h["password"])
        try:
            link = self.kh.req("GET", f"/service/{h['name']}/integration")[1]["service_integrations"][0]
            if writer:
                writer.wait_acked(1, "first write")
                time.sleep(WARMUP_S)
            probe.release()
            start = time.time_ns()
            status, resp = self.kh.req("DELETE", f"/integration/{link['service_integration_id']}")
            end = time.time_ns()
            if status != 200:
                raise BenchError(f"promotion of {h['name']}: {status} {resp}")
            writable = probe.writable_at()
            if writer:
                writer.wait_acked(writer.acked.value + 50, "writes after the promotion")
                time.sleep(AFTER_S)
                acks = writer.finish()
        finally:
            probe.kill()
            if writer:
                writer.kill()
        pause_us, pause_started_at, behind = self.kh.promoted_log(h["name"])
        r = {"create_ms": h["create_ms"], "create_client_ms": h["create_client_ms"],
             "promote_ms": (end - start) / 1e6, "writable_ms": (writable - start) / 1e6,
             "before_pause_ms": (pause_started_at * 1000 - start) / 1e6,
             "after_pause_ms": (end - (pause_started_at + pause_us) * 1000) / 1e6,
             "pause_self_ms": pause_us / 1000, "behind_at_pause": behind, "writes": 0}
        if writer:
            r.update(writer_figures(acks, start, end, pause_started_at * 1000, (pause_started_at + pause_us) * 1000,
                                    connect(h["port"], h["user"], h["password"]), h["prefix"],
                                    f"Keyhaven {h['name']}"))
        return r

    def cleanup(self, h, writes):
        h["admin"].close()
        if writes:
            unlink_keys(self.primary, h["prefix"], writes)
        status, resp = self.kh.req("DELETE", f"/service/{h['name']}")
        if status != 200:
            raise BenchError(f"delete {h['name']}: {status} {resp}")

    def stop(self):
        self.kh.stop()


# ---------------------------------------------------------------- raw Valkey

class RawSide:
    name = "raw"

    def __init__(self, tmp, ports, kh_side, keys):
        self.tmp, self.ports, self.procs = tmp, list(ports), {}
        self.port = self._port()
        self.user, self.password = kh_side.user, kh_side.password
        conf = derive_conf(kh_side.primary_conf, kh_side.primary_conf_path, self.port,
                           self._dir("raw-primary"))
        self.admin_pw = kh_side.admin_pw
        self._start("raw-primary", self.port, conf)
        self.primary = wait("the raw primary to answer", lambda: try_conn(self.port, self.user, self.password))
        self.primary_admin = connect(self.port, "keyhaven-admin", self.admin_pw)
        preload(self.primary, keys)
        compare_nodes(kh_side.primary_admin, self.primary_admin, "primaries")
        self.template = None  # Keyhaven's replica config (path, text), set by the warm-up

    def _port(self):
        while self.ports:
            p = self.ports.pop(0)
            if port_free(p):
                return p
        raise BenchError("no free port left for raw nodes")

    def _dir(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, mode=0o700)
        return d

    def _start(self, name, port, conf):
        d = os.path.join(self.tmp, name)
        path = os.path.join(d, "valkey.conf")
        with open(path, "w") as f:
            f.write(conf)
        os.chmod(path, 0o600)
        self.procs[name] = subprocess.Popen([VALKEY, path], stdout=subprocess.DEVNULL,
                                            stderr=open(os.path.join(d, "stderr.log"), "w"),
                                            preexec_fn=die_with_parent)

    def _stop(self, name):
        p = self.procs.pop(name)
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def create(self, i):
        h = {"name": f"raw-replica-{i}", "prefix": f"raw{i}", "port": self._port()}
        path, conf = self.template
        conf = derive_conf(conf, path, h["port"], self._dir(h["name"]), primary_port=self.port)
        h["admin_pw"] = conf_password(conf, "keyhaven-admin")
        h["service_pw"] = conf_password(conf, self.user)
        t0 = time.monotonic()
        self._start(h["name"], h["port"], conf)
        h["admin"] = wait("the raw replica to answer",
                          lambda: try_conn(h["port"], "keyhaven-admin", h["admin_pw"]))
        wait("the raw replica to be current",
             lambda: replica_current(self.primary_admin, h["admin"], h["port"]))
        h["create_ms"] = (time.monotonic() - t0) * 1000
        # Keyhaven's reconciler has a replica that loaded diskless take a snapshot once current.
        h["admin"].bgsave(schedule=True)
        return h

    def promote(self, h, idle=False):
        rport, rpw = h["port"], h["admin_pw"]
        writer = None if idle else Writer(self.port, self.user, self.password, h["prefix"])
        probe = Probe(rport, self.user, h["service_pw"])
        conns = []
        try:
            if writer:
                writer.wait_acked(1, "first write")
                time.sleep(WARMUP_S)
            probe.release()
            start = time.time_ns()
            # promotion.rs, step by step, on the same kind of nodes:
            # 2. the replica's snapshot: waited for only when the one on disk holds no key
            rdb = os.path.join(self.tmp, h["name"], "dump.rdb")
            snapshot(h["admin"], rdb_holds_keys(rdb) is not True and h["admin"].dbsize() > 0, rdb)
            padmin = connect(self.port, "keyhaven-admin", self.admin_pw)  # 3. fresh connections,
            ra = connect(rport, "keyhaven-admin", rpw)                    #    as Keyhaven opens them
            conns += [padmin, ra]
            padmin.ping()
            rinfo = ra.info("replication")
            pinfo = padmin.info("replication")
            if not (rinfo.get("master_replid") == pinfo.get("master_replid")
                    and rinfo.get("master_link_status") == "up" and rinfo.get("master_sync_in_progress") == 0):
                raise BenchError(f"raw replica not linked: {rinfo}")
            pause_started = time.time_ns()
            padmin.client_pause(2000, all=False)  # CLIENT PAUSE 2000 WRITE
            try:
                pinfo = padmin.info("replication")
                target, history = int(pinfo["master_repl_offset"]), pinfo["master_replid"]
                behind = None
                while True:
                    r = ra.info("replication")
                    off = int(r.get("slave_repl_offset", -1))
                    if behind is None:
                        behind = max(0, target - off)
                    if (r.get("master_replid") == history and r.get("master_link_status") == "up"
                            and r.get("master_sync_in_progress") == 0 and off >= target):
                        break
                    if time.time_ns() - pause_started > 1e9:
                        raise BenchError("the raw replica could not catch up within 1 s")
                    time.sleep(0.0005)
                ra.replicaof("NO", "ONE")
            finally:
                padmin.client_unpause()
            unpaused = time.time_ns()
            ra.config_set("appendonly", "yes")                       # 5. AOF on, written after the answer
            # ... and its service user no longer takes its old primary's password (the one the
            # primary's reader endpoint relies on while it is a replica).
            ra.execute_command("ACL", "SETUSER", self.user, f"<{self.password}")
            end = time.time_ns()
            writable = probe.writable_at()
            if writer:
                writer.wait_acked(writer.acked.value + 50, "writes after the promotion")
                time.sleep(AFTER_S)
                acks = writer.finish()
        finally:
            probe.kill()
            if writer:
                writer.kill()
            for c in conns:
                c.close()
        r = {"create_ms": h["create_ms"], "promote_ms": (end - start) / 1e6, "writable_ms": (writable - start) / 1e6,
             "before_pause_ms": (pause_started - start) / 1e6, "after_pause_ms": (end - unpaused) / 1e6,
             "pause_self_ms": (unpaused - pause_started) / 1e6, "behind_at_pause": behind, "writes": 0}
        if writer:
            r.update(writer_figures(acks, start, end, pause_started, unpaused,
                                    connect(rport, self.user, h["service_pw"]), h["prefix"], f"raw {h['name']}"))
        return r

    def cleanup(self, h, writes):
        h["admin"].close()
        if writes:
            unlink_keys(self.primary, h["prefix"], writes)
        self._stop(h["name"])
        shutil.rmtree(os.path.join(self.tmp, h["name"]), ignore_errors=True)
        self.ports.append(h["port"])

    def stop(self):
        for name in list(self.procs):
            try:
                self._stop(name)
            except Exception as e:
                print(f"cleanup of {name}: {e}", file=sys.stderr)


def warm_up(kh, raw):
    """One run of each, not counted: Keyhaven's replica config (read while it is a replica)
    becomes the raw replicas' config, and every setting of the raw nodes is compared with
    Keyhaven's, as replicas and once promoted."""
    kh_h = kh.create("warm")
    raw.template = kh_h["conf"]
    raw_h = raw.create("warm")
    n = compare_nodes(kh_h["admin"], raw_h["admin"], "replicas")
    kr, rr = kh.promote(kh_h), raw.promote(raw_h)
    compare_nodes(kh_h["admin"], raw_h["admin"], "promoted nodes")
    kh.cleanup(kh_h, kr["writes"])
    raw.cleanup(raw_h, rr["writes"])
    return n


# ---------------------------------------------------------------- main

def nearest_rank(values, p):
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def row(label, values):
    n = len(values)
    cell = lambda v: f"{v:.2f}"
    p90 = cell(nearest_rank(values, 90)) if n >= 20 else "—"
    p95 = cell(nearest_rank(values, 95)) if n >= 40 else "—"
    return f"| {label} | {cell(statistics.median(values))} | {p90} | {p95} | {cell(max(values))} |"


def pick_binary(args):
    if args.bin:
        return args.bin, "given"
    if args.full:
        print("building: cargo build --release -p keyhaven", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "keyhaven"], cwd=ROOT, check=True)
        return os.path.join(ROOT, "target/release/keyhaven"), "release"
    b = os.path.join(ROOT, "target/debug/keyhaven")
    if not os.path.exists(b):
        raise SystemExit(f"{b} is missing: build it with `cargo build -p keyhaven` (or run the tests)")
    newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(ROOT, "crates"))
                  for f in fs if f.endswith(".rs")), default=0)
    if newest > os.path.getmtime(b):
        print(f"warning: {b} is older than the sources; `cargo build -p keyhaven` to refresh it",
              file=sys.stderr)
    return b, "debug"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="cargo build --release, 100 runs")
    parser.add_argument("--runs", type=int, help="timed runs per side (quick: 40, full: 100)")
    parser.add_argument("--keys", type=int, default=10000, help="keys of 100 bytes preloaded on each primary")
    parser.add_argument("--bin", help="the keyhaven binary (else target/debug, or target/release with --full)")
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    runs = args.runs or (100 if args.full else 40)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    binary, profile = pick_binary(args)
    if not os.path.exists(VALKEY):
        raise SystemExit(f"{VALKEY} is missing: run scripts/setup")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began, load_before = time.monotonic(), os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="keyhaven-bench-")
    # Above the ephemeral range and the e2e tests' 20000-59999; spread by pid.
    base = 61000 + (os.getpid() % 20) * 200
    kh = raw = None
    results = {"Keyhaven": [], "raw": []}
    try:
        kh = KeyhavenSide(binary, tmp, (base, base + 99), args.keys)
        raw = RawSide(tmp, range(base + 100, base + 200), kh, args.keys)
        settings = warm_up(kh, raw)
        print(f"warm-up: raw and Keyhaven nodes have the same {settings} settings and users "
              "(but port and paths), as replicas and promoted", file=sys.stderr, flush=True)
        for i in range(runs):
            for side in ((kh, raw) if i % 2 == 0 else (raw, kh)):
                h = side.create(i)
                r = side.promote(h)
                side.cleanup(h, r["writes"])
                results[side.name].append(r)
            print(f"run {i + 1}/{runs}: " + "  ".join(
                f"{s}: create {results[s][-1]['create_ms']:.1f} promote {results[s][-1]['promote_ms']:.1f} "
                f"gap {results[s][-1]['pause_gap_ms']:.2f} ms" for s in ("Keyhaven", "raw")),
                file=sys.stderr, flush=True)
    finally:
        for side in (raw, kh):
            if side:
                try:
                    side.stop()
                except Exception as e:
                    print(f"cleanup: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - began

    K, R = results["Keyhaven"], results["raw"]
    col = lambda rs, k: [r[k] for r in rs]
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD")
    dirty = len(git("status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock").splitlines())
    if profile == "given":
        commit = f"{commit} (work tree; the binary given may be another)"
    elif dirty:
        commit += f" + uncommitted changes to {dirty} files under crates/"
    print(f"\n{runs} runs per side (after one warm-up), {profile} build ({os.path.relpath(binary, ROOT)}, "
          f"commit {commit}), {os.cpu_count()} cores (load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end), {args.keys} keys preloaded, {took:.0f} s in all")
    print(f"\n| milliseconds, N = {runs} per side | p50 | p90 | p95 | max |\n|---|---|---|---|---|")
    print(row("replica create → RUNNING, Keyhaven (API: `create_time` → `update_time`)", col(K, "create_ms")))
    print(row("replica create → RUNNING, Keyhaven (client: POST sent → GET shows RUNNING, 5 ms polls)",
              col(K, "create_client_ms")))
    print(row("start a raw valkey-server replica → current (client, 2 ms polls)", col(R, "create_ms")))
    print(row("promotion, Keyhaven: whole DELETE request", col(K, "promote_ms")))
    print(row("promotion, raw: the same steps by hand (snapshot … AOF turned on)", col(R, "promote_ms")))
    print(row("promotion, Keyhaven: DELETE sent → the replica takes a write", col(K, "writable_ms")))
    print(row("promotion, raw: first step → the replica takes a write", col(R, "writable_ms")))
    print(row("write pause, Keyhaven: longest gap between the writer's acknowledgements", col(K, "pause_gap_ms")))
    print(row("write pause, raw: longest gap between the writer's acknowledgements", col(R, "pause_gap_ms")))
    print(row("ack gap across the pause itself, Keyhaven", col(K, "gap_at_pause_ms")))
    print(row("ack gap across the pause itself, raw", col(R, "gap_at_pause_ms")))
    print(row("write pause, Keyhaven, self-reported (`write_pause_us`)", col(K, "pause_self_ms")))
    print(row("write pause, raw, CLIENT PAUSE sent → UNPAUSE answered", col(R, "pause_self_ms")))
    print(row(f"writer's longest gap in the {WARMUP_S * 900:.0f} ms before a promotion, Keyhaven primary",
              col(K, "floor_ms")))
    print(row(f"writer's longest gap in the {WARMUP_S * 900:.0f} ms before a promotion, raw primary",
              col(R, "floor_ms")))
    med = lambda rs, k: statistics.median(col(rs, k))
    print("\npromotion, p50 of each part (ms): " + "; ".join(
        f"{name}: start → pause {med(rs, 'before_pause_ms'):.1f}, pause → answer {med(rs, 'after_pause_ms'):.1f}"
        for name, rs in (("Keyhaven", K), ("raw", R))))
    for name, rs in (("Keyhaven", K), ("raw", R)):
        print(f"\n{name}: writes per promotion {min(col(rs, 'writes'))}–{max(col(rs, 'writes'))} "
              f"(~{statistics.median(col(rs, 'writes_per_s')):.0f}/s); on the promoted node a gap-free prefix "
              f"of {min(col(rs, 'prefix'))}–{max(col(rs, 'prefix'))} keys, every write acknowledged before "
              f"the pause present; replica behind at the pause: max {max(col(rs, 'behind_at_pause'))} bytes")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "profile": profile, "binary": binary, "commit": commit, "keys": args.keys,
                       "load": [load_before, os.getloadavg()[0]], "seconds": took, "results": results}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
