#!/usr/bin/env bash
# The one test command: on a fresh machine it installs and starts what the tests need, runs
# every check and test, and stops what it started — also when something fails.
#
#   scripts/test.sh
#
# Phases: toolchain, fmt, manifests, clippy, the all-in-one's tests and the browser test
# (before any backing service runs), services (Redis, Cassandra), the workspace's tests, the
# API fuzzing (schemathesis against base and the all-in-one), the browser test of rebalancing
# (two instances behind nginx), the scaling chain (nginx +
# Prometheus + two stream instances). Each prints its time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

started_services=0
summary=
t_all=$SECONDS
phase() { printf '\n==> %s\n' "$*"; t_phase=$SECONDS; }
done_phase() { printf '<== %s (%d s)\n' "$1" $((SECONDS - t_phase)); }

cleanup() {
  local rc=$?
  if [ "$started_services" = 1 ]; then
    scripts/services.sh down || true
  fi
  printf '\ntotal %d s, exit %d\n' $((SECONDS - t_all)) "$rc"
  # Last, alone on its line: the run's verdict over every test binary.
  [ -z "$summary" ] || printf '%s\n' "$summary"
}
trap cleanup EXIT

phase toolchain
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
cargo --version
done_phase toolchain

phase fmt
cargo fmt --all --check
done_phase fmt

phase manifests
scripts/check-manifests.sh
done_phase manifests

phase clippy
cargo clippy --workspace --all-targets --locked -- -D warnings
done_phase clippy

phase "all-in-one, before any backing service runs"
# The one-command suite must need nothing else: its tests run before Redis and Cassandra start.
busy=""
for port in 6379 9042; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy="$busy $port"; fi
done
[ -z "$busy" ] || echo "note: something already listens on$busy; this run does not prove the all-in-one needs no server"
tests_log=$(mktemp)
set +e
cargo test --locked -p kubescaler -p kubescaler-loadgen 2>&1 | tee "$tests_log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"
done_phase "all-in-one, before any backing service runs"

phase "browser (test agent page and a plain EventSource in Chromium, on the all-in-one)"
scripts/browser-test.sh
done_phase "browser (test agent page and a plain EventSource in Chromium, on the all-in-one)"

phase services
# Leave alone servers a developer already runs; stop only what this run starts.
if ! scripts/services.sh check 2>/dev/null; then started_services=1; fi
scripts/services.sh up
done_phase services

phase tests
set +e
cargo test --workspace --exclude kubescaler --exclude kubescaler-loadgen --locked 2>&1 | tee -a "$tests_log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$tests_log")
rm -f "$tests_log"
[ "$rc" = 0 ] || exit "$rc"
done_phase tests

phase "API fuzzing (schemathesis from the OpenAPI documents: base on Cassandra, the all-in-one)"
scripts/api-fuzz.sh
done_phase "API fuzzing (schemathesis from the OpenAPI documents: base on Cassandra, the all-in-one)"

phase "browser (rebalancing behind nginx, on Cassandra and Redis)"
scripts/browser-test.sh rebalance
done_phase "browser (rebalancing behind nginx, on Cassandra and Redis)"

phase "scaling chain"
scripts/scaling-chain.sh
done_phase "scaling chain"
