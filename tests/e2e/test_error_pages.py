"""nginx's own answers inside a paygate_pass location (docs/directives.md): a malformed chunked
body and a 411 page are JSON, never HTML; a body that stops arriving is cut off by nginx (no
answer, logged 408) and executes nothing; the token table refuses DELETE and TRUNCATE."""

import json
import socket
import time
import unittest

from e2e_base import (PAYMENT_API, UNKNOWN_PAYMENT, PaymentStackTestCase, create_body, new_uuid, raw_request,
                      read_response)

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
        return sum("route=payment.create" in ln for ln in self.stack.daemons["d1"].request_lines())

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


if __name__ == "__main__":
    unittest.main()
