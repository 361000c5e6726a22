#!/usr/bin/env bash
# Provider benchmark (docs/testing.md), on one stack with PostgreSQL fsync ON and the
# sky-technologies sandbox (no artificial delay):
#  (1) POST /api/v1/payment/create through the gateway, measured as bench/payments.sh does
#      (bench/create_payment.lua) -> payments created per second, in this same run.
#  (2) N payments accepted as fast as wrk can, then charged at the sandbox by paygated's durable
#      tasks until all are final: payments settled per second (first accept to last final), the
#      p99 of accept -> final, and the p99 of GET .../retrieve/status while the backlog drains.
#      Every payment must end completed with exactly one charge in the sandbox's ledger.
# nginx runs 1 worker; wrk -t1 -c64 on loopback; paygated log_level warn, task_poll_ms 10.
# Builds a Release tree (no sanitizers) in build-release/ first. Usage:
#   bash bench/providers.sh                     # DURATION=10 s, PAYMENTS=2000 by default
#   PAYMENTS=5000 DURATION=30 bash bench/providers.sh
#   PAYGATED_WORKERS=8 TASK_WORKERS=8 bash bench/providers.sh   # (defaults 4 and 4)
# The last line printed is exactly: ratio settled/created: X   (target X >= 0.5)
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/build-release.sh

exec python3 bench/providers.py --build-dir "$BUILD_DIR" --duration "${DURATION:-10}" \
    --payments "${PAYMENTS:-2000}" --daemon-workers "${PAYGATED_WORKERS:-4}" \
    --task-workers "${TASK_WORKERS:-4}"
