#!/usr/bin/env bash
# The chaos drill (docs/testing.md#the-chaos-drill): two nginx, two paygated, PostgreSQL with a
# synchronous standby and the provider sandbox under steady payment load, while a fault injector
# kills, restarts, reloads and fails over on a schedule printed first; then three ledgers (what
# clients were told, PostgreSQL, the sandbox) are reconciled. The last line is
# `chaos: N payments, 0 lost, 0 duplicated, 0 double-charged, 0 stuck`; exit 1 on any loss,
# duplicate, double charge, stuck payment, amount mismatch or log-check problem.
#   bash bench/chaos.sh                      # CHAOS_SECONDS=300, CHAOS_RATE=6 stories/s
#   CHAOS_SECONDS=60 bash bench/chaos.sh     # a short drill (the schedule is compressed)
#   CHAOS_BUILD_DIR=build bash bench/chaos.sh   # against an existing tree (e.g. the ASan one)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CHAOS_BUILD_DIR:-}" ]; then
    BUILD_DIR=$CHAOS_BUILD_DIR
else
    source bench/build-release.sh
fi

exec python3 bench/chaos.py --build-dir "$BUILD_DIR" --seconds "${CHAOS_SECONDS:-300}" \
    --rate "${CHAOS_RATE:-6}" ${CHAOS_SEED:+--seed "$CHAOS_SEED"} --fsync
