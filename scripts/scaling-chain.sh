#!/usr/bin/env bash
# The autoscaling chain on real components (nginx, Prometheus, two stream instances, base,
# Redis, Cassandra); see scripts/scaling_chain.py. Needs `scripts/services.sh up` and the
# manifests' Python environment from scripts/check-manifests.sh; installs nginx and Prometheus
# from Debian's packages when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${KUBESCALER_STATE:-$ROOT/.dev}/venv-manifests
if ! command -v nginx >/dev/null || ! command -v prometheus >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light prometheus >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light prometheus >/dev/null
  }
fi
# Debian starts the packaged daemons where it can; the check runs its own on other ports.
[ -x "$VENV/bin/python" ] || scripts/check-manifests.sh >/dev/null
cargo build --locked -q -p kubescaler-base -p kubescaler-stream
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" scripts/scaling_chain.py "$ROOT" "$ROOT/target/debug" "$work" || {
  for log in "$work"/*.log; do echo "--- $log"; tail -n 20 "$log"; done
  exit 1
}
