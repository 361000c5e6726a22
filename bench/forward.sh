#!/usr/bin/env bash
# Forwarding yardstick (docs/testing.md): GET /ping forwarded over ZeroMQ (ipc://) to one paygated,
# vs proxy_pass to a keepalive upstream (a separate 1-worker nginx answering the same bytes),
# vs `return 200` of the same bytes. nginx runs 1 worker; wrk -t1 -c64 on loopback.
# Builds a Release tree (no sanitizers) in build-release/ first. Usage:
#   bash bench/forward.sh            # DURATION=10 seconds per target by default
#   DURATION=30 bash bench/forward.sh
#   PAYGATED_WORKERS=2 bash bench/forward.sh   # paygated worker threads (default 1)
# The last line printed is exactly: ratio forward/proxy_pass: X
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/forward.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}"
