# shellcheck shell=bash
# What the benchmark scripts (scripts/bench-*.sh) share, sourced by each after `set -euo
# pipefail`. Sourcing it moves to the repository's root and makes a work directory ($WORK);
# when the script exits, every process started with bench_serve or bench_spawn is stopped and
# $WORK removed. The Python they need is scripts/lib/bench.py ($BENCH_PY).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit
# For the scripts that source this file:
# shellcheck disable=SC2034
BENCH=target/release/kubescaler-bench
BENCH_PY=$ROOT/scripts/lib/bench.py
# shellcheck disable=SC2034
REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}
WORK=$(mktemp -d)
BENCH_PIDS=()

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# bench_nofile N: open files allowed, N or the hard limit if lower.
bench_nofile() { ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }

# bench_services_up: Redis and Cassandra running and answering.
bench_services_up() { scripts/services.sh up; }

# bench_build PACKAGE...: the release build of these packages of the workspace.
bench_build() {
  local args=() package
  for package in "$@"; do args+=(-p "$package"); done
  cargo build --release -q "${args[@]}"
}

# bench_spawn COMMAND...: run COMMAND in the background, stopped on exit; its pid in $SPAWNED.
bench_spawn() {
  "$@" &
  SPAWNED=$!
  BENCH_PIDS+=("$SPAWNED")
}

# bench_wait_ready PORT: until localhost:PORT/readyz answers 200 (a minute at most).
bench_wait_ready() {
  for _ in $(seq 1 300); do curl -fs "localhost:$1/readyz" >/dev/null && return; sleep 0.2; done
  echo "service on port $1 did not become ready" >&2
  exit 1
}

# bench_serve PORT LOG [NAME=VALUE...] COMMAND...: start a service with this environment, its
# output to LOG, and wait until it is ready; its pid in $SPAWNED.
bench_serve() {
  local port=$1 log=$2
  shift 2
  bench_spawn env "$@" >"$log" 2>&1
  bench_wait_ready "$port"
}

# bench_serve_base PORT KEYSPACE: base on PORT with its data in KEYSPACE; its pid in $SPAWNED.
bench_serve_base() {
  bench_serve "$1" /dev/null RUST_LOG=warn PORT="$1" CASSANDRA_KEYSPACE="$2" target/release/base
}

# bench_stop PID: stop a process started here and wait for it; fails if it had already exited.
bench_stop() {
  local pid=$1 i
  for i in "${!BENCH_PIDS[@]}"; do [ "${BENCH_PIDS[$i]}" != "$pid" ] || unset 'BENCH_PIDS[i]'; done
  kill "$pid" || { echo "process $pid had exited before its stop" >&2; return 1; }
  wait "$pid" 2>/dev/null || true
}

# bench_field KEY: the value of KEY in the JSON object on stdin.
bench_field() { python3 "$BENCH_PY" field "$1"; }

# bench_sample PID SECONDS: `cpu rss`, CPU (% of one core) of PID over SECONDS, then its RSS (MiB).
bench_sample() { python3 "$BENCH_PY" sample "$1" "$2"; }

# bench_report COMMAND NAME=VALUE...: a benchmark's Markdown (scripts/lib/bench.py COMMAND), to
# stdout and, when BENCH_OUT names a file (scripts/bench.sh), to that file as well.
bench_report() { python3 "$BENCH_PY" "$@" | tee "${BENCH_OUT:-/dev/null}"; }
