"""The measured section of docs/SCALE.md, from the results of scripts/lib/scale.py.

    python3 scripts/lib/scale_report.py RESULTS.json --commit C --baseline REF --write docs/SCALE.md

Only what lies between the section's markers is rewritten; the rest of the file is prose.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

BEGIN = "<!-- bench-scale: measured, begin -->"
END = "<!-- bench-scale: measured, end -->"


def num(x, digits=1):
    if x is None or x != x:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def pct(x):
    return "–" if x is None or x != x else f"{x * 100:.2f} %"


def ratio(new, old):
    if old in (None, 0) or new is None or old != old or new != new:
        return "–"
    return f"{new / old:.3f}"


def machine():
    cores = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return f"{cores} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"


ROWS = [
    ("base requests /s", "base_requests_s", num),
    ("Redis round trips /s, busiest instance", "redis_round_trips_s", num),
    ("Redis commands /s (scripts' inner commands included), busiest instance", "redis_commands_s", num),
    ("Redis CPU, busiest instance", "redis_cpu", pct),
    ("Cassandra reads of `profile` /s", "cassandra_reads_s", num),
    ("Cassandra CPU (all its work)", "cassandra_cpu", pct),
    ("stream CPU, all instances", "stream_cpu", pct),
]


def table(results, phase):
    before, after, fleet = (results.get(k) for k in ("before", "after", "fleet"))
    head = ["per 1,000 held streams"]
    cols = []
    if before:
        head.append(f"before ({before['streams']:,} streams)")
        cols.append(before)
    if after:
        head.append(f"after ({after['streams']:,} streams)")
        cols.append(after)
    if before and after:
        head.append("after / before")
    if fleet:
        head.append(f"after, fleet ({fleet['streams']:,} streams)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, key, fmt in ROWS:
        row = [name] + [fmt(c[phase]["per_1000"][key]) for c in cols]
        if before and after:
            row.append(ratio(after[phase]["per_1000"][key], before[phase]["per_1000"][key]))
        if fleet:
            row.append(fmt(fleet[phase]["per_1000"][key]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def held(r, phase):
    return f"{r[phase]['held']:,.0f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--commit", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--users-per-profile", type=int, default=1000)
    p.add_argument("--write")
    a = p.parse_args()
    with open(a.results) as f:
        r = json.load(f)
    date = datetime.date.today().isoformat()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    out = [BEGIN, "",
           f"Written by `scripts/bench-scale.sh` on {date}, commit {a.commit}; baseline (before) {a.baseline}. "
           f"Machine: {machine()}; {rustc}; single-node Cassandra 5.0 and three Redis 7 instances, every "
           f"process on this one machine. Profiles of {a.users_per_profile:,} users; messages of "
           "100 B every 5 s; `LOCK_TTL` 60 s, `LOCK_REFRESH` 10 s, `BINDING_SWEEP` 5 min (defaults).", ""]
    if "before" in r or "after" in r or "fleet" in r:
        out += ["### Steady state: streams held, nothing changes", "", table(r, "steady"), ""]
        notes = []
        for key in ("before", "after", "fleet"):
            if key in r:
                s = r[key]["steady"]
                inst = r[key]["instances"]
                notes.append(
                    f"- {key}: {held(r[key], 'steady')} streams on {inst} instances over {s['seconds']:.0f} s: "
                    f"base {s['base_requests_s'] / inst:.2f} requests/s per stream instance; Redis round trips per "
                    f"instance per `LOCK_REFRESH` (10 s) per 100 held streams: "
                    f"{max(x['round_trips_s'] for x in s['redis']) * 10 / (s['held'] / 100):.3f}; one extension "
                    f"script call (up to 1,000 locks): {max(x['evalsha_usec_per_call'] for x in s['redis']):,.0f} µs of Redis time."
                )
        out += notes + [""]
        out += ["### Churn: opens and closes, and profile changes", "",
                "1,000 more streams (500 for the smaller loads) opened and closed at "
                "100 per second in all, and 4 profile changes per second, each taking one watched user out of a "
                f"profile of {a.users_per_profile:,} users.", "", table(r, "churn"), ""]
        lines = []
        runs = [(key, "with churn", r[key]["churn"]["unbind"]) for key in ("before", "after", "fleet") if key in r]
        runs += [(key, "changes alone", r[key]["changes_alone"]) for key in ("before", "after", "fleet")
                 if key in r and r[key].get("changes_alone")]
        for key, how, u in runs:
            w = u.get("write_ms") or {}
            aw = u.get("after_write_ms") or {}
            lines.append(f"| {key} ({r[key]['streams']:,} streams), {how} | {u['changes']} | {num(u['p50_ms'], 0)} | "
                         f"{num(u['p99_ms'], 0)} | {num(u['max_ms'], 0)} | {u['missed']} | "
                         f"{num(w.get('p50'), 0)} / {num(w.get('p99'), 0)} | "
                         f"{num(aw.get('p50'), 0)} / {num(aw.get('p99'), 0)} |")
        out += ["Time from a profile change (the `PUT` sent) to its stream's `event: unbound`, ms; beside "
                "it, base's answer to the `PUT` (its Cassandra write and its announcement) and the time from "
                "that answer to the `unbound`:", "",
                "| build | changes | p50 | p99 | max | missed (none within 30 s) | the write, p50 / p99 | "
                "after the write, p50 / p99 |", "|---|---|---|---|---|---|---|---|"]
        out += lines + [""]
        fl = r.get("fleet")
        if fl and fl.get("loadgen"):
            lg = fl["loadgen"]
            out += [f"`loadgen` for the fleet: {lg.get('processes', 1)} processes, source addresses "
                    f"{lg.get('source_addresses', '–')}; {lg.get('streams_opened', 0):,} streams opened, "
                    f"{lg.get('refused_locked_409', 0)} refused with 409, {lg.get('errors', 0)} errors; time to first "
                    f"event p50 {num((lg.get('first_event_ms') or {}).get('p50'))} ms, p99 "
                    f"{num((lg.get('first_event_ms') or {}).get('p99'))} ms.", ""]
    if "instance" in r:
        i = r["instance"]
        out += ["### One instance", "",
                "| streams held | open files | RSS | RSS per stream | kernel per socket: structures (slab) | kernel per socket: buffers | CPU per 1,000 idle streams |",
                "|---|---|---|---|---|---|---|",
                f"| {i['streams']:,} | {i['open_files']:,} | {i['rss'] / 1048576:,.0f} MiB | "
                f"{num(i['rss_per_stream'] / 1024)} KiB | {num(i['slab_per_socket'] / 1024, 2)} KiB | "
                f"{num(i['buffers_per_socket'] / 1024, 2)} KiB | {pct(i['cpu_per_1000'])} of a core |", ""]
    out.append(END)
    section = "\n".join(out)
    if not a.write:
        print(section)
        return
    with open(a.write) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        sys.exit(f"{a.write} has no measured section ({BEGIN} … {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(a.write, "w") as f:
        f.write(head + section + tail)


if __name__ == "__main__":
    main()
