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
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
STREAMS=${STREAMS:-1000}
BASE_PORT=18381
A_PORT=18383
B_PORT=18384
NGINX_PORT=18380
KEYSPACE=bench_rebalance
PERIOD=1s
bench_nofile 200000

bench_services_up
bench_build kubescaler-base kubescaler-stream kubescaler-bench kubescaler-loadgen
gauge() { curl -fs "localhost:$1/metrics" | awk '/^kubescaler_stream_active_connections/ {print $2}'; }
start_stream() { # port host
  bench_serve "$1" "$WORK/$2.log" RUST_LOG=info LOG_FORMAT=json PORT="$1" HOSTNAME="$2" \
    BASE_URL="http://127.0.0.1:$BASE_PORT" REDIS_URLS="$REDIS_URL" LOCK_REFRESH=$PERIOD \
    REBALANCE_PERIOD=$PERIOD RELEASE_ON_DISCONNECT=true STREAM_MESSAGE_BYTES=1000 MAX_CONNECTIONS=20000 \
    target/release/stream
}

bench_serve_base "$BASE_PORT" "$KEYSPACE"
curl -fs -X DELETE "localhost:$BASE_PORT/profiles"
$BENCH seed-pairs --keyspace "$KEYSPACE" --count "$STREAMS" >"$WORK/pairs.txt"
# The fleet is whoever publishes in this Redis: no entry of an earlier run may count.
redis-cli -u "$REDIS_URL" DEL kubescaler:instances >/dev/null

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 8192; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
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
CONF
bench_spawn nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' 2>/dev/null

start_stream "$A_PORT" bench-a
echo "$STREAMS streams on one instance" >&2
bench_spawn target/release/loadgen --url "http://127.0.0.1:$NGINX_PORT" --pairs "$WORK/pairs.txt" \
  --streams "$STREAMS" --ramp 500 --duration 3600s --json >"$WORK/loadgen.json" 2>/dev/null
loader=$SPAWNED
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

bench_report rebalance-report work="$WORK" streams="$STREAMS" balanced="${balanced:-}" final="$final"
