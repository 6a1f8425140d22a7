#!/usr/bin/env bash
# The suite at a scale a single process cannot fake, on one machine: three Redis instances
# (the Redlock quorum of the ha overlay), base on the real Cassandra, several stream processes,
# and `loadgen` holding 100,000 streams with churn (opens and closes) and profile changes.
# Measures what a held stream costs each backend (Redis commands, round trips and CPU per
# instance, base requests, Cassandra reads and CPU, stream CPU) per 1,000 held streams, the
# time from a profile change to its stream's `event: unbound`, and one instance holding 18,000
# streams (memory per stream and per socket, CPU per 1,000 idle streams). The same load runs
# first on a build of BASELINE_REF (before binding changes were announced and locks extended in
# batches) and on this tree, for the ratios. Rewrites the measured section of docs/SCALE.md.
#
#   scripts/bench-scale.sh                 about 35 minutes on 2 cores; not part of CI
#
# Environment: STREAMS (100000), INSTANCES (6), BASELINE_STREAMS (5000, the load both builds
# carry), BASELINE_REF (c76fc6c), INSTANCE_STREAMS (18000), USERS_PER_PROFILE (1000), WINDOW
# (60, seconds measured per window), RAMP (500 streams/s), CHURN (100 streams/s), CHANGES (4
# profile changes/s), ONLY (instance,before,after,fleet).
set -euo pipefail
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
STREAMS=${STREAMS:-100000}
INSTANCES=${INSTANCES:-6}
BASELINE_STREAMS=${BASELINE_STREAMS:-5000}
BASELINE_REF=${BASELINE_REF:-c76fc6c}
INSTANCE_STREAMS=${INSTANCE_STREAMS:-18000}
USERS_PER_PROFILE=${USERS_PER_PROFILE:-1000}
WINDOW=${WINDOW:-60}
RAMP=${RAMP:-500}
CHURN=${CHURN:-100}
CHANGES=${CHANGES:-4}
ONLY=${ONLY:-instance,before,after,fleet}
KEYSPACE=bench_scale
BASE_PORT=18290
# Twelve probes per profile: two for each fleet scenario with churn and two for each with profile
# changes alone (a probe's user leaves its profile).
PROBES_PER_PROFILE=12
CACHE=${KUBESCALER_CACHE:-$HOME/.cache/kubescaler}
bench_nofile 20000

bench_services_up
command -v redis-server >/dev/null || { echo "redis-server not found: scripts/services.sh installs it" >&2; exit 1; }
# What is measured is what is built now, whatever changes while the run goes on.
commit=$(git rev-parse --short HEAD)
# The page this run rewrites is not a change of what it measures.
dirty=$(git status --porcelain --untracked-files=no -- . ':!docs/SCALE.md' | grep -q . && echo " (with uncommitted changes)" || true)
echo "building this tree" >&2
bench_build kubescaler-base kubescaler-stream kubescaler-bench kubescaler-loadgen

# The baseline: BASELINE_REF built apart (its own checkout and target directory, both kept).
OLD=""
if [[ ",$ONLY," == *",before,"* ]]; then
  src=$CACHE/baseline-src
  [ -d "$src/.git" ] || git clone -q --no-checkout "$ROOT" "$src"
  git -C "$src" fetch -q "$ROOT" 2>/dev/null || true
  git -C "$src" checkout -q --detach "$BASELINE_REF"
  echo "building the baseline ($BASELINE_REF)" >&2
  (cd "$src" && CARGO_TARGET_DIR=$CACHE/baseline-target cargo build --release -q -p kubescaler-base -p kubescaler-stream)
  OLD=$CACHE/baseline-target/release
fi

# Profiles of USERS_PER_PROFILE users, enough for every stream, the churn's pairs and the probes.
PROFILES=$(( (STREAMS + 10000 + USERS_PER_PROFILE - 1) / (USERS_PER_PROFILE - PROBES_PER_PROFILE) + 1 ))
echo "seeding $PROFILES profiles of $USERS_PER_PROFILE users" >&2
bench_serve_base "$BASE_PORT" "$KEYSPACE"
base_pid=$SPAWNED
curl -fs -X DELETE "localhost:$BASE_PORT/profiles"
curl -fs -X DELETE "localhost:$BASE_PORT/users"
bench_stop "$base_pid"
"$BENCH" seed-fleet --keyspace "$KEYSPACE" --profiles "$PROFILES" --users-per-profile "$USERS_PER_PROFILE" \
  --probes-per-profile "$PROBES_PER_PROFILE" --load-pairs "$WORK/load.txt" --probe-pairs "$WORK/probes.txt" >&2

rc=0
python3 scripts/lib/scale.py --work "$WORK" --new target/release ${OLD:+--old "$OLD"} --bench "$BENCH" \
  --loadgen target/release/loadgen --keyspace "$KEYSPACE" --load-pairs "$WORK/load.txt" \
  --probe-pairs "$WORK/probes.txt" --profiles "$PROFILES" --probes-per-profile "$PROBES_PER_PROFILE" \
  --streams "$STREAMS" --baseline-streams "$BASELINE_STREAMS" --instance-streams "$INSTANCE_STREAMS" \
  --instances "$INSTANCES" --window "$WINDOW" --ramp "$RAMP" --churn "$CHURN" --changes "$CHANGES" \
  --only "$ONLY" >"$WORK/results.json" || rc=$?
mkdir -p "$CACHE"
cp "$WORK/results.json" "$CACHE/bench-scale-$commit.json"
python3 scripts/lib/scale_report.py "$WORK/results.json" --commit "$commit$dirty" --baseline "$BASELINE_REF" \
  --users-per-profile "$USERS_PER_PROFILE" --write docs/SCALE.md
echo "docs/SCALE.md: measured section rewritten (raw results: $CACHE/bench-scale-$commit.json)" >&2
# A failed scenario is reported above; the ones that ran are in the page, and the run fails.
exit "$rc"
