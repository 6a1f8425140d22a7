#!/usr/bin/env bash
# Benchmark: base's GET /profiles/user/{id} beside the same CQL query issued directly with a
# prepared statement, at 1,000 and at 100,000 profiles, in one run on this machine.
#
#   scripts/bench-base.sh            (starts Redis/Cassandra with scripts/services.sh up)
#
# Environment: BENCH_DURATION (10s), BENCH_CONCURRENCY (requests in flight, "1 8"), BENCH_SIZES ("1000 100000"),
# BENCH_OUT (print the Markdown table to this file as well).
# The user looked up is in 10 profiles whatever the table size, so the answer stays the same
# and only the size of the table (and its index) changes.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-10s}
CONCURRENCIES=${BENCH_CONCURRENCY:-1 8}
SIZES=${BENCH_SIZES:-1000 100000}
PORT=${BENCH_PORT:-18081}

scripts/services.sh up
cargo build --release -q -p kubescaler-base -p kubescaler-bench
BENCH=target/release/kubescaler-bench
BASE_PID=
stop_base() { [ -n "$BASE_PID" ] && kill "$BASE_PID" 2>/dev/null && wait "$BASE_PID" 2>/dev/null; BASE_PID=; }
trap stop_base EXIT

field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

results=$(mktemp)
for size in $SIZES; do
  keyspace=bench_profiles_$size
  user=$(python3 -c 'import uuid; print(uuid.uuid4())')
  # base creates the schema; the keyspace is refilled from empty on every run.
  RUST_LOG=warn PORT=$PORT CASSANDRA_KEYSPACE=$keyspace target/release/base >/dev/null 2>&1 &
  BASE_PID=$!
  for _ in $(seq 1 300); do curl -fs "localhost:$PORT/readyz" >/dev/null && break; sleep 0.2; done
  curl -fs "localhost:$PORT/readyz" >/dev/null || { echo "base did not become ready" >&2; exit 1; }
  curl -fs -X DELETE "localhost:$PORT/profiles"
  echo "seeding $size profiles" >&2
  $BENCH seed-profiles --keyspace "$keyspace" --profiles "$size" --user "$user" >&2

  # Unmeasured first pass over both paths: Cassandra's JIT and caches warm up here, not
  # inside whichever figure happens to be measured first.
  $BENCH cql-profiles-of-user --keyspace "$keyspace" --user "$user" --duration 5s --warmup 0s >/dev/null
  $BENCH http-get --url "http://127.0.0.1:$PORT/profiles/user/$user" --duration 3s --warmup 0s >/dev/null
  for conc in $CONCURRENCIES; do
    cql=$($BENCH cql-profiles-of-user --keyspace "$keyspace" --user "$user" \
      --concurrency "$conc" --duration "$DURATION" --label "cql-$size-c$conc")
    http=$($BENCH http-get --url "http://127.0.0.1:$PORT/profiles/user/$user" \
      --concurrency "$conc" --duration "$DURATION" --label "base-$size-c$conc")
    # The floor under any HTTP service here: a round trip to base that does no I/O.
    floor=$($BENCH http-get --url "http://127.0.0.1:$PORT/livez" \
      --concurrency "$conc" --duration "$DURATION" --label "livez-$size-c$conc")
    echo "$cql" >&2
    echo "$http" >&2
    echo "$floor" >&2
    echo "$size $conc $(echo "$cql" | field rps) $(echo "$cql" | field p50_ms) $(echo "$cql" | field p99_ms) $(echo "$http" | field rps) $(echo "$http" | field p50_ms) $(echo "$http" | field p99_ms) $(echo "$floor" | field p50_ms)" >>"$results"
  done
  stop_base
done

python3 - "$results" "$DURATION" <<'PY' | tee "${BENCH_OUT:-/dev/null}"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print(f"GET /profiles/user/{{id}} on base vs the same prepared CQL query from a Rust client; "
      f"{sys.argv[2]} per figure; the user is in 10 profiles.\n")
print("| profiles | in flight | CQL req/s | CQL p50 ms | CQL p99 ms | base req/s | base p50 ms | base p99 ms | base/CQL p50 | base/CQL req/s | floor/CQL p50 |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
p50 = {}
for size, conc, crps, cp50, cp99, hrps, hp50, hp99, lp50 in rows:
    crps, cp50, cp99, hrps, hp50, hp99, lp50 = map(float, (crps, cp50, cp99, hrps, hp50, hp99, lp50))
    p50[(int(size), int(conc))] = hp50
    print(f"| {int(size):,} | {conc} | {crps:,.0f} | {cp50:.3f} | {cp99:.3f} | {hrps:,.0f} | {hp50:.3f} | {hp99:.3f} | {hp50/cp50:.2f} | {hrps/crps:.2f} | {(cp50 + lp50)/cp50:.2f} |")
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
PY
