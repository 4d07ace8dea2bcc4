#!/usr/bin/env python3
"""The API's latency at a fixed request rate, and Keyhaven's own memory, with N services.

    .venv/bin/python bench/api.py                 # target/debug/keyhaven, 50 services, 200 req/s for 10 s
    .venv/bin/python bench/api.py --bin target/release/keyhaven --services 50 --rate 200 --seconds 30

It starts a `keyhaven server` on a temporary data directory and free loopback ports, creates
N services (plan hobbyist, each its real valkey-server), waits until every one is RUNNING,
then sends `GET /v1/project/default/service/S` (S cycling over the services) at a fixed
rate from one client with keep-alive connections, open-loop: each request is sent at its
scheduled time whether or not the previous one answered, and its latency is counted from
that time, so a stall shows as latency, not as fewer requests. It reports p50/p99/max and
the server's RSS (VmRSS of the keyhaven process alone, not its valkey-servers) before and
after. It fails when a request fails. Everything it started is stopped at the end.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALKEY = os.path.join(ROOT, ".venv/bin/valkey-server")


def free_range(n):
    """A block of n ports, each free now."""
    for base in range(33000, 60000, n + 10):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base, base + n - 1
    raise SystemExit("no free port block")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/keyhaven"))
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin} is missing: build it with `cargo build -p keyhaven`")

    tmp = tempfile.mkdtemp(prefix="keyhaven-api-bench-")
    data = os.path.join(tmp, "data")
    lo, hi = free_range(args.services + 5)
    server = subprocess.Popen(
        [args.bin, "server", "--listen", "127.0.0.1:0", "--data-dir", data,
         "--valkey-server", VALKEY, "--valkey-ports", f"{lo}-{hi}",
         "--max-services-per-project", str(args.services + 5)],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "w"))
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(data, "listen-addr")):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("keyhaven did not start: " + open(os.path.join(tmp, "server.log")).read()[-2000:])
            time.sleep(0.05)
        time.sleep(0.05)
        host, port = open(os.path.join(data, "listen-addr")).read().strip().rsplit(":", 1)
        token = open(os.path.join(data, "admin-token")).read().strip()
        headers = {"authorization": f"aivenv1 {token}", "content-type": "application/json"}

        def call(conn, method, path, body=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"{}")

        c = http.client.HTTPConnection(host, int(port), timeout=30)
        names = [f"svc-{i:02d}" for i in range(args.services)]
        for n in names:
            status, body = call(c, "POST", "/v1/project/default/service",
                                {"service_name": n, "service_type": "valkey", "plan": "hobbyist"})
            if status != 200:
                raise SystemExit(f"create {n}: {status} {body}")
        deadline = time.monotonic() + 120
        while True:
            status, body = call(c, "GET", "/v1/project/default/service")
            states = [s["state"] for s in body.get("services", [])]
            if len(states) == args.services and all(s == "RUNNING" for s in states):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"services not RUNNING after 120 s: {states}")
            time.sleep(0.2)
        time.sleep(2)  # the reconciler settles into its idle period
        rss_before = rss_kib(server.pid)

        # Open loop: request i is due at start + i / rate; a pool of keep-alive connections
        # (one per worker thread) sends them, each latency counted from its due time.
        total = int(args.rate * args.seconds)
        latencies, failures = [], []
        lock = threading.Lock()
        start = time.monotonic() + 0.2
        next_i = [0]

        def worker():
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= total:
                    return
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    status, _ = call(conn, "GET", f"/v1/project/default/service/{names[i % len(names)]}")
                    ok = status == 200
                except Exception as e:  # a broken connection is a failure, then reconnect
                    ok = False
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                    status = str(e)
                elapsed = (time.monotonic() - due) * 1000
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        failures.append(status)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss_after = rss_kib(server.pid)
        if failures:
            raise SystemExit(f"{len(failures)} requests failed: {failures[:5]}")
        lat = sorted(latencies)
        load = os.getloadavg()[0]
        print(f"{args.services} services RUNNING; {len(lat)} GET service requests at {args.rate:g}/s for "
              f"{args.seconds:g} s ({os.path.basename(args.bin)} {args.bin}, load average {load:.1f})")
        print("| figure | value |\n|---|---|")
        print(f"| API latency p50 | {percentile(lat, 0.50):.2f} ms |")
        print(f"| API latency p99 | {percentile(lat, 0.99):.2f} ms |")
        print(f"| API latency max | {lat[-1]:.2f} ms |")
        print(f"| keyhaven RSS, {args.services} services, before / after the requests | "
              f"{rss_before / 1024:.1f} / {rss_after / 1024:.1f} MiB |")
        with open(os.path.join(data, "endpoint", "endpoint.pid")) as f:
            endpoint_pid = int(f.read().strip())
        print(f"| the endpoint process's RSS ({args.services} TLS endpoints and {args.services} reader "
              f"endpoints, no client) | {rss_kib(endpoint_pid) / 1024:.1f} MiB |")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run([args.bin, "down", "--data-dir", data], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
