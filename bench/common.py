"""What the benchmarks share: the wrk runner and parser, the result line, the payment create
helpers (one create, and the measured wrk create of bench/payments.sh and bench/providers.sh), and
the entry point that turns a StackError into a one-line failure. The launch logic itself is
scripts/stack.py."""

import contextlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack, StackError  # noqa: E402

API = "/api/v1/payment"
CREATE_LUA = Path(__file__).resolve().parent / "create_payment.lua"


def wrk(url: str, duration: int, headers: dict = None, script: Path = None,
        script_args: list = None, stop_when=None, threads: int = 1, connections: int = 64) -> dict:
    """One wrk run: requests/s, p99 in ms, non-2xx count, socket errors. `stop_when`: a callable
    polled every 50 ms; once it returns true wrk gets SIGINT, which ends the run early (wrk's own
    thread:stop() does not: wrk sleeps out its whole duration before it reports)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    if stop_when is None:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    else:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            deadline = time.monotonic() + duration + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if stop_when():
                    proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.05)
            try:
                stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    shown = " ".join(c if not c.startswith("x_auth_token") else "x_auth_token: ..." for c in cmd)
    if out.returncode != 0:
        raise StackError(f"{shown} failed: {out.stderr}")
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    if not rps or not p99 or not total:
        raise StackError(f"cannot parse wrk output of {shown}:\n{text}{out.stderr}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * scale,
            "requests": int(total.group(1)), "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "raw": text}


def line(label: str, rate: float, unit: str, p99_ms: float, extra: str = "") -> None:
    """One result line: label, rate, unit and p99."""
    print(f"{label:<44} {rate:>10.1f} {unit:<5}  p99 {p99_ms:8.2f} ms{extra}", flush=True)


def create_payment(stack, token: str, idempotency_token: str) -> str:
    """One POST /api/v1/payment/create through the stack's nginx; returns its transaction_id."""
    st, _, raw = stack.http("POST", f"{API}/create", body=(
        f'{{"idempotency_token":"{idempotency_token}",'
        '"money_info":{"method_id":"card-7781","currency":"USD","amount":"12.50"},'
        '"recipcient":{"recipcient_id":"merchant-42"},"sender":{"sender_id":"user-1001"}}'),
        headers={"Content-Type": "application/json", "x_auth_token": token})
    m = re.search(rb'"transaction_id"\s*:\s*"([0-9a-f-]{36})"', raw)
    if st != 200 or not m:
        raise StackError(f"create answered {st}: {raw[:300]!r}")
    return m.group(1).decode()


def measure_create(stack, base: str, token: str, duration: int, warmup: int) -> dict:
    """POST /api/v1/payment/create through the gateway with bench/create_payment.lua (a new
    idempotency_token per request) after a warm-up; checks that every 200 is a committed row and
    prints the `create` line. Returns wrk()'s result."""
    if warmup:
        wrk(base + "/", warmup, script=CREATE_LUA, script_args=[token])
    rows_warm = int(stack.psql("SELECT count(*) FROM payments"))
    r = wrk(base + "/", duration, script=CREATE_LUA, script_args=[token])
    if r["non2xx"]:
        raise StackError(f"create: {r['non2xx']} non-2xx responses\n{r['raw']}")
    rows = int(stack.psql("SELECT count(*) FROM payments")) - rows_warm
    # wrk counts only completed requests; a create answered 200 is a committed row
    if rows < r["requests"]:
        raise StackError(f"create: wrk saw {r['requests']} answers but only {rows} "
                         f"payments were committed")
    extra = f"  (socket errors: {r['socket_errors']})" if r["socket_errors"] else ""
    line("create (POST create through the gateway)", r["rps"], "req/s", r["p99_ms"], extra)
    return r


def run(main) -> None:
    """Runs a benchmark's main(); a StackError ends it with `bench: <why>` and status 1."""
    try:
        sys.exit(main())
    except StackError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)


@contextlib.contextmanager
def bench_stack(build_dir, **stack_options):
    """A Stack (keyword arguments as Stack's) with PostgreSQL started and migrated; warns when the
    build carries sanitizers (figures of an ASan build mean nothing)."""
    with Stack(build_dir, **stack_options) as s:
        if s.sanitized:
            print("bench: warning: the module links ASan; use a Release build", file=sys.stderr)
        s.start_postgres()
        s.migrate()
        yield s
