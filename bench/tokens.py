#!/usr/bin/env python3
"""The token benchmark behind bench/tokens.sh (issue P8 #7; launches everything through
scripts/stack.py).

One stack: PostgreSQL, one paygated (log_level warn), nginx `nginx` with `worker_processes 4` and
`access_log off`; the token table is the default paygate_token_zone (64m, 1.2 million tokens).
  1. anchor     wrk /ping for --duration s with nothing to sync: req/s and p99.
  2. sync       one INSERT of --tokens tokens (timed apart), then wrk /ping from its commit until
                nginx's table reached the new version: the time to sync them, the table's own
                figures (chunks, longest chunk, its CPU time) and /ping p99 and max meanwhile.
  3. first load a second nginx (`edge2`, 4 workers) started on those tokens: the time from its
                start until its table is loaded (every token, in chunks, from an empty zone).
  4. revocation --revocations tokens revoked one at a time (an UPDATE like paygatectl's): from
                the commit to the first 403 of a client polling on a keep-alive connection: p50
                and max. The table is shared, so the first worker that refuses means all do.
Prints one line per figure; the last line is `ratio ping p99 sync/idle: X` (the event loops are
not held up by a sync when X stays near 1; the target for the revocation is a max under 1.5 s).
"""

import argparse
import hashlib
import http.client
import os
import re
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "scripts"))
sys.path.insert(0, str(BENCH))
from stack import StackError, wait_for_token_sync, wait_until  # noqa: E402
from common import bench_stack, line, run, wrk  # noqa: E402

STATUS_PATH = "/api/v1/payment/00000000-0000-4000-8000-000000000000/retrieve/status"
TABLE_LINE = re.compile(r"\] (\d+)#\d+: paygate: token list version (\d+), (\d+) live tokens \(was (\d+)\); "
                        r"(\d+) changes in (\d+) chunks, (\d+) ms, longest chunk (\d+) us \(cpu (\d+) us\)")
WORKERS = 4


def table_rounds(ngx, offset: int = 0) -> list:
    with open(ngx.error_log, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [tuple(int(g) for g in m.groups()) for m in TABLE_LINE.finditer(text)]


def wait_version(ngx, version: int, offset: int, timeout: float) -> float:
    """Polls nginx's error log until its table logs `version`; returns when it was seen."""
    def reached():
        return any(r[1] >= version for r in table_rounds(ngx, offset))
    wait_until(reached, timeout, f"the token table to reach version {version}", interval=0.01)
    return time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build-release")
    ap.add_argument("--duration", type=int, default=10, help="seconds of the idle /ping anchor")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--revocations", type=int, default=20)
    args = ap.parse_args()

    with bench_stack(args.build_dir, log_level="warn") as s:
        token = s.create_token("bench-tokens")
        s.start_daemon("d1")
        ngx = s.start_nginx(worker_processes=WORKERS, access_log="off", keepalive_requests=1000000)
        wait_for_token_sync(s, token)
        base = f"http://127.0.0.1:{s.port}"
        print(f"bench: nginx worker_processes {WORKERS}, paygate_token_zone 64m (default), one paygated; "
              f"/ping with wrk -t1 -c64 --latency; {args.tokens} tokens in one INSERT", flush=True)

        wrk(base + "/ping", 2)
        idle = wrk(base + "/ping", args.duration)
        line("ping, nothing to sync (anchor)", idle["rps"], "req/s", idle["p99_ms"])

        cid = s.psql("INSERT INTO clients (name) VALUES ('bench-bulk') RETURNING id").split()[0]
        offset = ngx.error_log.stat().st_size
        t0 = time.monotonic()
        s.psql("INSERT INTO api_tokens (client_id, token_sha256, token_prefix)"
               f" SELECT {int(cid)}, encode(sha256(convert_to(tok, 'UTF8')), 'hex'), left(tok, 8)"
               f" FROM (SELECT 'pgt_' || encode(sha256(convert_to('bench-' || i, 'UTF8')), 'hex') AS tok"
               f"       FROM generate_series(1, {args.tokens}) AS i) AS s", timeout=900)
        committed = time.monotonic()
        version = int(s.psql("SELECT max(version) FROM api_tokens"))
        print(f"bench: INSERT of {args.tokens} tokens took {committed - t0:.1f} s (PostgreSQL, not measured "
              f"below)", flush=True)
        synced = {}

        def table_synced():
            if "at" not in synced and any(r[1] >= version for r in table_rounds(ngx, offset)):
                synced["at"] = time.monotonic()
            return "at" in synced
        during = wrk(base + "/ping", 600, stop_when=table_synced)
        if "at" not in synced:
            synced["at"] = wait_version(ngx, version, offset, 600)
        rounds = [r for r in table_rounds(ngx, offset) if r[1] <= version]
        chunks = sum(r[5] for r in rounds)
        longest = max(r[7] for r in rounds) / 1000
        longest_cpu = max(r[8] for r in rounds) / 1000
        line("ping while the table syncs", during["rps"], "req/s", during["p99_ms"],
             f"  max {max_latency(during):.2f} ms")
        print(f"sync of {args.tokens} new tokens: {synced['at'] - committed:.2f} s from the commit "
              f"({chunks} chunks, longest chunk {longest:.2f} ms, its CPU {longest_cpu:.2f} ms)", flush=True)

        # the first load of an nginx started on all of them
        started = time.monotonic()
        edge = s.start_nginx(name="edge2", worker_processes=WORKERS, access_log="off")
        loaded = wait_version(edge, version, 0, 600)
        first = table_rounds(edge)
        print(f"first load of {args.tokens + 1} tokens by a new nginx: {loaded - started:.2f} s from its start "
              f"({sum(r[5] for r in first)} chunks, longest chunk {max(r[7] for r in first) / 1000:.2f} ms, "
              f"its CPU {max(r[8] for r in first) / 1000:.2f} ms)", flush=True)
        s.stop_nginx("edge2")

        # revocations, one at a time, each polled until refused
        delays = []
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        for i in range(args.revocations):
            n = 1 + (i * 7919) % args.tokens
            tok = "pgt_" + hashlib.sha256(f"bench-{n}".encode()).hexdigest()
            conn.request("GET", STATUS_PATH, headers={"x_auth_token": tok})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 404:
                raise StackError(f"bulk token #{n} answered {resp.status} before its revocation")
            s.psql(f"UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = "
                   f"encode(sha256(convert_to('{tok}', 'UTF8')), 'hex')")
            done = time.monotonic()
            while True:
                conn.request("GET", STATUS_PATH, headers={"x_auth_token": tok})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 403:
                    delays.append((time.monotonic() - done) * 1000)
                    break
                if time.monotonic() - done > 10:
                    raise StackError(f"revoked token #{n} still answered {resp.status} after 10 s")
        conn.close()
        print(f"revocation to first 403 ({args.revocations} tokens, {args.tokens + 1} live): "
              f"p50 {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms (bound 1500 ms)", flush=True)
    print(f"ratio ping p99 sync/idle: {during['p99_ms'] / idle['p99_ms']:.2f}")
    return 0


def max_latency(result: dict) -> float:
    """wrk's "Latency ... Max" column, in ms."""
    m = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", result["raw"])
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(main)
