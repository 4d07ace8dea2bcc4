#!/usr/bin/env python3
"""Keyhaven against hand-wired valkey-servers where the dataset is large and writes keep
coming, measured in one run:

- replica creation → RUNNING with a write made just before the request readable on it, for
  each dataset size, beside raw replicas started by hand in three configurations (Keyhaven's
  own; single-channel diskless with swapdb; Keyhaven's with Valkey's default RDB
  compression);
- promotion at the largest size: DELETE → the replica takes a write, and → the answer, idle
  and under a continuous write load (acknowledged writes lost: must be 0);
- replication lag p50/p99 of a Keyhaven pair and of a hand-wired pair under the same fixed
  write load;
- a replica of the largest dataset created while its primary takes half of what one
  valkey-server sustains here: it must complete with one full sync.

    .venv/bin/python bench/data.py --quick                  # correctness only, small data (CI)
    .venv/bin/python bench/data.py --bin target/release/keyhaven              # 0, 100, 1024 MiB
    .venv/bin/python bench/data.py --sizes 0,100 --runs 3 --only create,lag   # a part of it

Values are random bytes (incompressible), 1 KiB each, written identically to both primaries.
Raw nodes take Keyhaven's valkey.conf with port and paths changed (bench/replicas.py checks
setting by setting that they match), plus the variant's own knobs, named in the output. Keyhaven
and raw runs alternate. Everything binds 127.0.0.1 on free ports and is stopped at the end,
also on failure. It fails, naming the reason, when a check does not hold; never on a timing.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import valkey  # noqa: F401  (valkey-py, in .venv)
except ImportError:
    _python = os.path.join(ROOT, ".venv", "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")) and os.access(_python, os.X_OK):
        os.execv(_python, [_python, os.path.abspath(__file__), *sys.argv[1:]])
    raise SystemExit("bench/data.py needs scripts/setup (valkey-py in .venv)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import replicas as R  # noqa: E402  (the shared pieces: sides, writer, probe, checks)
from replicas import BenchError, wait  # noqa: E402

VALUE_BYTES = 1024
OK = b"+OK\r\n"

# Raw replica configurations: lines appended to Keyhaven's replica config (the later line
# wins in valkey.conf), and the same knobs set on the raw primary for the run.
RAW_VARIANTS = {
    "raw, Keyhaven's config": {},
    "raw, single channel diskless + swapdb": {"dual-channel-replication-enabled": "no", "repl-diskless-load": "swapdb"},
    "raw, Keyhaven's config with RDB compression (Valkey's default)": {"rdbcompression": "yes"},
}
PRIMARY_KNOBS = ("rdbcompression", "dual-channel-replication-enabled")
# Valkey's own defaults for what Keyhaven sizes: a full sync under load overflows them.
VALKEY_DEFAULTS = {"client-output-buffer-limit": "replica 256mb 64mb 60", "repl-backlog-size": "1mb",
                   "dual-channel-replication-enabled": "no"}


# ---------------------------------------------------------------- raw RESP, for volume

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Raw:
    """One authenticated socket that sends pre-encoded commands and counts +OK replies:
    no per-command Python work, so one process writes faster than valkey-py could."""

    def __init__(self, port, user, password):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.sendall(resp("AUTH", user, password))
        self.expect_ok(1)

    def expect_ok(self, n):
        want, got = n * len(OK), bytearray()
        while len(got) < want:
            chunk = self.s.recv(max(65536, want - len(got)))
            if not chunk:
                raise BenchError("the server closed the connection")
            got += chunk
        if got != OK * n:
            raise BenchError(f"a write was refused: {bytes(got[:200])!r}")

    def close(self):
        self.s.close()


def fill(targets, start, count):
    """SETs data:{start..start+count} with random 1 KiB values, the same on every target
    (port, user, password)."""
    conns = [Raw(*t) for t in targets]
    try:
        for lo in range(start, start + count, 1000):
            n = min(1000, start + count - lo)
            batch = b"".join(resp("SET", f"data:{i}", os.urandom(VALUE_BYTES)) for i in range(lo, lo + n))
            for c in conns:
                c.s.sendall(batch)
            for c in conns:
                c.expect_ok(n)
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------- a paced write load

def _load_main(port, user, password, rate, stop, out):
    """SETs of 100-byte values over 100 000 keys, `rate` per second on schedule (pipelined
    in 1 ms steps; behind schedule it catches up in chunks of at most 2 000), or as fast as
    one connection goes when `rate` is 0. Reports writes made and seconds."""
    made, error, began = 0, None, time.monotonic()
    try:
        c = Raw(port, user, password)
        value = os.urandom(50).hex()
        cmds = [resp("SET", "load:%06d" % (i * 7919 % 100000), value) for i in range(4000)]
        size = len(cmds[0])
        assert all(len(x) == size for x in cmds)
        ring = b"".join(cmds) * 2
        while not stop.value:
            if rate:
                due = int(rate * (time.monotonic() - began)) - made
                n = min(due, 2000)
                if n <= 0:
                    time.sleep(0.0005)
                    continue
            else:
                n = 1000
            at = made % 4000
            c.s.sendall(ring[at * size:(at + n) * size])
            c.expect_ok(n)
            made += n
        c.close()
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
    out.send((made, time.monotonic() - began, error))
    out.close()


class Load:
    def __init__(self, port, user, password, rate):
        ctx = multiprocessing.get_context("fork")
        self.stop_flag = ctx.RawValue("b", 0)
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_load_main, daemon=True,
                                args=(port, user, password, rate, self.stop_flag, send))
        self.proc.start()
        send.close()

    def finish(self):
        """(writes, writes per second) — fails when the load generator failed."""
        self.stop_flag.value = 1
        if not self.recv.poll(30):
            self.proc.kill()
            raise BenchError("the write load did not report")
        made, secs, error = self.recv.recv()
        self.proc.join(5)
        if error:
            raise BenchError(f"the write load failed after {made} writes: {error}")
        return made, made / secs

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def max_rate(port, user, password, seconds):
    load = Load(port, user, password, 0)
    try:
        time.sleep(seconds)
        return load.finish()[1]
    finally:
        load.kill()


# ---------------------------------------------------------------- the bench's sides

def stat(conn, section, key):
    return int(conn.info(section).get(key, 0))


def wait_snapshot(admin):
    """The replica's first snapshot written (Keyhaven has a replica that loaded diskless take
    one once current; the raw side does the same): a promotion then need not wait for one."""
    wait("the replica's first snapshot", lambda: (lambda i: i.get("rdb_bgsave_in_progress") == 0
                                                  and i.get("rdb_saves", 0) >= 1
                                                  and i.get("rdb_last_bgsave_status") == "ok")(
        admin.info("persistence")), timeout=300, poll=0.05)


def kh_create(side, name, marker, deadline=300):
    """POST a replica of side's primary; the time until GET shows it RUNNING with `marker`
    (written on the primary just before) readable on it."""
    kh = side.kh
    t0 = time.monotonic()
    kh.create(name, replica_of="primary")
    s = wait(f"{name} RUNNING", lambda: (lambda s: s if s["state"] == "RUNNING" else None)(kh.service(name)),
             timeout=deadline, poll=0.005)
    running = time.monotonic()
    port, user, password = R.uri_parts(s["service_uri"])
    c = R.connect(port, user, password)
    got = c.get(marker[0])
    c.close()
    if got != marker[1]:
        raise BenchError(f"Keyhaven replica {name} RUNNING without the write made before its creation: {got!r}")
    path, conf = kh.node_conf(port)
    admin = R.connect(port, "keyhaven-admin", R.conf_password(conf, "keyhaven-admin"))
    return {"ms": (running - t0) * 1000, "port": port, "admin": admin, "name": name}


def kh_drop(side, h):
    h["admin"].close()
    status, body = side.kh.req("DELETE", f"/service/{h['name']}")
    if status != 200:
        raise BenchError(f"delete {h['name']}: {status} {body}")


def raw_create(raw, name, marker, knobs, deadline=300):
    """Start a raw replica with Keyhaven's replica config plus `knobs`; the time from exec
    until it is current with `marker` readable."""
    port = raw._port()
    path, conf = raw.template
    conf = R.derive_conf(conf, path, port, raw._dir(name), primary_port=raw.port)
    conf += "".join(f"{k} {v}\n" for k, v in knobs.items())
    admin_pw = R.conf_password(conf, "keyhaven-admin")
    service_pw = R.conf_password(conf, raw.user)
    t0 = time.monotonic()
    raw._start(name, port, conf)
    admin = wait("the raw replica to answer", lambda: R.try_conn(port, "keyhaven-admin", admin_pw),
                 timeout=deadline)
    wait("the raw replica to be current", lambda: R.replica_current(raw.primary_admin, admin, port),
         timeout=deadline, poll=0.002)
    current = time.monotonic()
    c = R.connect(port, raw.user, service_pw)
    got = c.get(marker[0])
    c.close()
    if got != marker[1]:
        raise BenchError(f"raw replica {name} current without the write made before its start: {got!r}")
    admin.bgsave(schedule=True)
    return {"ms": (current - t0) * 1000, "port": port, "admin": admin, "name": name}


def raw_drop(raw, h):
    h["admin"].close()
    raw._stop(h["name"])
    shutil.rmtree(os.path.join(raw.tmp, h["name"]), ignore_errors=True)
    raw.ports.append(h["port"])


class PrimaryKnobs:
    """Sets the raw primary's side of a variant's knobs for a block, and restores them."""

    def __init__(self, raw, knobs):
        self.admin, self.knobs = raw.primary_admin, {k: v for k, v in knobs.items() if k in PRIMARY_KNOBS
                                                     or k in ("client-output-buffer-limit", "repl-backlog-size")}

    def __enter__(self):
        self.saved = {k: self.admin.config_get(k)[k] for k in self.knobs}
        for k, v in self.knobs.items():
            self.admin.config_set(k, v)

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            self.admin.config_set(k, v)


def quiet(kh, raw):
    """No fork on either primary (an AOF rewrite after the fill, a snapshot): a sync would
    wait for it, on one side only."""
    def idle(admin):
        i = admin.info("persistence")
        return i.get("aof_rewrite_in_progress") == 0 and i.get("rdb_bgsave_in_progress") == 0
    wait("both primaries without a child process", lambda: idle(kh.primary_admin) and idle(raw.primary_admin),
         timeout=300, poll=0.05)


def marker(primaries, i):
    m = (f"bench:marker:{i}", f"written before the replica {i}")
    for p in primaries:
        p.set(*m)
    return m


# ---------------------------------------------------------------- scenarios

def scenario_create(kh, raw, size, runs, log, variants):
    out = {k: [] for k in ["Keyhaven", *variants]}
    order = ["Keyhaven", *variants]
    for i in range(runs):
        for who in (order if i % 2 == 0 else order[::-1]):
            tag = f"c{size}-{i}-{order.index(who)}"
            quiet(kh, raw)
            m = marker([kh.primary, raw.primary], tag)
            if who == "Keyhaven":
                syncs = stat(kh.primary_admin, "stats", "sync_full")
                h = kh_create(kh, f"c{size}x{i}", m)
                full = stat(kh.primary_admin, "stats", "sync_full") - syncs
                kh_drop(kh, h)
            else:
                with PrimaryKnobs(raw, variants[who]):
                    syncs = stat(raw.primary_admin, "stats", "sync_full")
                    h = raw_create(raw, f"raw-c{size}-{order.index(who)}x{i}", m, variants[who])
                    full = stat(raw.primary_admin, "stats", "sync_full") - syncs
                    raw_drop(raw, h)
            if full != 1:
                raise BenchError(f"{who}: replica creation at {size} MiB took {full} full syncs, not 1")
            out[who].append(h["ms"])
            log(f"create at {size} MiB, {who}: {h['ms']:.0f} ms")
    return out


def scenario_promote(kh, raw, size, runs, log):
    out = {}
    for mode in ("idle", "load"):
        res = {"Keyhaven": [], "raw": []}
        for i in range(runs):
            for side in ((kh, raw) if i % 2 == 0 else (raw, kh)):
                quiet(kh, raw)
                h = side.create(f"p{mode}{i}")
                wait_snapshot(h["admin"])
                r = side.promote(h, idle=(mode == "idle"))
                side.cleanup(h, r["writes"])
                res[side.name].append(r)
                log(f"promotion at {size} MiB, {mode}, {side.name}: answer {r['promote_ms']:.1f} ms, "
                    f"writable {r['writable_ms']:.1f} ms" + (f", {r['writes']} writes, none lost" if r["writes"] else ""))
        out[mode] = res
    return out


def lag_samples(primary, replica, n, interval):
    """Each sample: a SET on the primary, then GETs on the replica until it is there; the
    time from the primary's acknowledgement to the replica's first answer holding it (ms)."""
    out = []
    for i in range(n):
        key = f"bench:lag:{i}"
        due = time.perf_counter() + interval
        primary.set(key, i)
        acked = time.perf_counter_ns()
        while replica.get(key) is None:
            pass
        out.append((time.perf_counter_ns() - acked) / 1e6)
        primary.unlink(key)
        left = due - time.perf_counter()
        if left > 0:
            time.sleep(left)
    return out


def scenario_lag(kh, raw, samples, blocks, rate, log):
    """Keyhaven pair and hand-wired pair under the same paced load, in alternating blocks."""
    khh = kh.create("lag")
    rawh = raw.create("lag")
    pairs = {
        "Keyhaven": (kh.primary, R.connect(khh["port"], khh["user"], khh["password"]), kh),
        "raw": (raw.primary, R.connect(rawh["port"], raw.user, rawh["service_pw"]), raw),
    }
    out = {"Keyhaven": [], "raw": []}
    rates = {"Keyhaven": [], "raw": []}
    reported = []
    try:
        for b in range(blocks):
            for name in (("Keyhaven", "raw") if b % 2 == 0 else ("raw", "Keyhaven")):
                primary, replica, side = pairs[name]
                load = Load(side.port, side.user, side.password, rate)
                try:
                    time.sleep(0.3)
                    out[name] += lag_samples(primary, replica, samples // blocks, 0.005)
                    if name == "Keyhaven":
                        rep = kh.kh.service(khh["name"]).get("keyhaven_replication") or {}
                        if rep.get("lag_ms") is not None:
                            reported.append(rep["lag_ms"])
                    rates[name].append(load.finish()[1])
                finally:
                    load.kill()
            log(f"lag block {b + 1}/{blocks}: Keyhaven p50 {statistics.median(out['Keyhaven']):.3f} ms, "
                f"raw p50 {statistics.median(out['raw']):.3f} ms")
    finally:
        pairs["Keyhaven"][1].close()
        pairs["raw"][1].close()
        kh.cleanup(khh, 0)
        raw.cleanup(rawh, 0)
    return {"lag": out, "rates": rates, "keyhaven_reported_ms": reported}


def scenario_under_load(kh, raw, size, seconds_max, deadline, log, with_defaults):
    """Calibrates one valkey-server's sustained SET rate (one pipelining connection, on the
    raw primary), then creates a replica of each side's primary under half of it."""
    top = max_rate(raw.port, raw.user, raw.password, seconds_max)
    max_rate(kh.port, kh.user, kh.password, 0.5)  # the same load keys on both primaries
    rate = int(top / 2)
    log(f"one valkey-server sustains {top:.0f} SET/s here (one pipelining connection); load: {rate}/s")
    res = {"max_rate": top, "rate": rate}
    cases = [("Keyhaven", None), ("raw, Keyhaven's config", {})]
    if with_defaults:
        cases.append(("raw, Valkey's defaults for the knobs Keyhaven sizes", VALKEY_DEFAULTS))
    for i, (who, knobs) in enumerate(cases):
        side = kh if knobs is None else raw
        quiet(kh, raw)
        load = Load(side.port, side.user, side.password, rate)
        try:
            time.sleep(1.0)
            m = marker([side.primary], f"load{i}")
            syncs = stat(side.primary_admin, "stats", "sync_full")
            try:
                if knobs is None:
                    h = kh_create(kh, f"load{i}", m, deadline=deadline)
                else:
                    # Valkey's defaults are expected to loop: a minute shows it.
                    with PrimaryKnobs(raw, knobs):
                        h = raw_create(raw, f"raw-load{i}", m, knobs,
                                       deadline=deadline if knobs == {} else min(deadline, 60))
                done, ms = True, h["ms"]
            except BenchError as e:
                if knobs is None or knobs == {}:
                    raise BenchError(f"{who}: a replica of {size} MiB under {rate} SET/s: {e}")
                done, ms, h = False, None, None
            full = stat(side.primary_admin, "stats", "sync_full") - syncs
            made, achieved = load.finish()
        finally:
            load.kill()
        if h:
            (kh_drop(kh, h) if knobs is None else raw_drop(raw, h))
        elif knobs is not None:
            raw._stop(f"raw-load{i}")
        if done and full != 1 and (knobs is None or knobs == {}):
            raise BenchError(f"{who}: the replica under load took {full} full syncs, not 1")
        res[who] = {"done": done, "ms": ms, "full_syncs": full, "achieved_rate": achieved}
        log(f"under load, {who}: " + (f"current in {ms:.0f} ms" if done else "not current within the deadline")
            + f", {full} full syncs, load achieved {achieved:.0f}/s")
    return res


# ---------------------------------------------------------------- report

def fmt(values):
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def ratio(a, b):
    return f"{statistics.median(a) / statistics.median(b):.2f}" if a and b and statistics.median(b) > 0 else "—"


def report(res, args):
    print(f"\n## bench/data.py — {res['header']}\n")
    if "create" in res:
        print("**Replica creation → RUNNING, a write made just before readable on it** "
              "(ms, median (min–max); Keyhaven: POST sent → GET shows RUNNING; raw: exec → current)\n")
        variants = [k for k in next(iter(res["create"].values())) if k != "Keyhaven"]
        print("| dataset | Keyhaven | " + " | ".join(variants) + " | Keyhaven ÷ best raw |")
        print("|---|---|" + "---|" * len(variants) + "---|")
        for size, v in res["create"].items():
            best = min(variants, key=lambda k: statistics.median(v[k]))
            print(f"| {size} MiB | {fmt(v['Keyhaven'])} | " + " | ".join(fmt(v[k]) for k in variants)
                  + f" | {ratio(v['Keyhaven'], v[best])} |")
    if "promote" in res:
        size, p = res["promote"]["size"], res["promote"]["runs"]
        print(f"\n**Promotion at {size} MiB** (ms, median (min–max); raw: the same node steps by hand)\n")
        print("| | Keyhaven: DELETE → writable | raw → writable | Keyhaven: DELETE → answer | raw → answer "
              "| ratio (answer) | writes acknowledged and lost |")
        print("|---|---|---|---|---|---|---|")
        for mode, r in p.items():
            K, W = r["Keyhaven"], r["raw"]
            c = lambda rs, k: [x[k] for x in rs]
            lost = "—" if mode == "idle" else (
                f"{sum(c(K, 'writes'))} / {sum(c(W, 'writes'))} written, 0 lost")
            print(f"| {mode} | {fmt(c(K, 'writable_ms'))} | {fmt(c(W, 'writable_ms'))} | {fmt(c(K, 'promote_ms'))} "
                  f"| {fmt(c(W, 'promote_ms'))} | {ratio(c(K, 'promote_ms'), c(W, 'promote_ms'))} | {lost} |")
        pauses = [x["pause_self_ms"] for r in p.values() for x in r["Keyhaven"]]
        print(f"\nKeyhaven's write pause (`write_pause_us`): {fmt(pauses)} ms")
    if "lag" in res:
        lag = res["lag"]
        K, W = sorted(lag["lag"]["Keyhaven"]), sorted(lag["lag"]["raw"])
        print(f"\n**Replication lag under {args.lag_rate} SET/s** (ms from the primary's acknowledgement of a "
              f"write to the replica's first answer holding it; {len(K)} samples per pair)\n")
        print("| pair | p50 | p99 | max | load achieved (SET/s) |\n|---|---|---|---|---|")
        for name, v in (("Keyhaven", K), ("hand-wired", W)):
            rates = lag["rates"]["Keyhaven" if name == "Keyhaven" else "raw"]
            print(f"| {name} | {R.nearest_rank(v, 50):.3f} | {R.nearest_rank(v, 99):.3f} | {max(v):.3f} "
                  f"| {statistics.median(rates):.0f} |")
        print(f"\np99 ratio Keyhaven ÷ hand-wired: {R.nearest_rank(K, 99) / R.nearest_rank(W, 99):.2f}; "
              f"Keyhaven's own `lag_ms` during the blocks: {lag['keyhaven_reported_ms']}")
    if "under_load" in res:
        u = res["under_load"]
        print(f"\n**A replica of {u['size']} MiB created under half of one valkey-server's rate** "
              f"({u['rate']} SET/s of {u['max_rate']:.0f})\n")
        print("| | current | full syncs | load achieved (SET/s) |\n|---|---|---|---|")
        for who, r in u.items():
            if isinstance(r, dict):
                print(f"| {who} | {'%.0f ms' % r['ms'] if r['done'] else 'not within the deadline'} "
                      f"| {r['full_syncs']} | {r['achieved_rate']:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, one run each: correctness only")
    ap.add_argument("--bin", help="the keyhaven binary (default target/debug/keyhaven)")
    ap.add_argument("--sizes", help="dataset sizes in MiB for creation (default 0,100,1024; quick 0,8)")
    ap.add_argument("--runs", type=int, help="runs per size and side (default 4; quick 1)")
    ap.add_argument("--only", default="create,promote,lag,load", help="scenarios to run")
    ap.add_argument("--lag-rate", type=int, default=20000, help="SET/s during the lag measurement")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()
    sizes = [int(x) for x in (args.sizes or ("0,8" if args.quick else "0,100,1024")).split(",")]
    runs = args.runs or (1 if args.quick else 4)
    only = set(args.only.split(","))
    binary = args.bin or os.path.join(ROOT, "target/debug/keyhaven")
    if not os.path.exists(binary):
        raise SystemExit(f"{binary} is missing: `cargo build -p keyhaven` (or --bin)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log = lambda s: print(s, file=sys.stderr, flush=True)

    began, load0 = time.monotonic(), os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="keyhaven-bench-data-")
    base = 62000 + (os.getpid() % 10) * 300
    kh = raw = None
    res = {}
    try:
        kh = R.KeyhavenSide(binary, tmp, (base, base + 149), 0)
        raw = R.RawSide(tmp, range(base + 150, base + 300), kh, 0)
        R.warm_up(kh, raw)
        targets = [(kh.port, kh.user, kh.password), (raw.port, raw.user, raw.password)]
        if "lag" in only:
            res["lag"] = scenario_lag(kh, raw, 200 if args.quick else 3000, 2 if args.quick else 10,
                                      args.lag_rate, log)
        keys = 0
        for size in sorted(sizes):
            want = size * 1024 * 1024 // VALUE_BYTES
            t = time.monotonic()
            fill(targets, keys, want - keys)
            keys = want
            log(f"both primaries hold {size} MiB of random values ({keys} keys, {time.monotonic() - t:.1f} s)")
            if "create" in only:
                res.setdefault("create", {})[size] = scenario_create(kh, raw, size, runs, log, RAW_VARIANTS)
        top = max(sizes)
        if "promote" in only:
            res["promote"] = {"size": top, "runs": scenario_promote(kh, raw, top, runs, log)}
        if "load" in only:
            res["under_load"] = {"size": top, **scenario_under_load(
                kh, raw, top, 1 if args.quick else 3, 60 if args.quick else 180, log, not args.quick)}
    finally:
        for side in (raw, kh):
            if side:
                try:
                    side.stop()
                except Exception as e:
                    print(f"cleanup: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    res["header"] = (f"{os.path.relpath(binary, ROOT)} at {git('rev-parse', '--short', 'HEAD')}, {runs} runs per "
                     f"size and side, {os.cpu_count()} cores, load average {load0:.1f} → {os.getloadavg()[0]:.1f}, "
                     f"{time.monotonic() - began:.0f} s")
    report(res, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
