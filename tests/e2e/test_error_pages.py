"""nginx's own answers inside a paygate_pass location (docs/directives.md): a malformed chunked
body and a 411 page are JSON, never HTML; a body that stops arriving is cut off by nginx (no
answer, logged 408) and executes nothing; the token table refuses DELETE and TRUNCATE.

nginx's answers before any location is chosen (docs/api.md, "Errors nginx gives before
routing"): a malformed request line or header, a URI or header too long, %00 in the path, TRACE,
an unknown Transfer-Encoding, an HTTP version it does not speak, plain HTTP on the TLS port, over
raw sockets (and one over HTTP/2): each is JSON with its code and X-Request-Id, from the
server-level configuration conf/ ships (conf/paygate-json-errors.conf)."""

import json
import socket
import time
import unittest

from e2e_base import (PAYMENT_API, UNKNOWN_PAYMENT, PaymentStackTestCase, StackTestCase, create_body, new_uuid,
                      raw_request, read_response)
from test_client_abort import h2_connect

LENGTH_REQUIRED_PATH = f"{PAYMENT_API}/length-required-page"


class NginxErrorPagesTest(PaymentStackTestCase):
    nginx = {"client_body_timeout": "1s",
             # nginx answers 411 itself here (a paygate_pass location): its page must be JSON too
             "server_extra": f"        location = {LENGTH_REQUIRED_PATH} {{ return 411; paygate_pass; }}\n"}

    def head(self, extra: bytes = b"") -> bytes:
        return (b"POST " + PAYMENT_API.encode() + b"/create HTTP/1.1\r\nHost: t\r\nx_auth_token: "
                + self.token.encode() + b"\r\nContent-Type: application/json\r\n" + extra)

    def rows_of(self, sender: str) -> int:
        return int(self.stack.psql(f"SELECT count(*) FROM payments WHERE sender_id = '{sender}'"))

    def create_lines(self) -> int:
        return len(self.stack.daemons["d1"].requests(route="payment.create"))

    def test_malformed_chunked_body_is_400_json(self):
        self.stack.allow_log(r"client sent invalid chunked body", "the test sends one", "nginx")
        # a whole valid create in the first chunk, then a chunk size that is not hex: if what came
        # before the error were passed on, this sender would get a payment
        sender = "chunked-" + new_uuid()[:8]
        body = json.dumps(create_body(sender=sender)).encode()
        before = self.create_lines()
        sock = raw_request(self.stack.port, self.head(b"Transfer-Encoding: chunked\r\n\r\n")
                           + b"%x\r\n" % len(body) + body + b"\r\nzz\r\n \r\n0\r\n\r\n")
        try:
            status, headers, body = read_response(sock, "POST")
        finally:
            sock.close()
        self.assertEqual(status, 400, body)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(json.loads(body), {"code": "validation_error", "message": "malformed HTTP request"})
        self.assertTrue(headers.get("X-Request-Id"))
        self.assertEqual(self.rows_of(sender), 0)
        self.assertEqual(self.create_lines(), before, "the request reached the daemon")

    def test_411_page_is_json(self):
        status, headers, body = self.stack.http("GET", LENGTH_REQUIRED_PATH)
        self.assertEqual(status, 411, body)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(json.loads(body), {"code": "length_required", "message": "request body needs a length"})

    def test_body_that_stops_arriving_is_cut_off_and_executes_nothing(self):
        """client_body_timeout: nginx closes the connection without an answer (it logs 408); the
        request never reaches the daemon."""
        # the whole of a valid create, one (whitespace) byte short of Content-Length: had nginx or
        # the module acted on what arrived, this sender would have a payment
        sender = "stalled-" + new_uuid()[:8]
        body = json.dumps(create_body(sender=sender)).encode()
        before = self.create_lines()
        sock = raw_request(self.stack.port, self.head(b"Content-Length: %d\r\n\r\n" % (len(body) + 1)) + body,
                           timeout=30)
        try:
            started = time.monotonic()
            self.assertEqual(sock.recv(4096), b"", "no answer, the connection is closed")
            self.assertGreaterEqual(time.monotonic() - started, 0.5, "closed by the body timeout, not at once")
        finally:
            sock.close()
        access = (self.stack.nginxes["nginx"].prefix / "logs" / "access.log").read_text()
        self.assertRegex(access, r'"POST /api/v1/payment/create HTTP/1\.1" 408 ')
        self.assertEqual(self.rows_of(sender), 0)
        self.assertEqual(self.create_lines(), before, "the request reached the daemon")
        # and the worker goes on serving
        self.assertEqual(self.stack.http("GET", "/ping")[0], 200)

    def test_api_tokens_refuse_delete_and_truncate(self):
        rows = self.stack.psql("SELECT count(*) FROM api_tokens")
        for sql in ("DELETE FROM api_tokens", "TRUNCATE api_tokens CASCADE"):
            with self.subTest(sql):
                with self.assertRaises(Exception) as ctx:
                    self.stack.psql(sql)
                self.assertIn("api_tokens rows are never deleted", str(ctx.exception))
        self.assertEqual(self.stack.psql("SELECT count(*) FROM api_tokens"), rows)
        for client, token in self.tokens.items():
            with self.subTest(client=client):
                self.assertEqual(self.status_of_unknown(token), 404, "every token still works")

    def status_of_unknown(self, token) -> int:
        return self.api("GET", f"{UNKNOWN_PAYMENT}/retrieve/status", token=token)[0]


MALFORMED = {"code": "validation_error", "message": "malformed HTTP request"}
HOST = b"Host: t\r\n"

# (what, raw request, status, JSON body): every one is refused by nginx before any location.
BEFORE_ROUTING = [
    ("garbage request line", b"BLAH\r\n\r\n", 400, MALFORMED),
    ("lower-case method", b"get /ping HTTP/1.1\r\n" + HOST + b"\r\n", 400, MALFORMED),
    ("%00 in the path", b"GET /ping%00 HTTP/1.1\r\n" + HOST + b"\r\n", 400, MALFORMED),
    ("%00 in a callback path", b"GET /callbacks/x%00y HTTP/1.1\r\n" + HOST + b"\r\n", 400, MALFORMED),
    ("HTTP/1.1 without Host", b"GET /ping HTTP/1.1\r\n\r\n", 400, MALFORMED),
    ("two Host headers", b"GET /ping HTTP/1.1\r\n" + HOST + HOST + b"\r\n", 400, MALFORMED),
    ("'..' above the root", b"GET /../ping HTTP/1.1\r\n" + HOST + b"\r\n", 400, MALFORMED),
    ("NUL in a header", b"GET /ping HTTP/1.1\r\n" + HOST + b"X-A: b\x00c\r\n\r\n", 400, MALFORMED),
    ("bare CR in a header", b"GET /ping HTTP/1.1\r\n" + HOST + b"X-A: b\rc\r\n\r\n", 400, MALFORMED),
    ("Transfer-Encoding in HTTP/1.0",
     b"POST /ping HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, MALFORMED),
    ("Content-Length and Transfer-Encoding",
     b"POST /ping HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
     400, MALFORMED),
    ("invalid Content-Length", b"POST /ping HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n", 400, MALFORMED),
    ("URI longer than a header buffer", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
     414, {"code": "uri_too_long", "message": "request URI too long"}),
    ("header longer than a header buffer", b"GET /ping HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
     400, {"code": "header_too_large", "message": "request header too large"}),
    ("TRACE", b"TRACE /ping HTTP/1.1\r\n" + HOST + b"\r\n",
     405, {"code": "method_not_allowed", "message": "method not allowed"}),
    ("unknown Transfer-Encoding", b"POST /ping HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n",
     501, {"code": "not_implemented", "message": "Transfer-Encoding not supported"}),
    ("HTTP/2.0 request line on HTTP/1", b"GET /ping HTTP/2.0\r\n" + HOST + b"\r\n",
     505, {"code": "http_version_not_supported", "message": "HTTP version not supported"}),
]


class BeforeRoutingErrorsTest(PaymentStackTestCase):
    """Answers nginx gives before a location is chosen are JSON too."""

    nginx = {"h2c": True}

    def exchange(self, data: bytes):
        sock = raw_request(self.stack.port, data)
        try:
            return read_response(sock)
        finally:
            sock.close()

    def assertJsonAnswer(self, response, status: int, expected: dict) -> None:
        st, headers, body = response
        self.assertEqual(st, status, body[:300])
        self.assertEqual(headers.get("Content-Type"), "application/json", body[:300])
        self.assertEqual(json.loads(body), expected)
        self.assertRegex(headers.get("X-Request-Id", ""), r"^[0-9a-f]{32}$")

    def test_every_refusal_before_routing_is_json(self):
        for what, data, status, expected in BEFORE_ROUTING:
            with self.subTest(what):
                self.assertJsonAnswer(self.exchange(data), status, expected)
        # the locations that answer them are internal: asked for directly, 404 (JSON as well)
        self.assertJsonAnswer(self.exchange(b"GET /__paygate/error/400 HTTP/1.1\r\n" + HOST + b"\r\n"),
                              404, {"code": "not_found", "message": "not found"})
        # and nginx still serves
        self.assertEqual(self.stack.http("GET", "/ping")[0], 200)

    def test_an_unknown_method_reaches_the_route_table(self):
        # a well-formed method nginx does not know is routed like any other: 405 with Allow
        st, headers, body = self.exchange(b"BREW /ping HTTP/1.1\r\n" + HOST + b"\r\n")
        self.assertEqual((st, json.loads(body)["code"]), (405, "method_not_allowed"), body)
        self.assertEqual(headers.get("Allow"), "GET")

    def test_http2_nul_in_the_path_is_json(self):
        h2 = h2_connect(self.stack.nginxes["nginx"].h2c_port)
        try:
            sid = h2.request("GET", "/ping%00")
            h2.wait_ended([sid])
        finally:
            h2.close()
        self.assertEqual(h2.streams[sid].status, 400)
        self.assertEqual(json.loads(h2.streams[sid].body), MALFORMED)

    def test_the_module_filter_and_the_server_pages_agree(self):
        # nginx's own 400 inside a paygate_pass location (a malformed chunked body) and before
        # routing give the same answer
        self.stack.allow_log(r"client sent invalid chunked body", "the test sends one", "nginx")
        st, headers, body = self.exchange(b"POST /ping HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
                                          b"zz\r\n\r\n")
        self.assertJsonAnswer((st, headers, body), 400, MALFORMED)


class PlainHttpOnTlsPortTest(StackTestCase):
    """The production shape (ssl http2): plain HTTP sent to the TLS port gets JSON (nginx's 497,
    sent as 400), not nginx's HTML page."""

    nginx = {"tls": True}

    def test_plain_http_on_the_tls_port_is_json(self):
        sock = raw_request(self.stack.port, b"GET /ping HTTP/1.1\r\n" + HOST + b"\r\n")
        try:
            st, headers, body = read_response(sock)
        finally:
            sock.close()
        self.assertEqual(st, 400, body[:300])
        self.assertEqual(headers.get("Content-Type"), "application/json", body[:300])
        self.assertEqual(json.loads(body), {"code": "https_required",
                                            "message": "plain HTTP request sent to the HTTPS port"})
        self.assertTrue(headers.get("X-Request-Id"))
        # and HTTPS still works
        self.assertEqual(self.stack.https("GET", "/ping")[0], 200)


if __name__ == "__main__":
    unittest.main()
