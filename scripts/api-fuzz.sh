#!/usr/bin/env bash
# The HTTP API fuzzed from its own OpenAPI description: schemathesis (property-based, from
# PyPI) against base on the real Cassandra and against main through the all-in-one's front
# door, with every check (tests/api-fuzz/schemathesis.toml), a fixed seed and a bounded number of examples per operation, the
# stateful phase following the document's links (create → get → replace → delete).
#
#   scripts/api-fuzz.sh            # needs Cassandra: scripts/services.sh up
#
# Settings: API_FUZZ_EXAMPLES (per operation, default 50), API_FUZZ_SEED (default 1),
# CASSANDRA_NODES (default 127.0.0.1:9042). Reports (JUnit) go to target/api-fuzz/.
# Any failure fails the run; what it found is fixed in the code with a Rust regression test,
# never baselined here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
VENV="${KUBESCALER_CACHE:-$HOME/.cache/kubescaler}/schemathesis-$SCHEMATHESIS_VERSION"
EXAMPLES=${API_FUZZ_EXAMPLES:-50}
SEED=${API_FUZZ_SEED:-1}
NODES=${CASSANDRA_NODES:-127.0.0.1:9042}
REPORTS="$ROOT/target/api-fuzz"
mkdir -p "$REPORTS"

log() { printf '[api-fuzz] %s\n' "$*"; }

if [ ! -x "$VENV/bin/schemathesis" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

host=${NODES%%,*}
if ! (exec 3<>"/dev/tcp/${host%:*}/${host##*:}") 2>/dev/null; then
  echo "Cassandra is not reachable at $host (CASSANDRA_NODES). Start it with \`scripts/services.sh up\`." >&2
  exit 1
fi

cargo build --locked -q -p kubescaler-base --bin base -p kubescaler --bin kubescaler

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
data_dir=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data_dir"
}
trap cleanup EXIT

wait_ready() { # url, what
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "$2 did not become ready at $1" >&2
  exit 1
}

run() { # name, document URL, extra schemathesis arguments…
  local name=$1 url=$2
  shift 2
  log "$name: $url, $EXAMPLES examples per operation, seed $SEED"
  # A fresh example database each run: the same seed gives the same run. Its working files
  # (.schemathesis/) stay with the reports.
  (cd "$REPORTS" && "$VENV/bin/schemathesis" --config-file "$ROOT/tests/api-fuzz/schemathesis.toml" run "$url" \
    --max-examples "$EXAMPLES" --seed "$SEED" --generation-database none \
    --workers 1 --request-timeout 30 --no-color \
    --report junit --report-junit-path "$REPORTS/$name.xml" "$@")
}

# base on a keyspace of its own: the run creates, replaces and deletes everything.
port=$(free_port)
target/debug/base --listen-address 127.0.0.1 --port "$port" --cassandra-nodes "$NODES" \
  --cassandra-keyspace kubescaler_api_fuzz --log-format json >"$REPORTS/base.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/readyz" base
run base "http://127.0.0.1:$port/openapi.json"

# main through the all-in-one's front door, with an admin token so that the document's
# security is exercised (schemathesis sends it; its auth checks send requests without it).
port=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
target/debug/kubescaler --listen-address 127.0.0.1 --port "$port" --data-dir "$data_dir" \
  --admin-token "$token" --log-format json >"$REPORTS/allinone.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/readyz" all-in-one
run allinone "http://127.0.0.1:$port/main/openapi.json" --header "Authorization: Bearer $token"
log "0 failures"
