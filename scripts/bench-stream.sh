#!/usr/bin/env bash
# Benchmarks of stream, each figure beside its baseline or target from the same run. The server
# runs on core 0 (taskset -c 0), the load generator on core 1.
#
#   scripts/bench-stream.sh          (starts Redis/Cassandra with scripts/services.sh up)
#
# 1. time to first event over 200 new streams (base call + lock + marker), just after the
#    process starts and again once it runs;
# 2. capacity at the default rate (25,000 B every 100 ms) with CAPACITY_CLIENTS streams;
# 3. fan-out ceiling, generator unthrottled, N = 100 and 1,000, vs a raw-TCP fan-out server;
# 4. slow readers: SLOW_CLIENTS clients reading 10 KB/s for SLOW_SECONDS: RSS, kernel TCP
#    memory per connection, age of the newest message read;
# 5. lock churn through stream's lock code vs redis-benchmark SET NX PX on the same Redis.
# Environment: CAPACITY_CLIENTS (5000), SLOW_CLIENTS (1000), SLOW_SECONDS (60), BENCH_OUT.
set -euo pipefail
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
CAPACITY_CLIENTS=${CAPACITY_CLIENTS:-5000}
SLOW_CLIENTS=${SLOW_CLIENTS:-1000}
SLOW_SECONDS=${SLOW_SECONDS:-60}
BASE_PORT=18281
STREAM_PORT=18283
RAW_PORT=18284
KEYSPACE=bench_stream
bench_nofile 200000

bench_services_up
command -v redis-benchmark >/dev/null || apt-get install -y -q redis-tools >/dev/null
bench_build kubescaler-base kubescaler-stream kubescaler-bench
tcp_mem_pages() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }

start_stream() { # extra env as arguments
  bench_serve "$STREAM_PORT" /dev/null RUST_LOG=warn PORT="$STREAM_PORT" BASE_URL="http://127.0.0.1:$BASE_PORT" \
    REDIS_URLS="$REDIS_URL" RELEASE_ON_DISCONNECT=true MAX_CONNECTIONS=20000 "$@" taskset -c 0 target/release/stream
  STREAM_PID=$SPAWNED
}
load() { taskset -c 1 "$BENCH" sse-load --addr "127.0.0.1:$1" "${@:2}"; }

bench_serve_base "$BASE_PORT" "$KEYSPACE"
curl -fs -X DELETE "localhost:$BASE_PORT/profiles"
pairs=$WORK/pairs.txt
$BENCH seed-pairs --keyspace "$KEYSPACE" --count "$CAPACITY_CLIENTS" >"$pairs"

# 1 + 2: default rate.
start_stream
echo "time to first event" >&2
# The first 200 streams after the process starts also open its connections to base and meet
# Cassandra's cold read path; reported apart from the same figure once running.
cold=$(load "$STREAM_PORT" --pairs "$pairs" --clients 200 --warmup 0s --duration 3s --connect-concurrency 4)
sleep 1
first=$(load "$STREAM_PORT" --pairs "$pairs" --clients 200 --warmup 0s --duration 3s --connect-concurrency 4)
echo "capacity: $CAPACITY_CLIENTS clients" >&2
load "$STREAM_PORT" --pairs "$pairs" --clients "$CAPACITY_CLIENTS" --warmup 15s --duration 20s \
  --connect-concurrency 64 >"$WORK/capacity.json" &
loader=$!
sleep 18
capacity_cpu_rss=$(bench_sample "$STREAM_PID" 15)
wait "$loader"
bench_stop "$STREAM_PID"

# 3: fan-out ceiling.
start_stream STREAM_INTERVAL=0
fanout=""
for n in 100 1000; do
  echo "fan-out, $n clients" >&2
  s=$(load "$STREAM_PORT" --pairs "$pairs" --clients "$n" --warmup 3s --duration 10s | bench_field aggregate_mb_s)
  fanout="$fanout $n:$s"
done
bench_stop "$STREAM_PID"
# Two raw baselines: frames from a broadcast channel (the baseline the target is set against)
# and from a watch channel, as stream's own feed shares them (the stricter one).
raw=""
for channel in broadcast watch; do
  bench_spawn taskset -c 0 "$BENCH" raw-fanout-server --port "$RAW_PORT" --channel "$channel" >/dev/null 2>&1
  raw_pid=$SPAWNED
  sleep 1
  for n in 100 1000; do
    echo "raw TCP fan-out ($channel), $n clients" >&2
    r=$(load "$RAW_PORT" --raw --clients "$n" --warmup 3s --duration 10s | bench_field aggregate_mb_s)
    raw="$raw $channel-$n:$r"
  done
  bench_stop "$raw_pid"
done

# 4: slow readers.
start_stream
echo "slow readers: $SLOW_CLIENTS clients at 10 KB/s for $SLOW_SECONDS s" >&2
mem0=$(tcp_mem_pages)
rss0=$(bench_sample "$STREAM_PID" 1 | cut -d' ' -f2)
load "$STREAM_PORT" --pairs "$pairs" --clients "$SLOW_CLIENTS" --warmup 0s --duration "${SLOW_SECONDS}s" \
  --read-rate 10000 --recv-buffer 8192 --connect-concurrency 64 >"$WORK/slow.json" &
loader=$!
rss_series=""
mem_peak=$mem0
for _ in $(seq 1 $((SLOW_SECONDS / 10 - 1))); do
  sleep 9
  rss_series="$rss_series $(bench_sample "$STREAM_PID" 1 | cut -d' ' -f2)"
  m=$(tcp_mem_pages); [ "$m" -gt "$mem_peak" ] && mem_peak=$m
done
wait "$loader"
dropped=$(curl -fs "localhost:$STREAM_PORT/metrics" | awk '/^kubescaler_stream_messages_dropped_total/ {print $2}')
bench_stop "$STREAM_PID"

# 5: lock churn.
echo "lock churn" >&2
churn=$(taskset -c 1 "$BENCH" lock-churn --redis "$REDIS_URL" --concurrency 50 --duration 10s | bench_field cycles_per_s)
setnx=$(taskset -c 1 redis-benchmark -p "${REDIS_PORT:-6379}" -c 50 -n 300000 -r 1000000 -q \
  SET 'bench:__rand_int__' 1 NX PX 60000 | grep -o '[0-9.]* requests per second' | cut -d' ' -f1)

bench_report stream-report first="$first" cold="$cold" capacity="$WORK/capacity.json" \
  capacity_cpu_rss="$capacity_cpu_rss" fanout="$fanout" raw="$raw" slow="$WORK/slow.json" rss0="$rss0" \
  rss_series="$rss_series" mem0="$mem0" mem_peak="$mem_peak" slow_clients="$SLOW_CLIENTS" churn="$churn" \
  setnx="$setnx" dropped="$dropped"
