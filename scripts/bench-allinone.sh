#!/usr/bin/env bash
# The all-in-one process: time from process start to /readyz 200 (target < 100 ms, the build
# excluded) and RSS when idle, on a fresh data directory and on one holding test data, with
# the separate base binary's start (against a running Cassandra) as the reference; then
# loadgen holds LOAD_STREAMS streams through the front door (RSS and CPU under load, received
# vs offered bytes).
#   scripts/bench-allinone.sh     (RUNS=10, LOAD_STREAMS=1000, LOAD_HOLD=15)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-10}
LOAD_STREAMS=${LOAD_STREAMS:-1000}
LOAD_HOLD=${LOAD_HOLD:-15}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p kubescaler -p kubescaler-base -p kubescaler-loadgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$RUNS" "$LOAD_STREAMS" "$LOAD_HOLD" <<'PY' | tee "${BENCH_OUT:-/dev/null}"
import json, os, shutil, signal, statistics, subprocess, sys, time, urllib.request
work, runs, streams, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
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
# Under load: loadgen through the front door, on the data directory with test data.
def cpu_seconds(p):
    fields = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
ramp = 500
p, _ = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
load = subprocess.Popen(["target/release/loadgen", "--url", "http://127.0.0.1:18680", "--streams", str(streams),
                         "--ramp", str(ramp), "--duration", f"{hold}s", "--json"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
time.sleep(streams / ramp + 3)
c0, t0 = cpu_seconds(p), time.perf_counter()
time.sleep(min(5, max(1, hold - 5)))
load_cpu = 100 * (cpu_seconds(p) - c0) / (time.perf_counter() - t0)
load_rss = rss(p)
summary = json.loads(load.communicate(timeout=hold + 60)[0].decode().strip().splitlines()[-1])
stop(p)
# 25,000 B every 100 ms per stream; streams open during the ramp, so on average for the run's
# length less half the ramp.
offered = summary["streams_opened"] * 250_000 * (summary["seconds"] - streams / ramp / 2)
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
print(f"| all-in-one RSS, {summary['streams_opened']:,} streams open | {load_rss:.1f} MiB | | CPU {load_cpu:.0f} % of one core |")
print(f"\nloadgen, {streams:,} streams asked through the front door, held {hold} s (ramp {ramp}/s): "
      f"{summary['streams_opened']:,} opened, {summary['refused_locked_409']} × 409, {summary['errors']} errors, "
      f"{summary['bytes'] / 1e6:,.0f} MB received vs {offered / 1e6:,.0f} MB offered ({summary['bytes'] / offered:.2f}), "
      f"{summary['gaps_in_seq']} gaps in seq.")
print(f"\nTest data of 100 profiles x 20 users on the embedded store: {gen:.1f} s (one durable commit per write).")
PY
