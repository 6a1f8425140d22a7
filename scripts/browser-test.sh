#!/usr/bin/env bash
# The test agent page in headless Chromium against the all-in-one process (no backing
# servers needed). Installs Debian's chromium and the pinned playwright-core when missing.
#   scripts/browser-test.sh           (SCREENSHOT=docs/agent-page.png refreshes the README's picture)
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
KUBESCALER_BIN="$ROOT/target/debug/kubescaler" node --test tests/browser/
