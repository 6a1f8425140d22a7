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
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
DURATION=${BENCH_DURATION:-10s}
CONCURRENCIES=${BENCH_CONCURRENCY:-1 8}
SIZES=${BENCH_SIZES:-1000 100000}
PORT=${BENCH_PORT:-18081}

bench_services_up
bench_build kubescaler-base kubescaler-bench

results=$WORK/results.jsonl
for size in $SIZES; do
  keyspace=bench_profiles_$size
  user=$(cat /proc/sys/kernel/random/uuid)
  # base creates the schema; the keyspace is refilled from empty on every run.
  bench_serve_base "$PORT" "$keyspace"
  base_pid=$SPAWNED
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
    echo "{\"size\": $size, \"conc\": $conc, \"cql\": $cql, \"base\": $http, \"floor\": $floor}" >>"$results"
  done
  bench_stop "$base_pid"
done

bench_report base-report results="$results" duration="$DURATION"
