#!/usr/bin/env python3
"""The payment benchmark behind bench/payments.sh (launches everything through scripts/stack.py).

One stack: PostgreSQL with fsync ON (a create is durable), paygated (log_level warn,
$PAYGATED_WORKERS workers, default 4), nginx with worker_processes 1 and access_log off.
Every HTTP measurement is `wrk -t1 -c64 -d<N>s --latency` on loopback after a short warm-up.

(a) status vs forward, same run:
      status   GET /api/v1/payment/<id>/retrieve/status with a client token (token check in
               nginx, ZeroMQ to paygated, one SELECT)
      forward  GET /ping forwarded over ZeroMQ, no database work (bench/forward.sh's path)
    prints req/s and p99 of both and `ratio status/forward: X`.
(b) create vs pgbench:
      create   POST /api/v1/payment/create through the gateway, a new UUID idempotency_token
               in every request (bench/create_payment.lua)
      pgbench  bench/create_payment.sql (the daemon's create INSERTs) with -M extended,
               -c <paygated workers> -j 2 for the same duration on the same PostgreSQL
    prints TPS and p99 of both; the last line is exactly `ratio create/pgbench: X`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "scripts"))
from stack import PG_BIN, Stack, StackError, wait_for_token_sync  # noqa: E402
from common import bench_stack, API, create_payment, line, measure_create, run, wrk  # noqa: E402

CLIENT = "bench"
CREATE_SQL = BENCH / "create_payment.sql"


def script_variables(sql: str) -> set:
    """`:name` variables a pgbench script uses but does not \\set itself."""
    body = re.sub(r"--[^\n]*", "", sql)
    used = set(re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", body))
    defined = set(re.findall(r"^\s*\\set\s+(\w+)", body, re.M))
    return used - defined


def pgbench(stack: Stack, script: Path, clients: int, threads: int, duration: int,
            variables: dict, logdir: Path, log: bool = True) -> dict:
    """pgbench -n with `script` against the stack's database: TPS and (from the per-transaction
    log) p99 latency in ms. Runs as the database superuser over TCP, like paygated."""
    # -M extended: unnamed extended-protocol statements with parameters, as paygated's PQexecParams
    cmd = [str(PG_BIN / "pgbench"), "-n", "-M", "extended", "-h", "127.0.0.1", "-p", str(stack.pg.port),
           "-U", "paygate", "-c", str(clients), "-j", str(threads), "-T", str(duration),
           "-f", str(script)]
    for k, v in variables.items():
        cmd += ["-D", f"{k}={v}"]
    prefix = logdir / "pgbench_log"
    if log:
        cmd += ["-l", f"--log-prefix={prefix}"]
    cmd.append("paygate")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, cwd=logdir)
    if out.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out.stdout, re.M)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    if not tps or not done:
        raise StackError(f"cannot parse pgbench output:\n{out.stdout}{out.stderr}")
    result = {"tps": float(tps.group(1)), "failed": int(failed.group(1)) if failed else 0,
              "transactions": int(done.group(1)), "raw": out.stdout}
    if log:
        latencies = []
        for f in logdir.glob("pgbench_log.*"):
            for line in f.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))   # microseconds
            f.unlink()
        if not latencies:
            raise StackError("pgbench wrote no per-transaction log")
        latencies.sort()
        result["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000.0
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build-release")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    ap.add_argument("--daemon-workers", type=int,
                    default=int(os.environ.get("PAYGATED_WORKERS", "4")),
                    help="paygated worker threads (default 4); pgbench -c uses the same number")
    ap.add_argument("--pgbench-threads", type=int, default=2, help="pgbench -j (default 2)")
    args = ap.parse_args()
    if not CREATE_SQL.exists():
        raise StackError(f"{CREATE_SQL} is missing (the pgbench twin of the daemon's create)")
    sql = CREATE_SQL.read_text()
    pgbench_threads = max(1, min(args.pgbench_threads, args.daemon_workers))

    logdir = Path(tempfile.mkdtemp(prefix="paygate-pgbench-"))
    os.chmod(logdir, 0o755)
    try:
        with bench_stack(args.build_dir, log_level="warn", daemon_workers=args.daemon_workers,
                         fsync=True) as s:
            token = s.create_token(CLIENT)
            client_id = s.psql(f"SELECT id FROM clients WHERE name = '{CLIENT}'")
            known = {"client_id": client_id, "client": CLIENT, "client_name": CLIENT}
            missing = script_variables(sql) - set(known)
            if missing:
                raise StackError(f"{CREATE_SQL} uses variables this benchmark does not know: "
                                 f"{', '.join(sorted(missing))}")
            variables = {k: v for k, v in known.items() if k in script_variables(sql)}
            s.start_daemon("bench")
            s.start_nginx(worker_processes=1, access_log="off", keepalive_requests=1000000)
            if not wait_for_token_sync(s, token):
                raise StackError("the bench client's token is not accepted")
            base = f"http://127.0.0.1:{s.port}"
            auth = {"x_auth_token": token}

            # a payment to read, and a check that each target answers 200 JSON
            payment = create_payment(s, token, "6f1c2b9e-0d7a-4f3e-8b5c-1a2d3e4f5a6b")
            status_path = f"{API}/{payment}/retrieve/status"
            for path, hdrs in ((status_path, auth), ("/ping", {})):
                st, headers, raw = s.http("GET", path, headers=hdrs)
                if st != 200 or headers.get("Content-Type") != "application/json":
                    raise StackError(f"GET {path}: {st} {headers.get('Content-Type')!r} {raw[:200]!r}")

            print(f"bench: wrk -t1 -c64 -d{args.duration}s --latency, nginx worker_processes 1, "
                  f"paygated workers={args.daemon_workers}, PostgreSQL fsync=on", flush=True)

            # (a) status vs forward
            results = {}
            for key, path, hdrs, label in (
                    ("status", status_path, auth, "status (GET .../retrieve/status, token)"),
                    ("forward", "/ping", {}, "forward (GET /ping, no database)")):
                if args.warmup:
                    wrk(base + path, args.warmup, hdrs)
                r = wrk(base + path, args.duration, hdrs)
                if r["non2xx"]:
                    raise StackError(f"{label}: {r['non2xx']} non-2xx responses\n{r['raw']}")
                results[key] = r
                extra = f"  (socket errors: {r['socket_errors']})" if r["socket_errors"] else ""
                line(label, r["rps"], "req/s", r["p99_ms"], extra)
            print(f"ratio status/forward: {results['status']['rps'] / results['forward']['rps']:.2f}",
                  flush=True)

            # (b) create through the gateway vs pgbench with the same INSERTs
            r = measure_create(s, base, token, args.duration, args.warmup)

            if args.warmup:
                pgbench(s, CREATE_SQL, args.daemon_workers, pgbench_threads, args.warmup,
                        variables, logdir, log=False)
            pg = pgbench(s, CREATE_SQL, args.daemon_workers, pgbench_threads, args.duration,
                         variables, logdir)
            if pg["failed"]:
                raise StackError(f"pgbench: {pg['failed']} failed transactions\n{pg['raw']}")
            line(f"pgbench (create_payment.sql, -c {args.daemon_workers} -j {pgbench_threads})",
                 pg["tps"], "tps", pg["p99_ms"])
            print(f"ratio create/pgbench: {r['rps'] / pg['tps']:.2f}", flush=True)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    run(main)
