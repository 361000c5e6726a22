#!/usr/bin/env python3
"""The forwarding benchmark behind bench/forward.sh (launches everything through scripts/stack.py).

Three targets on one nginx (worker_processes 1, access_log off), each measured with
`wrk -t1 -c64 -d<N>s --latency` after a short warm-up:
  forward     GET /ping -> paygate_pass -> ZeroMQ ipc:// -> one paygated (no database work)
  proxy_pass  GET /proxy/ping -> upstream keepalive 64 -> a separate 1-worker nginx answering
              {"status":"ok"} as application/json (a separate process, like the daemon)
  return      GET /return/ping -> `return 200 '{"status":"ok"}'` in the same nginx
Prints requests/s and p99 latency for each; the last line is `ratio forward/proxy_pass: X`.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import StackError  # noqa: E402
from common import bench_stack, run, wrk  # noqa: E402

BODY = '{"status":"ok"}'
TARGETS = [("forward", "/ping", "forward (ZeroMQ ipc, paygated)"),
           ("proxy_pass", "/proxy/ping", "proxy_pass (keepalive upstream)"),
           ("return", "/return/ping", "return 200")]

UPSTREAM_SERVER = f"""
        keepalive_requests 1000000;
        location / {{
            default_type application/json;
            return 200 '{BODY}';
        }}"""

SERVER_EXTRA = f"""
        location = /proxy/ping {{
            proxy_pass http://paygate_bench_upstream/ping;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /return/ping {{
            default_type application/json;
            return 200 '{BODY}';
        }}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build-release")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    ap.add_argument("--daemon-workers", type=int, default=int(os.environ.get("PAYGATED_WORKERS", "1")),
                    help="paygated worker threads (default 1, like the 1-worker upstream nginx)")
    args = ap.parse_args()

    results = {}
    with bench_stack(args.build_dir, log_level="warn", daemon_workers=args.daemon_workers) as s:
        s.start_daemon("bench")
        upstream = s.start_plain_nginx("upstream", UPSTREAM_SERVER, worker_processes=1)
        s.start_nginx(
            worker_processes=1, access_log="off", keepalive_requests=1000000,
            http_extra=(f"    upstream paygate_bench_upstream {{\n"
                        f"        server 127.0.0.1:{upstream.port};\n"
                        f"        keepalive 64;\n"
                        f"        keepalive_requests 1000000;\n"
                        f"    }}"),
            server_extra=SERVER_EXTRA)

        # Same status, bytes and content type from all three, or the comparison means nothing.
        for key, path, _ in TARGETS:
            status, headers, body = s.http("GET", path)
            ctype = headers.get("Content-Type")
            if status != 200 or body.decode() != BODY or ctype != "application/json":
                raise StackError(f"{path}: {status} {ctype!r} {body!r}, expected 200 "
                                 f"application/json {BODY}")
        base = f"http://127.0.0.1:{s.port}"
        print(f"bench: wrk -t1 -c64 -d{args.duration}s --latency, nginx worker_processes 1, "
              f"paygated workers={args.daemon_workers}", flush=True)
        for key, path, label in TARGETS:
            if args.warmup:
                wrk(base + path, args.warmup)
            r = wrk(base + path, args.duration)
            if r["non2xx"]:
                raise StackError(f"{label}: {r['non2xx']} non-2xx responses\n{r['raw']}")
            results[key] = r
            extra = f"  (socket errors: {r['socket_errors']})" if r["socket_errors"] else ""
            print(f"{label:<34} {r['rps']:>12.1f} req/s   p99 {r['p99_ms']:8.2f} ms{extra}",
                  flush=True)
    ratio = results["forward"]["rps"] / results["proxy_pass"]["rps"]
    print(f"ratio forward/return: {results['forward']['rps'] / results['return']['rps']:.2f}")
    print(f"ratio forward/proxy_pass: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    run(main)
