#!/usr/bin/env bash
# The test agent page, a browser's own EventSource and main's API page, in headless Chromium.
# Installs Debian's chromium and the pinned playwright-core when missing.
#   scripts/browser-test.sh             agent, eventsource and apidocs, one after the other
#   scripts/browser-test.sh agent       the agent page against the all-in-one process (no
#                                       backing servers needed; SCREENSHOT=docs/agent-page.png
#                                       refreshes the README's picture)
#   scripts/browser-test.sh eventsource a plain EventSource refused while its pair is locked:
#                                       it gets `refused`, retries by itself, and streams once
#                                       the lock expired (all-in-one too)
#   scripts/browser-test.sh apidocs     main's API page (swagger-ui) renders every operation
#                                       and calls the API under /main (all-in-one)
#   scripts/browser-test.sh rebalance   two instances behind nginx on the real Cassandra and
#                                       Redis (`scripts/services.sh up` first): the page is
#                                       handed off and carries on from the other instance
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ ! -x /usr/bin/chromium ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  }
fi
command -v node >/dev/null || { echo "node not found: the browser test runs on Node.js 20" >&2; exit 1; }
(cd tests/browser && npm ci --no-audit --no-fund --silent)
cargo build --locked -q -p kubescaler
export KUBESCALER_BIN="$ROOT/target/debug/kubescaler"
case "${1:-all-in-one}" in
  # One file at a time: two Chromiums at once would slow each other's timed checks.
  all-in-one) node --test --test-concurrency=1 tests/browser/agent.test.mjs tests/browser/eventsource.test.mjs tests/browser/apidocs.test.mjs ;;
  agent) node --test tests/browser/agent.test.mjs ;;
  eventsource) node --test tests/browser/eventsource.test.mjs ;;
  apidocs) node --test tests/browser/apidocs.test.mjs ;;
  rebalance)
    command -v nginx >/dev/null || { echo "nginx not found: scripts/services.sh up installs it" >&2; exit 1; }
    node --test tests/browser/rebalance.test.mjs ;;
  *) echo "usage: scripts/browser-test.sh [all-in-one|agent|eventsource|apidocs|rebalance]" >&2; exit 2 ;;
esac
