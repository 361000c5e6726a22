"""What the benchmarks share: the wrk runner and parser, and the entry point that turns a
StackError into a one-line failure. The launch logic itself is scripts/stack.py."""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import StackError  # noqa: E402


def wrk(url: str, duration: int, headers: dict = None, script: Path = None,
        script_args: list = None) -> dict:
    """One wrk run: requests/s, p99 in ms, non-2xx count, socket errors."""
    cmd = ["wrk", "-t1", "-c64", f"-d{duration}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
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


def run(main) -> None:
    """Runs a benchmark's main(); a StackError ends it with `bench: <why>` and status 1."""
    try:
        sys.exit(main())
    except StackError as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(1)
