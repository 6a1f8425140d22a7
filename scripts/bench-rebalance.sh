#!/usr/bin/env bash
# The cost of rebalancing: STREAMS streams on one stream instance behind nginx, then a second
# instance starts and takes half of them. Per moved stream, from the `rebalance` event to the
# client streaming again (reconnected, first message), beside the same client's time to its
# first message on a fresh open (the floor of any reconnection); the server's time to release
# the locks of a hand-off; the stream-seconds lost in all; the time to balance.
#
#   scripts/bench-rebalance.sh        (starts Redis/Cassandra with scripts/services.sh up)
# Environment: STREAMS (1000), BENCH_OUT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STREAMS=${STREAMS:-1000}
BASE_PORT=18381
A_PORT=18383
B_PORT=18384
NGINX_PORT=18380
KEYSPACE=bench_rebalance
PERIOD=1s
REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

scripts/services.sh up
cargo build --release -q -p kubescaler-base -p kubescaler-stream -p kubescaler-bench -p kubescaler-loadgen
BENCH=target/release/kubescaler-bench
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_ready() {
  for _ in $(seq 1 300); do curl -fs "localhost:$1/readyz" >/dev/null && return; sleep 0.2; done
  echo "service on port $1 did not become ready" >&2; exit 1
}
gauge() { curl -fs "localhost:$1/metrics" | awk '/^kubescaler_stream_active_connections/ {print $2}'; }
start_stream() { # port host
  env RUST_LOG=info LOG_FORMAT=json PORT=$1 HOSTNAME=$2 BASE_URL=http://127.0.0.1:$BASE_PORT \
    REDIS_URLS=$REDIS_URL LOCK_REFRESH=$PERIOD REBALANCE_PERIOD=$PERIOD RELEASE_ON_DISCONNECT=true \
    STREAM_MESSAGE_BYTES=1000 MAX_CONNECTIONS=20000 target/release/stream >"$work/$2.log" 2>&1 &
  pids+=($!)
  wait_ready "$1"
}

RUST_LOG=warn PORT=$BASE_PORT CASSANDRA_KEYSPACE=$KEYSPACE target/release/base >/dev/null 2>&1 &
pids+=($!)
wait_ready "$BASE_PORT"
curl -fs -X DELETE "localhost:$BASE_PORT/profiles"
$BENCH seed-pairs --keyspace "$KEYSPACE" --count "$STREAMS" >"$work/pairs.txt"
# The fleet is whoever publishes in this Redis: no entry of an earlier run may count.
redis-cli -u "$REDIS_URL" DEL kubescaler:instances >/dev/null

mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream stream { server 127.0.0.1:$A_PORT max_fails=0; server 127.0.0.1:$B_PORT max_fails=0; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://stream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 3600s;
    }
  }
}
EOF
nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' 2>/dev/null &
pids+=($!)

start_stream "$A_PORT" bench-a
echo "$STREAMS streams on one instance" >&2
target/release/loadgen --url "http://127.0.0.1:$NGINX_PORT" --pairs "$work/pairs.txt" --streams "$STREAMS" \
  --ramp 500 --duration 3600s --json >"$work/loadgen.json" 2>/dev/null &
loader=$!
pids+=("$loader")
for _ in $(seq 1 600); do [ "$(gauge $A_PORT)" = "$STREAMS" ] && break; sleep 0.1; done
[ "$(gauge $A_PORT)" = "$STREAMS" ] || { echo "only $(gauge $A_PORT) of $STREAMS streams opened" >&2; exit 1; }
sleep 3

echo "a second instance starts" >&2
start_stream "$B_PORT" bench-b
started=$(date +%s.%N)
balanced=""
half=$((STREAMS / 2))
for _ in $(seq 1 300); do
  a=$(gauge $A_PORT); b=$(gauge $B_PORT)
  if [ $((a + b)) = "$STREAMS" ] && [ $((a > half ? a - half : half - a)) -le $((STREAMS / 20)) ]; then
    balanced=$(echo "$(date +%s.%N) - $started" | bc)
    break
  fi
  sleep 0.1
done
sleep 5
final="$(gauge $A_PORT) / $(gauge $B_PORT)"
kill -INT "$loader"
wait "$loader" || true

python3 - "$work" "$STREAMS" "${balanced:-}" "$final" "${BENCH_OUT:-/dev/stdout}" <<'PY'
import json, pathlib, sys
work, streams, balanced, final, out = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
summary = json.loads((work / "loadgen.json").read_text().strip().splitlines()[-1])
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
with open(out, "a") as f:
    f.write("| figure | measured | baseline | ratio |\n|---|---:|---:|---:|\n")
    for row in rows:
        f.write("| " + " | ".join(row) + " |\n")
PY
