"""Shared base for the end-to-end tests: one fresh stack (PostgreSQL, paygated, nginx) per test.

Not a test file itself (no test_ prefix). The build tree comes from PAYGATE_BUILD_DIR (set by
tests/e2e/CMakeLists.txt), the launch logic from scripts/stack.py.
"""

import atexit
import http.client
import json
import re
import os
import socket
import sys
import time
import unittest
import weakref
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("PAYGATE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(SOURCE_DIR / "scripts"))

import stack as stack_module  # noqa: E402
from stack import Stack, StackError, http_request, wait_until  # noqa: E402
import openapi_contract  # noqa: E402

# nginx logs every body over client_max_body_size at [error] (the module answers it with 413 JSON):
# tests that send one on purpose declare it with stack.allow_log(TOO_LARGE_BODY, ...).
TOO_LARGE_BODY = r"client intended to send too large (chunked )?body"

__all__ = ["TOO_LARGE_BODY", "StackTestCase", "Stack", "StackError", "http_request", "wait_until", "raw_request",
           "read_response", "remember_request", "check_answer"]

# -- the OpenAPI contract (docs/testing.md, "The OpenAPI contract") --------------------------------
# Every answer the suite receives is checked against docs/openapi/*.yaml: Stack.http()/https()
# and http_request() through stack.response_observers, raw sockets through read_response(), and
# the few clients of their own (keep-alive http.client connections, curl, the HTTP/2 client)
# through check_answer(). Problems are collected and fail the test that received the answer at
# its teardown (a class-wide stack's setUpClass/tearDownClass: the class), so an answer on a
# worker thread is never lost to an `except`. PAYGATE_OPENAPI_CHECK=0 turns the check off (for
# a look at a failure; never in CI).
CONTRACT = openapi_contract.shared() if os.environ.get("PAYGATE_OPENAPI_CHECK", "1") != "0" else None
if CONTRACT is not None:
    stack_module.response_observers.append(CONTRACT.observe)
    stack_module.nginx_observers.append(CONTRACT.use_prefixes)
    atexit.register(lambda: (CONTRACT.checked or CONTRACT.exempted) and
                    print(f"openapi contract: {CONTRACT.checked} answers checked, "
                          f"{CONTRACT.exempted} exempt", file=sys.stderr))


def check_answer(method, target, status, headers, body, via: str) -> None:
    """One answer a test received by other means than the harness's helpers. `headers` None:
    only status and body are known (checked without headers or content type)."""
    if CONTRACT is not None:
        CONTRACT.observe(method, target, status, headers, body, via)


def take_contract_violations() -> list:
    return CONTRACT.take_violations() if CONTRACT is not None else []


def watch_contract(test: unittest.TestCase) -> None:
    """Fails `test` at its teardown if an answer it received broke the contract. Problems left
    from before it started (a class's setUpClass) fail it too, marked as such: none is lost."""
    earlier = [f"(before this test) {p}" for p in take_contract_violations()]

    def check():
        problems = earlier + take_contract_violations()
        if problems:
            test.fail("answers that break docs/openapi/ (%d):\n%s" % (len(problems), "\n".join(problems[:20])))
    test.addCleanup(check)


# The requests sent on raw sockets, in order, so read_response() knows what each answer answers.
_sent_requests: "weakref.WeakKeyDictionary[socket.socket, list]" = weakref.WeakKeyDictionary()


def remember_request(sock: socket.socket, data: bytes) -> None:
    """Notes the request line that starts `data` (sent on `sock` by the caller): the next answer
    read_response() reads from `sock` is checked as its answer."""
    _sent_requests.setdefault(sock, []).append(openapi_contract.request_line_of(data))


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> socket.socket:
    """Opens a connection, sends `data` as is and returns the socket (caller closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    remember_request(s, data)
    s.sendall(data)
    return s


def read_response(sock: socket.socket, method: str = "GET"):
    """Reads one HTTP response from `sock`: (status, headers, body)."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    pending = _sent_requests.get(sock)
    if pending:
        req_method, target = pending.pop(0)
        check_answer(req_method, target, resp.status, resp.headers, body, "raw socket")
    elif CONTRACT is not None:
        CONTRACT.add_violation(f"an answer ({resp.status}) read from a socket whose request is unknown: "
                               "send it with raw_request() or note it with remember_request()")
    return resp.status, resp.headers, body


def close_with_reset(sock: socket.socket) -> None:
    """Closes with SO_LINGER 0, so the peer sees a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def problems_reported(test: unittest.TestCase) -> int:
    """Failures + errors the test's result holds so far (subtests included). Read from the result,
    not from _outcome.success, which unittest resets to True around tearDown and cleanups."""
    result = getattr(getattr(test, "_outcome", None), "result", None)
    return len(getattr(result, "failures", ())) + len(getattr(result, "errors", ()))


class StackTestCase(unittest.TestCase):
    """Each test runs against its own stack, started in setUp and checked at teardown.

    Class attributes tune the stack: `daemons` (names, each its own ipc endpoint), `daemon_config`
    (their extra config keys), `nginx`
    (keyword arguments of Stack.start_nginx, e.g. paygate_timeout="1s"), `with_postgres`.
    At teardown everything is stopped (daemons must exit 0 on SIGTERM) and Stack.check_logs()
    must find no nginx alert and no sanitizer report; otherwise the test errors and the stack
    directory is kept (its path is printed).
    """

    daemons = ("d1",)
    daemon_config: dict = {}   # extra paygated config keys of every daemon started in setUp
    nginx: dict = {}
    with_postgres = True
    start_nginx_in_setup = True

    def setUp(self) -> None:
        self._problems_at_start = problems_reported(self)
        watch_contract(self)
        self.stack = Stack()
        self.addCleanup(self._teardown_stack)
        if self.with_postgres:
            self.stack.start_postgres()
            self.stack.migrate()
        for name in self.daemons:
            self.stack.start_daemon(name, **self.daemon_config)
        if self.start_nginx_in_setup:
            self.stack.start_nginx(**self.nginx)

    def _test_failed(self) -> bool:
        return problems_reported(self) > self._problems_at_start

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


# ------------------------------------------------------------------------------------------------
# Payment API tests (test_payments_*.py): one stack per class, clients with tokens, API helpers.
# ------------------------------------------------------------------------------------------------

import re as _re
import uuid as _uuid

UUID_RE = _re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = _re.compile(r"^pgt_[0-9a-f]{64}$")
# RFC 3339 UTC with optional fraction, e.g. 2026-11-24T10:00:00.123456Z
TIMESTAMP_RE = _re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
PAYMENT_API = "/api/v1/payment"
# A well-formed UUID that names no payment (any version is accepted in paths).
UNKNOWN_PAYMENT = "00000000-0000-4000-8000-000000000000"

__all__ += ["PaymentStackTestCase", "UUID_RE", "TOKEN_RE", "TIMESTAMP_RE", "PAYMENT_API",
            "UNKNOWN_PAYMENT", "new_uuid", "create_body"]


def new_uuid() -> str:
    return str(_uuid.uuid4())


def create_body(currency: str = "USD", amount="12.50", method_id: str = "card-7781",
                recipient: str = "merchant-42", sender: str = "user-1001",
                sender_method_id=None, token=None) -> dict:
    """A valid POST /create body. `amount`: a decimal string, an int, or RawNumber("1.50") for
    a JSON number lexeme written as is (never a Python float)."""
    body = {
        "idempotency_token": token or new_uuid(),
        "money_info": {"method_id": method_id, "currency": currency, "amount": amount},
        "recipcient": {"recipcient_id": recipient},
        "sender": {"sender_id": sender},
    }
    if sender_method_id is not None:
        body["sender"]["method_id"] = sender_method_id
    return body


def padded_json(body: dict, size: int) -> bytes:
    """`body` as JSON, padded with spaces inside the object to exactly `size` bytes: the closing
    brace comes last, so only a body that arrived whole parses."""
    text = json.dumps(body).encode()
    assert text.endswith(b"}") and len(text) <= size
    return text[:-1] + b" " * (size - len(text)) + b"}"


__all__ += ["padded_json"]


class RawNumber(str):
    """A JSON number lexeme written as is by PaymentStackTestCase.encode ("1.000000000000000001"),
    so Python floats never touch an amount."""


def _encode(value) -> str:
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_encode(str(k))}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("no floats in payment bodies: use RawNumber('1.50')")
    return json.dumps(value)


__all__ += ["RawNumber"]


class PaymentStackTestCase(StackTestCase):
    """One stack for the whole class (PostgreSQL, one paygated, nginx with 2 workers), started in
    setUpClass and stopped/checked in tearDownClass. `clients` get one token each
    (`self.tokens[name]`, the first is `self.token`); their tokens are accepted before any test
    runs (the module's first token sync may answer 503 until then).

    Tests of one class share the database: each test creates its own payments and compares row
    counts before/after rather than absolute numbers.
    """

    clients = ("alice", "bob")
    daemon_workers = 2
    nginx: dict = {}
    # with_sandbox: the sky-technologies sandbox runs (its options: sandbox_options) and the
    # daemon's task runners drive accepted payments to it; daemon_config: extra paygated keys.
    with_sandbox = False
    sandbox_options: dict = {}
    # with_mserver: the mserver wallet sandbox runs too and RUB payments are routed to it.
    with_mserver = False
    mserver_options: dict = {}
    daemon_config: dict = {}
    daemon_names = ("d1",)   # each its own paygated (and paygate_daemon line)
    shared_stack = None   # the class's Stack, set in setUpClass

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._any_failed = False
        stack = Stack(daemon_workers=cls.daemon_workers)
        cls.shared_stack = stack
        try:
            stack.start_postgres()
            stack.migrate()
            cls.tokens = {c: stack.create_token(c) for c in cls.clients}
            if cls.with_sandbox:
                stack.start_sandbox(**cls.sandbox_options)
            if cls.with_mserver:
                stack.start_mserver(**cls.mserver_options)
            for name in cls.daemon_names:
                stack.start_daemon(name, **cls.daemon_config)
            stack.start_nginx(**cls.nginx)
            for token in cls.tokens.values():
                cls.wait_until_token_accepted(stack, token)
        except BaseException:
            cls._stop_shared_stack(failed=True, raise_problems=False)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls._stop_shared_stack(failed=cls._any_failed, raise_problems=True)
        super().tearDownClass()

    @classmethod
    def _stop_shared_stack(cls, failed: bool, raise_problems: bool) -> None:
        stack = cls.shared_stack
        if stack is None:
            return
        cls.shared_stack = None
        problems = []
        try:
            stack.stop()
        except Exception as e:
            problems.append(f"stop: {e}")
        problems += stack.check_logs(raise_on_problems=False)
        problems += [f"answer that breaks docs/openapi/: {v}" for v in take_contract_violations()]
        stack.cleanup(failed or bool(problems))
        if problems and raise_problems:
            raise AssertionError("stack problems at teardown (dir kept: %s):\n%s"
                                 % (stack.root, "\n".join(problems)))

    @staticmethod
    def wait_until_token_accepted(stack, token: str, timeout: float = 20.0, consecutive: int = 8,
                                  name: str = "nginx") -> None:
        """Waits until the token table of nginx `name` (one per instance, shared by its workers)
        has logged a version at least as new as the database's, then until a status request for
        an unknown payment answers 404 `consecutive` times in a row."""
        version = int(stack.psql("SELECT coalesce(max(version), 0) FROM api_tokens"))
        ngx = stack.nginxes[name]
        line = re.compile(r"\] (\d+)#\d+: (?:\*\d+ )?paygate: token list version (\d+),")

        def table_synced():
            versions = [int(m.group(2)) for m in line.finditer(ngx.error_log.read_text(errors="replace"))]
            return bool(versions) and max(versions) >= version
        wait_until(table_synced, timeout, f"the token table of nginx {name} to reach version {version}",
                   interval=0.05)
        path = f"{PAYMENT_API}/{UNKNOWN_PAYMENT}/retrieve/status"
        streak, last = [0], []

        def poll():
            try:
                r = stack.http("GET", path, headers={"x_auth_token": token}, timeout=10, name=name)
            except (OSError, http.client.HTTPException) as e:
                last[:] = [repr(e)]
                streak[0] = 0
                return False
            last[:] = [r[0], r[2][:200]]
            streak[0] = streak[0] + 1 if r[0] == 404 else 0
            return streak[0] >= consecutive
        try:
            wait_until(poll, timeout, f"the token to be accepted by every worker of nginx {name}",
                       interval=0.05)
        except StackError as e:
            raise StackError(f"{e}; last answer {last}") from None

    def setUp(self) -> None:  # no per-test stack
        self.stack = type(self).shared_stack
        if self.stack is None:
            self.skipTest("no stack (setUpClass failed)")
        self.token = self.tokens[self.clients[0]]
        self._problems_at_start = problems_reported(self)
        watch_contract(self)

    def tearDown(self) -> None:
        if problems_reported(self) > self._problems_at_start:
            type(self)._any_failed = True   # keep the stack directory for a look

    # -- requests ---------------------------------------------------------------------------------

    @staticmethod
    def encode(body) -> bytes:
        """dict/list (RawNumber values written as is) -> JSON bytes; str/bytes pass unchanged."""
        if body is None or isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        return _encode(body).encode()

    def api(self, method: str, path: str, body=None, *, token="default", header="x_auth_token",
            content_type="application/json", headers=None, timeout: float = 15.0):
        """One request to `PAYMENT_API + path` (or `path` if it starts with '/'): token in
        `header` (token=None: no token), JSON Content-Type on requests with a body."""
        if token == "default":
            token = self.token
        hdrs = {}
        if token is not None:
            hdrs[header] = token
        if body is not None and content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        url = path if path.startswith("/") else f"{PAYMENT_API}/{path}"
        return self.stack.http(method, url, self.encode(body), hdrs, timeout=timeout)

    def create(self, body=None, *, token="default", **kw):
        return self.api("POST", "create", body if body is not None else create_body(**kw),
                        token=token)

    def create_payment(self, *, token="default", **kw) -> str:
        """Creates a payment (create_body(**kw)); asserts 200 and returns its id."""
        st, hdrs, raw = self.create(token=token, **kw)
        self.assertEqual(st, 200, raw)
        doc = self.assertJson(hdrs, raw)
        self.assertTrue(UUID_RE.match(doc.get("transaction_id", "")), doc)
        return doc["transaction_id"]

    def retrieve(self, pid: str, *, token="default"):
        return self.api("GET", f"{pid}/retrieve", token=token)

    def retrieve_ok(self, pid: str, *, token="default"):
        """(parsed payment object, raw body bytes) of a 200 retrieve."""
        st, hdrs, raw = self.retrieve(pid, token=token)
        self.assertEqual(st, 200, raw)
        return self.assertJson(hdrs, raw)["payment"], raw

    def status_of(self, pid: str, *, token="default") -> str:
        st, hdrs, raw = self.api("GET", f"{pid}/retrieve/status", token=token)
        self.assertEqual(st, 200, raw)
        return self.assertJson(hdrs, raw)["payment_status"]

    def edit(self, pid: str, money_info=None, *, token="default", body=None, **kw):
        if body is None:
            body = {"idempotency_token": new_uuid(),
                    "money_info": money_info or {"method_id": "card-1", "currency": "EUR",
                                                 "amount": "3.00"}}
        return self.api("POST", f"{pid}/edit", body, token=token, **kw)

    def cancel(self, pid: str, reason: str = "user_request", *, token="default", body=None, **kw):
        if body is None:
            body = {"idempotency_token": new_uuid(), "reason": reason}
        return self.api("POST", f"{pid}/cancel", body, token=token, **kw)

    def accept(self, pid: str, accept_info=None, *, token="default", body=None, **kw):
        if body is None:
            body = {"idempotency_token": new_uuid(), "accept_info": accept_info or {}}
        return self.api("POST", f"{pid}/accept", body, token=token, **kw)

    # -- database ---------------------------------------------------------------------------------

    def payment_count(self) -> int:
        return int(self.stack.psql("SELECT count(*) FROM payments"))

    def history(self, pid: str) -> str:
        """'<payment_events rows>/<tasks rows>' of payment `pid`."""
        return self.stack.psql(
            f"SELECT (SELECT count(*) FROM payment_events WHERE payment_id = '{pid}') || '/' || "
            f"(SELECT count(*) FROM tasks WHERE payment_id = '{pid}')")

    def snapshot(self, pid: str, *, token="default"):
        """What a rejected request must not change: the retrieve body (status, money, updated_at;
        read with the owner's `token`) and the number of history events and queued tasks."""
        _, raw = self.retrieve_ok(pid, token=token)
        return raw, self.history(pid)

    def assertUnchanged(self, pid: str, before, what: str = "", *, token="default") -> None:
        after = self.snapshot(pid, token=token)
        self.assertEqual(after[0], before[0], f"payment {pid} changed by a rejected request {what}")
        self.assertEqual(after[1], before[1], f"history/tasks of {pid} (events/tasks) changed by a "
                                              f"rejected request {what}")

    def assertRetrieveUnchanged(self, pid: str, before: bytes, what: str = "") -> None:
        """The payment's retrieve body is byte-for-byte what it was (status, money, updated_at)."""
        _, after = self.retrieve_ok(pid)
        self.assertEqual(after, before, f"payment {pid} changed by a rejected request {what}")


# ------------------------------------------------------------------------------------------------
# Idempotent replays (test_idempotency_*.py, docs/idempotency.md).
# ------------------------------------------------------------------------------------------------

import concurrent.futures as _futures

REPLAYED_HEADER = "Idempotent-Replayed"
# The nginx replay cache (paygate_idempotency_zone), as a start_nginx keyword argument.
REPLAY_ZONE = {"paygate_idempotency_zone": "paygate_replay:4m"}

__all__ += ["IdempotencyTestCase", "REPLAYED_HEADER", "REPLAY_ZONE", "unique_id"]


def unique_id(prefix: str = "idem") -> str:
    """A payment field value (sender_id etc.) no other test uses, to count one test's rows."""
    return f"{prefix}-{_uuid.uuid4().hex[:16]}"


class IdempotencyTestCase(PaymentStackTestCase):
    """A PaymentStackTestCase for idempotent replays. Class attributes: `zone` (True: nginx gets
    `paygate_idempotency_zone`, replays are answered by nginx), `daemon_env` (extra environment
    of d1, e.g. the test-only fault switch), `daemon_workers`. Subclasses may extend the stack in
    `extend_stack(stack)` (more daemons, a second nginx)."""

    zone = True
    daemon_env: dict = {}
    daemon_workers = 4

    @classmethod
    def nginx_directives(cls) -> dict:
        return {**cls.nginx, **(REPLAY_ZONE if cls.zone else {})}

    @classmethod
    def setUpClass(cls) -> None:
        unittest.TestCase.setUpClass()
        cls._any_failed = False
        stack = Stack(daemon_workers=cls.daemon_workers)
        cls.shared_stack = stack
        try:
            stack.start_postgres()
            stack.migrate()
            cls.tokens = {c: stack.create_token(c) for c in cls.clients}
            stack.start_daemon("d1", env=cls.daemon_env or None)
            stack.start_nginx(daemons=["d1"], **cls.nginx_directives())
            cls.extend_stack(stack)
            for name in stack.nginxes:
                for token in cls.tokens.values():
                    cls.wait_until_token_accepted_on(stack, token, name)
        except BaseException:
            cls._stop_shared_stack(failed=True, raise_problems=False)
            raise

    @classmethod
    def extend_stack(cls, stack) -> None:
        pass

    @staticmethod
    def wait_until_token_accepted_on(stack, token: str, name: str = "nginx",
                                     timeout: float = 20.0, consecutive: int = 8) -> None:
        """wait_until_token_accepted against nginx `name`."""
        PaymentStackTestCase.wait_until_token_accepted(stack, token, timeout, consecutive, name)

    # -- requests ---------------------------------------------------------------------------------

    def post(self, path: str, body, *, token="default", nginx: str = "nginx", timeout: float = 15.0):
        """POST `body` (dict, or exact str/bytes) to PAYMENT_API/`path` on nginx `nginx`."""
        if token == "default":
            token = self.token
        hdrs = {"Content-Type": "application/json"}
        if token is not None:
            hdrs["x_auth_token"] = token
        return self.stack.http("POST", f"{PAYMENT_API}/{path}", self.encode(body), hdrs,
                               timeout=timeout, name=nginx)

    def post_until_settled(self, path: str, body, *, nginx: str = "nginx", timeout: float = 20.0,
                           retry_statuses=(409,)):
        """POSTs until the answer is not one of `retry_statuses` (409 idempotency_in_progress:
        the first request with the key is still running); returns that answer."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.post(path, body, nginx=nginx)
            if r[0] not in retry_statuses or time.monotonic() > deadline:
                return r
            if r[0] == 409:
                self.assertJsonError(r, 409, "idempotency_in_progress")
            time.sleep(0.05)

    # -- assertions -------------------------------------------------------------------------------

    def assertExecuted(self, response, status: int = 200):
        """A first answer: `status`, JSON, no Idempotent-Replayed header."""
        st, hdrs, raw = response
        self.assertEqual(st, status, raw)
        self.assertJson(hdrs, raw)
        self.assertIsNone(hdrs.get(REPLAYED_HEADER), f"first answer carries {REPLAYED_HEADER}")
        return raw

    def assertReplayOf(self, replay, original) -> None:
        """`replay` is `original` replayed: same status, same body bytes, JSON content type,
        `Idempotent-Replayed: true`, and its own X-Request-Id."""
        st, hdrs, raw = replay
        self.assertEqual(st, original[0], f"replay status {st} {raw[:300]!r}")
        self.assertEqual(raw, original[2], "replayed body differs from the original")
        self.assertEqual(hdrs.get(REPLAYED_HEADER), "true",
                         f"no '{REPLAYED_HEADER}: true' in {dict(hdrs)}")
        self.assertEqual(len(hdrs.get_all(REPLAYED_HEADER) or []), 1, dict(hdrs))
        self.assertTrue(hdrs.get("Content-Type", "").startswith("application/json"), dict(hdrs))
        self.assertIsNone(hdrs.get("x-paygate-idempotency"), "internal header leaked")
        rid = self.assertRequestId(hdrs)
        self.assertNotEqual(rid, original[1].get("X-Request-Id"))

    def daemon_lines(self, rid: str) -> list:
        """Request events (dicts) of every daemon of the stack with X-Request-Id `rid`."""
        return [e for d in self.stack.daemons.values() for e in d.requests(request_id=rid)]

    def assertSeenByDaemon(self, response, idempotency: str = None) -> dict:
        """The daemon logged the request of `response` (optionally with idempotency=<value>)."""
        rid = response[1].get("X-Request-Id")
        lines = wait_until(lambda: self.daemon_lines(rid), 5, f"daemon log line of {rid}")
        self.assertEqual(len(lines), 1, lines)
        if idempotency is not None:
            self.assertEqual(lines[0].get("idempotency"), idempotency, lines[0])
        return lines[0]

    def assertNotSeenByDaemon(self, response) -> None:
        """Answered by nginx alone: no daemon logged a request line with its X-Request-Id."""
        rid = response[1].get("X-Request-Id")
        self.assertTrue(rid)
        time.sleep(0.2)   # a daemon logs before it replies; this is just a margin
        self.assertEqual(self.daemon_lines(rid), [], f"request {rid} reached a daemon")

    def assertReplaySource(self, response) -> None:
        """Zone: answered by nginx; no zone: answered by paygated from PostgreSQL."""
        if self.zone:
            self.assertNotSeenByDaemon(response)
        else:
            self.assertSeenByDaemon(response, idempotency="replayed")

    # -- database ---------------------------------------------------------------------------------

    def payments_of_sender(self, sender: str) -> list:
        out = self.stack.psql(f"SELECT id FROM payments WHERE sender_id = '{sender}' ORDER BY id")
        return out.split() if out else []

    def count(self, table: str, pid: str, where: str = "") -> int:
        return int(self.stack.psql(f"SELECT count(*) FROM {table} WHERE payment_id = '{pid}' {where}"))

    # -- concurrency ------------------------------------------------------------------------------

    def run_many(self, calls, threads: int = 50, timeout: float = 120.0) -> list:
        """Runs every call on a pool of `threads` threads; returns the results in order (a call
        that raised fails the test)."""
        with _futures.ThreadPoolExecutor(max_workers=threads) as pool:
            futs = [pool.submit(c) for c in calls]
            results = []
            for f in futs:
                try:
                    results.append(f.result(timeout=timeout))
                except Exception as e:
                    self.fail(f"a concurrent request failed: {e!r}")
        return results
