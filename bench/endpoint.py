#!/usr/bin/env python3
"""Keyhaven's endpoint process (`keyhaven endpoint --dir D`, crates/keyhaven-endpoint) against
connecting to valkey-server directly and against HAProxy doing the same TLS termination,
measured in one run:

- throughput and latency through the plain reader endpoint and the plain service endpoint,
  beside the same load sent straight to the valkey-server behind them (goal: the reader at
  least 95 % of direct throughput, at most 0.05 ms added to the p50);
- the TLS service endpoint beside HAProxy terminating TLS in front of the same valkey-server
  (goal: at least HAProxy's throughput, no worse p99); HAProxy's plain TCP proxying is shown
  beside the plain endpoints too;
- memory per idle connection: 1 000 plain and 1 000 TLS connections (handshake done, one
  AUTH and PING each) held open on the endpoint and on HAProxy, VmRSS before and after.

    .venv/bin/python bench/endpoint.py --quick                    # correctness only (CI), small -n
    .venv/bin/python bench/endpoint.py --bin target/release/keyhaven  # the figures: 3 reps each
    .venv/bin/python bench/endpoint.py --reps 5 --threads 1 --json out.json

The load is `redis-benchmark` (Debian's redis-tools 7.0: `--tls --cacert` for TLS), SET and
GET each in its own invocation, 50 connections, `-P 1` and `-P 16`, a fixed -n per case; its
`--csv` line gives requests/s and the p50/p99 it measured. The paths are run in turn, the
order reversed on every other repetition, so every path sees the same machine. Each run also
reads the CPU time the proxy process (and valkey-server) used, from /proc/PID/stat: on
2 cores the load generator competes with both ends, and CPU per request tells where the
cost is when throughput alone is the client's limit.

What runs, all on free 127.0.0.1 ports, stopped at the end also on failure (and with the bench
if it is killed: PR_SET_PDEATHSIG):
- one valkey-server (.venv/bin/valkey-server) with a minimal config: `requirepass` (the
  `default` user has a password, as the `default:PASSWORD` in Keyhaven's service URIs), no
  persistence (`save ""`, `appendonly no`) so no fsync or fork shows in the figures. Every path
  ends at this one server, so its config is the same for all of them.
- `keyhaven endpoint --dir D` (the binary of --bin) with a routes.json written here: a plain
  `service` listener, a TLS `service` listener, and a plain `reader` listener whose one replica
  is that valkey-server with `lag_ms` 0, `max_lag_ms` 1000 (the default of
  `valkey_reader_max_lag_ms`) and `fallback: refuse`. Its `lag_as_of_ms` is rewritten every
  200 ms (a new routes.json by rename, as the control plane writes it), so the figures stay
  fresh and every reader connection is routed to the replica by its lag, never by a fallback;
  a check proves it (stale figures: the reader refuses new connections). The endpoint applies
  those rewrites while it carries the load, as it would in production.
- HAProxy (Debian's `haproxy`, scripts/setup installs it) with `mode tcp`: one frontend
  `bind ... ssl crt FILE` (TLS termination, HAProxy's default TLS 1.2+ and ciphers) and one
  plain frontend, both to the same valkey-server.
- Certificates from `openssl`, shaped like Keyhaven's (control/ca.rs): an ECDSA P-256 CA
  (pathlen 0) and a P-256 leaf with SAN IP:127.0.0.1 and serverAuth; the leaf and its key
  in one file, mode 0600, as the runtime writes a listener's certificate
  (runtime/local/endpoint.rs) — both the endpoint and HAProxy read that same file.
- Threads: the endpoint is a tokio multi-thread runtime, one worker per core; HAProxy is
  given `nbthread` = the core count (its own default too). `--threads N` gives both N
  (`nbthread N`, TOKIO_WORKER_THREADS=N). Both thread counts are read from /proc and
  printed.

Checks, in every mode (the bench fails, naming the reason, when one does not hold; never on a
timing): a SET through each path is read back directly from the valkey-server; a TLS client
trusting another CA fails verification against both the endpoint and HAProxy; the reader with
stale lag figures refuses new connections and serves again once they are fresh; every
redis-benchmark run completes its requests; the endpoint and HAProxy are alive at the end.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import valkey  # noqa: F401  (valkey-py, in .venv: bench/replicas.py needs it)
except ImportError:
    _python = os.path.join(ROOT, ".venv", "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")) and os.access(_python, os.X_OK):
        os.execv(_python, [_python, os.path.abspath(__file__), *sys.argv[1:]])
    raise SystemExit("bench/endpoint.py needs scripts/setup (valkey-py in .venv)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from replicas import BenchError, die_with_parent, wait  # noqa: E402

VALKEY = os.path.join(ROOT, ".venv/bin/valkey-server")
PASSWORD = "bench-" + os.urandom(12).hex()
CLIENTS = 50
PIPELINES = (1, 16)
COMMANDS = ("SET", "GET")
LAG_REFRESH_S = 0.2
MAX_LAG_MS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The paths a load can take to the one valkey-server: (label, proxy process or None, port key, TLS).
PATHS = [
    ("direct", None, "valkey", False),
    ("reader endpoint", "endpoint", "reader", False),
    ("service endpoint", "endpoint", "service", False),
    ("HAProxy plain", "haproxy", "haproxy_plain", False),
    ("service endpoint TLS", "endpoint", "service_tls", True),
    ("HAProxy TLS", "haproxy", "haproxy_tls", True),
]


def log(s):
    print(s, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- RESP over a socket

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Client:
    """One connection (plain, or TLS verified against `cafile`), AUTHed as `default`."""

    def __init__(self, port, cafile=None, auth=True, timeout=10):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
            self.s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")  # handshake, verified
        else:
            self.s = raw
        self.buf = b""
        if auth:
            self.call("AUTH", "default", PASSWORD, expect=b"+OK")

    def cipher(self):
        return self.s.version(), self.s.cipher()[0]

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise BenchError("the connection closed before a reply")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise BenchError("the connection closed inside a reply")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"-":
            raise BenchError(f"error reply: {rest.decode(errors='replace')}")
        return line

    def call(self, *args, expect=None):
        self.s.sendall(resp(*args))
        got = self.reply()
        if expect is not None and got != expect:
            raise BenchError(f"{args[0]}: expected {expect!r}, got {got!r}")
        return got

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- /proc

def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field}")


def rss_kib(pid):
    return proc_status(pid, "VmRSS")


def cpu_s(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------- what runs

class Stack:
    """The valkey-server, the endpoint, HAProxy and their files; `stop` ends them all."""

    def __init__(self, binary, tmp, threads):
        self.binary, self.tmp, self.threads = binary, tmp, threads
        self.procs = {}
        self.ports = dict(zip(("valkey", "reader", "service", "service_tls", "haproxy_plain", "haproxy_tls"),
                              free_ports(6)))
        self.lag_stop = threading.Event()
        self.lag_paused = threading.Event()
        self.lag_error = None
        self.lag_thread = None

    def spawn(self, name, argv, env=None):
        logf = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent, cwd=self.tmp, env=env)
        logf.close()
        self.procs[name] = p
        return p

    def pid(self, name):
        return self.procs[name].pid

    def alive(self, name):
        p = self.procs[name]
        if p.poll() is not None:
            raise BenchError(f"{name} exited with {p.returncode}; its log: {self.log_tail(name)}")

    def log_tail(self, name, n=800):
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return "(none)"

    # -- certificates

    def openssl(self, *args):
        r = subprocess.run(["openssl", *args], cwd=self.tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"openssl {' '.join(args[:2])}: {r.stderr.strip()}")

    def make_ca(self, name):
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj",
                     f"/O=Keyhaven/CN=Keyhaven bench {name}", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        return os.path.join(self.tmp, f"{name}.pem")

    def make_certs(self):
        self.ca = self.make_ca("ca")
        self.other_ca = self.make_ca("other-ca")
        with open(os.path.join(self.tmp, "leaf.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1")
        self.openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-days", "2", "-sha256", "-extfile", "leaf.ext", "-out", "leaf.pem")
        # As the runtime writes it: the chain (here the leaf alone, as control/ca.rs signs
        # it), then the key, one file, 0600.
        certs = os.path.join(self.tmp, "endpoint", "certs")
        os.makedirs(certs, exist_ok=True)
        self.cert_file = os.path.join(certs, "bench-service-tls.pem")
        with open(os.path.join(self.tmp, "leaf.pem")) as c, open(os.path.join(self.tmp, "leaf.key")) as k:
            pem = c.read().rstrip() + "\n" + k.read().rstrip() + "\n"
        fd = os.open(self.cert_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)

    # -- valkey-server

    def start_valkey(self):
        d = os.path.join(self.tmp, "valkey")
        os.makedirs(d)
        conf = os.path.join(d, "valkey.conf")
        with open(conf, "w") as f:
            f.write(f"bind 127.0.0.1\nport {self.ports['valkey']}\nrequirepass {PASSWORD}\nsave \"\"\n"
                    f"appendonly no\ndir {d}\ndaemonize no\nlogfile \"\"\n")
        os.chmod(conf, 0o600)
        self.spawn("valkey-server", [VALKEY, conf])
        wait("valkey-server to answer", lambda: (self.alive("valkey-server"), port_answers(self.ports["valkey"]))[1],
             timeout=20, poll=0.02)

    # -- the endpoint

    def routes(self, lag_as_of_ms):
        primary = {"host": "127.0.0.1", "port": self.ports["valkey"]}
        base = lambda name, port, tls: {"name": name, "bind": "127.0.0.1", "port": port, "tls": tls,
                                        "primary": primary}
        return {"listeners": [
            {**base("bench-service", self.ports["service"], None), "kind": "service"},
            {**base("bench-service-tls", self.ports["service_tls"], {"cert": self.cert_file, "key": self.cert_file}),
             "kind": "service"},
            {**base("bench-reader", self.ports["reader"], None), "kind": "reader",
             "replicas": [{"id": "bench-replica", "host": "127.0.0.1", "port": self.ports["valkey"], "lag_ms": 0}],
             "max_lag_ms": MAX_LAG_MS, "lag_as_of_ms": lag_as_of_ms, "fallback": "refuse", "grace_ms": 5000},
        ]}

    def write_routes(self, lag_as_of_ms):
        d = os.path.join(self.tmp, "endpoint")
        part = os.path.join(d, "routes.json.tmp")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.routes(lag_as_of_ms), f)
        os.replace(part, os.path.join(d, "routes.json"))

    def _lag_loop(self):
        try:
            while not self.lag_stop.wait(LAG_REFRESH_S):
                if not self.lag_paused.is_set():
                    self.write_routes(int(time.time() * 1000))
        except Exception as e:  # reported by check_lag_thread
            self.lag_error = e

    def check_lag_thread(self):
        if self.lag_error or (self.lag_thread and not self.lag_thread.is_alive()):
            raise BenchError(f"the routes refresher stopped: {self.lag_error}")

    def start_endpoint(self):
        self.write_routes(int(time.time() * 1000))
        # tokio's multi-thread runtime takes its worker count from TOKIO_WORKER_THREADS when
        # set (the binary sets none itself): one per core by default.
        env = {k: v for k, v in os.environ.items() if k != "TOKIO_WORKER_THREADS"}
        if self.threads:
            env["TOKIO_WORKER_THREADS"] = str(self.threads)
        self.spawn("endpoint", [self.binary, "endpoint", "--dir", os.path.join(self.tmp, "endpoint")], env=env)
        self.lag_thread = threading.Thread(target=self._lag_loop, daemon=True)
        self.lag_thread.start()
        for key in ("service", "service_tls", "reader"):
            wait(f"the endpoint's {key} listener",
                 lambda: (self.alive("endpoint"), port_answers(self.ports[key]))[1], timeout=20, poll=0.02)

    # -- HAProxy

    def start_haproxy(self, haproxy):
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    nbthread {self.threads or os.cpu_count()}
    # Two descriptors per connection must fit the hard limit of open files (often 20 000).
    maxconn 8192
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    maxconn 8192
    timeout connect 2s
    timeout client 1h
    timeout server 1h

frontend valkey_tls
    bind 127.0.0.1:{self.ports['haproxy_tls']} ssl crt {self.cert_file}
    default_backend valkey

frontend valkey_plain
    bind 127.0.0.1:{self.ports['haproxy_plain']}
    default_backend valkey

backend valkey
    server valkey 127.0.0.1:{self.ports['valkey']}
""")
        r = subprocess.run([haproxy, "-c", "-q", "-f", cfg], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"haproxy -c: {r.stdout}{r.stderr}")
        self.spawn("haproxy", [haproxy, "-db", "-f", cfg])
        for key in ("haproxy_plain", "haproxy_tls"):
            wait(f"HAProxy's {key} frontend", lambda: (self.alive("haproxy"), port_answers(self.ports[key]))[1],
                 timeout=20, poll=0.02)

    def stop(self):
        self.lag_stop.set()
        for name, p in reversed(list(self.procs.items())):
            if p.poll() is None:
                p.terminate()
        for name, p in self.procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self.lag_thread:
            self.lag_thread.join(2)


# ---------------------------------------------------------------- checks

def check_paths(st):
    """A SET through every path, read back directly; the TLS session each TLS path gives."""
    direct = Client(st.ports["valkey"])
    ciphers = {}
    try:
        for label, _, key, tls in PATHS:
            value = os.urandom(16).hex()
            c = Client(st.ports[key], cafile=st.ca if tls else None)
            try:
                c.call("SET", f"bench:endpoint:{key}", value, expect=b"+OK")
                if tls:
                    ciphers[label] = " ".join(c.cipher())
            finally:
                c.close()
            got = direct.call("GET", f"bench:endpoint:{key}")
            if got != value.encode():
                raise BenchError(f"a SET through {label} reads back directly as {got!r}, not {value!r}")
            direct.call("DEL", f"bench:endpoint:{key}")
    finally:
        direct.close()
    log("checked: a SET through each path reads back directly")
    return ciphers


def check_wrong_ca(st):
    for label, key in (("the endpoint", "service_tls"), ("HAProxy", "haproxy_tls")):
        try:
            c = Client(st.ports[key], cafile=st.other_ca, auth=False)
        except ssl.SSLCertVerificationError:
            continue
        c.close()
        raise BenchError(f"a client trusting another CA completed a TLS handshake with {label}")
    log("checked: a client trusting another CA fails verification against the endpoint and HAProxy")


def check_reader_routes_by_lag(st):
    """With stale lag figures and `fallback: refuse`, the reader refuses new connections: a
    connection it accepts went to the replica because of its measured lag."""
    st.lag_paused.set()
    try:
        time.sleep(LAG_REFRESH_S * 1.5)  # a refresh in flight has landed
        st.write_routes(int(time.time() * 1000) - 10 * MAX_LAG_MS)

        def refused():
            try:
                c = Client(st.ports["reader"], auth=False, timeout=2)
            except OSError:
                return True
            try:
                c.s.sendall(resp("PING"))
                return c.s.recv(64) == b""
            except OSError:
                return True
            finally:
                c.close()
        wait("the reader to refuse new connections on stale lag figures", refused, timeout=10, poll=0.05)
    finally:
        st.lag_paused.clear()
    st.write_routes(int(time.time() * 1000))

    def serves():
        try:
            c = Client(st.ports["reader"], timeout=2)
        except (OSError, BenchError):
            return False
        try:
            return c.call("PING") == b"+PONG"
        except (OSError, BenchError):
            return False
        finally:
            c.close()
    wait("the reader to serve again on fresh figures", serves, timeout=10, poll=0.05)
    log("checked: the reader refuses new connections on stale lag figures and serves on fresh ones")


# ---------------------------------------------------------------- load

def bench_run(st, label, proc, key, tls, command, pipeline, n):
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(st.ports[key]), "-a", PASSWORD,
            "-c", str(CLIENTS), "-n", str(n), "-P", str(pipeline), "-t", command.lower(), "--csv"]
    if tls:
        argv += ["--tls", "--cacert", st.ca]
    pids = {"valkey": st.pid("valkey-server")}
    if proc:
        pids["proxy"] = st.pid(proc)
    cpu0 = {k: cpu_s(p) for k, p in pids.items()}
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, preexec_fn=die_with_parent)
    wall = time.monotonic() - t0
    cpu = {k: cpu_s(p) - cpu0[k] for k, p in pids.items()}
    rows = [row for row in csv.DictReader(io.StringIO(r.stdout)) if row.get("test") == command]
    if r.returncode != 0 or len(rows) != 1:
        raise BenchError(f"redis-benchmark {command} -P {pipeline} against {label} failed (exit {r.returncode}): "
                         f"{r.stdout[-400:]}{r.stderr[-400:]}")
    row = rows[0]
    rps = float(row["rps"])
    if rps <= 0:
        raise BenchError(f"redis-benchmark against {label}: no requests completed")
    out = {"rps": rps, "p50": float(row["p50_latency_ms"]), "p99": float(row["p99_latency_ms"]),
           "avg": float(row["avg_latency_ms"]), "wall_s": wall,
           # CPU µs per request, of the proxy (endpoint or HAProxy) and of valkey-server.
           "valkey_cpu_us": cpu["valkey"] / n * 1e6}
    if proc:
        out["proxy_cpu_us"] = cpu["proxy"] / n * 1e6
    return out


def scenario_load(st, reps, n_by_pipeline):
    res = {label: {} for label, *_ in PATHS}
    for rep in range(reps):
        order = PATHS if rep % 2 == 0 else PATHS[::-1]
        for pipeline in PIPELINES:
            for command in COMMANDS:
                for label, proc, key, tls in order:
                    r = bench_run(st, label, proc, key, tls, command, pipeline, n_by_pipeline[pipeline])
                    res[label].setdefault(f"{command} -P {pipeline}", []).append(r)
                    log(f"rep {rep + 1}/{reps} {command} -P {pipeline} {label}: {r['rps']:.0f} req/s, "
                        f"p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms"
                        + (f", proxy {r['proxy_cpu_us']:.2f} CPU µs/req" if proc else ""))
                st.alive("endpoint")
                st.alive("haproxy")
                st.check_lag_thread()
    return res


# ---------------------------------------------------------------- idle connections

def hold(port, n, cafile):
    """Opens n connections, each with its TLS handshake done (if cafile) and AUTH + PING
    answered through it (both sent at once, both replies read)."""
    conns = []
    try:
        for _ in range(n):
            c = Client(port, cafile=cafile, auth=False)
            conns.append(c)
            c.s.sendall(resp("AUTH", "default", PASSWORD) + resp("PING"))
            if c.reply() != b"+OK" or c.reply() != b"+PONG":
                raise BenchError("AUTH + PING through a held connection did not answer +OK +PONG")
        return conns
    except BaseException:
        for c in conns:
            c.close()
        raise


def settled_rss(pid):
    time.sleep(1.0)
    return rss_kib(pid)


def scenario_memory(st, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise BenchError(f"holding {2 * n} connections needs {need} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    out = {}
    for who, proc, plain_key, tls_key in (("Keyhaven endpoint", "endpoint", "service", "service_tls"),
                                          ("HAProxy", "haproxy", "haproxy_plain", "haproxy_tls")):
        pid = st.pid(proc)
        held = []
        try:
            before = settled_rss(pid)
            held += hold(st.ports[plain_key], n, None)
            plain = settled_rss(pid)
            held += hold(st.ports[tls_key], n, st.ca)
            tls = settled_rss(pid)
        finally:
            for c in held:
                c.close()
        after_close = settled_rss(pid)
        out[who] = {"before_kib": before, "plain_kib": plain, "tls_kib": tls, "after_close_kib": after_close,
                    "plain_per_conn_kib": (plain - before) / n, "tls_per_conn_kib": (tls - plain) / n,
                    "threads": proc_status(pid, "Threads")}
        log(f"{who}: VmRSS {before} KiB → {plain} with {n} plain → {tls} with {n} TLS more → {after_close} "
            f"once closed")
    return out


# ---------------------------------------------------------------- report

def med(rs, k):
    return statistics.median(r[k] for r in rs)


def cell(rs, k, f="{:.3f}"):
    vals = [r[k] for r in rs]
    if len(vals) == 1:
        return f.format(vals[0])
    return f"{f.format(statistics.median(vals))} ({f.format(min(vals))}–{f.format(max(vals))})"


def report(res):
    print(f"\n## bench/endpoint.py — {res['header']}\n")
    print(f"{res['setup']}\n")
    load = res["load"]
    cases = list(load["direct"])
    print("**Plain paths** (redis-benchmark, 50 connections; requests/s and ms: median (min–max) over the "
          "repetitions; p50 added: the path's median p50 − direct's; proxy CPU: µs of the proxy process's CPU "
          "time per request)\n")
    print("| case | path | requests/s | ÷ direct | p50 ms | p50 added | p99 ms | proxy CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        d = load["direct"][case]
        for label in ("direct", "reader endpoint", "service endpoint", "HAProxy plain"):
            rs = load[label][case]
            ratio = med(rs, "rps") / med(d, "rps")
            added = med(rs, "p50") - med(d, "p50")
            cpu = cell(rs, "proxy_cpu_us", "{:.2f}") if "proxy_cpu_us" in rs[0] else "—"
            print(f"| {case} | {label} | {cell(rs, 'rps', '{:.0f}')} | {ratio:.3f} | {cell(rs, 'p50')} | "
                  f"{'—' if label == 'direct' else f'{added:+.3f}'} | {cell(rs, 'p99')} | {cpu} |")
    print("\n**TLS termination**, Keyhaven's TLS service endpoint against HAProxy's (same certificate file, "
          f"same valkey-server; negotiated: {res['ciphers']})\n")
    print("| case | Keyhaven requests/s | HAProxy requests/s | Keyhaven ÷ HAProxy | p50 ms Keyhaven / HAProxy | "
          "p99 ms Keyhaven / HAProxy | proxy CPU µs/req Keyhaven / HAProxy |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        k, h = load["service endpoint TLS"][case], load["HAProxy TLS"][case]
        print(f"| {case} | {cell(k, 'rps', '{:.0f}')} | {cell(h, 'rps', '{:.0f}')} | "
              f"{med(k, 'rps') / med(h, 'rps'):.3f} | {med(k, 'p50'):.3f} / {med(h, 'p50'):.3f} | "
              f"{med(k, 'p99'):.3f} / {med(h, 'p99'):.3f} | {med(k, 'proxy_cpu_us'):.2f} / "
              f"{med(h, 'proxy_cpu_us'):.2f} |")
    mem, n = res["memory"], res["idle_connections"]
    print(f"\n**Idle connections** ({n} plain, then {n} TLS more, each with AUTH + PING answered; VmRSS of the "
          "proxy process, read 1 s after the last one opened)\n")
    print("| process | threads | VmRSS before | + plain | + TLS | KiB per plain connection | KiB per TLS connection "
          "| VmRSS once closed |")
    print("|---|---|---|---|---|---|---|---|")
    for who, m in mem.items():
        print(f"| {who} | {m['threads']} | {m['before_kib'] / 1024:.1f} MiB | {m['plain_kib'] / 1024:.1f} MiB "
              f"| {m['tls_kib'] / 1024:.1f} MiB | {m['plain_per_conn_kib']:.1f} | {m['tls_per_conn_kib']:.1f} "
              f"| {m['after_close_kib'] / 1024:.1f} MiB |")
    print("\n**Goals** (reported, never asserted)\n")
    for line in goals(res):
        print(f"- {line}")


def goals(res):
    load, out = res["load"], []
    for case in load["direct"]:
        d, r = load["direct"][case], load["reader endpoint"][case]
        ratio, added = med(r, "rps") / med(d, "rps"), med(r, "p50") - med(d, "p50")
        out.append(f"reader ≥ 95 % of direct, p50 added ≤ 0.05 ms, {case}: {100 * ratio:.1f} %, "
                   f"{added:+.3f} ms — {'met' if ratio >= 0.95 and added <= 0.05 else 'NOT met'}")
    for case in load["direct"]:
        k, h = load["service endpoint TLS"][case], load["HAProxy TLS"][case]
        ratio = med(k, "rps") / med(h, "rps")
        out.append(f"TLS endpoint ≥ HAProxy's throughput and p99 no worse, {case}: {100 * ratio:.1f} %, p99 "
                   f"{med(k, 'p99'):.3f} vs {med(h, 'p99'):.3f} ms — "
                   f"{'met' if ratio >= 1 and med(k, 'p99') <= med(h, 'p99') else 'NOT met'}")
    return out


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, small -n, 200 idle connections: checks only")
    ap.add_argument("--bin", help="the keyhaven binary (default target/debug/keyhaven, the test build)")
    ap.add_argument("--reps", type=int, help="repetitions of every case (default 3; quick 1)")
    ap.add_argument("-n", type=int, help="requests per run without pipelining (default 200000; quick 5000); "
                                         "10× that with -P 16")
    ap.add_argument("--idle", type=int, help="idle connections of each kind (default 1000; quick 200)")
    ap.add_argument("--threads", type=int, help="worker threads of both proxies: HAProxy's nbthread and the "
                                                "endpoint's TOKIO_WORKER_THREADS (default: one per core, each "
                                                "one's own default)")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    n = args.n or (5000 if args.quick else 200_000)
    idle = args.idle or (200 if args.quick else 1000)
    binary = os.path.abspath(args.bin or os.path.join(ROOT, "target/debug/keyhaven"))
    if not os.path.exists(binary):
        raise SystemExit(f"{binary} is missing: `cargo build -p keyhaven` (or --bin)")
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)
    for tool, path in (("haproxy", haproxy), ("redis-benchmark", shutil.which("redis-benchmark")),
                       ("openssl", shutil.which("openssl")), ("valkey-server", VALKEY if os.access(VALKEY, os.X_OK)
                                                             else None)):
        if not path:
            raise SystemExit(f"bench/endpoint.py needs {tool}: run scripts/setup")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began, load0 = time.monotonic(), os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="keyhaven-bench-endpoint-")
    st = Stack(binary, tmp, args.threads)
    res = {}
    try:
        st.make_certs()
        st.start_valkey()
        st.start_endpoint()
        st.start_haproxy(haproxy)
        ciphers = check_paths(st)
        check_wrong_ca(st)
        check_reader_routes_by_lag(st)
        res["ciphers"] = "; ".join(f"{k}: {v}" for k, v in ciphers.items())
        res["idle_connections"] = idle
        res["memory"] = scenario_memory(st, idle)
        res["load"] = scenario_load(st, reps, {1: n, 16: 10 * n})
        check_paths(st)
        st.alive("endpoint")
        st.alive("haproxy")
        st.alive("valkey-server")
        threads = {k: proc_status(st.pid(k), "Threads") for k in ("endpoint", "haproxy")}
    except BaseException:
        for name in st.procs:
            log(f"--- {name}'s log (tail):\n{st.log_tail(name)}")
        raise
    finally:
        st.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    words = lambda s, n: " ".join(s.split()[:n])
    version = lambda *argv: subprocess.run(argv, capture_output=True, text=True).stdout.split("\n")[0].strip()
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1024 / 1024
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    res["header"] = (f"{os.path.relpath(binary, ROOT)} at {git('rev-parse', '--short', 'HEAD')}{dirty}, {reps} "
                     f"repetitions, -n {n} (-P 1) / {10 * n} (-P 16), {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
                     f"load average {load0[0]:.2f} → {os.getloadavg()[0]:.2f}, {time.monotonic() - began:.0f} s")
    workers = f"TOKIO_WORKER_THREADS={args.threads}" if args.threads else "one worker per core"
    res["setup"] = (f"{words(version(VALKEY, '--version'), 3)}; {words(version(haproxy, '-v'), 3)} (`nbthread "
                    f"{args.threads or os.cpu_count()}`: {threads['haproxy']} threads); the endpoint: tokio "
                    f"multi-thread, {workers}: {threads['endpoint']} threads (the workers and the main thread); "
                    f"{version('redis-benchmark', '--version')}; "
                    f"{words(version('openssl', 'version'), 2)}; routes.json rewritten every {LAG_REFRESH_S * 1000:.0f} ms "
                    "during the whole run")
    report(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(1)
