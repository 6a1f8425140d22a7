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
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-10s}
CONCURRENCIES=${BENCH_CONCURRENCY:-1 8}
BASE_PORT=${BENCH_BASE_PORT:-18181}
MAIN_PORT=${BENCH_MAIN_PORT:-18182}
KEYSPACE=bench_main
REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}

scripts/services.sh up
cargo build --release -q -p kubescaler-base -p kubescaler-main -p kubescaler-bench
BENCH=target/release/kubescaler-bench
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_ready() {
  for _ in $(seq 1 300); do curl -fs "localhost:$1/readyz" >/dev/null && return; sleep 0.2; done
  echo "service on port $1 did not become ready" >&2; exit 1
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

RUST_LOG=warn PORT=$BASE_PORT CASSANDRA_KEYSPACE=$KEYSPACE target/release/base >/dev/null 2>&1 &
pids+=($!)
wait_ready "$BASE_PORT"
RUST_LOG=warn PORT=$MAIN_PORT BASE_URL=http://127.0.0.1:$BASE_PORT REDIS_URLS=$REDIS_URL \
  target/release/main >/dev/null 2>&1 &
pids+=($!)
wait_ready "$MAIN_PORT"
curl -fs -X DELETE "localhost:$MAIN_PORT/testdata"

user=$($BENCH seed-login --base-url "http://127.0.0.1:$BASE_PORT" --redis-url "$REDIS_URL" --profiles 50 --launched 10)
base_url="http://127.0.0.1:$BASE_PORT/profiles/user/$user"
main_url="http://127.0.0.1:$MAIN_PORT/login/$user"
$BENCH http-get --url "$base_url" --duration 3s --warmup 0s >/dev/null
$BENCH http-get --url "$main_url" --duration 3s --warmup 0s >/dev/null

results=$(mktemp)
for conc in $CONCURRENCIES; do
  b=$($BENCH http-get --url "$base_url" --concurrency "$conc" --duration "$DURATION" --label "base-c$conc")
  m=$($BENCH http-get --url "$main_url" --concurrency "$conc" --duration "$DURATION" --label "main-c$conc")
  echo "$b" >&2; echo "$m" >&2
  echo "$conc $(echo "$b" | field rps) $(echo "$b" | field p50_ms) $(echo "$b" | field p99_ms) $(echo "$m" | field rps) $(echo "$m" | field p50_ms) $(echo "$m" | field p99_ms)" >>"$results"
done

# Test data: 100 profiles x 100 users on an empty keyspace.
curl -fs -X DELETE "localhost:$MAIN_PORT/testdata"
start=$(date +%s.%N)
curl -fs -X POST "localhost:$MAIN_PORT/testdata?profiles=100&users_per_profile=100" >/dev/null
while :; do
  progress=$(curl -fs "localhost:$MAIN_PORT/testdata")
  [ "$(echo "$progress" | field state)" = running ] || break
  sleep 0.1
done
end=$(date +%s.%N)
echo "$progress" >&2

python3 - "$results" "$DURATION" "$progress" "$start" "$end" <<'PY' | tee "${BENCH_OUT:-/dev/null}"
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
progress = json.loads(sys.argv[3])
print(f"GET /login/{{userId}} on main vs GET /profiles/user/{{id}} on base, same user (50 profiles, "
      f"10 launched); {sys.argv[2]} per figure.\n")
print("| in flight | base req/s | base p50 ms | base p99 ms | main req/s | main p50 ms | main p99 ms | main/base req/s |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for conc, brps, bp50, bp99, mrps, mp50, mp99 in rows:
    brps, bp50, bp99, mrps, mp50, mp99 = map(float, (brps, bp50, bp99, mrps, mp50, mp99))
    print(f"| {conc} | {brps:,.0f} | {bp50:.3f} | {bp99:.3f} | {mrps:,.0f} | {mp50:.3f} | {mp99:.3f} | {mrps/brps:.2f} |")
users = progress["users_created"]
print(f"\nTest data, 100 profiles x 100 users: state {progress['state']}, "
      f"{progress['profiles_created']} profiles and {users:,} users in {progress['elapsed_seconds']:.2f} s "
      f"(wall, polled: {float(sys.argv[5]) - float(sys.argv[4]):.2f} s); "
      f"{progress['base_requests'] / max(users, 1):.3f} requests to base per user created "
      f"({progress['base_requests']:,} in all).")
PY
