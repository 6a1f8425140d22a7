#!/usr/bin/env bash
# The all-in-one process: time from process start to /readyz 200 (target < 100 ms, the build
# excluded) and RSS when idle, on a fresh data directory and on one holding test data, with
# the separate base binary's start (against a running Cassandra) as the reference.
#   scripts/bench-allinone.sh     (RUNS=10)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-10}
cargo build --release -q -p kubescaler -p kubescaler-base
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$RUNS" <<'PY' | tee "${BENCH_OUT:-/dev/null}"
import os, shutil, signal, statistics, subprocess, sys, time, urllib.request
work, runs = sys.argv[1], int(sys.argv[2])
def start_to_ready(args, env, port):
    t0 = time.perf_counter()
    p = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.001)
        if time.perf_counter() - t0 > 60:
            raise SystemExit("not ready in 60 s")
    elapsed = (time.perf_counter() - t0) * 1000
    return p, elapsed
def rss(p):
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def stop(p):
    p.send_signal(signal.SIGTERM); p.wait(timeout=20)
aio = ["target/release/kubescaler"]
fresh, idle = [], []
for i in range(runs):
    d = f"{work}/fresh{i}"
    p, ms = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
    fresh.append(ms)
    time.sleep(1); idle.append(rss(p)); stop(p)
# One data directory with test data (100 profiles x 20 users), then restarts on it.
d = f"{work}/full"
p, _ = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:18680/main/testdata?profiles=100&users_per_profile=20", method="POST"))
t = time.perf_counter()
while b'"running"' in urllib.request.urlopen("http://127.0.0.1:18680/main/testdata").read():
    time.sleep(0.05)
gen = time.perf_counter() - t
stop(p)
full = []
for i in range(runs):
    p, ms = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
    full.append(ms); stop(p)
base = []
for i in range(runs):
    p, ms = start_to_ready(["target/release/base"], {"PORT": "18681", "CASSANDRA_KEYSPACE": "bench_start", "RUST_LOG": "warn"}, 18681)
    base.append(ms); stop(p)
med = statistics.median
print("| figure | median | max | reference |")
print("|---|---:|---:|---:|")
print(f"| all-in-one start → /readyz 200, empty data dir ({runs} runs) | {med(fresh):.1f} ms | {max(fresh):.1f} ms | target 100 ms |")
print(f"| all-in-one start → /readyz 200, 2,100 users + 100 profiles ({runs} runs) | {med(full):.1f} ms | {max(full):.1f} ms | target 100 ms |")
print(f"| base alone start → /readyz 200 on a running Cassandra ({runs} runs) | {med(base):.1f} ms | {max(base):.1f} ms | all-in-one/base: {med(fresh) / med(base):.2f} |")
print(f"| all-in-one RSS, idle after start | {med(idle):.1f} MiB | {max(idle):.1f} MiB | |")
print(f"\nTest data of 100 profiles x 20 users on the embedded store: {gen:.1f} s (one durable commit per write).")
PY
