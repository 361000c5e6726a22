#!/usr/bin/env bash
# Replay yardstick (docs/testing.md, docs/idempotency.md): a POST /api/v1/payment/create replay
# (same body and idempotency_token as an earlier create) answered by nginx from the shared-memory
# zone (paygate_idempotency_zone), vs nginx `return 200` of the same reply bytes (same content
# type) for the same POST, in the same nginx, same run. nginx runs worker_processes 1 with the
# zone; one paygated (it must see none of the replays: checked before and after measuring).
# wrk -t1 -c64 --latency on loopback, the POST built by a generated wrk Lua script.
# Builds a Release tree (no sanitizers) in build-release/ first. Usage:
#   bash bench/replay.sh             # DURATION=10 seconds per target by default
#   DURATION=30 bash bench/replay.sh
# The last line printed is exactly: ratio replay/return200: X   (target X >= 0.8)
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/replay.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}"
