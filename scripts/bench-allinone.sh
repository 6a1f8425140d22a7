#!/usr/bin/env bash
# The all-in-one process: time from process start to /readyz 200 (target < 100 ms, the build
# excluded) and RSS when idle, on a fresh data directory and on one holding test data, with
# the separate base binary's start (against a running Cassandra) as the reference; then
# loadgen holds LOAD_STREAMS streams through the front door (RSS and CPU under load, received
# vs offered bytes).
#   scripts/bench-allinone.sh     (RUNS=10, LOAD_STREAMS=1000, LOAD_HOLD=15)
set -euo pipefail
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
RUNS=${RUNS:-10}
LOAD_STREAMS=${LOAD_STREAMS:-1000}
LOAD_HOLD=${LOAD_HOLD:-15}
bench_nofile 65536
bench_build kubescaler kubescaler-base kubescaler-loadgen
bench_report allinone work="$WORK" runs="$RUNS" streams="$LOAD_STREAMS" hold="$LOAD_HOLD"
