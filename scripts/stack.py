#!/usr/bin/env python3
"""Starts and stops the whole paygate stack: a private PostgreSQL, paygated daemons, nginx + module.

This is the one place that knows how to launch the stack. The end-to-end tests (tests/e2e), the
benchmarks (bench/forward.sh, bench/payments.sh) and `make run` all use it; nothing else
duplicates this logic.

Library use (see docs/testing.md):

    with Stack() as s:                     # temp dir; removed on success, kept on failure
        s.start_postgres(); s.migrate()
        s.start_daemon("d1")
        s.start_nginx(paygate_timeout="1s")
        status, headers, body = s.http("GET", "/health")

`Stack.__exit__` stops everything (nginx QUIT, daemons TERM with exit status 0 asserted,
`pg_ctl stop -m fast`) and then runs `check_logs()`, which fails on nginx `[alert]`/`[emerg]`,
crashed workers, any AddressSanitizer / LeakSanitizer / UBSan report of nginx or a daemon, and
any secret of the stack (register_secret, tokens, key files) found in any of its logs.
paygated's log is one JSON object per line: read it with Daemon.events() / requests().

CLI (the `make run` contract):

    python3 scripts/stack.py run --build-dir build --var-dir var

It also creates the demo clients `demo` and `demo-other` (earlier demo tokens revoked), writes
var/demo-credentials.env (PAYGATE_URL, PAYGATE_TOKEN, PAYGATE_TOKEN_OTHER, ZOOTICKET_JWT, WHITEBIRD_API_KEY) and var/demo-token,
and prints a curl walk-through of the payment API.

Standard library only (Python >= 3.9).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import fcntl
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("PAYGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
NGINX_BIN = os.environ.get("PAYGATE_NGINX", "/usr/sbin/nginx")
NGINX_TEMPLATE = REPO / "conf" / "nginx.dev.conf.in"
# Server-level snippet the template includes (as conf/nginx.conf does): JSON for nginx's answers
# before routing. Copied beside each rendered nginx.conf, where a relative include finds it.
NGINX_JSON_ERRORS = REPO / "conf" / "paygate-json-errors.conf"
SKY_SANDBOX = REPO / "tests" / "sandboxes" / "sky_technologies.py"
# The sandboxes need Debian's python3-cryptography, which only Debian's interpreter sees.
SANDBOX_PYTHON = os.environ.get("PAYGATE_SANDBOX_PYTHON", "/usr/bin/python3")
SKY_MERCHANT_ID = "paygate-dev"
MSERVER_SANDBOX = REPO / "tests" / "sandboxes" / "mserver.py"
MSERVER_LOGIN = "+79261111111"      # the wallet paygate pays from (HTTP Basic user)
MERCHANT_ID = "zooticket"           # the demo merchant of the ZooTicket API (seed 002)
MERCHANT_JWT_ES_KID = "zt-es-1"
MERCHANT_JWT_HS_KID = "zt-hs-1"
MSERVER_APP_ID = "paygate-dev"      # notifications: app_id, access_token = sha1(app_id + secret)
MSERVER_CURRENCY = "RUB"            # routed to mserver when its sandbox runs
MODULE_NAME = "ngx_http_paygate_module.so"
DB_NAME = "paygate"
DB_USER = "paygate"

IS_ROOT = os.geteuid() == 0
# When we are root, nginx workers and PostgreSQL run as these unprivileged accounts.
NGINX_USER, NGINX_GROUP = "nobody", "nogroup"
PG_OS_USER = "postgres"

# Lines in nginx's error.log that always mean something went wrong.
NGINX_BAD_LINE = re.compile(r"\[(alert|emerg)\]|exited on signal")
# Lines that fail a test unless the test declared them expected (Stack.allow_log).
NGINX_ERROR_LINE = re.compile(r"\[(crit|error)\]")
# paygated writes one JSON object per line; these levels fail a test unless declared (allow_log).
DAEMON_ERROR_LEVELS = ("error",)
# A secret must be at least this long to be looked for in the logs (shorter strings match by chance).
MIN_SECRET_LENGTH = 12
# Sanitizer reports, wherever they show up (report files, stderr of a process).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                     "LeakSanitizer has encountered a fatal error")


class StackError(RuntimeError):
    """Something in the stack could not be started, stopped, or misbehaved."""


def log(msg: str) -> None:
    print(f"stack: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05) -> object:
    """Polls `predicate` until it returns something truthy; raises StackError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# Called as observer(method, target, status, headers, body, via) with every answer paygate gives
# the harness (http_request(), the mserver sandbox's relayed notifications). The e2e tests add the
# OpenAPI contract check here (tests/e2e/openapi_contract.py); empty for make run and the benches,
# so this file stays stdlib-only. `headers` is None when only status and body are known.
response_observers: list = []


# Called as observer(directives) with the http-level directives of every nginx start_nginx()
# starts (the e2e contract check learns the prefix directives that move a surface).
nginx_observers: list = []


def observe_response(method, target, status, headers, body, via: str) -> None:
    for observer in response_observers:
        observer(method, target, status, headers, body, via)


def http_request(port: int, method: str = "GET", path: str = "/", body: Optional[bytes] = None,
                 headers: Optional[dict] = None, timeout: float = 10.0,
                 host: str = "127.0.0.1", cafile: Optional[os.PathLike] = None):
    """One HTTP/1.1 request on a fresh connection. Returns (status, headers, body bytes).

    `headers` of the result is an http.client.HTTPMessage: case-insensitive `h["X-Request-Id"]`,
    `h.get_all("Allow")`. Raises OSError / http.client exceptions when no answer arrives.
    With `cafile` the request goes over TLS (HTTPS), the server's certificate verified against it.
    """
    if cafile is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=tls_client_context(cafile))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"Connection": "close"}
        hdrs.update(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        observe_response(method, path, resp.status, resp.headers, data, "http_request")
        return resp.status, resp.headers, data
    finally:
        conn.close()


def tls_client_context(cafile: os.PathLike, alpn: Optional[list[str]] = None) -> ssl.SSLContext:
    """A client TLS context trusting only `cafile` (the stack's self-signed certificate), with
    hostname checking (the certificate names 127.0.0.1 and localhost) and optional ALPN."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def make_tls_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key): a self-signed P-256 certificate for 127.0.0.1 and localhost, made once in
    `directory` with the openssl CLI. Clients use the certificate itself as their CA file."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    directory.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                          "-subj", "/CN=localhost",
                          "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                          "-keyout", str(key), "-out", str(cert)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"openssl req failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    os.chmod(key, 0o600)   # read by the nginx master (root or us) before it drops privileges
    return cert, key


def _pdeathsig(sig: int) -> Callable[[], None]:
    """preexec_fn: deliver `sig` to the child when the launching process dies (no orphans)."""
    def fn() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:  # best effort: never break the launch over it
            pass
    return fn


def _read_text(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tail(path: Path, lines: int = 30, offset: int = 0) -> str:
    text = _read_text(path, offset).splitlines()
    return "\n".join(text[-lines:])


def _proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def _children_of(ppid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of live children of `ppid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        if len(rest) > 1 and rest[0] != "Z" and int(rest[1]) == ppid:
            out.append((int(entry), _proc_cmdline(int(entry))))
    return out


def _world_traversable(path: Path) -> bool:
    """True if an unprivileged account can reach `path` (o+x on it and every ancestor)."""
    p = path.resolve()
    for d in [p, *p.parents]:
        try:
            if not d.stat().st_mode & 0o001:
                return False
        except FileNotFoundError:
            continue
    return True


def _endpoint_accepts(endpoint: str, socket_mode: Optional[str]) -> bool:
    """True if a ZeroMQ ipc:// or tcp:// endpoint is bound (and chmod-ed, for ipc)."""
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        try:
            if socket_mode and (os.stat(path).st_mode & 0o777) != int(socket_mode, 8):
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
            return True
        except OSError:
            return False
    m = re.fullmatch(r"tcp://([^:]+):(\d+)", endpoint)
    if m:
        try:
            socket.create_connection((m.group(1), int(m.group(2))), timeout=1).close()
            return True
        except OSError:
            return False
    return False


def module_links_asan(module: Path) -> bool:
    """True if the module .so needs libasan (a Debug build): nginx must then preload libasan."""
    try:
        out = subprocess.run(["readelf", "-d", str(module)], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = subprocess.run(["ldd", str(module)], capture_output=True, text=True).stdout
    return "libasan" in out


def libasan_path() -> str:
    return subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                          check=True).stdout.strip()


# ----------------------------------------------------------------------------------------------
# sanitizer report analysis
# ----------------------------------------------------------------------------------------------

_FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ ")
# Frames that belong to nginx itself, libc or the sanitizer runtime (never to paygate code).
_NGINX_OWN_FRAME = re.compile(r"\(/usr/sbin/nginx\+0x[0-9a-f]+\)|libsanitizer/|\.\./sysdeps/|"
                              r"\.\./csu/|\(/lib/x86_64-linux-gnu/libc\.so")


def _is_nginx_own_leak(frames: list[str]) -> bool:
    """The one leak Debian's nginx (1.22, stripped) always has, which is not ours.

    Each worker allocates its connection and event arrays with ngx_alloc() in
    ngx_event_process_init() and never frees them (process exit frees them). Debian's binary is
    stripped, so its static functions show as "(/usr/sbin/nginx+0x...)": an LSan suppression
    could only name ngx_alloc or ngx_spawn_process, which sit in *every* worker stack (ours too).
    So the harness ignores a leak only when every frame is nginx/libc/sanitizer code AND the stack
    is exactly malloc <- ngx_alloc <- (1..3 nginx frames) <- ngx_spawn_process: worker start-up,
    before any request or module code runs. A leak with any frame of ours, of libzmq, libstdc++
    or any other library is always reported. See docs/testing.md.
    """
    if not frames or not all(_NGINX_OWN_FRAME.search(f) for f in frames):
        return False
    if len(frames) < 3 or " in ngx_alloc " not in frames[1]:
        return False
    for i in range(3, min(6, len(frames))):
        if " in ngx_spawn_process " in frames[i]:
            return True
    return False


def analyse_sanitizer_report(text: str) -> list[str]:
    """Problems in one sanitizer log file (an empty list when it only holds nginx's own leak)."""
    problems = []
    if "LeakSanitizer has encountered a fatal error" in text:
        problems.append("LeakSanitizer could not run (fatal error): leaks went unchecked")
    if "runtime error:" in text or "UndefinedBehaviorSanitizer" in text:
        problems.append("UBSan report")
    if "ERROR: AddressSanitizer" in text:
        m = re.search(r"ERROR: AddressSanitizer: (\S+)", text)
        problems.append(f"AddressSanitizer: {m.group(1) if m else '?'}")
    if "ERROR: LeakSanitizer" in text:
        records = re.split(r"\n(?=(?:Direct|Indirect) leak of )", text)
        for rec in records[1:]:
            frames = [ln for ln in rec.splitlines() if _FRAME.match(ln)]
            if not _is_nginx_own_leak(frames):
                problems.append("LeakSanitizer: " + rec.splitlines()[0].strip())
        if not records[1:]:
            problems.append("LeakSanitizer report")
    other = re.sub(r"ERROR: (AddressSanitizer|LeakSanitizer)", "", text)
    if not problems and re.search(r"ERROR: \w*Sanitizer", other):
        problems.append("sanitizer report")
    return problems


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------

class Postgres:
    """A private PostgreSQL 15 cluster in `<dir>/data`, listening on 127.0.0.1:`port`."""

    def __init__(self, directory: Path, port: int, fsync: bool):
        self.dir = directory
        self.data = directory / "data"
        self.sock = directory / "sock"
        self.logfile = directory / "postgres.log"
        self.port = port
        self.fsync = fsync
        self.started_by_us = False

    @property
    def conninfo(self) -> str:
        return (f"host=127.0.0.1 port={self.port} dbname={DB_NAME} user={DB_USER} "
                f"connect_timeout=3")

    def _as_owner(self, cmd: list[str], check: bool = True, timeout: float = 120):
        """Runs a server-side tool (initdb, pg_ctl): refuses root, so as `postgres` when root."""
        if IS_ROOT:
            cmd = ["runuser", "-u", PG_OS_USER, "--"] + cmd
        res = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
                             f"\n--- {self.logfile} ---\n{_tail(self.logfile)}")
        return res

    def _prepare_dirs(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if IS_ROOT:
            pw = pwd.getpwnam(PG_OS_USER)
            for p in (self.dir, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            if self.logfile.exists():
                os.chown(self.logfile, pw.pw_uid, pw.pw_gid)
            if not _world_traversable(self.dir.parent):
                raise StackError(f"{self.dir} is not reachable by the {PG_OS_USER} account "
                                 f"(a parent directory lacks o+x); use a --var-dir elsewhere")
        os.chmod(self.dir, 0o700)

    def init(self, quick: bool) -> None:
        """initdb once (a persistent data dir is reused)."""
        self._prepare_dirs()
        if (self.data / "PG_VERSION").exists():
            return
        cmd = [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", DB_USER,
               "-E", "UTF8", "--locale=C"]
        if quick:
            cmd.append("--no-sync")
        self._as_owner(cmd)

    def _postmaster_pid(self) -> Optional[int]:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def clear_stale(self) -> None:
        """A killed earlier run may have left a postmaster on this data dir, or its pid file."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        cmdline = _proc_cmdline(pid)
        ours = "postgres" in cmdline and str(self.data) in cmdline  # not another cluster's
        if _pid_alive(pid) and ours:
            log(f"stopping a PostgreSQL left running on {self.data} (pid {pid})")
            self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                            "-t", "60", "stop"], check=False)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGQUIT)
                wait_until(lambda: not _pid_alive(pid), 30, "old postmaster to exit")
        else:
            log(f"removing stale {self.data / 'postmaster.pid'} (pid {pid} is not its postmaster)")
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def start(self, repick_port: bool = False, attempts: int = 5) -> None:
        """Starts the postmaster. The port is checked free first, but another process can still
        take it before the postmaster binds: then a first start (repick_port) tries another
        port, a restart tries the same port again a little later (clients know this port)."""
        for attempt in range(1, attempts + 1):
            if not port_is_free(self.port):
                if not repick_port and attempt == attempts:
                    raise StackError(f"port {self.port} for PostgreSQL is already in use")
                if repick_port:
                    self.port = free_port()  # a temp stack's first start: any free port will do
                else:
                    time.sleep(0.5 * attempt)
                    continue
            opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock}")
            if not self.fsync:
                opts += " -c fsync=off"
            offset = _size(self.logfile)
            res = self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                                  "-w", "-t", "60", "-o", opts, "start"], check=False)
            if res.returncode == 0:
                self.started_by_us = True
                return
            taken = "Address already in use" in _read_text(self.logfile, offset)
            if not taken or attempt == attempts:
                raise StackError(f"pg_ctl start failed ({res.returncode}):\n{_tail(self.logfile, offset=offset)}")
            log(f"PostgreSQL port {self.port} was taken before it could bind; trying again")
            if repick_port:
                self.port = free_port()
            else:
                time.sleep(0.5 * attempt)

    def stop(self) -> None:
        if self.is_running():
            self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                            "-t", "60", "stop"])
        self.started_by_us = False

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        res = self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return res.returncode == 0

    def psql(self, sql: str, dbname: str = DB_NAME, timeout: float = 60) -> str:
        res = subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                              DB_USER, "-d", dbname, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-c", sql], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise StackError(f"psql failed: {res.stderr}")
        return res.stdout.strip()

    def clone_from(self, primary: "Postgres", application_name: str, quick: bool) -> None:
        """pg_basebackup of `primary` into this (empty) cluster, set up as its streaming standby
        naming itself `application_name` (what synchronous_standby_names lists)."""
        self._prepare_dirs()
        if self.data.exists():
            shutil.rmtree(self.data)
        cmd = [str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", DB_USER,
               "-D", str(self.data), "-X", "stream", "-c", "fast", "-R"]
        if quick:
            cmd.append("--no-sync")
        self._as_owner(cmd)
        # -R wrote primary_conninfo; the last setting in the file wins, so ours adds the name.
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write(f"primary_conninfo = 'host=127.0.0.1 port={primary.port} user={DB_USER} "
                    f"application_name={application_name}'\n")
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def promote(self) -> None:
        """`pg_ctl promote -w`: this standby becomes a primary (read-write)."""
        self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"])

    def kill_server(self) -> None:
        """SIGKILL of the postmaster and every process it started, at once: the host is gone."""
        pid = self._postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return
        victims = [pid] + [child for child, _ in _children_of(pid)]
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not any(_pid_alive(v) for v in victims), 30, "killed PostgreSQL to exit")
        self.started_by_us = False
        # Nobody is left to remove the postmaster's small System V segment (line 7 of its pid
        # file: key and id); this data directory is never started again.
        try:
            shm_id = (self.data / "postmaster.pid").read_text().split("\n")[6].split()[1]
            subprocess.run(["ipcrm", "-m", shm_id], capture_output=True, timeout=10)
        except (OSError, IndexError, subprocess.SubprocessError):
            pass

    def ensure_database(self) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'", "postgres") != "1":
            subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", DB_USER, DB_NAME], check=True, capture_output=True, timeout=60)


def parse_daemon_log(text: str) -> list[dict]:
    """paygated's log as one dict per line (its JSON object: time, level, event, then the
    event's keys). A line that is not a JSON object (a fatal start-up message, a sanitizer
    report on stderr) becomes {"raw": line}, so nothing is dropped."""
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        events.append(obj if isinstance(obj, dict) else {"raw": line})
    return events


def _logfmt_value(value) -> str:
    if not isinstance(value, str):
        return json.dumps(value)
    if value and not any(c <= " " or c in '"=\\\x7f' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def logfmt(event: dict) -> str:
    """A daemon log line as `<level> event=<name> key=value ...`, values quoted and escaped only
    when they hold spaces, quotes, '=' or control characters: what Stack.allow_log patterns of
    source "daemon" are also matched against, so a pattern can be written as
    `event=db_error .*sqlstate=42P01 error="relation ..."`."""
    if "raw" in event:
        return event["raw"]
    parts = [str(event.get("level", ""))]
    for key, value in event.items():
        if key in ("time", "level"):
            continue
        parts.append(f"{key}={_logfmt_value(value)}")
    return " ".join(parts)


class Daemon:
    """One paygated process with its own config file, endpoint and log."""

    def __init__(self, name: str, endpoint: str, conf: Path, logfile: Path, pidfile: Path):
        self.name = name
        self.endpoint = endpoint
        self.conf = conf
        self.logfile = logfile
        self.pidfile = pidfile
        self.proc: Optional[subprocess.Popen] = None
        self.stopped = False        # SIGSTOPped by a test
        self.log_offset = 0         # where the current incarnation's log starts
        self.exit_codes: list[int] = []
        self.conf_values: dict[str, str] = {}
        # Every process of this daemon, and the pids whose exit a test asked for (kill_daemon,
        # expect_daemon_exit): any other exit is a crash the harness reports.
        self.incarnations: list[subprocess.Popen] = []
        self.excused_pids: set[int] = set()
        self.base_offset = _size(logfile)  # a persistent log starts with earlier runs' lines

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise StackError(f"daemon {self.name} is not running")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, whole: bool = True) -> str:
        """The log of every incarnation in this stack (whole) or of the current one."""
        return _read_text(self.logfile, self.base_offset if whole else self.log_offset)

    def events(self, event: Optional[str] = None, whole: bool = True, **fields) -> list[dict]:
        """The log's lines as dicts (parse_daemon_log), of every incarnation (whole) or of the
        current one; only those of `event` and whose keys equal `fields` when given:
        d.events("request", route="payment.create")."""
        return [e for e in parse_daemon_log(self.log_text(whole))
                if (event is None or e.get("event") == event)
                and all(e.get(k) == v for k, v in fields.items())]

    def requests(self, **fields) -> list[dict]:
        """The `request` events (one per request served), e.g. requests(route="health")."""
        return self.events("request", **fields)

    def request_lines(self) -> list[str]:
        """The `request` events as their raw JSON lines (for substring checks like `rid in line`)."""
        return [ln for ln in self.log_text().splitlines() if '"event":"request"' in ln]


class Nginx:
    """One nginx master (daemon off, so it is our child) with its own -p prefix."""

    def __init__(self, name: str, prefix: Path, port: int, worker_processes: int, env: dict):
        self.name = name
        self.prefix = prefix
        self.port = port
        self.worker_processes = worker_processes
        self.env = env
        self.conf = prefix / "conf" / "nginx.conf"
        self.error_log = prefix / "logs" / "error.log"
        self.stderr_log = prefix / "logs" / "stderr.log"
        self.pidfile = prefix / "logs" / "nginx.pid"
        self.proc: Optional[subprocess.Popen] = None
        self.error_log_offset = 0
        self.exit_code: Optional[int] = None
        self.cafile: Optional[Path] = None      # start_nginx(tls=True): HTTPS + HTTP/2 on .port
        self.h2c_port: Optional[int] = None     # start_nginx(h2c=True): cleartext HTTP/2 port

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self, include_exiting: bool = False) -> list[int]:
        if not self.running():
            return []
        pids = []
        for pid, cmd in _children_of(self.proc.pid):
            if "worker process" not in cmd:
                continue
            if "shutting down" in cmd and not include_exiting:
                continue
            pids.append(pid)
        return sorted(pids)


# ----------------------------------------------------------------------------------------------
# the stack
# ----------------------------------------------------------------------------------------------

class Stack:
    """The whole paygate stack under one directory. A context manager; see the module docstring.

    root=None: a fresh temp dir, removed on success (kept and printed on failure or with
    PAYGATE_KEEP=1). root=PATH: a persistent dir (make run's var/), reused across runs.
    """

    def __init__(self, build_dir: Optional[os.PathLike] = None, root: Optional[os.PathLike] = None,
                 *, pg_port: Optional[int] = None, http_port: Optional[int] = None,
                 fsync: Optional[bool] = None, keep: Optional[bool] = None,
                 daemon_workers: int = 2, log_level: str = "info",
                 install_root: Optional[os.PathLike] = None):
        self.build_dir = Path(build_dir or os.environ.get("PAYGATE_BUILD_DIR") or REPO / "build").resolve()
        self.temporary = root is None
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="paygate-stack-"))
        else:
            self.root = Path(root).resolve()
            self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)   # workers and postgres must traverse it
        self.keep = keep if keep is not None else os.environ.get("PAYGATE_KEEP") == "1"
        self.fsync = (not self.temporary) if fsync is None else fsync
        self.daemon_workers = daemon_workers
        self.log_level = log_level
        self.started_at = time.time()

        self.bin_dir = self.build_dir / "bin"
        self.paygated = self.bin_dir / "paygated"
        self.paygatectl = self.bin_dir / "paygatectl"
        self.module = self.build_dir / "modules" / MODULE_NAME
        self.sql_dir = REPO / "sql"
        if install_root is not None:
            # The Debian packages' layout under `install_root` (e.g. debs extracted with
            # dpkg-deb -x): the installed binaries, module and migrations instead of a build tree.
            inst = Path(install_root).resolve()
            self.paygated = inst / "usr/sbin/paygated"
            self.paygatectl = inst / "usr/bin/paygatectl"
            self.module = inst / "usr/lib/nginx/modules" / MODULE_NAME
            self.sql_dir = inst / "usr/share/paygate/sql"

        # Directories: runtime (ipc sockets) and sanitizer logs must be reachable by nginx workers.
        self.run_dir = self.root / "run"
        self.san_dir = self.root / "san"
        self.daemon_dir = self.root / "daemons"
        for d in (self.run_dir, self.san_dir, self.daemon_dir):
            d.mkdir(exist_ok=True)
        if IS_ROOT and not _world_traversable(self.root):
            # e.g. a repo under /root: sockets and reports go to a world-reachable temp dir
            self.run_dir = Path(tempfile.mkdtemp(prefix="paygate-run-"))
            self.san_dir = Path(tempfile.mkdtemp(prefix="paygate-san-"))
            self._extra_dirs = [self.run_dir, self.san_dir]
        else:
            self._extra_dirs = []
        os.chmod(self.run_dir, 0o755)
        os.chmod(self.san_dir, 0o1777 if IS_ROOT else 0o755)

        self.pg = Postgres(self.root / "pg", pg_port or free_port(), self.fsync)
        # start_standby(): the synchronous standby, and the ports every daemon's multi-host
        # conninfo names (fixed once set: a failover swaps the roles, not the string).
        self.pg_standby: Optional[Postgres] = None
        self.pg_ports: Optional[list[int]] = None
        self._pg_clusters: list[Postgres] = [self.pg]
        self.http_port = http_port or free_port()
        self.daemons: dict[str, Daemon] = {}
        self.nginxes: dict[str, Nginx] = {}
        self._sanitized_module: Optional[bool] = None
        self._late_problems: list[str] = []   # found while stopping, reported by stop()
        self._pg_started_once = False
        # (source, compiled pattern, reason): error lines a test declared expected (allow_log)
        self._allowed_lines: list[tuple[str, re.Pattern, str]] = []
        self.keys_dir = self.root / "keys"
        self._daemon_key_name: dict[str, str] = {}   # daemon -> its own CURVE key pair name
        self.sandbox: Optional[subprocess.Popen] = None
        self.sandbox_url: Optional[str] = None
        self.mserver: Optional[subprocess.Popen] = None
        self.mserver_url: Optional[str] = None
        # Secret values (tokens, keys) that no log may ever contain: value -> what it is.
        self._secrets: dict[str, str] = {}
        # A persistent root keeps earlier runs' logs: only what is written from now on is checked.
        self._log_offsets = {f: _size(f) for f in self.log_files()}

    # -- context manager ----------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        problems = []
        try:
            self.stop()
        except Exception as e:  # keep going: the logs are the interesting part
            problems.append(f"stop: {e}")
        problems += self.check_logs(raise_on_problems=False)
        failed = exc_type is not None or bool(problems)
        self.cleanup(failed)
        if problems and exc_type is None:
            raise StackError("stack problems:\n" + "\n".join(problems))
        if problems:
            log("problems found while tearing down:\n" + "\n".join(problems))
        return False

    def cleanup(self, failed: bool) -> None:
        """Removes a temp root on success; keeps and prints it on failure or PAYGATE_KEEP=1."""
        if not self.temporary:
            return
        if failed or self.keep:
            log(f"kept stack directory {self.root}" + (" (failure)" if failed else ""))
            return
        shutil.rmtree(self.root, ignore_errors=True)
        for d in self._extra_dirs:
            shutil.rmtree(d, ignore_errors=True)

    # -- environment ----------------------------------------------------------------------------

    @property
    def sanitized(self) -> bool:
        """True when the build carries ASan/UBSan (nginx then gets libasan preloaded)."""
        if self._sanitized_module is None:
            self._require(self.module)
            self._sanitized_module = module_links_asan(self.module)
        return self._sanitized_module

    def _san_env(self, prog: str, nginx: bool = False) -> dict:
        """ASan/LSan/UBSan options: reports go to files in san_dir, which check_logs() reads."""
        env = dict(os.environ)
        base = self.san_dir / prog
        asan = [f"log_path={base}.asan", "detect_leaks=1", "abort_on_error=0",
                "print_suppressions=0", "malloc_context_size=30"]
        if nginx:
            # Debian's nginx has no frame pointers: the slow unwinder gives whole stacks, so a
            # leak through our module is attributed to us (see _is_nginx_own_leak).
            asan.append("fast_unwind_on_malloc=0")
        env["ASAN_OPTIONS"] = ":".join(asan)
        env["LSAN_OPTIONS"] = "print_suppressions=0"
        env["UBSAN_OPTIONS"] = f"log_path={base}.ubsan:print_stacktrace=1:halt_on_error=1"
        return env

    @staticmethod
    def _require(path: Path) -> None:
        if not path.exists():
            raise StackError(f"{path} does not exist: build first (make build, or "
                             f"cmake --build <build dir>)")

    # -- PostgreSQL ---------------------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """The daemons' libpq string: one host, or (after start_standby) both servers with
        target_session_attrs=read-write, so a connection always lands on the current primary."""
        if self.pg_ports is None:
            return self.pg.conninfo
        ports = ",".join(str(p) for p in self.pg_ports)
        hosts = ",".join("127.0.0.1" for _ in self.pg_ports)
        return (f"host={hosts} port={ports} dbname={DB_NAME} user={DB_USER} connect_timeout=3 "
                f"target_session_attrs=read-write")

    def start_standby(self, name: str = "standby1", timeout: float = 60.0) -> Postgres:
        """A streaming standby of the running primary (pg_basebackup -R into <root>/pg-<n>),
        made synchronous: the primary lists it in synchronous_standby_names, so a COMMIT returns
        only once the standby has the WAL. From then on `conninfo` names both servers. Returns it."""
        if self.pg_standby is not None:
            raise StackError("a standby is running already")
        port = (self.pg_ports[1] if self.pg_ports and self.pg_ports[0] == self.pg.port
                else self.pg_ports[0]) if self.pg_ports else free_port()
        standby = Postgres(self.root / f"pg-{len(self._pg_clusters) + 1}", port, self.fsync)
        standby.clone_from(self.pg, name, quick=self.temporary)
        standby.start(repick_port=self.pg_ports is None)
        self._pg_clusters.append(standby)
        self.pg_standby = standby
        if self.pg_ports is None:
            self.pg_ports = [self.pg.port, standby.port]

        def state():
            return self.pg.psql("SELECT sync_state FROM pg_stat_replication "
                                f"WHERE application_name = '{name}' AND state = 'streaming'")
        wait_until(state, timeout, f"standby {name} streaming")
        self.pg.psql(f"ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'")
        self.pg.psql("SELECT pg_reload_conf()")
        wait_until(lambda: state() == "sync", timeout, f"standby {name} synchronous")
        return standby

    def failover(self) -> Postgres:
        """Kills the primary (every process of it, SIGKILL) and promotes the standby
        (`pg_ctl promote`): the standby becomes `pg`, with no standby of its own (commits stop
        waiting for one) until rejoin_standby(). Returns the new primary."""
        if self.pg_standby is None:
            raise StackError("failover needs start_standby() first")
        old, new = self.pg, self.pg_standby
        old.kill_server()
        new.promote()
        wait_until(lambda: new.psql("SELECT pg_is_in_recovery()") == "f", 30, "promoted standby to accept writes")
        self.pg, self.pg_standby = new, None
        return new

    def rejoin_standby(self, name: str = "standby1") -> Postgres:
        """After failover(): the lost primary's port comes back as a fresh synchronous standby of
        the new primary (a new base backup, as an operator rebuilds a failed node)."""
        return self.start_standby(name)

    def start_postgres(self) -> None:
        """initdb on first use, then start (again, on the same data dir) and create the db."""
        self.pg.init(quick=self.temporary)
        self.pg.clear_stale()
        self.pg.start(repick_port=self.temporary and not self._pg_started_once)
        self._pg_started_once = True
        self.pg.ensure_database()

    def stop_postgres(self) -> None:
        self.pg.stop()

    def psql(self, sql: str, timeout: float = 60) -> str:
        return self.pg.psql(sql, timeout=timeout)

    def migrate(self) -> None:
        self._require(self.paygatectl)
        res = subprocess.run([str(self.paygatectl), "migrate", "--database", self.conninfo,
                              "--dir", str(self.sql_dir)], capture_output=True, text=True,
                             env=self._san_env("paygatectl"), timeout=120)
        if res.returncode != 0:
            raise StackError(f"paygatectl migrate failed ({res.returncode}):\n{res.stdout}{res.stderr}")

    # -- client tokens (paygatectl token ...) ----------------------------------------------------

    def ctl(self, *args: str, check: bool = True, input: Optional[str] = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs `paygatectl ARGS... --database <this stack's conninfo>` (`input` on stdin);
        raises StackError on a non-zero exit when `check`. Sanitizer reports go to san_dir."""
        self._require(self.paygatectl)
        cmd = [str(self.paygatectl), *args, "--database", self.conninfo]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self._san_env("paygatectl"),
                             timeout=timeout, input=input if input is not None else "")
        if check and res.returncode != 0:
            raise StackError(f"paygatectl {' '.join(args[:2])} failed ({res.returncode}):\n"
                             f"{res.stdout}{res.stderr}")
        return res

    def create_token(self, client: str) -> str:
        """`paygatectl token create --client CLIENT`: a new token for `client` (created on first
        use). Returns the token, the only line paygatectl prints on stdout. The token is
        registered as a secret (register_secret): no log may show it."""
        res = self.ctl("token", "create", "--client", client)
        lines = res.stdout.splitlines()
        if len(lines) != 1 or not lines[0].strip() or lines[0] != lines[0].strip():
            raise StackError(f"paygatectl token create printed {res.stdout!r}, expected exactly "
                             f"the token on one line")
        self.register_secret(lines[0], f"client token of {client}")
        return lines[0]

    # -- secrets never logged ----------------------------------------------------------------------

    def register_secret(self, value: str, what: str = "secret") -> None:
        """Records a secret this stack made or was given (a token, an app secret, a partner key,
        a JWT or HMAC key): check_logs() fails the test if any log of the stack contains it.
        Values shorter than MIN_SECRET_LENGTH are refused (they would match by chance). Key
        files under <root>/keys and <root>/tls are found without registering them
        (secret_key_values)."""
        if isinstance(value, bytes):
            value = value.decode()
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"register_secret: {what} is shorter than {MIN_SECRET_LENGTH} characters")
        self._secrets.setdefault(value, what)

    def secret_key_values(self) -> dict[str, str]:
        """The secrets in this stack's key files: every private key, keyring and password file
        under <root>/keys (not *.pub, not the allow list modules.keys) and <root>/tls/*.key. Each
        word of MIN_SECRET_LENGTH or more on a line that is not a comment or a PEM armour line
        (so each base64 line of a PEM key, the Z85 CURVE secret, a keyring's base64 secret)."""
        files = [f for f in self.keys_dir.rglob("*") if f.is_file()
                 and f.suffix != ".pub" and f.name != "modules.keys" and not f.name.endswith(".tmp")]
        files += list((self.root / "tls").glob("*.key"))
        found = {}
        for f in files:
            for line in _read_text(f).splitlines():
                line = line.strip()
                if not line or line.startswith("#") or line.startswith("-----"):
                    continue
                for word in line.split():
                    if len(word) >= MIN_SECRET_LENGTH:
                        found.setdefault(word, f"key file {f.relative_to(self.root)}")
        return found

    def log_files(self) -> list[Path]:
        """Every log this stack writes: daemons, nginx (error, access, stderr), sandboxes,
        PostgreSQL, sanitizer reports."""
        files = list(self.daemon_dir.glob("*.log"))
        for name in sorted(p.name for p in self.root.iterdir() if (p / "logs").is_dir()):
            files += [f for f in (self.root / name / "logs").iterdir() if f.is_file() and f.suffix != ".pid"]
        files += [f for f in self.root.iterdir() if f.is_file() and f.suffix in (".log", ".stderr")]
        files.append(self.pg.logfile)
        files += [f for f in self.san_dir.glob("*") if f.is_file()]
        return [f for f in files if f.exists()]

    def _secret_problems(self) -> list[str]:
        secrets = {**self.secret_key_values(), **self._secrets}
        problems = []
        for f in self.log_files():
            text = _read_text(f, self._log_offsets.get(f, 0))
            for value, what in secrets.items():
                at = text.find(value)
                if at >= 0:
                    line = text.count("\n", 0, at) + 1
                    problems.append(f"{f}: contains a secret ({what}) in line {line} of what this stack "
                                    f"wrote; no log may show a token, key or password")
        return problems

    def revoke_token(self, token: Optional[str] = None, client: Optional[str] = None,
                     check: bool = True) -> subprocess.CompletedProcess:
        """`paygatectl token revoke --token TOKEN` or `--client CLIENT` (every token of it).
        nginx workers stop accepting a revoked token within one second."""
        if (token is None) == (client is None):
            raise ValueError("revoke_token: give exactly one of token= and client=")
        if token is not None:   # on stdin, not in argv (ps would show it)
            return self.ctl("token", "revoke", "--token", "-", input=token + "\n", check=check)
        return self.ctl("token", "revoke", "--client", client, check=check)

    def create_partner_key(self, partner: str) -> str:
        """`paygatectl partner key create --partner PARTNER`: a new API key (X-Api-Key)."""
        res = self.ctl("partner", "key", "create", "--partner", partner)
        lines = res.stdout.splitlines()
        if len(lines) != 1 or not lines[0].strip() or lines[0] != lines[0].strip():
            raise StackError(f"paygatectl partner key create printed {res.stdout!r}, expected exactly "
                             f"the key on one line")
        return lines[0]

    def revoke_partner_key(self, partner: str, key: Optional[str] = None,
                           check: bool = True) -> subprocess.CompletedProcess:
        """`paygatectl partner key revoke --partner PARTNER --key -` (on stdin), or `--all`."""
        if key is not None:
            return self.ctl("partner", "key", "revoke", "--partner", partner, "--key", "-",
                            input=key + "\n", check=check)
        return self.ctl("partner", "key", "revoke", "--partner", partner, "--all", check=check)

    # -- daemons ------------------------------------------------------------------------------

    def endpoint(self, name: str) -> str:
        """The ipc:// endpoint of daemon `name` (known before it starts)."""
        if name in self.daemons:
            return self.daemons[name].endpoint
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
            raise ValueError(f"bad daemon name {name!r}")
        return f"ipc://{self.run_dir / (name + '.sock')}"

    # -- provider sandbox -------------------------------------------------------------------------

    def provider_keys(self) -> Path:
        """Key pairs for sky-technologies (payment, reversal, the sandbox's callback key) and the
        capability keyring of callback URLs, made once per stack in <root>/keys."""
        if not (self.keys_dir / "callback.keys").exists():
            self.keys_dir.mkdir(exist_ok=True)
            subprocess.run([SANDBOX_PYTHON, str(SKY_SANDBOX), "keygen", str(self.keys_dir)], check=True,
                           capture_output=True, timeout=60)
            import base64
            import secrets
            _write_private(self.keys_dir / "callback.keys",
                           "# capability keys of callback URLs: '<id> <base64 secret>', first signs\n"
                           f"k1 {base64.b64encode(secrets.token_bytes(32)).decode()}\n")
            # nginx workers read the public keys and the keyring (after privileges are dropped)
            os.chmod(self.keys_dir, 0o755)
            for f in ("callback.keys", "callback.pub"):
                os.chmod(self.keys_dir / f, 0o644)
        return self.keys_dir

    def start_sandbox(self, timeout: float = 30.0, **options) -> str:
        """Starts the sky-technologies sandbox on an ephemeral port (it writes the port it bound,
        so no port can be taken in between) and returns its base URL. Options become its flags:
        processing_seconds=1 -> --processing-seconds 1."""
        keys = self.provider_keys()
        port_file = self.run_dir / "sky.port"
        port_file.unlink(missing_ok=True)
        args = [SANDBOX_PYTHON, str(SKY_SANDBOX), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--merchant-id", SKY_MERCHANT_ID,
                "--payment-public-key", str(keys / "payment.pub"),
                "--reversal-public-key", str(keys / "reversal.pub"),
                "--callback-private-key", str(keys / "callback.key"),
                "--log", str(self.root / "sky-sandbox.log")]
        for k, v in options.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        with open(self.root / "sky-sandbox.stderr", "ab") as err:
            self.sandbox = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=err, start_new_session=True,
                                            preexec_fn=_pdeathsig(signal.SIGTERM))

        def ready():
            if self.sandbox.poll() is not None:
                raise StackError("sky-technologies sandbox exited:\n"
                                 + _tail(self.root / "sky-sandbox.stderr"))
            return port_file.exists() and port_file.read_text().strip()
        port = wait_until(ready, timeout, "sky-technologies sandbox")
        self.sandbox_url = f"http://127.0.0.1:{int(port)}"
        return self.sandbox_url

    def sandbox_get(self, path: str):
        """GET a sandbox-only endpoint (e.g. /_sandbox/ledger) as parsed JSON."""
        import json
        import urllib.request
        with urllib.request.urlopen(self.sandbox_url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def sandbox_post(self, path: str, body: dict):
        """POST JSON to a sandbox-only endpoint of the sky-technologies sandbox, e.g.
        /_sandbox/faults {"provider": "5xx", "seconds": 20}; returns the parsed answer."""
        import json
        import urllib.request
        req = urllib.request.Request(self.sandbox_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def mserver_secrets(self) -> Path:
        """The mserver wallet's HTTP Basic password (paygated reads it) and the notification app
        secret (nginx reads it), one file each in <root>/keys, made once per stack."""
        keys = self.provider_keys()
        if not (keys / "mserver.app_secret").exists():
            import secrets
            _write_private(keys / "mserver.password", secrets.token_urlsafe(18) + "\n")
            _write_private(keys / "mserver.app_secret", secrets.token_urlsafe(24) + "\n")
        # The notifications' access_token is a credential of its own (it never changes).
        import hashlib
        app_secret = (keys / "mserver.app_secret").read_text().strip()
        self.register_secret(hashlib.sha1((MSERVER_APP_ID + app_secret).encode()).hexdigest(),
                             "mserver notification access_token")
        return keys

    def merchant_jwt_keys(self) -> Path:
        """The ZooTicket merchant's JWT keys (docs/partners/zooticket.md), made once per stack in
        <root>/keys with `paygatectl jwt keygen`: zooticket-es.key/.pub (ES256, kid MERCHANT_JWT_ES_KID)
        and zooticket-hs.secret (HS256, kid MERCHANT_JWT_HS_KID). nginx gets the public key and the secret."""
        keys = self.provider_keys()
        if not (keys / "zooticket-hs.secret").exists():
            self._require(self.paygatectl)
            for alg, prefix in (("ES256", "zooticket-es"), ("HS256", "zooticket-hs")):
                subprocess.run([str(self.paygatectl), "jwt", "keygen", "--alg", alg, "--out", str(keys / prefix)],
                               check=True, capture_output=True, timeout=30, env=self._san_env("paygatectl"))
        return keys

    def customer_data_key(self) -> Path:
        """paygated's AES-256-GCM key for customers' personal data (64 hex digits), made once per
        stack in <root>/keys/customer-c1.key."""
        keys = self.provider_keys()
        path = keys / "customer-c1.key"
        if not path.exists():
            import secrets
            _write_private(path, secrets.token_hex(32) + "\n")
        return path

    def mint_merchant_jwt(self, merchant: str = MERCHANT_ID, alg: str = "ES256", ttl: int = 3600,
                          **claims) -> str:
        """A merchant Bearer token from `paygatectl jwt mint` with the stack's keys; claims: iss, aud."""
        keys = self.merchant_jwt_keys()
        kid, key = ((MERCHANT_JWT_ES_KID, keys / "zooticket-es.key") if alg == "ES256"
                    else (MERCHANT_JWT_HS_KID, keys / "zooticket-hs.secret"))
        cmd = [str(self.paygatectl), "jwt", "mint", "--alg", alg, "--kid", kid, "--key", str(key),
               "--merchant", merchant, "--ttl", str(ttl)]
        for name, value in claims.items():
            cmd += ["--" + name, str(value)]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30,
                              env=self._san_env("paygatectl")).stdout.strip()

    def start_mserver(self, timeout: float = 30.0, **options) -> str:
        """Starts the mserver wallet sandbox (tests/sandboxes/mserver.py) on an ephemeral port,
        notifying nginx's /callbacks/mserver/notify; paygated routes MSERVER_CURRENCY to it.
        Options become its flags: processing_seconds=1 -> --processing-seconds 1."""
        keys = self.mserver_secrets()
        port_file = self.run_dir / "mserver.port"
        port_file.unlink(missing_ok=True)
        args = [SANDBOX_PYTHON, str(MSERVER_SANDBOX), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--login", MSERVER_LOGIN,
                "--password-file", str(keys / "mserver.password"), "--app-id", MSERVER_APP_ID,
                "--app-secret-file", str(keys / "mserver.app_secret"),
                "--notify-url", f"http://127.0.0.1:{self.http_port}/callbacks/mserver/notify",
                "--log", str(self.root / "mserver-sandbox.log")]
        for k, v in options.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        with open(self.root / "mserver-sandbox.stderr", "ab") as err:
            self.mserver = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=err, start_new_session=True,
                                            preexec_fn=_pdeathsig(signal.SIGTERM))

        def ready():
            if self.mserver.poll() is not None:
                raise StackError("mserver sandbox exited:\n" + _tail(self.root / "mserver-sandbox.stderr"))
            return port_file.exists() and port_file.read_text().strip()
        port = wait_until(ready, timeout, "mserver sandbox")
        self.mserver_url = f"http://127.0.0.1:{int(port)}"
        return self.mserver_url

    def mserver_call(self, method: str, path: str, body=None):
        """A sandbox-only endpoint of the mserver sandbox (/_sandbox/...), as parsed JSON."""
        import json
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.mserver_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as resp:
            answer = json.loads(resp.read())
        if path == "/_sandbox/notify" and isinstance(answer, dict) and answer.get("http_status") is not None:
            # the sandbox relays what paygate answered its notification (status and body only)
            observe_response("POST", "/callbacks/mserver/notify", answer["http_status"], None,
                             (answer.get("answer") or "").encode(), "mserver sandbox")
        return answer

    def stop_mserver(self) -> None:
        if self.mserver is not None and self.mserver.poll() is None:
            self.mserver.terminate()
            try:
                self.mserver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.mserver.kill()
                self.mserver.wait()

    def stop_sandbox(self) -> None:
        if self.sandbox is not None and self.sandbox.poll() is None:
            self.sandbox.terminate()
            try:
                self.sandbox.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sandbox.kill()
                self.sandbox.wait()

    def daemon_config(self, name: str, **extra) -> str:
        """The paygated config text for daemon `name` (`extra` adds or overrides keys).

        Every daemon routes payments to sky-technologies; tasks run (task_workers 2) only when
        the sandbox is up, otherwise accepted payments wait in bank_processing (task_workers 0)."""
        keys = self.provider_keys()
        cfg = {
            "listen": self.endpoint(name),
            "workers": str(self.daemon_workers),
            "database": self.conninfo,
            "socket_mode": "0666" if IS_ROOT else "0660",
            "log_level": self.log_level,
            "db_retry_max_ms": "1000",
            "shutdown_timeout_ms": "5000",
            "task_workers": "2" if self.sandbox_url or self.mserver_url else "0",
            "task_poll_ms": "50",
            "task_backoff_base_ms": "200",
            "task_backoff_max_ms": "2000",
            "status_check_base_ms": "300",
            "status_check_max_ms": "2000",
            "task_lease_ms": "9000",          # > 4 x provider_timeout_ms
            "provider_timeout_ms": "2000",
            "provider_connect_timeout_ms": "1000",
            "provider_route": "* sky-technologies",
            "sky_technologies_url": self.sandbox_url or "http://127.0.0.1:9",
            "sky_technologies_merchant_id": SKY_MERCHANT_ID,
            "sky_technologies_payment_key": str(keys / "payment.key"),
            "sky_technologies_reversal_key": str(keys / "reversal.key"),
            "callback_base_url": f"http://127.0.0.1:{self.http_port}/callbacks",
            "callback_keys": str(keys / "callback.keys"),
        }
        # The ZooTicket merchant API (docs/partners/zooticket.md): its personal-data key and page.
        cfg.update({"customer_data_key": f"c1 {self.customer_data_key()}",
                    "zooticket_page_url": f"http://127.0.0.1:{self.http_port}/pay",
                    "zooticket_allow_http_loopback": "on"})
        if self.mserver_url:
            mkeys = self.mserver_secrets()
            cfg.update({"mserver_url": self.mserver_url, "mserver_login": MSERVER_LOGIN,
                        "mserver_password_file": str(mkeys / "mserver.password")})
        # The link to nginx is authenticated (CURVE) unless a test says curve="off".
        curve = self.curve_keys()
        pair = self._daemon_key_name.get(name, "paygated")
        if extra.get("curve") != "off":
            cfg["curve_secret_key"] = str(curve / f"{pair}.key")
            cfg["curve_allowed_keys"] = str(curve / "modules.keys")
        cfg.update(extra)
        lines = [f"# paygated config for {name!r}, rendered by scripts/stack.py"]
        if self.mserver_url and "provider_route" not in extra:
            lines.append(f"provider_route = {MSERVER_CURRENCY} mserver")   # first match wins
        for k, v in cfg.items():
            if v is None:          # a test leaves a key out
                continue
            for item in (v if isinstance(v, (list, tuple)) else [v]):   # a list repeats the key
                lines.append(f"{k} = {item}")
        return "\n".join(lines) + "\n"

    def curve_keys(self) -> Path:
        """CURVE key pairs of the nginx <-> paygated link (docs/security.md), made once per stack
        in <root>/keys/curve with `paygatectl keys generate`: paygated.key/.pub (every daemon's
        unless start_daemon(curve_key=NAME)), nginx.key/.pub (the module's) and modules.keys, the
        daemons' allow list (nginx's public key)."""
        d = self.keys_dir / "curve"
        if not (d / "modules.keys").exists():
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(self.keys_dir, 0o755)
            for name in ("paygated", "nginx"):
                self.make_key_pair(name)
            _write_private(d / "modules.keys", "# module public keys allowed to connect\n"
                           + (d / "nginx.pub").read_text())
        return d

    def make_key_pair(self, name: str) -> Path:
        """`paygatectl keys generate --out <root>/keys/curve --name NAME` (once); returns the
        directory holding NAME.key (0600) and NAME.pub."""
        self._require(self.paygatectl)
        d = self.keys_dir / "curve"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / f"{name}.key").exists():
            res = subprocess.run([str(self.paygatectl), "keys", "generate", "--out", str(d), "--name", name],
                                 capture_output=True, text=True, env=self._san_env("paygatectl"), timeout=60)
            if res.returncode != 0:
                raise StackError(f"paygatectl keys generate failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        return d

    def public_key(self, name: str) -> str:
        """The Z85 public key of key pair `name` (the first word of its .pub file's key line)."""
        for line in (self.keys_dir / "curve" / f"{name}.pub").read_text().splitlines():
            if line and not line.startswith("# "):
                return line.split()[0]
        raise StackError(f"no key in {name}.pub")

    def allow_log(self, pattern: str, reason: str, source: str = "any") -> None:
        """Declares error lines this test expects: nginx `[error]`/`[crit]` lines (source "nginx")
        or daemon `error` lines (source "daemon") matching the regex `pattern` do not fail it.
        A daemon line matches when the pattern is found in its JSON text or in its logfmt()
        rendering (`error event=db_error sqlstate=42P01 ...`). `reason` says why they are
        expected; [alert]/[emerg] and sanitizer reports are never excused."""
        if source not in ("any", "nginx", "daemon"):
            raise ValueError(f"bad source {source!r}")
        if not reason:
            raise ValueError("allow_log needs a reason")
        self._allowed_lines.append((source, re.compile(pattern), reason))

    def _allowed(self, source: str, line: str) -> bool:
        forms = [line]
        if source == "daemon":
            forms += [logfmt(e) for e in parse_daemon_log(line)]
        return any(src in ("any", source) and any(rx.search(f) for f in forms)
                   for src, rx, _ in self._allowed_lines)

    @staticmethod
    def _daemon_error(line: str) -> bool:
        return any(e.get("level") in DAEMON_ERROR_LEVELS for e in parse_daemon_log(line))

    def expect_daemon_exit(self, name: str, reason: str) -> None:
        """Excuses the current incarnation of daemon `name` for exiting by itself (e.g. a test
        fault that kills it); any other self-inflicted exit fails the test."""
        if not reason:
            raise ValueError("expect_daemon_exit needs a reason")
        self.daemons[name].excused_pids.add(self.daemons[name].proc.pid)

    def _daemon_exit_problems(self) -> list[str]:
        """Daemon processes that ended without a test asking for it (abort, std::terminate, a
        fatal error's exit 1, a crash)."""
        problems = []
        for d in self.daemons.values():
            for proc in d.incarnations:
                rc = proc.poll()
                if rc is None or proc.pid in d.excused_pids:
                    continue
                how = f"signal {-rc}" if rc < 0 else f"status {rc}"
                problems.append(f"paygated {d.name} (pid {proc.pid}) exited by itself with {how} "
                                f"(log {d.logfile})")
        return problems

    def start_daemon(self, name: str = "d1", timeout: float = 30.0, env: Optional[dict] = None,
                     curve_key: Optional[str] = None, **config) -> Daemon:
        """Starts (or restarts) paygated `name` and waits for its `ready` event in the log.

        env: extra environment variables for this incarnation only (e.g. the test-only
        {"PAYGATED_TEST_FAULT": "kill-after-commit"}); a restart without env= drops them.
        curve_key: the name of this daemon's own CURVE key pair (made on first use; nginx then
        gets `public_key=` on its paygate_daemon line); default: the stack's shared "paygated".
        Config values: a list repeats the key (listen=[ipc, tcp]), None leaves a key out."""
        self._require(self.paygated)
        if curve_key is not None:
            self.make_key_pair(curve_key)
            self._daemon_key_name[name] = curve_key
        d = self.daemons.get(name)
        if d is None:
            endpoint = self.endpoint(name)
            d = Daemon(name, endpoint, self.daemon_dir / f"{name}.conf",
                       self.daemon_dir / f"{name}.log", self.run_dir / f"{name}.pid")
            self.daemons[name] = d
        if d.running():
            raise StackError(f"daemon {name} is already running (pid {d.pid})")
        d.conf.write_text(self.daemon_config(name, **config))
        d.conf_values = dict(ln.split(" = ", 1) for ln in d.conf.read_text().splitlines()
                             if " = " in ln and not ln.startswith("#"))
        if d.endpoint.startswith("ipc://"):
            Path(d.endpoint[len("ipc://"):]).unlink(missing_ok=True)  # stale socket file
        d.log_offset = _size(d.logfile)
        proc_env = self._san_env(f"paygated-{name}")
        proc_env.pop("PAYGATED_TEST_FAULT", None)   # only ever armed explicitly, via env=
        proc_env.update({k: str(v) for k, v in (env or {}).items()})
        with open(d.logfile, "ab") as logf:
            d.proc = subprocess.Popen([str(self.paygated), "-c", str(d.conf)], stdin=subprocess.DEVNULL,
                                      stdout=logf, stderr=subprocess.STDOUT,
                                      env=proc_env, cwd=self.root,
                                      start_new_session=True,
                                      preexec_fn=_pdeathsig(signal.SIGTERM))
        d.incarnations.append(d.proc)
        d.stopped = False
        d.pidfile.write_text(f"{d.proc.pid}\n")

        def ready():
            if d.proc.poll() is not None:
                raise StackError(f"paygated {name} exited with {d.proc.returncode} before ready:\n"
                                 f"{_tail(d.logfile, offset=d.log_offset)}")
            if '"event":"ready"' in d.log_text(whole=False):
                return True
            if d.conf_values.get("log_level", "info") in ("debug", "info"):
                return False
            # warn/error hide the ready event: then ready means the endpoint accepts connections
            return _endpoint_accepts(d.endpoint, d.conf_values.get("socket_mode"))
        try:
            wait_until(ready, timeout, f"paygated {name} ready")
        except StackError as e:
            raise StackError(f"{e}\n--- {d.logfile} ---\n{_tail(d.logfile, offset=d.log_offset)}") from None
        return d

    def kill_daemon(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30.0) -> Optional[int]:
        """Sends `sig` to daemon `name`. For a terminating signal, waits and returns the exit code
        (Popen style: -9 for SIGKILL). SIGSTOP/SIGCONT just mark the daemon stopped/continued."""
        d = self.daemons[name]
        if not d.running():
            raise StackError(f"daemon {name} is not running")
        if sig not in (signal.SIGSTOP, signal.SIGCONT):
            d.excused_pids.add(d.proc.pid)
        os.kill(d.proc.pid, sig)
        if sig == signal.SIGSTOP:
            d.stopped = True
            return None
        if sig == signal.SIGCONT:
            d.stopped = False
            return None
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGABRT):
            if d.stopped and sig != signal.SIGKILL:
                os.kill(d.proc.pid, signal.SIGCONT)
            d.stopped = False
            try:
                rc = d.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise StackError(f"paygated {name} did not exit within {timeout}s of signal {sig}")
            d.exit_codes.append(rc)
            d.pidfile.unlink(missing_ok=True)
            return rc
        return None

    # -- nginx --------------------------------------------------------------------------------

    def _nginx_prefix(self, name: str) -> Path:
        prefix = self.root / name
        for sub in ("conf", "logs", "temp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(prefix, 0o755)
        return prefix

    def render_nginx_conf(self, *, port: int, prefix: Path, daemons: Iterable[str],
                          worker_processes: int = 2, access_log: str = "logs/access.log paygate",
                          http_extra: str = "", server_extra: str = "", main_extra: str = "",
                          directives: Optional[dict] = None,
                          tls: Optional[tuple[Path, Path]] = None,
                          h2c_port: Optional[int] = None) -> str:
        """Fills conf/nginx.dev.conf.in. `directives` become http-level `name value;` lines
        (e.g. paygate_timeout="1s"); a value None drops it, a list repeats the directive.
        `tls` = (cert, key): the listener on `port` becomes `ssl http2` (the production shape);
        `h2c_port`: a second listener there, cleartext HTTP/2 with prior knowledge."""
        lines = []
        for k, v in (directives or {}).items():
            if v is None:
                continue
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                lines.append(f"    {k} {item};")
        listen_extra = []
        if tls is not None:
            listen_extra += [f"        ssl_certificate {tls[0]};",
                             f"        ssl_certificate_key {tls[1]};",
                             "        ssl_protocols TLSv1.2 TLSv1.3;"]
        if h2c_port is not None:
            listen_extra.append(f"        listen 127.0.0.1:{h2c_port} http2;")
        subst = {
            "USER": f"user {NGINX_USER} {NGINX_GROUP};" if IS_ROOT else "# (not root: no user directive)",
            "WORKER_PROCESSES": str(worker_processes),
            "MODULE": str(self.module),
            "PREFIX": str(prefix),
            "PORT": str(port),
            "LISTEN_PARAMS": " ssl http2" if tls is not None else "",
            "LISTEN_EXTRA": "\n".join(listen_extra),
            "ACCESS_LOG": access_log,
            "DAEMONS": "\n".join(f"    paygate_daemon {self.endpoint(n)}{self._daemon_key_param(n)};"
                                 for n in daemons),
            "HTTP_DIRECTIVES": "\n".join(lines),
            "HTTP_EXTRA": http_extra,
            "SERVER_EXTRA": server_extra,
            "MAIN_EXTRA": main_extra,
        }
        out = []
        for line in NGINX_TEMPLATE.read_text().splitlines():
            if not line.lstrip().startswith("#"):   # comments are copied as they are
                line = re.sub(r"@([A-Z_]+)@", lambda m: subst.get(m.group(1), m.group(0)), line)
                if re.search(r"@[A-Z_]+@", line):
                    raise StackError(f"unknown placeholder in {NGINX_TEMPLATE}: {line.strip()}")
            out.append(line)
        return "\n".join(out) + "\n"

    def _daemon_key_param(self, name: str) -> str:
        """` public_key=FILE` for a daemon with a key pair of its own (start_daemon(curve_key=))."""
        pair = self._daemon_key_name.get(name)
        return f" public_key={self.keys_dir / 'curve' / (pair + '.pub')}" if pair else ""

    def start_nginx(self, *, daemons: Optional[Iterable[str]] = None, worker_processes: int = 2,
                    access_log: str = "logs/access.log paygate", http_extra: str = "",
                    server_extra: str = "", name: str = "nginx", timeout: float = 30.0,
                    main_extra: str = "", tls: bool = False, h2c: bool = False,
                    **directives) -> Nginx:
        """Renders conf/nginx.dev.conf.in into <root>/<name>/ (with conf/paygate-json-errors.conf,
        which it includes) and starts nginx with the module.

        daemons: names whose endpoints get `paygate_daemon` lines (default: every daemon started
        so far). Other keyword arguments are http-level directives: paygate_timeout="1s",
        paygate_max_in_flight=2, paygate_max_body_size="1k". Waits until the port answers HTTP.
        tls=True: the port speaks `ssl http2` with a self-signed certificate made in <root>/tls
        (its path in .cafile; http() then uses HTTPS). h2c=True: a second port (.h2c_port) speaks
        cleartext HTTP/2 with prior knowledge.
        """
        self._require(self.module)
        if daemons is None:
            daemons = list(self.daemons)
        self._default_directives(directives)
        for observer in nginx_observers:
            observer(directives)
        port = self.http_port if name == "nginx" else free_port()
        if name == "nginx" and self.temporary and name not in self.nginxes and not port_is_free(port):
            port = self.http_port = free_port()  # taken since __init__: any free port will do
        prefix = self._nginx_prefix(name)
        shutil.copyfile(NGINX_JSON_ERRORS, prefix / "conf" / NGINX_JSON_ERRORS.name)
        env = self._san_env(name, nginx=True)
        if self.sanitized:
            env["LD_PRELOAD"] = libasan_path()
        # Another process may take the port between our check and nginx's bind: a first start
        # moves to another port, a restart (whose port clients know) tries the same one again.
        repick = name != "nginx" or (self.temporary and name not in self.nginxes)
        attempts = 5
        cert = make_tls_cert(self.root / "tls") if tls else None
        old = self.nginxes.get(name)
        h2c_port = old.h2c_port if h2c and old is not None else None   # a restart keeps it
        for attempt in range(1, attempts + 1):
            if h2c and (h2c_port is None or (repick and attempt > 1)):
                h2c_port = free_port()
            conf = self.render_nginx_conf(port=port, prefix=prefix, daemons=daemons,
                                          worker_processes=worker_processes, access_log=access_log,
                                          http_extra=http_extra, server_extra=server_extra,
                                          main_extra=main_extra, directives=directives,
                                          tls=cert, h2c_port=h2c_port)
            try:
                return self._launch_nginx(name, prefix, port, conf, worker_processes, env, timeout,
                                          cafile=cert[0] if cert else None, h2c_port=h2c_port)
            except StackError as e:
                if "already in use" not in str(e) or attempt == attempts:
                    raise
                log(f"nginx {name}: port {port} was taken before it could bind; trying again")
                self._excuse_failed_start(name)
                if repick:
                    port = free_port()
                    if name == "nginx":
                        self.http_port = port
                else:
                    time.sleep(0.5 * attempt)
        raise StackError("unreachable")

    def _default_directives(self, directives: dict) -> None:
        """What every nginx of the stack gets unless the test says otherwise."""
        # The callback proxy's keys (docs/callbacks.md); a test passes None to leave one out.
        keys = self.provider_keys()
        directives.setdefault("paygate_callback_keys", str(keys / "callback.keys"))
        directives.setdefault("paygate_partner_key", f"sky-technologies v1e:sky-sandbox:{keys / 'callback.pub'}")
        # The wallet's notifications (docs/providers/mserver.md).
        self.mserver_secrets()
        directives.setdefault("paygate_app_secret", f"mserver {MSERVER_APP_ID} {keys / 'mserver.app_secret'}")
        # The ZooTicket merchant API's JWT keys (docs/partners/zooticket.md).
        jwt_keys = self.merchant_jwt_keys()
        directives.setdefault("paygate_jwt_key", [f"{MERCHANT_JWT_ES_KID} ES256 {jwt_keys / 'zooticket-es.pub'}",
                                                  f"{MERCHANT_JWT_HS_KID} HS256 {jwt_keys / 'zooticket-hs.secret'}"])
        # The authenticated link (docs/security.md); paygate_curve="off" (with no keys) for plain.
        if directives.get("paygate_curve") != "off":
            curve = self.curve_keys()
            directives.setdefault("paygate_curve_secret_key", str(curve / "nginx.key"))
            directives.setdefault("paygate_daemon_public_key", str(curve / "paygated.pub"))

    def check_nginx_conf(self, name: str = "conftest", defaults: bool = True,
                         daemons: Optional[Iterable[str]] = None, server_extra: str = "",
                         **directives) -> tuple[int, str]:
        """`nginx -t` of conf/nginx.dev.conf.in rendered with `directives` (http level, as in
        start_nginx, with its defaults unless `defaults=False`) in a prefix of its own: nothing
        starts. Returns (exit status, nginx's output). Leak checking is off: a refused
        configuration's memory is never freed."""
        self._require(self.module)
        if defaults:
            self._default_directives(directives)
        prefix = self._nginx_prefix(name)
        shutil.copyfile(NGINX_JSON_ERRORS, prefix / "conf" / NGINX_JSON_ERRORS.name)
        conf = prefix / "conf" / "nginx.conf"
        conf.write_text(self.render_nginx_conf(port=free_port(), prefix=prefix,
                                               daemons=list(self.daemons) if daemons is None else list(daemons),
                                               directives=directives, server_extra=server_extra))
        env = self._san_env(name, nginx=True)
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
        if self.sanitized:
            env["LD_PRELOAD"] = libasan_path()
        p = subprocess.run([NGINX_BIN, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=prefix,
                           timeout=60)
        return p.returncode, p.stdout + p.stderr

    def start_plain_nginx(self, name: str, server_body: str, *, worker_processes: int = 1,
                          http_extra: str = "", timeout: float = 30.0) -> Nginx:
        """A second, module-free nginx (e.g. the benchmark's upstream). `server_body` is the
        inside of its one `server {}` block; its port is picked here (see .port)."""
        port = free_port()
        prefix = self._nginx_prefix(name)
        user = f"user {NGINX_USER} {NGINX_GROUP};" if IS_ROOT else ""
        conf = f"""# module-free nginx '{name}', rendered by scripts/stack.py
{user}
worker_processes {worker_processes};
daemon off;
pid logs/nginx.pid;
error_log logs/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
{http_extra}
    server {{
        listen 127.0.0.1:{port};
{server_body}
    }}
}}
"""
        return self._launch_nginx(name, prefix, port, conf, worker_processes, dict(os.environ), timeout)

    def _launch_nginx(self, name: str, prefix: Path, port: int, conf: str, worker_processes: int,
                      env: dict, timeout: float, cafile: Optional[Path] = None,
                      h2c_port: Optional[int] = None) -> Nginx:
        old = self.nginxes.get(name)
        if old is not None and old.running():
            raise StackError(f"nginx {name} is already running")
        if not port_is_free(port):
            raise StackError(f"port {port} for nginx {name} is already in use")
        ngx = Nginx(name, prefix, port, worker_processes, env)
        ngx.cafile, ngx.h2c_port = cafile, h2c_port
        ngx.conf.write_text(conf)
        ngx.error_log_offset = _size(ngx.error_log)
        with open(ngx.stderr_log, "ab") as errf:
            ngx.proc = subprocess.Popen([NGINX_BIN, "-p", str(prefix), "-c", str(ngx.conf),
                                         "-e", str(ngx.error_log)],
                                        stdin=subprocess.DEVNULL, stdout=errf, stderr=subprocess.STDOUT,
                                        env=env, cwd=prefix, start_new_session=True,
                                        preexec_fn=_pdeathsig(signal.SIGTERM))
        self.nginxes[name] = ngx

        def ready():
            if ngx.proc.poll() is not None:
                raise StackError(f"nginx {name} exited with {ngx.proc.returncode}:\n"
                                 f"{_tail(ngx.error_log, offset=ngx.error_log_offset)}\n"
                                 f"{_tail(ngx.stderr_log)}")
            if len(ngx.worker_pids()) < worker_processes:
                return False
            try:
                http_request(port, "GET", "/__stack_ready", timeout=2, cafile=cafile)
            except (OSError, http.client.HTTPException):
                return False
            return True
        wait_until(ready, timeout, f"nginx {name} on 127.0.0.1:{port}")
        return ngx

    def _excuse_failed_start(self, name: str) -> None:
        """A master that could not bind exits at once and LSan reports the configuration pool it
        never freed. That report is moved aside (san/excused/) only when every frame of every leak
        is nginx's own: a leak through the module still fails the test."""
        ngx = self.nginxes.get(name)
        if ngx is None or ngx.proc is None:
            return
        report = self.san_dir / f"{name}.asan.{ngx.proc.pid}"
        if not report.exists():
            return
        text = _read_text(report)
        frames = [ln for ln in text.splitlines() if _FRAME.match(ln)]
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text:
            return
        if frames and all(_NGINX_OWN_FRAME.search(f) for f in frames):
            excused = self.san_dir / "excused"
            excused.mkdir(exist_ok=True)
            report.rename(excused / report.name)

    def nginx_worker_pids(self, name: str = "nginx") -> list[int]:
        return self.nginxes[name].worker_pids()

    def reload_nginx(self, name: str = "nginx", timeout: float = 30.0) -> list[int]:
        """SIGHUP; waits for a full set of new workers (the old ones drain). Returns new pids."""
        ngx = self.nginxes[name]
        old = set(ngx.worker_pids(include_exiting=True))
        offset = _size(ngx.error_log)
        os.kill(ngx.proc.pid, signal.SIGHUP)

        def reloaded():
            text = _read_text(ngx.error_log, offset)
            if "[emerg]" in text:
                raise StackError(f"nginx {name} reload failed:\n{text}")
            new = [p for p in ngx.worker_pids() if p not in old]
            return new if len(new) >= ngx.worker_processes else None
        new = wait_until(reloaded, timeout, f"nginx {name} reload")
        try:
            wait_until(lambda: not (old & set(ngx.worker_pids(include_exiting=True))), timeout,
                       "old nginx workers to exit")
        except StackError:
            pass  # old workers may still be finishing requests; not an error by itself
        return sorted(new)

    def stop_nginx(self, name: str = "nginx", timeout: float = 30.0) -> Optional[int]:
        """QUIT (graceful), then TERM, then KILL; each escalation is recorded as a problem."""
        ngx = self.nginxes.get(name)
        if ngx is None or ngx.proc is None:
            return None
        if ngx.proc.poll() is None:
            for sig, wait in ((signal.SIGQUIT, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
                try:
                    ngx.proc.send_signal(sig)
                    ngx.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    self._late_problems.append(f"nginx {name} did not exit on signal {sig} "
                                               f"within {wait}s")
        ngx.exit_code = ngx.proc.returncode
        return ngx.exit_code

    # -- convenience --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.http_port

    def http(self, method: str = "GET", path: str = "/", body=None, headers=None,
             timeout: float = 10.0, name: str = "nginx"):
        """http_request() against nginx `name` (over HTTPS when it was started with tls=True)."""
        ngx = self.nginxes[name]
        return http_request(ngx.port, method, path, body, headers, timeout, cafile=ngx.cafile)

    def https(self, method: str = "GET", path: str = "/", body=None, headers=None,
              timeout: float = 10.0, name: str = "nginx"):
        """http() that insists on TLS: nginx `name` must have been started with tls=True."""
        if self.nginxes[name].cafile is None:
            raise StackError(f"nginx {name} was not started with tls=True")
        return self.http(method, path, body, headers, timeout, name)

    # -- shutdown and checks --------------------------------------------------------------------

    def stop(self) -> None:
        """Stops everything this stack started: nginx (QUIT), daemons (TERM, exit 0 asserted),
        PostgreSQL (pg_ctl stop -m fast). Raises StackError listing what went wrong."""
        problems = []
        # Stopped daemons are resumed first so nginx can drain in-flight requests.
        for d in self.daemons.values():
            if d.running() and d.stopped:
                os.kill(d.proc.pid, signal.SIGCONT)
                d.stopped = False
        for name in list(self.nginxes):
            try:
                self.stop_nginx(name)
            except Exception as e:
                problems.append(f"nginx {name}: {e}")
        for d in self.daemons.values():
            if d.running():
                try:
                    rc = self.kill_daemon(d.name, signal.SIGTERM)
                    if rc != 0:
                        problems.append(f"paygated {d.name} exited with {rc} on SIGTERM "
                                        f"(log {d.logfile})")
                except Exception as e:
                    problems.append(f"paygated {d.name}: {e}")
                    if d.running():
                        d.proc.kill()
                        d.proc.wait()
        self.stop_sandbox()
        self.stop_mserver()
        for cluster in self._pg_clusters:
            try:
                if cluster is self.pg:
                    if self.pg.started_by_us or (not self.temporary and self.pg.is_running()):
                        self.pg.stop()
                elif cluster.started_by_us:   # a standby, or a primary lost in a failover
                    cluster.stop()
            except Exception as e:
                problems.append(f"postgres {cluster.dir.name}: {e}")
        problems += self._late_problems
        self._late_problems = []
        if problems:
            raise StackError("\n".join(problems))

    def check_logs(self, raise_on_problems: bool = True) -> list[str]:
        """Scans nginx error logs, daemon logs and sanitizer report files written since this
        stack started. Fails on [alert]/[emerg], workers that died on a signal, and any
        ASan/LSan/UBSan report (except Debian nginx's own start-up leak, see _is_nginx_own_leak),
        and on any registered secret or key file secret found in any log (log_files()).
        """
        problems = self._daemon_exit_problems() + self._secret_problems()
        for ngx in self.nginxes.values():
            text = _read_text(ngx.error_log, ngx.error_log_offset)
            bad = [ln for ln in text.splitlines() if NGINX_BAD_LINE.search(ln)]
            if bad:
                problems.append(f"{ngx.error_log}:\n  " + "\n  ".join(bad[:20]))
            unexpected = [ln for ln in text.splitlines()
                          if NGINX_ERROR_LINE.search(ln) and not NGINX_BAD_LINE.search(ln)
                          and not self._allowed("nginx", ln)]
            if unexpected:
                problems.append(f"{ngx.error_log}: [error]/[crit] lines no test declared "
                                f"(Stack.allow_log):\n  " + "\n  ".join(unexpected[:20]))
            err = _read_text(ngx.stderr_log)
            if any(m in err for m in SANITIZER_MARKERS):
                problems.append(f"sanitizer output on nginx stderr: {ngx.stderr_log}")
            if ngx.exit_code is not None and ngx.exit_code < 0:
                problems.append(f"nginx {ngx.name} master died on signal {-ngx.exit_code}")
            elif ngx.exit_code:
                # with ASan, LSan's exit status 1 is fine if the report only holds nginx's own leak
                report = self.san_dir / f"{ngx.name}.asan.{ngx.proc.pid}"
                if not report.exists() or analyse_sanitizer_report(_read_text(report)):
                    problems.append(f"nginx {ngx.name} master exited with status {ngx.exit_code}")
        for d in self.daemons.values():
            text = d.log_text()
            if any(m in text for m in SANITIZER_MARKERS):
                problems.append(f"sanitizer output in daemon log {d.logfile}")
            unexpected = [ln for ln in text.splitlines()
                          if self._daemon_error(ln) and not self._allowed("daemon", ln)]
            if unexpected:
                problems.append(f"{d.logfile}: error lines no test declared (Stack.allow_log):\n  "
                                + "\n  ".join(unexpected[:20]))
        for report in sorted(self.san_dir.glob("*")):
            if not report.is_file() or report.stat().st_mtime < self.started_at - 1:
                continue
            found = analyse_sanitizer_report(_read_text(report))
            if found:
                problems.append(f"{report}: " + "; ".join(found) + "\n" + _tail(report, 40))
        if problems and raise_on_problems:
            raise StackError("log check failed:\n" + "\n".join(problems))
        return problems

    # -- make run ---------------------------------------------------------------------------------

    def clear_stale_processes(self) -> None:
        """For a persistent root: stop nginx/paygated left behind by a killed earlier run."""
        candidates = []
        for pidfile in list(self.run_dir.glob("*.pid")) + list(self.root.glob("*/logs/nginx.pid")):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pidfile.unlink(missing_ok=True)
                continue
            cmd = _proc_cmdline(pid)
            if _pid_alive(pid) and str(self.root) in cmd and ("paygated" in cmd or "nginx" in cmd):
                candidates.append((pid, cmd, pidfile))
            else:
                pidfile.unlink(missing_ok=True)
        for pid, cmd, pidfile in candidates:
            log(f"stopping pid {pid} left by an earlier run: {cmd.strip()}")
            try:
                os.kill(pid, signal.SIGTERM)
                wait_until(lambda: not _pid_alive(pid), 20, f"pid {pid} to exit")
            except ProcessLookupError:
                pass
            except StackError:
                os.kill(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
        for sock in self.run_dir.glob("*.sock"):
            sock.unlink(missing_ok=True)
        self.pg.dir.mkdir(parents=True, exist_ok=True)
        if (self.pg.data / "PG_VERSION").exists():
            self.pg.clear_stale()
        # reports of an earlier run were printed then; start this run with an empty dir
        for report in self.san_dir.glob("*"):
            if report.is_file():
                report.unlink()


# ----------------------------------------------------------------------------------------------
# make run: demo clients and their tokens
# ----------------------------------------------------------------------------------------------

DEMO_CLIENTS = ("demo", "demo-other")
DEMO_CREDENTIALS = "demo-credentials.env"   # shell-sourceable: PAYGATE_URL, PAYGATE_TOKEN(_OTHER), ZOOTICKET_JWT
DEMO_TOKEN = "demo-token"                   # just PAYGATE_TOKEN (the dev stack contract)


def _write_private(path: Path, text: str) -> None:
    """Writes a file only its owner can read (it holds tokens), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def make_demo_tokens(stack: "Stack", var_dir: Path) -> dict:
    """Revokes the demo clients' earlier tokens (so re-runs do not pile them up), creates a new
    token for each demo client, and writes var/demo-credentials.env and var/demo-token."""
    for client in DEMO_CLIENTS:
        res = stack.revoke_token(client=client, check=False)
        if res.returncode != 0 and "no client named" not in res.stderr:   # first run: no client yet
            raise StackError(f"revoking the earlier tokens of {client!r} failed "
                             f"({res.returncode}): {(res.stderr or res.stdout).strip()}")
    tokens = {client: stack.create_token(client) for client in DEMO_CLIENTS}
    # The ZooTicket merchant's Bearer JWT (docs/partners/zooticket.md), ES256, valid for a day.
    merchant_jwt = stack.mint_merchant_jwt(ttl=86400)
    stack.revoke_partner_key("whitebird", check=True)   # the earlier runs' demo keys
    whitebird_key = stack.create_partner_key("whitebird")
    _write_private(var_dir / DEMO_CREDENTIALS,
                   "# paygate dev stack demo credentials, written by `make run` (new on every run)\n"
                   "# usage: source var/demo-credentials.env\n"
                   f"PAYGATE_URL=http://127.0.0.1:{stack.http_port}\n"
                   f"PAYGATE_TOKEN={tokens[DEMO_CLIENTS[0]]}\n"
                   f"PAYGATE_TOKEN_OTHER={tokens[DEMO_CLIENTS[1]]}\n"
                   f"ZOOTICKET_JWT={merchant_jwt}\n"
                   f"WHITEBIRD_API_KEY={whitebird_key}\n")
    _write_private(var_dir / DEMO_TOKEN, tokens[DEMO_CLIENTS[0]] + "\n")
    log(f"demo clients {', '.join(DEMO_CLIENTS)}: tokens in {var_dir / DEMO_CREDENTIALS} "
        f"and {var_dir / DEMO_TOKEN}")
    return tokens


def wait_for_token_sync(stack: "Stack", token: str, timeout: float = 15.0) -> bool:
    """Until the module's first token sync, payment requests may get 503: waits until a
    status request for an unknown payment answers 404 a few times in a row (every worker)."""
    path = "/api/v1/payment/00000000-0000-4000-8000-000000000000/retrieve/status"
    streak = [0]

    def ready():
        try:
            st, _, _ = stack.http("GET", path, headers={"x_auth_token": token}, timeout=5)
        except (OSError, http.client.HTTPException):
            st = None
        streak[0] = streak[0] + 1 if st == 404 else 0
        return streak[0] >= 8
    try:
        wait_until(ready, timeout, "nginx to accept the client token", interval=0.1)
        return True
    except StackError as e:
        log(f"warning: {e}; payment requests may fail for a moment")
        return False


def demo_walkthrough(var_dir: Path) -> str:
    """The curl walk-through make run prints: create, retrieve, status, edit, accept, status,
    and a cancel of a second payment."""
    creds = var_dir / DEMO_CREDENTIALS
    try:
        creds_arg = str(creds.relative_to(Path.cwd()))
    except ValueError:
        creds_arg = str(creds)
    uuid = "$(cat /proc/sys/kernel/random/uuid)"
    auth = '-H "x_auth_token: $PAYGATE_TOKEN"'
    js = "-H 'Content-Type: application/json'"
    pick = """sed -E 's/.*"transaction_id": *"([^"]+)".*/\\1/'"""
    create = ('\'{"idempotency_token": "\'' + uuid + '\'", '
              '"money_info": {"method_id": "card-7781", "currency": "USD", "amount": "12.50"}, '
              '"recipcient": {"recipcient_id": "merchant-42"}, '
              '"sender": {"sender_id": "user-1001"}}\'')
    edit = ('\'{"idempotency_token": "\'' + uuid + '\'", '
            '"money_info": {"method_id": "card-7781", "currency": "EUR", "amount": 9.99}}\'')
    accept = ('\'{"idempotency_token": "\'' + uuid + '\'", "accept_info": {"note": "demo"}}\'')
    cancel = ('\'{"idempotency_token": "\'' + uuid + '\'", "reason": "user_request"}\'')
    accept_ms = ('\'{"idempotency_token": "\'' + uuid + '\'", "accept_info": {"mserver": '
                 '{"type": "out", "service": 61, "parameters": {"phoneNumber": "9267101283"}}}}\'')
    refund_part = ('\'{"idempotency_token": "\'' + uuid + '\'", "amount": "4.00"}\'')
    refund_rest = ('\'{"idempotency_token": "\'' + uuid + '\'", "amount": "5.99"}\'')
    api = "$PAYGATE_URL/api/v1/payment"
    visit = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    zooticket_session = (
        "'{\"session_id\": \"'" + uuid + "'\", \"order\": {\"order_id\": \"ZT-1\", \"total_amount\": "
        "{\"value\": \"25.00\", \"currency\": \"USD\"}}, \"description\": \"Zoo tickets\", \"items\": "
        "[{\"ticket_type\": \"adult\", \"quantity\": 2, \"unit_price\": {\"value\": \"12.50\", \"currency\": "
        "\"USD\"}, \"visit_date\": \"" + visit + "\"}], \"customer\": {\"email\": \"visitor@example.com\"}, "
        "\"payment_methods\": [\"bank_card\", \"sbp\"], \"confirmation\": {\"type\": \"redirect\", "
        "\"return_url\": \"https://zooticket.ru/payment/success\", "
        "\"cancel_url\": \"https://zooticket.ru/payment/cancel\"}}'")
    return f"""
Payments (demo clients {DEMO_CLIENTS[0]!r} and {DEMO_CLIENTS[1]!r}; new tokens on every run):
  source {creds_arg}
  # create, then keep its transaction_id
  PAYMENT_ID=$(curl -s -X POST "{api}/create" {auth} {js} \\
    -d {create} | {pick}); echo "$PAYMENT_ID"
  curl -s "{api}/$PAYMENT_ID/retrieve" {auth}; echo
  curl -s "{api}/$PAYMENT_ID/retrieve/status" {auth}; echo
  curl -s -X POST "{api}/$PAYMENT_ID/edit" {auth} {js} \\
    -d {edit}; echo
  curl -s -X POST "{api}/$PAYMENT_ID/accept" {auth} {js} \\
    -d {accept}; echo
  curl -s "{api}/$PAYMENT_ID/retrieve/status" {auth}; echo     # bank_processing
  sleep 1   # a task charges it at the sky-technologies sandbox
  curl -s "{api}/$PAYMENT_ID/retrieve/status" {auth}; echo     # completed
  # refund part of it, then the rest: the provider reverses the charge
  curl -s -X POST "{api}/$PAYMENT_ID/refund" {auth} {js} \\
    -d {refund_part}; echo
  curl -s -X POST "{api}/$PAYMENT_ID/refund" {auth} {js} \\
    -d {refund_rest}; echo
  sleep 1
  curl -s "{api}/$PAYMENT_ID/retrieve" {auth}; echo     # reversed, captured 9.99, refunded 9.99
  # method_id "sky-decline-1" is declined by the sandbox (docs/providers/sky-technologies.md)
  # a second payment, cancelled
  PAYMENT_ID2=$(curl -s -X POST "{api}/create" {auth} {js} \\
    -d {create} | {pick})
  curl -s -X POST "{api}/$PAYMENT_ID2/cancel" {auth} {js} \\
    -d {cancel}; echo
  curl -s "{api}/$PAYMENT_ID2/retrieve/status" {auth}; echo    # cancelled
  # another client's payment is refused (403 acces_error)
  curl -s "{api}/$PAYMENT_ID/retrieve" -H "x_auth_token: $PAYGATE_TOKEN_OTHER"; echo
  # RUB goes to the mserver wallet sandbox (docs/providers/mserver.md): the wallet payment type
  # and its fields travel in accept_info.mserver; prepare + pay, total includes the commission
  PAYMENT_ID3=$(curl -s -X POST "{api}/create" {auth} {js} \\
    -d {create.replace('"USD"', '"RUB"').replace('"12.50"', '"100.00"')} | {pick})
  curl -s -X POST "{api}/$PAYMENT_ID3/accept" {auth} {js} \\
    -d {accept_ms}; echo
  sleep 1
  curl -s "{api}/$PAYMENT_ID3/retrieve/status" {auth}; echo    # completed

ZooTicket merchant API (docs/partners/zooticket.md; Bearer JWT $ZOOTICKET_JWT, new on every run):
  curl -s -X POST "$PAYGATE_URL/v1/payments/sessions" -H "Authorization: Bearer $ZOOTICKET_JWT" {js} \\
    -d {zooticket_session}; echo
  # open data.confirmation_url in a browser, pay (the sky-technologies sandbox charges USD), and it
  # lands on return_url; then GET "$PAYGATE_URL/v1/payments/<payment_id>" says succeeded

  # Prometheus metrics, loopback only (docs/operations.md#metrics)
  curl -s "$PAYGATE_URL/metrics" | grep -E '^paygate_(requests_total|daemon_provider_call_seconds_count)'

  # WhiteBird (docs/partners/whitebird.md): an order in BYN (933), asked again until final
  WB_ORDER='{{"externalUserId": "9ee9e9f7-a7ff-4dc4-9804-5d7dd2cf2df5", "currency": 933, "amount": 100, "type": "PAYMENT", "status": "EXCHANGED", "externalOperationId": "'{uuid}'"}}'
  curl -s -X POST "$PAYGATE_URL/partners/whitebird/orders" -H "X-Api-Key: $WHITEBIRD_API_KEY" {js} \\
    -d "$WB_ORDER"; echo     # PROCESSING
  sleep 1
  curl -s -X POST "$PAYGATE_URL/partners/whitebird/orders" -H "X-Api-Key: $WHITEBIRD_API_KEY" {js} \\
    -d "$WB_ORDER"; echo     # SUCCESS"""


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    http_port = int(os.environ.get("PAYGATE_PORT", "8080"))
    pg_port = int(os.environ.get("PAYGATE_PG_PORT", "54329"))
    stop_requested = []

    def on_signal(signum, _frame):
        stop_requested.append(signum)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    var_dir = Path(args.var_dir).resolve()
    if IS_ROOT and not _world_traversable(var_dir.parent):
        # postgres and the nginx workers (nobody) could not reach var/ (e.g. a checkout in /root)
        import hashlib
        tag = hashlib.sha256(str(var_dir).encode()).hexdigest()[:12]
        alt = Path("/var/tmp") / f"paygate-dev-{tag}"
        log(f"{var_dir} is not reachable by the postgres/nobody accounts; using {alt} instead")
        var_dir = alt
    var_dir.mkdir(parents=True, exist_ok=True)
    lock = open(var_dir / "stack.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log(f"another `stack.py run` is using {var_dir}; stop it first")
        return 1
    stack = Stack(args.build_dir, var_dir, pg_port=pg_port, http_port=http_port, fsync=True)
    try:
        stack.clear_stale_processes()
    except (StackError, OSError) as e:
        log(f"cannot clear what an earlier run left in {var_dir}: {e}")
        return 1
    if not port_is_free(http_port):
        log(f"port {http_port} is in use: set PAYGATE_PORT to another port")
        return 1
    rc = 0
    try:
        log(f"PostgreSQL on 127.0.0.1:{pg_port} (data {stack.pg.data})")
        stack.start_postgres()
        stack.migrate()
        log("migrations applied")
        tokens = make_demo_tokens(stack, var_dir)
        sandbox = stack.start_sandbox()
        log(f"sky-technologies sandbox on {sandbox} (log {stack.root / 'sky-sandbox.log'}, "
            f"ledger {sandbox}/_sandbox/ledger)")
        wallet = stack.start_mserver()
        log(f"mserver wallet sandbox on {wallet} for {MSERVER_CURRENCY} (log {stack.root / 'mserver-sandbox.log'}, "
            f"ledger {wallet}/_sandbox/ledger)")
        d = stack.start_daemon("paygated")
        log(f"paygated on {d.endpoint} (log {d.logfile}); the link to nginx is CURVE, keys in "
            f"{stack.curve_keys()}")
        ngx = stack.start_nginx(daemons=["paygated"], paygate_idempotency_zone="paygate_replay:16m")
        log(f"nginx on 127.0.0.1:{http_port} (error log {ngx.error_log})")
        base = f"http://127.0.0.1:{http_port}"
        wait_for_token_sync(stack, tokens[DEMO_CLIENTS[0]])
        print(f"""
paygate is up. Try:
  curl -s {base}/health
  curl -s {base}/ping
  curl -si {base}/nope                # 404 JSON from the module
{demo_walkthrough(var_dir)}

Logs: {ngx.error_log}  {d.logfile}  {stack.pg.logfile}
Ctrl-C stops everything.
""", flush=True)
        while not stop_requested:
            if not d.running():
                log(f"paygated exited unexpectedly ({d.proc.returncode}); stopping")
                rc = 1
                break
            if not ngx.running():
                log(f"nginx exited unexpectedly ({ngx.proc.returncode}); stopping")
                rc = 1
                break
            if stack.sandbox.poll() is not None:
                log(f"the sky-technologies sandbox exited ({stack.sandbox.returncode}); stopping")
                rc = 1
                break
            if stack.mserver.poll() is not None:
                log(f"the mserver sandbox exited ({stack.mserver.returncode}); stopping")
                rc = 1
                break
            time.sleep(0.3)
    except StackError as e:
        log(str(e))
        rc = 1
    # Second Ctrl-C while stopping should not abort the shutdown half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log("stopping")
    try:
        stack.stop()
    except StackError as e:
        log(str(e))
        rc = 1
    problems = stack.check_logs(raise_on_problems=False)
    if problems:
        log("problems in the logs:\n" + "\n".join(problems))
        rc = 1
    log("stopped")
    return rc


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the dev stack in the foreground (make run)")
    run.add_argument("--build-dir", default=str(REPO / "build"))
    run.add_argument("--var-dir", default=str(REPO / "var"))
    args = parser.parse_args(argv)
    if args.cmd == "run":
        return cmd_run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
