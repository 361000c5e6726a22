#!/usr/bin/env bash
# Token benchmark (issue P8 #7, docs/testing.md): a million tokens synced into nginx's shared token
# table while /ping runs (p99 beside the same /ping with nothing to sync: the anchor), the first
# load of a new nginx, and how fast a revocation is refused (p50, max; the bound is 1.5 s).
# nginx runs worker_processes 4, one paygated. Builds a Release tree (no sanitizers) in
# build-release/ first. Usage:
#   bash bench/tokens.sh                      # TOKENS=1000000 REVOCATIONS=20 DURATION=10
#   TOKENS=200000 bash bench/tokens.sh
# The last line printed is exactly: ratio ping p99 sync/idle: X
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/tokens.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}" \
    --tokens "${TOKENS:-1000000}" --revocations "${REVOCATIONS:-20}"
