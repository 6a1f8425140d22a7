"""The fleet benchmark behind scripts/bench-scale.sh.

A fleet on one machine: three independent Redis instances (the Redlock quorum of the ha
overlay), base on the real Cassandra, several stream processes, `loadgen` holding the streams
(spread by itself over processes and loopback source addresses), a churn of opens and closes,
and profile changes whose `event: unbound` is timed from the outside
(`kubescaler-bench unbind-latency`). What the backends do is read from the backends themselves
(Redis `INFO`, Cassandra's read counters, /proc), over measurement windows, and divided by the
streams held: per 1,000 held streams per second.

Scenarios run one after the other against the same backends (Redis flushed in between): the
same load on the code before the change (a build of BASELINE_REF) and after, for the ratios,
then the full fleet, and one instance holding all the open files it may.

    python3 scripts/lib/scale.py --work DIR --new BIN_DIR --old BIN_DIR --bench BENCH ...
"""

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# What a client sends Redis itself; everything else counted by INFO runs inside these scripts
# (GET, PEXPIRE, SET of an extension; TIME, ZADD… of a fleet publication).
CLIENT_COMMANDS = ("evalsha", "eval", "ping", "publish", "pttl", "subscribe", "info", "client", "script|load")


def log(*args):
    print("[scale]", *args, file=sys.stderr, flush=True)


def http_text(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_ready(port, within=120):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"nothing ready on port {port} within {within} s")


def metrics(port):
    """Prometheus samples of a service: {'name{labels}': value}."""
    out = {}
    for line in http_text(f"http://127.0.0.1:{port}/metrics").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def summed(samples, prefix, contains=""):
    return sum(v for k, v in samples.items() if k.startswith(prefix) and contains in k)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def slab_bytes():
    """The kernel's slab memory (socket structures among it)."""
    total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(("SReclaimable:", "SUnreclaim:")):
                total += int(line.split()[1]) * 1024
    return total


def socket_buffers(port):
    """Established sockets on local port `port`, and the buffer memory they hold (`ss`'s skmem:
    receive, send, forward-allocated, queued and option memory)."""
    text = subprocess.run(["ss", "-tmnH", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True).stdout
    sockets, held = 0, 0
    for found in re.finditer(r"skmem:\(([^)]*)\)", text):
        fields = dict((m.group(1), int(m.group(2))) for m in re.finditer(r"([a-z]+)(\d+)", found.group(1)))
        held += sum(fields.get(k, 0) for k in ("r", "t", "f", "w", "o"))
        sockets += 1
    return sockets, held


def redis_info(port):
    text = subprocess.run(["redis-cli", "-p", str(port), "INFO", "all"], capture_output=True, text=True, check=True).stdout
    info = {"calls": {}, "usec": {}}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line[len("cmdstat_"):].partition(":")
            parts = dict(p.split("=") for p in stats.split(","))
            info["calls"][name] = int(parts["calls"])
            info["usec"][name] = int(parts["usec"])
        elif line.startswith(("used_cpu_sys:", "used_cpu_user:")):
            info["cpu"] = info.get("cpu", 0.0) + float(line.split(":")[1])
        elif line.startswith("total_commands_processed:"):
            info["commands"] = int(line.split(":")[1])
    return info


class Proc:
    """A process started here, stopped (SIGTERM, then SIGKILL) when the scenario ends."""

    def __init__(self, args, env=None, stdout=None, log_to=None):
        self.args = args
        out = open(log_to, "ab") if log_to else subprocess.DEVNULL
        self.p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=stdout or out, stderr=out,
                                  start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def stop(self, grace=20):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


class Backends:
    def __init__(self, a):
        self.a = a
        self.redis_ports = [a.redis_port + i for i in range(3)]
        self.redis = []
        cass = subprocess.run(["pgrep", "-f", "CassandraDaemon"], capture_output=True, text=True).stdout.split()
        if not cass:
            raise SystemExit("no Cassandra process found: scripts/services.sh up first")
        self.cassandra_pid = int(cass[0])

    def start_redis(self):
        for port in self.redis_ports:
            d = os.path.join(self.a.work, f"redis-{port}")
            os.makedirs(d, exist_ok=True)
            self.redis.append(Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", d, "--maxclients", "20000"]))
        for port in self.redis_ports:
            for _ in range(100):
                if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                    break
                time.sleep(0.1)

    def fresh_redis(self):
        for port in self.redis_ports:
            subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], capture_output=True, check=True)
            subprocess.run(["redis-cli", "-p", str(port), "CONFIG", "RESETSTAT"], capture_output=True, check=True)

    def urls(self):
        return ",".join(f"redis://127.0.0.1:{p}" for p in self.redis_ports)

    def stop(self):
        for r in self.redis:
            r.stop()


class Fleet:
    """base and `instances` stream processes of one build, on the shared backends."""

    def __init__(self, a, backends, label, bindir, instances, max_connections):
        self.a, self.backends, self.label = a, backends, label
        self.base_port = a.port
        self.stream_ports = [a.port + 1 + i for i in range(instances)]
        logs = os.path.join(a.work, label)
        os.makedirs(logs, exist_ok=True)
        common = {"RUST_LOG": "warn", "REDIS_URLS": backends.urls(), "LOG_FORMAT": "json"}
        self.base = Proc([os.path.join(bindir, "base")], log_to=os.path.join(logs, "base.log"), env={
            **common, "PORT": str(self.base_port), "CASSANDRA_KEYSPACE": a.keyspace, "HOSTNAME": "base"})
        wait_ready(self.base_port)
        self.streams = [Proc([os.path.join(bindir, "stream")], log_to=os.path.join(logs, f"stream-{i}.log"), env={
            **common, "PORT": str(port), "HOSTNAME": f"stream-{i}", "BASE_URL": f"http://127.0.0.1:{self.base_port}",
            "MAX_CONNECTIONS": str(max_connections), "STREAM_INTERVAL": a.interval,
            "STREAM_MESSAGE_BYTES": str(a.message_bytes)})
            for i, port in enumerate(self.stream_ports)]
        for port in self.stream_ports:
            wait_ready(port)

    def stream_urls(self):
        return ",".join(f"http://127.0.0.1:{p}" for p in self.stream_ports)

    def held(self):
        return int(sum(summed(metrics(p), "kubescaler_stream_active_connections") for p in self.stream_ports))

    def snapshot(self):
        streams = [metrics(p) for p in self.stream_ports]
        base = metrics(self.base_port)
        reads = json.loads(subprocess.run([self.a.bench, "cql-reads", "--keyspace", self.a.keyspace],
                                          capture_output=True, text=True, check=True).stdout)
        return {
            "t": time.time(),
            "redis": [redis_info(p) for p in self.backends.redis_ports],
            "base_requests": summed(base, "http_requests_total{"),
            "base_binding_requests": summed(base, "http_requests_total{", 'route="/bindings')
            + summed(base, "http_requests_total{", 'route="/profiles/{id}/users/{user_id}"'),
            "base_cpu": cpu_seconds(self.base.pid),
            "cassandra_cpu": cpu_seconds(self.backends.cassandra_pid),
            "cassandra_reads": reads.get("profile", 0),
            "stream_cpu": sum(cpu_seconds(s.pid) for s in self.streams),
            "stream_rss": sum(rss_bytes(s.pid) for s in self.streams),
            "held": int(sum(summed(m, "kubescaler_stream_active_connections") for m in streams)),
            "acquired": sum(summed(m, "kubescaler_stream_lock_acquisitions_total", 'result="acquired"') for m in streams),
            "conflicts": sum(summed(m, "kubescaler_stream_lock_acquisitions_total", 'result="conflict"') for m in streams),
            "unbound": sum(summed(m, "kubescaler_stream_locks_lost_total", 'reason="unbound"') for m in streams),
        }

    def stop(self):
        # stream first: its shutdown releases every lock it holds.
        for s in self.streams:
            s.stop()
        self.base.stop()


def window(before, after):
    """Rates over a window, per second and per 1,000 held streams."""
    seconds = after["t"] - before["t"]
    held = (before["held"] + after["held"]) / 2
    per_k = 1000 / held if held else float("nan")
    redis = []
    for b, a in zip(before["redis"], after["redis"]):
        calls = {k: a["calls"].get(k, 0) - b["calls"].get(k, 0) for k in a["calls"]}
        client = sum(calls.get(k, 0) for k in CLIENT_COMMANDS)
        redis.append({
            "commands_s": (a["commands"] - b["commands"]) / seconds,
            # Each acquisition sends SET NX PX and the marker's SET; a conflict sends its SET NX.
            "round_trips_s": (client + 2 * (after["acquired"] - before["acquired"])
                              + (after["conflicts"] - before["conflicts"])) / seconds,
            "cpu": (a["cpu"] - b["cpu"]) / seconds,
            "evalsha_usec_per_call": ((a["usec"].get("evalsha", 0) - b["usec"].get("evalsha", 0))
                                      / max(calls.get("evalsha", 0), 1)),
        })
    r = {
        "seconds": seconds,
        "held": held,
        "redis": redis,
        "base_requests_s": (after["base_requests"] - before["base_requests"]) / seconds,
        "base_binding_requests_s": (after["base_binding_requests"] - before["base_binding_requests"]) / seconds,
        "base_cpu": (after["base_cpu"] - before["base_cpu"]) / seconds,
        "cassandra_cpu": (after["cassandra_cpu"] - before["cassandra_cpu"]) / seconds,
        "cassandra_reads_s": (after["cassandra_reads"] - before["cassandra_reads"]) / seconds,
        "stream_cpu": (after["stream_cpu"] - before["stream_cpu"]) / seconds,
        "stream_rss": after["stream_rss"],
        "acquired_s": (after["acquired"] - before["acquired"]) / seconds,
        "unbound": after["unbound"] - before["unbound"],
    }
    r["per_1000"] = {
        "redis_commands_s": max(x["commands_s"] for x in redis) * per_k,
        "redis_round_trips_s": max(x["round_trips_s"] for x in redis) * per_k,
        "redis_cpu": max(x["cpu"] for x in redis) * per_k,
        "base_requests_s": r["base_requests_s"] * per_k,
        "cassandra_reads_s": r["cassandra_reads_s"] * per_k,
        "cassandra_cpu": r["cassandra_cpu"] * per_k,
        "stream_cpu": r["stream_cpu"] * per_k,
    }
    return r


def loadgen(a, urls, pairs_file, streams, ramp, hold, churn=0.0, label="load"):
    # The clients yield the CPU to the suite (`nice`): on a real cluster they are elsewhere, and
    # here their reading of 20,000 messages a second must not starve base, Cassandra and Redis
    # of the two cores the latencies are measured on. The unbind probe is not niced.
    args = ["nice", "-n", "10", a.loadgen, "--url", urls, "--pairs", pairs_file, "--streams", str(streams), "--ramp", str(ramp),
            "--duration", f"{hold}s", "--json"]
    if churn:
        args += ["--churn", str(churn)]
    out = open(os.path.join(a.work, f"{label}.json"), "wb")
    return Proc(args, stdout=out, log_to=os.path.join(a.work, f"{label}.log"))


def wait_held(fleet, target, within):
    deadline = time.time() + within
    held = 0
    while time.time() < deadline:
        held = fleet.held()
        if held >= target:
            return held
        time.sleep(2)
    log(f"{fleet.label}: {held} of {target} streams held after {within} s; measuring what is held")
    return held


def pairs_slice(src, dst, start, count):
    with open(src) as f:
        lines = f.readlines()[start:start + count]
    if len(lines) < count:
        raise SystemExit(f"{src} has too few pairs for {start}+{count}")
    with open(dst, "w") as f:
        f.writelines(lines)
    return dst


# Sets of two probes per profile: 0–2 for the three fleet scenarios' churn windows, 3–5 for their
# windows of profile changes alone (which older seeds, of six probes per profile, lack).
PROBE_SETS = 6


def probes_for(a, scenario, out):
    """The probe pairs of one scenario: each scenario takes its own two of each profile's."""
    with open(a.probe_pairs) as f:
        lines = f.readlines()
    per = a.probes_per_profile
    mine = [line for i, line in enumerate(lines) if (i % per) // 2 == scenario]
    with open(out, "w") as f:
        f.writelines(mine)
    return out


def fleet_scenario(a, backends, index, label, bindir, streams):
    """Steady state (no churn), then churn with profile changes, on `streams` held streams."""
    backends.fresh_redis()
    log(f"{label}: {a.instances} stream instances, {streams} streams")
    fleet = Fleet(a, backends, label, bindir, a.instances, a.max_connections)
    work = os.path.join(a.work, label)
    churn_streams = min(a.churn_streams, streams // 10)
    main_streams = streams - churn_streams - 2 * a.profiles
    main_pairs = pairs_slice(a.load_pairs, os.path.join(work, "main.txt"), 0, main_streams)
    churn_pairs = pairs_slice(a.load_pairs, os.path.join(work, "churn.txt"), main_streams, churn_streams * 10)
    ramp = a.ramp
    # Opening is the costly part on one machine (each open is a base request, a Cassandra read
    # and Redis commands, on the same two cores): the load may take twice as long as asked to
    # be held, and it is held until stopped, through both windows.
    ramp_within = math.ceil(main_streams / ramp * 2) + 120
    hold = ramp_within + a.settle * 2 + a.window * 2 + 300
    load = loadgen(a, fleet.stream_urls(), main_pairs, main_streams, ramp, hold, label=f"{label}/main")
    try:
        wait_held(fleet, main_streams, ramp_within)
        time.sleep(a.settle)
        before = fleet.snapshot()
        time.sleep(a.window)
        steady = window(before, fleet.snapshot())
        log(f"{label}: steady {json.dumps(steady['per_1000'])}")

        # Profile changes alone, no churn: the announcement's own path on a machine that is not
        # also opening a hundred streams a second. Its probes are a set of their own.
        changes_alone = None
        if a.probes_per_profile >= 2 * PROBE_SETS:
            alone_probes = probes_for(a, index + PROBE_SETS // 2, os.path.join(work, "probes-alone.txt"))
            changes_alone = unbind_latency(a, fleet, alone_probes)
            log(f"{label}: changes alone, unbind {json.dumps(changes_alone)}")

        churn = loadgen(a, fleet.stream_urls(), churn_pairs, churn_streams, ramp, a.window + a.settle + 30,
                        churn=a.churn, label=f"{label}/churn")
        probes = probes_for(a, index, os.path.join(work, "probes.txt"))
        time.sleep(a.settle)
        before = fleet.snapshot()
        unbind = subprocess.Popen(unbind_command(a, fleet, probes), stdout=subprocess.PIPE, text=True)
        time.sleep(a.window)
        churning = window(before, fleet.snapshot())
        out, _ = unbind.communicate(timeout=300)
        churning["unbind"] = json.loads(out.strip().splitlines()[-1])
        log(f"{label}: churn {json.dumps(churning['per_1000'])} unbind {json.dumps(churning['unbind'])}")
        churn.stop()
    finally:
        fleet.stop()
        load.stop()
    summary = last_json(os.path.join(a.work, f"{label}/main.json"))
    return {"label": label, "streams": streams, "instances": a.instances, "steady": steady, "churn": churning,
            "changes_alone": changes_alone, "loadgen": summary}


def unbind_command(a, fleet, probes):
    """`kubescaler-bench unbind-latency` on `probes`: one profile change each, timed to `unbound`."""
    return [a.bench, "unbind-latency", "--stream-urls", fleet.stream_urls(), "--base-url",
            f"http://127.0.0.1:{fleet.base_port}", "--pairs", probes, "--rate", str(a.changes), "--patience", "30s"]


def unbind_latency(a, fleet, probes):
    out = subprocess.run(unbind_command(a, fleet, probes), stdout=subprocess.PIPE, text=True, check=True,
                         timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def instance_scenario(a, backends, bindir, streams):
    """One instance holding `streams` idle streams: memory and CPU per stream."""
    backends.fresh_redis()
    label = "instance"
    log(f"{label}: 1 stream instance, {streams} streams")
    fleet = Fleet(a, backends, label, bindir, 1, streams + 500)
    work = os.path.join(a.work, label)
    pairs = pairs_slice(a.load_pairs, os.path.join(work, "pairs.txt"), 0, streams)
    time.sleep(2)
    rss0, slab0 = rss_bytes(fleet.streams[0].pid), slab_bytes()
    # Held until stopped: a ramp that takes longer than asked must not end the load mid-window.
    ramp_within = math.ceil(streams / a.ramp * 2) + 120
    hold = ramp_within + a.settle + a.window + 300
    load = loadgen(a, fleet.stream_urls(), pairs, streams, a.ramp, hold, label=f"{label}/load")
    try:
        held = wait_held(fleet, streams, ramp_within)
        time.sleep(a.settle)
        before = fleet.snapshot()
        time.sleep(a.window)
        after = fleet.snapshot()
        w = window(before, after)
        rss = rss_bytes(fleet.streams[0].pid)
        slab = slab_bytes()
        sockets, buffers = socket_buffers(fleet.stream_ports[0])
        fds = len(os.listdir(f"/proc/{fleet.streams[0].pid}/fd"))
    finally:
        fleet.stop()
        load.stop()
    return {
        "label": label, "streams": held, "open_files": fds,
        "rss_per_stream": (rss - rss0) / held if held else None,
        "rss": rss,
        # Both ends of every connection are on this machine: the slab grown by two sockets each.
        "slab_per_socket": (slab - slab0) / (2 * held) if held else None,
        "buffers_per_socket": buffers / sockets if sockets else None,
        "cpu_per_1000": w["stream_cpu"] * 1000 / held if held else None,
        "window": w,
    }


def last_json(path):
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--new", required=True, help="directory of the binaries measured")
    p.add_argument("--old", help="directory of the baseline's binaries")
    p.add_argument("--bench", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--keyspace", default="bench_scale")
    p.add_argument("--load-pairs", required=True)
    p.add_argument("--probe-pairs", required=True)
    p.add_argument("--profiles", type=int, required=True)
    p.add_argument("--probes-per-profile", type=int, required=True)
    p.add_argument("--streams", type=int, default=100_000)
    p.add_argument("--baseline-streams", type=int, default=5_000)
    p.add_argument("--instance-streams", type=int, default=18_000)
    p.add_argument("--instances", type=int, default=6)
    p.add_argument("--max-connections", type=int, default=19_000)
    p.add_argument("--interval", default="5s")
    p.add_argument("--message-bytes", type=int, default=100)
    p.add_argument("--ramp", type=float, default=500)
    p.add_argument("--churn", type=float, default=100)
    p.add_argument("--churn-streams", type=int, default=1_000)
    p.add_argument("--changes", type=float, default=4)
    p.add_argument("--settle", type=int, default=20)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--port", type=int, default=18300)
    p.add_argument("--redis-port", type=int, default=16391)
    p.add_argument("--only", default="instance,before,after,fleet")
    a = p.parse_args()
    backends = Backends(a)
    backends.start_redis()
    results = {}
    only = a.only.split(",")
    scenarios = [
        ("before", lambda: fleet_scenario(a, backends, 0, "before", a.old, a.baseline_streams), bool(a.old)),
        ("after", lambda: fleet_scenario(a, backends, 1, "after", a.new, a.baseline_streams), True),
        ("fleet", lambda: fleet_scenario(a, backends, 2, "fleet", a.new, a.streams), True),
        ("instance", lambda: instance_scenario(a, backends, a.new, a.instance_streams), True),
    ]
    failed = []
    try:
        for name, run, possible in scenarios:
            if name not in only or not possible:
                continue
            # A scenario that fails is reported as failed; the others' results still count.
            try:
                results[name] = run()
            except Exception as e:  # noqa: BLE001 - any failure of one scenario
                log(f"{name}: failed: {e!r}")
                failed.append(name)
    finally:
        backends.stop()
    print(json.dumps(results))
    if failed:
        sys.exit(f"failed scenarios: {', '.join(failed)}")


if __name__ == "__main__":
    main()
