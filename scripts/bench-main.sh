#!/usr/bin/env bash
# Benchmarks of main, each beside its baseline measured in the same run on this machine:
# - GET /login/{userId} on main for a user in 50 profiles, 10 of them launched, beside base's
#   GET /profiles/user/{id} for the same user (main = that call + one Redis MGET);
# - test data generation of 100 profiles x 100 users: wall time, requests to base per user.
#
#   scripts/bench-main.sh            (starts Redis/Cassandra with scripts/services.sh up)
#
# Environment: BENCH_DURATION (10s), BENCH_CONCURRENCY ("1 8"), BENCH_OUT (Markdown copy).
set -euo pipefail
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
DURATION=${BENCH_DURATION:-10s}
CONCURRENCIES=${BENCH_CONCURRENCY:-1 8}
BASE_PORT=${BENCH_BASE_PORT:-18181}
MAIN_PORT=${BENCH_MAIN_PORT:-18182}
KEYSPACE=bench_main

bench_services_up
bench_build kubescaler-base kubescaler-main kubescaler-bench

bench_serve_base "$BASE_PORT" "$KEYSPACE"
bench_serve "$MAIN_PORT" /dev/null RUST_LOG=warn PORT="$MAIN_PORT" BASE_URL="http://127.0.0.1:$BASE_PORT" \
  REDIS_URLS="$REDIS_URL" target/release/main
curl -fs -X DELETE "localhost:$MAIN_PORT/testdata"

user=$($BENCH seed-login --base-url "http://127.0.0.1:$BASE_PORT" --redis-url "$REDIS_URL" --profiles 50 --launched 10)
base_url="http://127.0.0.1:$BASE_PORT/profiles/user/$user"
main_url="http://127.0.0.1:$MAIN_PORT/login/$user"
$BENCH http-get --url "$base_url" --duration 3s --warmup 0s >/dev/null
$BENCH http-get --url "$main_url" --duration 3s --warmup 0s >/dev/null

results=$WORK/results.jsonl
for conc in $CONCURRENCIES; do
  b=$($BENCH http-get --url "$base_url" --concurrency "$conc" --duration "$DURATION" --label "base-c$conc")
  m=$($BENCH http-get --url "$main_url" --concurrency "$conc" --duration "$DURATION" --label "main-c$conc")
  echo "$b" >&2; echo "$m" >&2
  echo "{\"conc\": $conc, \"base\": $b, \"main\": $m}" >>"$results"
done

# Test data: 100 profiles x 100 users on an empty keyspace.
curl -fs -X DELETE "localhost:$MAIN_PORT/testdata"
start=$(date +%s.%N)
curl -fs -X POST "localhost:$MAIN_PORT/testdata?profiles=100&users_per_profile=100" >/dev/null
while :; do
  progress=$(curl -fs "localhost:$MAIN_PORT/testdata")
  [ "$(echo "$progress" | bench_field state)" = running ] || break
  sleep 0.1
done
end=$(date +%s.%N)
echo "$progress" >&2

bench_report main-report results="$results" duration="$DURATION" progress="$progress" start="$start" end="$end"
