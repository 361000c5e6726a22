"""Shared base for the end-to-end tests: one fresh stack (PostgreSQL, paygated, nginx) per test.

Not a test file itself (no test_ prefix). The build tree comes from PAYGATE_BUILD_DIR (set by
tests/e2e/CMakeLists.txt), the launch logic from scripts/stack.py.
"""

import http.client
import json
import os
import socket
import sys
import time
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("PAYGATE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(SOURCE_DIR / "scripts"))

from stack import Stack, StackError, http_request, wait_until  # noqa: E402

__all__ = ["StackTestCase", "Stack", "StackError", "http_request", "wait_until", "raw_request",
           "read_response"]


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> socket.socket:
    """Opens a connection, sends `data` as is and returns the socket (caller closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    return s


def read_response(sock: socket.socket, method: str = "GET"):
    """Reads one HTTP response from `sock`: (status, headers, body)."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    return resp.status, resp.headers, body


def close_with_reset(sock: socket.socket) -> None:
    """Closes with SO_LINGER 0, so the peer sees a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class StackTestCase(unittest.TestCase):
    """Each test runs against its own stack, started in setUp and checked at teardown.

    Class attributes tune the stack: `daemons` (names, each its own ipc endpoint), `nginx`
    (keyword arguments of Stack.start_nginx, e.g. paygate_timeout="1s"), `with_postgres`.
    At teardown everything is stopped (daemons must exit 0 on SIGTERM) and Stack.check_logs()
    must find no nginx alert and no sanitizer report; otherwise the test errors and the stack
    directory is kept (its path is printed).
    """

    daemons = ("d1",)
    nginx: dict = {}
    with_postgres = True
    start_nginx_in_setup = True

    def setUp(self) -> None:
        self.stack = Stack()
        self.addCleanup(self._teardown_stack)
        if self.with_postgres:
            self.stack.start_postgres()
            self.stack.migrate()
        for name in self.daemons:
            self.stack.start_daemon(name)
        if self.start_nginx_in_setup:
            self.stack.start_nginx(**self.nginx)

    def _test_failed(self) -> bool:
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        if hasattr(outcome, "errors"):  # Python <= 3.10
            return any(exc for _, exc in outcome.errors)
        return not getattr(outcome, "success", True)

    def _teardown_stack(self) -> None:
        failed = self._test_failed()
        problems = []
        try:
            self.stack.stop()
        except Exception as e:  # still read the logs
            problems.append(f"stop: {e}")
        problems += self.stack.check_logs(raise_on_problems=False)
        self.stack.cleanup(failed or bool(problems))
        if problems:
            self.fail("stack problems at teardown (dir kept: %s):\n%s"
                      % (self.stack.root, "\n".join(problems)))

    # -- helpers ----------------------------------------------------------------------------------

    def get(self, path: str, **kw):
        return self.stack.http("GET", path, **kw)

    def request(self, method: str, path: str, **kw):
        return self.stack.http(method, path, **kw)

    def assertJson(self, headers, body):
        ctype = headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("application/json"),
                        f"Content-Type is {ctype!r}, body {body[:200]!r}")
        try:
            return json.loads(body)
        except ValueError:
            self.fail(f"body is not JSON: {body[:300]!r}")

    def assertRequestId(self, headers) -> str:
        rid = headers.get("X-Request-Id")
        self.assertTrue(rid, f"no X-Request-Id in {dict(headers)}")
        return rid

    def assertJsonError(self, response, status: int, code: str) -> dict:
        """`response` is (status, headers, body): status, JSON {"code","message"}, X-Request-Id."""
        st, headers, body = response
        self.assertEqual(st, status, f"expected {status} {code}, got {st}: {body[:300]!r}")
        doc = self.assertJson(headers, body)
        self.assertEqual(doc.get("code"), code, doc)
        self.assertIsInstance(doc.get("message"), str, doc)
        self.assertTrue(doc["message"], doc)
        self.assertRequestId(headers)
        return doc

    def wait_for_status(self, path: str, status: int, timeout: float = 15.0, request_timeout=10.0):
        """Polls GET `path` until it answers `status`; returns that response."""
        last = []

        def poll():
            try:
                r = self.get(path, timeout=request_timeout)
            except (OSError, http.client.HTTPException) as e:
                last[:] = [repr(e)]
                return None
            last[:] = [r[0], r[2][:200]]
            return r if r[0] == status else None
        try:
            return wait_until(poll, timeout, f"GET {path} -> {status}", interval=0.1)
        except StackError as e:
            self.fail(f"{e}; last answer {last}")

    def wait_for_steady(self, path: str, status: int, consecutive: int = 10, timeout: float = 20.0):
        """Polls until `consecutive` requests in a row answer `status`. With several workers each
        has its own connection to the daemons (reconnecting on its own schedule after a daemon
        restart), so one good answer does not mean every worker is ready."""
        streak = [0]
        last = []

        def poll():
            try:
                r = self.get(path, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                last[:] = [repr(e)]
                streak[0] = 0
                return False
            last[:] = [r[0], r[2][:200]]
            streak[0] = streak[0] + 1 if r[0] == status else 0
            return streak[0] >= consecutive
        try:
            wait_until(poll, timeout, f"{consecutive} x GET {path} -> {status}", interval=0.02)
        except StackError as e:
            self.fail(f"{e}; last answer {last}")

    def timed_get(self, path: str, timeout: float = 20.0):
        t0 = time.monotonic()
        r = self.get(path, timeout=timeout)
        return r, time.monotonic() - t0
