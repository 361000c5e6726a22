#!/usr/bin/env python3
"""The reads benchmark behind bench/reads.sh (P8 "reads near the physical limit").

One stack in the `make run` shape: 2 nginx workers, one paygated with 2 workers, its default log
level (info: a line per request), PostgreSQL. Three measurements in one run, same concurrency:
  status   wrk -t2 -c64 GET /api/v1/payment/<id>/retrieve/status with a client token
  forward  wrk -t2 -c64 GET /ping (forwarded over ZeroMQ, no database work)
  select   pgbench -M prepared -c64 -j2: the SELECT the status route runs
On a CPU-bound machine a read through the gateway costs at least the forward path plus the
database, so its limit is L = 1 / (1/forward + 1/select). The last line is exactly
`ratio status/limit: X` (target >= 0.7)."""

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from common import API, bench_stack, create_payment, line, run, wrk
from stack import PG_BIN, StackError, wait_for_token_sync


def pgbench_select(stack, payment: str, duration: int, logdir: Path) -> float:
    script = logdir / "status.sql"
    script.write_text(f"SELECT client_id, status FROM payments WHERE id = '{payment}'::uuid;\n")
    os.chmod(script, 0o644)
    cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(stack.pg.port),
           "-U", "paygate", "-c", "64", "-j", "2", "-T", str(duration), "-f", str(script), "paygate"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, cwd=logdir)
    if out.returncode != 0:
        raise StackError(f"pgbench failed: {out.stdout}{out.stderr}")
    for ln in out.stdout.splitlines():
        if ln.startswith("tps = ") and "without initial connection time" in ln:
            return float(ln.split()[2])
    raise StackError(f"cannot parse pgbench output:\n{out.stdout}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="paygate-reads-"))
    os.chmod(logdir, 0o755)
    with bench_stack(args.build_dir, daemon_workers=2) as s:
        # max_connections: pgbench's 64 clients beside the daemon's
        token = s.create_token("bench")
        s.start_daemon("d1")
        s.start_nginx(worker_processes=2)
        if not wait_for_token_sync(s, token):
            raise StackError("the bench token never reached nginx")
        base = f"http://127.0.0.1:{s.port}"
        payment = create_payment(s, token, "0b1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b")
        status_path = f"{API}/{payment}/retrieve/status"
        print("bench: wrk -t2 -c64, nginx 2 workers, paygated 2 workers (log_level info), pgbench -c64 -j2",
              flush=True)
        figures = {}
        for key, path, headers, label in (
                ("status", status_path, {"x_auth_token": token}, "status (GET .../retrieve/status, token)"),
                ("forward", "/ping", {}, "forward (GET /ping, no database)")):
            if args.warmup:
                wrk(base + path, args.warmup, headers, threads=2)
            r = wrk(base + path, args.duration, headers, threads=2)
            if r["non2xx"]:
                raise StackError(f"{key}: {r['non2xx']} non-2xx answers")
            line(label, r["rps"], "req/s", r["p99_ms"])
            figures[key] = r["rps"]
        tps = pgbench_select(s, payment, args.duration, logdir)
        print(f"{'select (pgbench -M prepared, same SELECT)':<44} {tps:>10.1f} tps", flush=True)
        limit = 1.0 / (1.0 / figures["forward"] + 1.0 / tps)
        print(f"{'limit L = 1/(1/forward + 1/select)':<44} {limit:>10.1f} req/s", flush=True)
        print(f"ratio status/limit: {figures['status'] / limit:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    run(main)
