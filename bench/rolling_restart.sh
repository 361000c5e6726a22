#!/usr/bin/env bash
# Rolling restart of two paygated under steady create load (docs/operations.md): wrk creates
# payments while both daemons are restarted in turn; prints the rate beside the same run without
# restarts and, last, `rolling restart: N requests, X 5xx` (exit 1 when X > 0).
#   bash bench/rolling_restart.sh               # DURATION=20 seconds per run by default
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/rolling_restart.py --build-dir "$BUILD_DIR" --duration "${DURATION:-20}"
