#!/usr/bin/env bash
# Payment yardsticks (docs/testing.md), on one stack with PostgreSQL fsync ON:
#  (a) GET /api/v1/payment/<id>/retrieve/status through the gateway (token check, ZeroMQ, one
#      SELECT) vs GET /ping forwarded without database work; prints `ratio status/forward: X`.
#  (b) POST /api/v1/payment/create through the gateway (a new idempotency_token per request) vs
#      pgbench running bench/create_payment.sql (the same INSERTs) with -c = paygated workers,
#      -j 2, same duration, same PostgreSQL.
# nginx runs 1 worker; wrk -t1 -c64 on loopback; paygated log_level warn.
# Builds a Release tree (no sanitizers) in build-release/ first. Usage:
#   bash bench/payments.sh                      # DURATION=10 seconds per target by default
#   DURATION=30 bash bench/payments.sh
#   PAYGATED_WORKERS=8 bash bench/payments.sh   # paygated worker threads and pgbench -c (default 4)
# The last line printed is exactly: ratio create/pgbench: X
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/payments.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}" \
    --daemon-workers "${PAYGATED_WORKERS:-4}"
