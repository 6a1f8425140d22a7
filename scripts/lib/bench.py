#!/usr/bin/env python3
"""What the benchmark scripts (scripts/bench-*.sh, through scripts/lib/bench.sh) do in Python:
read JSON, sample a process's CPU and RSS, time the all-in-one's start, and print each
benchmark's Markdown (which scripts/bench.sh puts into docs/BENCHMARKS.md).

usage: bench.py COMMAND [NAME=VALUE ...]   (a command and its arguments are the function below
       whose name is the command's with `-` for `_`; `field` and `sample` take positional ones)
"""
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time
import urllib.request


# ------------------------------------------------------------------ helpers for the scripts
def field(key):
    """The value of `key` in the JSON object on stdin."""
    print(json.loads(sys.stdin.read())[key])


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(pid, seconds):
    """CPU (% of one core) of `pid` over `seconds`, then its RSS (MiB): `cpu rss`."""
    secs = float(seconds)
    c0 = cpu_seconds(pid)
    time.sleep(secs)
    c1 = cpu_seconds(pid)
    print(f"{100 * (c1 - c0) / secs:.1f} {rss_mib(pid):.1f}")


def read_json_lines(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- base
def base_report(results, duration):
    """results: one JSON object a line, {size, conc, cql, base, floor}, the last three
    kubescaler-bench results."""
    rows = read_json_lines(results)
    print(f"GET /profiles/user/{{id}} on base vs the same prepared CQL query from a Rust client; "
          f"{duration} per figure; the user is in 10 profiles.\n")
    print("| profiles | in flight | CQL req/s | CQL p50 ms | CQL p99 ms | base req/s | base p50 ms | base p99 ms | base/CQL p50 | base/CQL req/s | floor/CQL p50 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    p50 = {}
    for r in rows:
        size, conc, cql, http, floor = r["size"], r["conc"], r["cql"], r["base"], r["floor"]
        crps, cp50, cp99 = cql["rps"], cql["p50_ms"], cql["p99_ms"]
        hrps, hp50, hp99 = http["rps"], http["p50_ms"], http["p99_ms"]
        lp50 = floor["p50_ms"]
        p50[(size, conc)] = hp50
        print(f"| {size:,} | {conc} | {crps:,.0f} | {cp50:.3f} | {cp99:.3f} | {hrps:,.0f} | {hp50:.3f} | {hp99:.3f} | {hp50/cp50:.2f} | {hrps/crps:.2f} | {(cp50 + lp50)/cp50:.2f} |")
    print("\nfloor/CQL p50: (CQL p50 + p50 of `GET /livez` on the same base, same load loop) / CQL p50 — the "
          "ratio no HTTP service in front of the query can beat on this machine, since it adds at least one "
          "HTTP round trip.")
    sizes = sorted({s for s, _ in p50})
    if len(sizes) >= 2:
        print()
        for conc in sorted({c for _, c in p50}):
            small, large = p50.get((sizes[0], conc)), p50.get((sizes[-1], conc))
            if small and large:
                print(f"- base p50 at {sizes[-1]:,} / at {sizes[0]:,} profiles, {conc} in flight: {large/small:.2f}")


# ---------------------------------------------------------------------------------- main
def main_report(results, duration, progress, start, end):
    """results: one JSON object a line, {conc, base, main}; progress: GET /testdata's last
    answer; start, end: the test data's wall clock (seconds)."""
    rows = read_json_lines(results)
    progress = json.loads(progress)
    print(f"GET /login/{{userId}} on main vs GET /profiles/user/{{id}} on base, same user (50 profiles, "
          f"10 launched); {duration} per figure.\n")
    print("| in flight | base req/s | base p50 ms | base p99 ms | main req/s | main p50 ms | main p99 ms | main/base req/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b, m = r["base"], r["main"]
        brps, bp50, bp99, mrps, mp50, mp99 = b["rps"], b["p50_ms"], b["p99_ms"], m["rps"], m["p50_ms"], m["p99_ms"]
        print(f"| {r['conc']} | {brps:,.0f} | {bp50:.3f} | {bp99:.3f} | {mrps:,.0f} | {mp50:.3f} | {mp99:.3f} | {mrps/brps:.2f} |")
    users = progress["users_created"]
    print(f"\nTest data, 100 profiles x 100 users: state {progress['state']}, "
          f"{progress['profiles_created']} profiles and {users:,} users in {progress['elapsed_seconds']:.2f} s "
          f"(wall, polled: {float(end) - float(start):.2f} s); "
          f"{progress['base_requests'] / max(users, 1):.3f} requests to base per user created "
          f"({progress['base_requests']:,} in all).")


# -------------------------------------------------------------------------------- stream
def stream_report(first, cold, capacity, capacity_cpu_rss, fanout, raw, slow, rss0, rss_series,
                  mem0, mem_peak, slow_clients, churn, setnx, dropped):
    """first, cold: sse-load results; capacity, slow: files holding one; capacity_cpu_rss:
    `cpu rss` from sample; fanout: ` N:MB/s` words; raw: ` CHANNEL-N:MB/s` words; rss_series:
    MiB words; mem0, mem_peak: kernel TCP pages; churn, setnx: per second."""
    first, cold = json.loads(first), json.loads(cold)
    cap = json.loads(open(capacity).read())
    cpu, rss = map(float, capacity_cpu_rss.split())
    fan = dict(x.split(":") for x in fanout.split())
    raw = dict(x.split(":") for x in raw.split())
    slow = json.loads(open(slow).read())
    rss0, series = float(rss0), [float(x) for x in rss_series.split()]
    mem0, mem_peak, slow_n = int(mem0), int(mem_peak), int(slow_clients)
    churn, setnx = float(churn), float(setnx)
    target = 250_000 * 0.95
    rates = cap["rates_b_s"]
    ok = sum(1 for r in rates if r >= target)
    print("| figure | measured | baseline / target | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| time to first event, 200 new streams, p50 / p99 | {first['first_event_p50_ms']:.1f} / {first['first_event_p99_ms']:.1f} ms | p99 < 10 ms | |")
    print(f"| time to first event, the first 200 streams after start, p50 / p99 | {cold['first_event_p50_ms']:.1f} / {cold['first_event_p99_ms']:.1f} ms | | |")
    print(f"| capacity: streams connected / asked | {cap['connected']:,} / {cap['clients']:,} | | |")
    print(f"| capacity: streams sustaining ≥ 95 % of 250 KB/s | {ok:,} ({100 * ok / max(len(rates), 1):.1f} %) | ≥ 99 % | |")
    print(f"| capacity: aggregate | {cap['aggregate_mb_s']:,.0f} MB/s | {cap['clients'] * 0.25:,.0f} MB/s offered | {cap['aggregate_mb_s'] / (cap['clients'] * 0.25):.2f} |")
    print(f"| capacity: server CPU, RSS | {cpu:.0f} % of one core, {rss:.0f} MiB | | |")
    for n in ("100", "1000"):
        f, r, w = float(fan[n]), float(raw[f"broadcast-{n}"]), float(raw[f"watch-{n}"])
        goal = "0.6" if n == "100" else "0.8"
        print(f"| fan-out ceiling, {int(n):,} clients | {f:,.0f} MB/s | raw TCP, broadcast channel {r:,.0f} MB/s (target ≥ {goal}×) | {f / r:.2f} |")
        print(f"| fan-out ceiling, {int(n):,} clients, stricter baseline | {f:,.0f} MB/s | raw TCP, watch channel {w:,.0f} MB/s | {f / w:.2f} |")
    per_conn_kib = (mem_peak - mem0) * 4 / max(slow_n, 1)
    print(f"| slow readers ({slow_n:,} at 10 KB/s): service RSS start → during | {rss0:.0f} → {' / '.join(f'{x:.0f}' for x in series)} MiB | ≤ 64 MiB, flat | |")
    print(f"| slow readers: kernel TCP memory growth per connection | {per_conn_kib:.0f} KiB | ≤ 128 KiB | |")
    print(f"| slow readers: oldest 'newest message read' | {slow['newest_age_max_s']:.1f} s | ≤ 10 s | |")
    print(f"| slow readers: messages skipped (counter) | {int(float(dropped)):,} | > 0 | |")
    print(f"| lock churn: acquire + marker + release cycles/s | {churn:,.0f} | SET NX PX {setnx:,.0f}/s (target ≥ 0.3×) | {churn / setnx:.2f} |")


# ----------------------------------------------------------------------------- rebalance
def rebalance_report(work, streams, balanced, final):
    """work: the directory holding loadgen.json and the first instance's log bench-a.log;
    balanced: seconds to balance, empty if it did not; final: `A / B` streams at the end."""
    work, streams = pathlib.Path(work), int(streams)
    summary = last_json_line((work / "loadgen.json").read_text())
    moves = [m for m in summary["moves"] if m["why"] == "rebalance"]
    ms = sorted(m["ms"] for m in moves)
    first = summary["first_event_ms"]

    def pct(values, p):
        return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

    released = [json.loads(line) for line in (work / "bench-a.log").read_text().splitlines()
                if line.startswith("{") and "handed streams off" in line]
    release_ms = [float(r["fields"]["released_ms"]) for r in released]
    lost = sum(ms) / 1000
    rows = [
        ("streams moved (second instance started)", f"{len(moves):,} of {streams:,}", f"{streams // 2:,} wanted", ""),
        ("balanced (each within 5 % of half) after", f"{float(balanced):.2f} s" if balanced else "not balanced", f"period {1} s", ""),
        ("instances at the end", final, "", ""),
        ("server: locks released per hand-off", ", ".join(f"{x:.1f} ms" for x in release_ms), "", ""),
        ("rebalance event → streaming again, p50", f"{pct(ms, 0.5):.0f} ms", f"fresh open → first event {first['p50']:.1f} ms + retry 250 ms", f"{pct(ms, 0.5) / (first['p50'] + 250):.2f}"),
        ("rebalance event → streaming again, p99", f"{pct(ms, 0.99):.0f} ms", f"fresh open → first event {first['p99']:.1f} ms + retry 250 ms", f"{pct(ms, 0.99) / (first['p99'] + 250):.2f}"),
        ("stream-seconds without messages, all moves", f"{lost:.0f} s", f"{len(moves)} × 0.25 s retry = {len(moves) * 0.25:.0f} s", f"{lost / max(len(moves) * 0.25, 1e-9):.2f}"),
        ("409 on return / 503 retried / errors", f"{summary['refused_locked_409_on_return']} / {summary['refused_and_retried_503']} / {summary['errors']}", "0 / – / 0", ""),
    ]
    print("| figure | measured | baseline | ratio |\n|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# ---------------------------------------------------------------------------- all-in-one
def start_to_ready(args, env, port):
    """Starts `args` and polls its /readyz every millisecond: (process, ms to the first 200)."""
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
    return p, (time.perf_counter() - t0) * 1000


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)


def allinone(work, runs, streams, hold):
    """Start to /readyz of the all-in-one (empty data directory, one with test data) and of
    base alone; RSS idle and under loadgen's `streams` streams held `hold` seconds."""
    runs, streams, hold = int(runs), int(streams), int(hold)
    aio = ["target/release/kubescaler"]
    fresh, idle = [], []
    for i in range(runs):
        d = f"{work}/fresh{i}"
        p, ms = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
        fresh.append(ms)
        time.sleep(1); idle.append(rss_mib(p.pid)); stop(p)
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
    ramp = 500
    p, _ = start_to_ready(aio, {"PORT": "18680", "DATA_DIR": d, "RUST_LOG": "warn"}, 18680)
    load = subprocess.Popen(["target/release/loadgen", "--url", "http://127.0.0.1:18680", "--streams", str(streams),
                             "--ramp", str(ramp), "--duration", f"{hold}s", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(streams / ramp + 3)
    c0, t0 = cpu_seconds(p.pid), time.perf_counter()
    time.sleep(min(5, max(1, hold - 5)))
    load_cpu = 100 * (cpu_seconds(p.pid) - c0) / (time.perf_counter() - t0)
    load_rss = rss_mib(p.pid)
    summary = last_json_line(load.communicate(timeout=hold + 60)[0].decode())
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


COMMANDS = {f.__name__.replace("_", "-"): f
            for f in (field, sample, base_report, main_report, stream_report, rebalance_report, allinone)}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        print(__doc__.strip() + "\n\ncommands: " + ", ".join(COMMANDS), file=sys.stderr)
        return 2
    f, args = COMMANDS[argv[1]], argv[2:]
    if f in (field, sample):
        f(*args)
    else:
        f(**dict(a.split("=", 1) for a in args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
