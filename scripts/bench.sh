#!/usr/bin/env bash
# Runs every benchmark of the project and rewrites docs/BENCHMARKS.md with the results: each
# figure beside its baseline from the same run, as a ratio. Takes about 15 minutes; not part
# of CI. Needs nothing but `scripts/services.sh up` (which it runs).
#   scripts/bench.sh
set -euo pipefail
# shellcheck source=lib/bench.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/bench.sh"
bench_services_up
for bench in base main stream rebalance allinone; do
  echo "==> bench-$bench" >&2
  BENCH_OUT="$WORK/$bench.md" "scripts/bench-$bench.sh" >"$WORK/$bench.log" 2>&1 || {
    tail -n 30 "$WORK/$bench.log" >&2
    echo "bench-$bench failed" >&2
    exit 1
  }
done
section() { awk '!seen[$0]++' "$WORK/$1.md"; }
{
  cat <<EOF
# Benchmarks

Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Every figure stands beside a baseline
measured in the same run on the same machine, and the ratio between them; absolute numbers
depend on the machine, ratios are what to compare between runs.

Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr),
$(rustc --version), $(java -version 2>&1 | head -n 1), single-node Apache Cassandra 5.0 and Redis
from \`scripts/services.sh up\`. Load generator, services and backing servers share the machine.
What earlier runs showed, and what was tried to improve them: [PERFORMANCE.md](PERFORMANCE.md).

## base: profiles of a user (\`scripts/bench-base.sh\`)

\`GET /profiles/user/{id}\` on base beside the same prepared CQL query issued directly by a Rust
client (same load loop, concurrency and clock), with 1,000 and 100,000 profiles; the user is in
10 of them either way. Targets: base p50 ≤ 1.3 × CQL p50; base p50 at 100,000 ≤ 1.5 × at 1,000.

$(section base)

## main: launched profiles of a user, and test data (\`scripts/bench-main.sh\`)

\`GET /login/{userId}\` on main (a user in 50 profiles, 10 launched) beside base's
\`GET /profiles/user/{id}\` for the same user — main's answer is that call plus one Redis
\`MGET\`. Then test data of 100 profiles × 100 users. Targets: main ≥ 0.8 × base's throughput;
test data under 10 s.

$(section main)

## stream (\`scripts/bench-stream.sh\`)

stream on core 0, the load generator on core 1. Time to first event over 200 new streams (at
most 4 opening at once), once running and, apart, for the first 200 after the process starts; capacity at the default rate (25,000 B every 100 ms); fan-out with the
generator unthrottled beside a raw-TCP fan-out server (no HTTP) sharing one payload through a
\`broadcast\` channel — the baseline the target names — and through a \`watch\` channel as
stream's own feed does, the stricter of the two; 1,000 slow readers at 10 KB/s for 60 s (RSS every 10 s, kernel TCP
memory per connection, age of the newest message read); lock churn through stream's lock code
(acquire + marker + release, three commands) beside \`redis-benchmark SET NX PX\`.

$(section stream)

## stream: rebalancing (\`scripts/bench-rebalance.sh\`)

1,000 streams (1,000 B every 100 ms) on one stream instance behind nginx; a second instance
starts (both with a 1 s \`REBALANCE_PERIOD\`) and the first hands half off. Per moved stream,
from its \`rebalance\` event to streaming again (reconnected through nginx, first message),
beside the same client's time from request to first message on a fresh open plus the 250 ms
the event asks to wait — the floor of any move; the first instance's time to release the locks
of a hand-off (its log); the stream-seconds without messages over all moves.

$(section rebalance)

## all-in-one (\`scripts/bench-allinone.sh\`)

The release binary, process start to the first \`/readyz\` 200 (polled every millisecond), on an
empty data directory and on one holding test data; the separate \`base\` binary starting on a
running Cassandra as the reference. Target: under 100 ms. Then \`loadgen\` holds 1,000 streams
through the front door (pairs from \`/main/profiles\`): RSS and CPU under load, and bytes
received beside bytes offered (250 KB/s per open stream).

$(section allinone)
EOF
} >docs/BENCHMARKS.md
echo "docs/BENCHMARKS.md rewritten" >&2
