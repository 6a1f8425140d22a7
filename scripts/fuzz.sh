#!/usr/bin/env bash
# Fuzzes what kubescaler parses from outside (the cargo-fuzz targets in fuzz/), each for a
# bounded time, and prints per target its executions, speed, coverage, corpus and crashes.
# Exits non-zero when a target crashed, naming the input that did it.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (60 s each, every target)
#   nice -n 19 scripts/fuzz.sh 120 sse                   (on a shared machine)
#
# Environment: FUZZ_SEED (libFuzzer's -seed, 14), FUZZ_SANITIZER (address; none runs faster
# and finds panics alike, but no memory errors), FUZZ_FRESH=1 (start from the seeds alone, as
# the runs in docs/RELIABILITY.md did), FUZZ_TOOLS (where cargo-fuzz is installed),
# FUZZ_TARGET_DIR (its build directory).
#
# Not part of scripts/test.sh or CI: a fuzz run is open-ended, and a crash it finds becomes a
# unit test beside the code, which they do run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECONDS_PER_TARGET=${1:-60}
[ $# -eq 0 ] || shift
SEED=${FUZZ_SEED:-14}
SANITIZER=${FUZZ_SANITIZER:-address}
TOOLS=${FUZZ_TOOLS:-$HOME/.cache/kubescaler/tools}
TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/kubescaler/fuzz-target}
CARGO_FUZZ_VERSION=0.13.2
case $SECONDS_PER_TARGET in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

all_targets=$(cd fuzz/fuzz_targets && for f in *.rs; do echo "${f%.rs}"; done)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets <<<"$all_targets"
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all_targets" || { echo "no fuzz target '$t'; there are: ${all_targets//$'\n'/ }" >&2; exit 2; }
done

# libfuzzer-sys compiles libFuzzer itself, which is C++.
if ! command -v c++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  else
    echo "a C++ compiler is needed (libFuzzer is built from source): install g++" >&2; exit 1
  fi
fi

# cargo-fuzz in a directory of its own, pinned, so this script installs it once and the same.
export PATH="$TOOLS/bin:$PATH"
if [ "$(cargo-fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force --root "$TOOLS"
fi

# cargo-fuzz passes nightly-only flags (-Z sanitizer, sanitizer coverage) to rustc; this lets
# the stable toolchain take them, so no nightly needs to be installed.
export RUSTC_BOOTSTRAP=1
build_flags=(--sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")
cargo fuzz build "${build_flags[@]}"

echo "seed $SEED, sanitizer $SANITIZER, $SECONDS_PER_TARGET s per target: ${targets[*]}"
# A figure of libFuzzer's last stats line (cov, ft, corp), and of its final stats.
field() { local v; v=$(sed -nE "s/.*$1: ([^ ]+).*/\\1/p" <<<"$stats"); echo "${v:--}"; }
final() { local v; v=$(sed -nE "s/^stat::$1: *([0-9]+).*/\\1/p" "$log" | tail -1); echo "${v:--}"; }
rows=()
crashed=0
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  [ "${FUZZ_FRESH:-0}" != 1 ] || rm -rf "$corpus"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  log=fuzz/artifacts/$t.log
  # Only the first directory is written to: the committed seeds stay as they are.
  args=("fuzz/corpus/$t")
  [ ! -d "fuzz/seeds/$t" ] || args+=("fuzz/seeds/$t")
  opts=(-seed="$SEED" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1
    # A parser that takes seconds on a few kilobytes is a finding too (a timeout artifact).
    -timeout=10)
  [ ! -f "fuzz/dicts/$t.dict" ] || opts+=(-dict="fuzz/dicts/$t.dict")
  before=$(find fuzz/artifacts/"$t" -type f | wc -l)
  printf '\n==> %s (log %s)\n' "$t" "$log"
  rc=0
  cargo fuzz run "${build_flags[@]}" "$t" "${args[@]}" -- "${opts[@]}" >"$log" 2>&1 || rc=$?

  # The last stats line is the final one: DONE after the time ran out, else the last before
  # the crash.
  stats=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  execs=$(final number_of_executed_units)
  rate=$(final average_exec_per_sec)
  took=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -1)
  new_artifacts=$(($(find fuzz/artifacts/"$t" -type f | wc -l) - before))
  row="| $t | ${took:--} | $execs | $rate | $(field cov) | $(field ft) | $(field corp) | $new_artifacts |"
  rows+=("$row")
  if [ "$rc" != 0 ] || [ "$new_artifacts" != 0 ]; then
    crashed=1
    tail -n 40 "$log"
    echo "!!! $t failed (exit $rc); its input:"
    grep -E 'Test unit written to|artifact_prefix' "$log" | sed 's/^/    /' || true
  fi
  echo "$row"
done

printf '\nseed %s, sanitizer %s\n' "$SEED" "$SANITIZER"
echo '| target | seconds | executions | exec/s | cov | ft | corpus (units/bytes) | crashes |'
echo '| --- | --- | --- | --- | --- | --- | --- | --- |'
printf '%s\n' "${rows[@]}"
if [ "$crashed" = 1 ]; then
  echo "a target crashed: reproduce with RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/FILE" >&2
  exit 1
fi
