"""A client that gives up on a parked request frees its paygate_max_in_flight slot at once.

nginx runs one worker with `paygate_max_in_flight 4` and a long `paygate_timeout`. Requests park
because paygated's only worker is blocked in PostgreSQL (see DaemonBlocked). Four parked requests
are abandoned by their clients (TCP FIN, TCP RST, an HTTP/2 RST_STREAM on a connection that stays
open, a whole HTTP/2 connection closed); once nginx has finalized them (access log 499, long
before paygate_timeout), four new requests park again (not 503: the four slots are free), a fifth
gets 503 `service_unavailable` (error log: "in-flight bound reached"), and once paygated is free
the four get its 200.

How many requests are parked is read from nginx's stub_status ("Writing", minus the status
request itself): with one worker that count is exact, so every step waits on a condition.

The HTTP/2 client here (H2Connection) is a minimal stdlib one, because a stream reset on demand
needs full control of the frames; test_tls_http2.py uses it and the scenario over TLS too.
"""

import json
import re
import select
import socket
import ssl
import struct
import subprocess
import time
import unittest

from e2e_base import (StackTestCase, check_answer, close_with_reset, read_response,  # sets sys.path
                      remember_request, wait_until)
import stack as stackmod  # noqa: E402
from stack import StackError, tls_client_context

HEALTH = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
PING = b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
STATUS_PATH = "/__paygate_status"
STATUS_LOCATION = f"        location = {STATUS_PATH} {{ stub_status; access_log off; }}"
MAX_IN_FLIGHT = 4
TIMEOUT_S = 60
# An abandoned request must be finalized long before paygate_timeout would end it anyway: this is
# the semantic bound (a slot held until the timeout is exactly the bug), not a speed assertion.
NOTICE_WITHIN_S = TIMEOUT_S / 2
ABORT_NGINX = {"worker_processes": 1, "paygate_max_in_flight": MAX_IN_FLIGHT,
               "paygate_timeout": f"{TIMEOUT_S}s", "server_extra": STATUS_LOCATION}
UNAVAILABLE = {"code": "service_unavailable", "message": "payment core unavailable, retry later"}
IN_FLIGHT_503 = "paygate: 503, in-flight bound reached"
# The module's info line when it notices a client gone (HTTP/1: the connection; HTTP/2: the stream).
CLIENT_GONE = re.compile(r"\[info\].*paygate: client (closed the connection|reset the stream)")


# ------------------------------------------------------------------------------------------------
# A minimal HTTP/2 client (RFC 9113): prior knowledge (h2c) or TLS with ALPN h2.
# ------------------------------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING_FRAME, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
CANCEL = 0x8
# HPACK static table entries of :status (RFC 7541 appendix A)
STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def hpack_int(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = [flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def decode_int(block: bytes, pos: int, prefix_bits: int):
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def status_of_block(block: bytes) -> int:
    """:status of a response header block. nginx writes it first (after an optional dynamic table
    size update): indexed from the static table, or a literal with indexed name 8 and raw digits."""
    pos = 0
    while block[pos] & 0xE0 == 0x20:          # dynamic table size update
        _, pos = decode_int(block, pos, 5)
    b = block[pos]
    if b & 0x80:
        index, _ = decode_int(block, pos, 7)
        return STATIC_STATUS[index]
    prefix = 6 if b & 0xC0 == 0x40 else 4
    index, pos = decode_int(block, pos, prefix)
    if index != 8 or block[pos] & 0x80:
        raise AssertionError(f"unexpected first header field in {block[:16].hex()}")
    length, pos = decode_int(block, pos, 7)
    return int(block[pos:pos + length])


class H2Stream:
    def __init__(self, method=None, path=None):
        self.method, self.path = method, path
        self.status = None        # from the HEADERS frame
        self.body = b""
        self.ended = False        # END_STREAM seen
        self.reset_code = None    # RST_STREAM from the server

    def end(self) -> None:
        """END_STREAM: the answer is whole. This client decodes only :status, so the contract
        check (docs/openapi/) sees status and body, not the headers."""
        if not self.ended and self.status is not None:
            check_answer(self.method, self.path, self.status, None, self.body, "HTTP/2 client")
        self.ended = True


class H2Connection:
    """One HTTP/2 connection on `sock`; `request()` opens streams, `reset()` sends RST_STREAM,
    `pump()` reads frames (answering SETTINGS and PING) until a condition holds."""

    def __init__(self, sock: socket.socket, scheme: str, authority: str):
        self.sock = sock
        self.scheme = scheme
        self.authority = authority
        self.buf = b""
        self.streams: dict[int, H2Stream] = {}
        self.next_id = 1
        self.goaway = None
        self.closed = False
        self._headers_of = None   # (sid, block so far) while CONTINUATION frames are due
        sock.sendall(PREFACE + self.frame(SETTINGS, 0, 0, b""))

    @staticmethod
    def frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload

    def request(self, method: str, path: str, headers=(), body: bytes = b"") -> int:
        """Opens a stream. A `body` goes in DATA frames of at most 16384 bytes (the default
        SETTINGS_MAX_FRAME_SIZE), with no content-length unless `headers` has one; it must fit
        the default stream window (65535 bytes): this client never waits for WINDOW_UPDATE."""
        if len(body) > 65535:
            raise ValueError("body larger than the initial flow-control window")
        sid = self.next_id
        self.next_id += 2
        fields = [(":method", method), (":scheme", self.scheme), (":path", path),
                  (":authority", self.authority), *headers]
        block = b"".join(hpack_literal(n, v) for n, v in fields)
        self.streams[sid] = H2Stream(method, path)
        self.sock.sendall(self.frame(HEADERS, (0 if body else END_STREAM) | END_HEADERS, sid, block))
        for at in range(0, len(body), 16384):
            last = at + 16384 >= len(body)
            self.sock.sendall(self.frame(DATA, END_STREAM if last else 0, sid, body[at:at + 16384]))
        return sid

    def reset(self, sid: int, code: int = CANCEL) -> None:
        self.sock.sendall(self.frame(RST_STREAM, 0, sid, struct.pack(">I", code)))

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def _read_frame(self, timeout: float) -> bool:
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            self.sock.settimeout(max(timeout, 0.01))
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                return False
            if not chunk:
                raise AssertionError("nginx closed the HTTP/2 connection")
            self.buf += chunk
        length = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + length], self.buf[9 + length:]
        self._handle(ftype, flags, sid, payload)
        return True

    def _handle(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if ftype in (DATA, HEADERS) and flags & PADDED:
            payload = payload[1:len(payload) - payload[0]]
        if ftype == DATA:
            st = self.streams.setdefault(sid, H2Stream())
            st.body += payload
            if flags & END_STREAM:
                st.end()
            if payload:   # give the connection window back (nginx keeps per-stream windows large)
                self.sock.sendall(self.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))))
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & PRIORITY:
                    payload = payload[5:]
                self._headers_of = (sid, b"", bool(flags & END_STREAM))
            hsid, block, ends = self._headers_of
            block += payload
            self._headers_of = (hsid, block, ends)
            if flags & END_HEADERS:
                st = self.streams.setdefault(hsid, H2Stream())
                if st.status is None:
                    st.status = status_of_block(block)
                if ends:
                    st.end()
                self._headers_of = None
        elif ftype == RST_STREAM:
            self.streams.setdefault(sid, H2Stream()).reset_code = int.from_bytes(payload, "big")
        elif ftype == SETTINGS and not flags & ACK:
            self.sock.sendall(self.frame(SETTINGS, ACK, 0, b""))
        elif ftype == PING_FRAME and not flags & ACK:
            self.sock.sendall(self.frame(PING_FRAME, ACK, 0, payload))
        elif ftype == GOAWAY:
            self.goaway = payload

    def pump(self, until, timeout: float, what: str) -> None:
        """Reads frames until `until()` is true; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"HTTP/2: timed out after {timeout:.0f}s waiting for {what}")
            self._read_frame(left)

    def wait_ended(self, sids, timeout: float = 20.0) -> None:
        self.pump(lambda: all(self.streams[s].ended or self.streams[s].reset_code is not None
                              for s in sids), timeout, f"streams {list(sids)} to end")

    def drain(self) -> None:
        """Reads whatever frames are already here (nothing is waited for)."""
        while self._read_frame(0.05):
            pass


def h2_connect(port: int, cafile=None) -> H2Connection:
    """An HTTP/2 connection: cleartext prior knowledge, or TLS (ALPN h2, `cafile` trusted)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    if cafile is None:
        return H2Connection(sock, "http", f"127.0.0.1:{port}")
    tls = tls_client_context(cafile, alpn=["h2"]).wrap_socket(sock, server_hostname="127.0.0.1")
    if tls.selected_alpn_protocol() != "h2":
        raise AssertionError(f"ALPN chose {tls.selected_alpn_protocol()!r}, not h2")
    return H2Connection(tls, "https", f"127.0.0.1:{port}")


# ------------------------------------------------------------------------------------------------
# The scenario, shared with test_tls_http2.py (a mixin: no tests of its own).
# ------------------------------------------------------------------------------------------------

class DaemonBlocked:
    """paygated's only worker waits on PostgreSQL until release(): a psql session of ours holds
    ACCESS EXCLUSIVE on payments, and a payment.status request sent straight to the daemon
    (paygate-ipc-send, so it takes no slot in nginx) blocks on it in that worker. Requests
    forwarded meanwhile queue in paygated, unanswered, while its ZeroMQ transport stays up. (A
    SIGSTOPped daemon would not do for more than a moment: nginx's ZeroMQ heartbeat drops it after
    3 s, new requests then get 503 and parked ones never get their reply. The token poll no longer
    takes a worker: paygated answers it from memory, P8 #7.)"""

    TAG = "paygate-test-block"

    def __init__(self, stack):
        self.stack = stack
        self.proc = subprocess.Popen(
            [str(stackmod.PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-d", f"{stack.conninfo} application_name={self.TAG}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.blocker = None
        self.released = False
        try:
            self.proc.stdin.write("BEGIN;\nLOCK TABLE payments IN ACCESS EXCLUSIVE MODE;\n")
            self.proc.stdin.flush()
            wait_until(self._locked, 30, "our lock on payments")
            # The request's own deadline (its statement_timeout) outlasts the test's waits.
            curve = stack.curve_keys()   # the link is CURVE: speak as the stack's nginx does
            self.blocker = subprocess.Popen(
                [str(stack.bin_dir / "paygate-ipc-send"), stack.endpoint("d1"), "payment.status",
                 "--principal", "1", "--param", "payment_id=00000000-0000-4000-8000-000000000000",
                 "--request-id", self.TAG, "--timeout-ms", "300000", "--wait-ms", "300000",
                 "--curve-key", str(curve / "nginx.key"), "--server-key", str(curve / "paygated.pub")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=stack._san_env("ipc-send"))
            wait_until(self._daemon_waits, 30, "paygated's worker to wait on our payments lock")
        except BaseException:
            self.proc.kill()
            self.release(check=False)
            raise

    def _locked(self) -> bool:
        if self.proc.poll() is not None:
            raise StackError(f"psql {self.TAG} exited ({self.proc.returncode}): {self.proc.stderr.read()}")
        return self.stack.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE l.granted AND a.application_name = '{self.TAG}' "
            "AND l.relation = 'payments'::regclass AND l.mode = 'AccessExclusiveLock'") != "0"

    def _daemon_waits(self) -> bool:
        if self.proc.poll() is not None:
            raise StackError(f"psql {self.TAG} exited ({self.proc.returncode}): {self.proc.stderr.read()}")
        return self.stack.psql(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.application_name = 'paygated' "
            "AND l.relation = 'payments'::regclass") != "0"

    def release(self, check: bool = True) -> None:
        if self.released:
            return
        self.released = True
        try:
            self.proc.stdin.write("ROLLBACK;\n")
            self.proc.stdin.close()
        except OSError:
            pass
        rc = self.proc.wait(timeout=60)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.blocker is not None:
            # its reply (404, no such payment) comes once the lock is gone
            brc = self.blocker.wait(timeout=60)
            if check and brc != 0:
                raise StackError(f"the blocking payment.status got no reply ({brc})")
        if check and rc != 0:
            raise StackError(f"psql {self.TAG} holding the lock failed ({rc}): {err}")


def send_close_notify(sock: ssl.SSLSocket) -> None:
    """Sends the TLS close_notify alert without waiting for nginx's (the socket stays open)."""
    sock.setblocking(False)
    try:
        sock.unwrap()   # the first SSL_shutdown writes close_notify; the second would wait
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        pass


def has_data(sock: socket.socket) -> bool:
    """True if an answer (or EOF) is waiting on `sock` right now (over TLS: application data or
    EOF, not the session tickets a TLS 1.3 server sends after the handshake; reads one byte)."""
    if not isinstance(sock, ssl.SSLSocket):
        return bool(select.select([sock], [], [], 0)[0])
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        sock.recv(1)
        return True
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


class AbortScenario:
    """The scenario for a StackTestCase: nginx is ABORT_NGINX plus the class's `nginx_extra`
    (tls=True, h2c=True), paygated d1 has one worker."""

    daemons = ()
    start_nginx_in_setup = False
    nginx_extra: dict = {}

    def setUp(self) -> None:
        super().setUp()
        # requests must wait for the blocked worker as long as nginx waits for them
        self.stack.start_daemon("d1", workers=1, queue_max_age_ms=TIMEOUT_S * 1000)
        self.stack.start_nginx(**ABORT_NGINX, **self.nginx_extra)

    def block_daemon(self) -> DaemonBlocked:
        hold = DaemonBlocked(self.stack)
        self.addCleanup(hold.release)
        return hold

    def parked(self) -> int:
        """Requests the (single) worker holds: stub_status "Writing" minus the status request."""
        _, _, body = self.stack.http("GET", STATUS_PATH)
        m = re.search(rb"Writing: (\d+)", body)
        self.assertIsNotNone(m, body)
        return int(m.group(1)) - 1

    def wait_parked(self, n: int, what: str = "") -> None:
        last = []

        def check():
            last[:] = [self.parked()]
            return last[0] == n
        try:
            wait_until(check, 20, f"{n} parked requests {what}")
        except StackError as e:
            self.fail(f"{e}; parked: {last}")

    def park(self, open_one, n: int = MAX_IN_FLIGHT) -> list:
        """Opens `n` requests one at a time, each parked before the next. Never a burst: the
        worker's ZeroMQ send queue is sized like the bound (ZMQ_SNDHWM = paygate_max_in_flight) and
        learns late that its messages left, so a burst can get 503 "send queue full" before the
        bound is reached; this test is about the bound."""
        already = self.parked()
        out = []
        for i in range(n):
            out.append(open_one())
            self.wait_parked(already + i + 1)
        return out

    def logs_since(self):
        ngx = self.stack.nginxes["nginx"]
        access = ngx.prefix / "logs" / "access.log"
        offsets = (ngx.error_log.stat().st_size, access.stat().st_size if access.exists() else 0)

        def read():
            with open(ngx.error_log, "rb") as f:
                f.seek(offsets[0])
                err = f.read().decode("utf-8", "replace")
            with open(access, "rb") as f:
                f.seek(offsets[1])
                acc = f.read().decode("utf-8", "replace")
            return err, acc
        return read

    @staticmethod
    def count_status(access: str, path: str, status: int) -> int:
        return len(re.findall(rf'"GET {re.escape(path)} HTTP/[\d.]+" {status} ', access))

    def wait_noticed(self, logs, n: int, path: str = "/health") -> None:
        """nginx finalized `n` abandoned requests (access log 499), before paygate_timeout."""
        try:
            wait_until(lambda: self.count_status(logs()[1], path, 499) >= n and self.parked() == 0,
                       NOTICE_WITHIN_S, f"{n} abandoned requests to end with 499 "
                       f"(paygate_timeout is {TIMEOUT_S}s: a slot held until then is the bug)")
        except StackError as e:
            err, acc = logs()
            self.fail(f"{e}\nparked now: {self.parked()}\naccess log:\n{acc}\nerror log:\n{err[-3000:]}")
        err, acc = logs()
        self.assertEqual(self.count_status(acc, path, 499), n, acc)
        self.assertEqual(len(CLIENT_GONE.findall(err)), n, err[-3000:])

    def assertFifthRefused(self, logs) -> None:
        """The bound holds: one more request gets 503 at once (not parked), naming the reason."""
        doc = self.assertJsonError(self.get("/ping"), 503, "service_unavailable")
        self.assertEqual(doc, UNAVAILABLE)
        self.assertEqual(logs()[0].count(IN_FLIGHT_503), 1, logs()[0][-3000:])

    def assertLateRepliesDropped(self, logs) -> None:
        """The abandoned requests' replies came later and went nowhere: /health 200 only for the
        four parked afterwards, /ping 200 only for the first request of the test."""
        self.wait_parked(0, "(all answered)")
        err, acc = logs()
        self.assertEqual(self.count_status(acc, "/health", 200), MAX_IN_FLIGHT, acc)
        self.assertEqual(self.count_status(acc, "/ping", 200), 1, acc)

    # -- HTTP/1.1 -----------------------------------------------------------------------------------

    def open_http1(self, payload: bytes) -> socket.socket:
        ngx = self.stack.nginxes["nginx"]
        sock = socket.create_connection(("127.0.0.1", ngx.port), timeout=30)
        if ngx.cafile is not None:
            sock = tls_client_context(ngx.cafile).wrap_socket(sock, server_hostname="127.0.0.1")
        remember_request(sock, payload)
        sock.sendall(payload)
        return sock

    def run_http1_abort(self, abort) -> None:
        """Four parked /health requests, each abandoned with `abort(sock)`; then the bound."""
        logs = self.logs_since()
        self.assertEqual(self.get("/ping")[0], 200)
        hold = self.block_daemon()
        held = self.park(lambda: self.open_http1(HEALTH))
        for s in held:
            abort(s)
        self.wait_noticed(logs, MAX_IN_FLIGHT)

        fresh = []
        try:
            # parked, not refused: a 503 would have ended them (Writing would not count them)
            # /health, not /ping: ping is served on paygated's broker thread, never parked
            fresh = self.park(lambda: self.open_http1(HEALTH))
            self.assertFifthRefused(logs)
            self.assertEqual(self.parked(), MAX_IN_FLIGHT)
            self.assertFalse([s for s in fresh if has_data(s)], "a parked request was answered")
            hold.release()
            for s in fresh:
                status, headers, body = read_response(s)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body)["status"], "healthy")
        finally:
            for s in fresh + held:
                s.close()
        self.assertLateRepliesDropped(logs)

    # -- HTTP/2 -------------------------------------------------------------------------------------

    def run_h2_abort(self, connect, close_connection: bool = False) -> None:
        """Four parked /health streams on one HTTP/2 connection, abandoned by RST_STREAM (the
        connection stays open and is used again) or by closing the whole connection."""
        logs = self.logs_since()
        self.assertEqual(self.get("/ping")[0], 200)
        hold = self.block_daemon()
        h2 = connect()
        try:
            abandoned = self.park(lambda: h2.request("GET", "/health"))
            if close_connection:
                h2.close()
                h2 = connect()
            else:
                for sid in abandoned:
                    h2.reset(sid)
            self.wait_noticed(logs, MAX_IN_FLIGHT)

            fresh = self.park(lambda: h2.request("GET", "/health"))
            fifth = h2.request("GET", "/health")   # same connection: refused, the others untouched
            h2.wait_ended([fifth])
            st = h2.streams[fifth]
            self.assertEqual(st.status, 503, st.body)
            self.assertEqual(json.loads(st.body), UNAVAILABLE)
            self.assertEqual(logs()[0].count(IN_FLIGHT_503), 1, logs()[0][-3000:])
            h2.drain()
            # frames of one connection are ordered: an answer to a parked stream would have come
            # before the fifth's
            for sid in fresh + ([] if close_connection else abandoned):
                self.assertIsNone(h2.streams[sid].status, f"stream {sid} was answered")
                self.assertFalse(h2.streams[sid].ended, f"stream {sid} ended")
            self.assertEqual(self.parked(), MAX_IN_FLIGHT)

            hold.release()
            h2.wait_ended(fresh)
            for sid in fresh:
                st = h2.streams[sid]
                self.assertEqual((st.status, st.reset_code), (200, None), st.body)
                self.assertEqual(json.loads(st.body)["status"], "healthy")
            self.assertLateRepliesDropped(logs)
            last = h2.request("GET", "/ping")   # the connection still serves
            h2.wait_ended([last])
            self.assertEqual(h2.streams[last].status, 200)
            if not close_connection:
                for sid in abandoned:   # reset by us: nothing ever came back on them
                    self.assertIsNone(h2.streams[sid].status, f"reset stream {sid} was answered")
            self.assertIsNone(h2.goaway)
        finally:
            h2.close()


# ------------------------------------------------------------------------------------------------


class Http1ClientAbortTest(AbortScenario, StackTestCase):

    def test_fin_frees_the_slots(self):
        self.run_http1_abort(lambda s: s.close())

    def test_rst_frees_the_slots(self):
        self.run_http1_abort(close_with_reset)


class Http2ClientAbortTest(AbortScenario, StackTestCase):
    nginx_extra = {"h2c": True}

    def connect(self) -> H2Connection:
        return h2_connect(self.stack.nginxes["nginx"].h2c_port)

    def test_stream_reset_frees_the_slots(self):
        self.run_h2_abort(self.connect)

    def test_connection_close_frees_the_slots(self):
        self.run_h2_abort(self.connect, close_connection=True)


if __name__ == "__main__":
    unittest.main()
