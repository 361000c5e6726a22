#!/usr/bin/env bash
# Reads near the physical limit (docs/testing.md): retrieve/status through the gateway beside the
# forward-only path (/ping) and pgbench running the same SELECT, in one run and one shape (the
# `make run` shape: 2 nginx workers, 2 daemon workers, wrk -t2 -c64). Last line:
# `ratio status/limit: X`, the limit being 1 / (1/forward + 1/select).
#   bash bench/reads.sh            # DURATION=10 seconds per target by default
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/reads.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}"
