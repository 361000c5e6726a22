#!/usr/bin/env python3
"""The rolling-restart drill behind bench/rolling_restart.sh (docs/operations.md).

One stack: PostgreSQL (fsync ON), two paygated (d1, d2; log_level warn), nginx with 2 workers
talking to both. wrk -t1 -c64 runs POST /api/v1/payment/create (a new idempotency_token per
request, bench/create_payment.lua) twice for the same duration:
  anchor   no restart
  rolling  while both daemons are restarted in turn (SIGTERM, start, wait until it serves), twice
and prints both rates, the share of the anchor's rate kept, the 5xx count (wrk's non-2xx: every
create is 200 otherwise) and that every answered create is a committed row. The last line is
exactly `rolling restart: N requests, X 5xx` and the exit status is 1 when X > 0."""

import argparse
import signal
import threading
import time

from common import API, bench_stack, create_payment, line, run, wrk, CREATE_LUA  # noqa: F401
from stack import StackError, wait_for_token_sync


def restart_both(stack, rounds: int, load: threading.Thread, log: list) -> None:
    """Restarts d1 then d2 (SIGTERM, start, 1 s of load on both), `rounds` times, while `load` runs."""
    time.sleep(1.0)
    for _ in range(rounds):
        for name in ("d1", "d2"):
            if not load.is_alive():
                return
            started = time.monotonic()
            code = stack.kill_daemon(name, signal.SIGTERM)
            stack.start_daemon(name, log_level="warn")
            log.append(f"{name}: drained (exit {code}) and back in {time.monotonic() - started:.2f} s")
            time.sleep(1.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--duration", type=int, default=20)
    args = ap.parse_args()
    with bench_stack(args.build_dir, fsync=True) as stack:
        token = stack.create_token("bench")
        for name in ("d1", "d2"):
            stack.start_daemon(name, log_level="warn")
        stack.start_nginx(worker_processes=2, access_log="off", paygate_timeout="5s")
        if not wait_for_token_sync(stack, token):
            raise StackError("the bench token never reached nginx")
        base = f"http://127.0.0.1:{stack.port}"
        wrk(base + "/", 2, script=CREATE_LUA, script_args=[token])   # warm-up

        anchor = wrk(base + "/", args.duration, script=CREATE_LUA, script_args=[token])
        line("anchor: create, no restart", anchor["rps"], "req/s", anchor["p99_ms"])

        rows_before = int(stack.psql("SELECT count(*) FROM payments"))
        # wrk on a thread, the restarts on this one: the harness starts daemons with a parent-
        # death signal, which fires when the *thread* that started them ends.
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(
            wrk(base + "/", args.duration, script=CREATE_LUA, script_args=[token])))
        load.start()
        events: list = []
        try:
            restart_both(stack, max(1, args.duration // 8), load, events)
        finally:
            load.join()
        if not result:
            raise StackError("the wrk run under restarts failed")
        rolling = result
        rows = int(stack.psql("SELECT count(*) FROM payments")) - rows_before
        for e in events:
            print(f"  {e}", flush=True)
        line(f"rolling: create, {len(events)} daemon restarts", rolling["rps"], "req/s", rolling["p99_ms"],
             f"  (socket errors: {rolling['socket_errors']})" if rolling["socket_errors"] else "")
        print(f"ratio rolling/anchor: {rolling['rps'] / anchor['rps']:.2f}", flush=True)
        if rows < rolling["requests"] - rolling["non2xx"]:
            raise StackError(f"{rolling['requests'] - rolling['non2xx']} creates answered 200 but only {rows} rows")
        print(f"rolling restart: {rolling['requests']} requests, {rolling['non2xx']} 5xx", flush=True)
        return 1 if rolling["non2xx"] else 0


if __name__ == "__main__":
    run(main)
