"""The module's own answers: 404, 405 with Allow, 413 for bodies over paygate_max_body_size; a
body within the limit is read into memory, never spooled to a temporary file."""

import json
import socket
import unittest

from e2e_base import (PAYMENT_API, TOO_LARGE_BODY, PaymentStackTestCase, StackTestCase, create_body, new_uuid,
                      padded_json, raw_request, read_response, wait_until)
from test_client_abort import h2_connect


class ModuleErrorsTest(StackTestCase):

    def test_unknown_route_is_404_json(self):
        self.assertJsonError(self.get("/no/such/route"), 404, "not_found")
        self.assertJsonError(self.get("/"), 404, "not_found")

    def test_unknown_route_does_not_reach_daemon(self):
        resp = self.get("/no/such/route")
        self.assertJsonError(resp, 404, "not_found")
        rid = resp[1]["X-Request-Id"]
        # a request sent after it that does reach the daemon is logged: the log is read and up to
        # date, so the 404's absence from it means something
        _, ping_headers, _ = self.get("/ping")
        ping_rid = ping_headers["X-Request-Id"]
        d1 = self.stack.daemons["d1"]
        wait_until(lambda: any(ping_rid in ln for ln in d1.request_lines()), 5, "the /ping log line")
        self.assertFalse([ln for ln in d1.request_lines() if rid in ln])

    def test_wrong_method_is_405_json_with_allow(self):
        resp = self.request("POST", "/health", body=b"{}",
                            headers={"Content-Type": "application/json"})
        self.assertJsonError(resp, 405, "method_not_allowed")
        allow = resp[1].get("Allow", "")
        self.assertIn("GET", [m.strip() for m in allow.split(",")], f"Allow: {allow!r}")
        resp = self.request("DELETE", "/ping")
        self.assertJsonError(resp, 405, "method_not_allowed")
        self.assertEqual([m.strip() for m in resp[1].get("Allow", "").split(",")], ["GET"])

    def test_body_over_default_limit_is_413_json(self):
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends an oversized body", "nginx")
        # default paygate_max_body_size is 64k
        resp = self.request("GET", "/ping", body=b"x" * (64 * 1024 + 1))
        self.assertJsonError(resp, 413, "payload_too_large")

    def test_body_at_default_limit_is_accepted(self):
        status, headers, body = self.request("GET", "/ping", body=b"x" * (64 * 1024))
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertJson(headers, body), {"status": "ok"})

    def test_chunked_body_over_limit_is_413_json(self):
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends an oversized body", "nginx")
        chunk = b"x" * 8192
        data = (b"GET /ping HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n")
        for _ in range(9):  # 72 KiB > 64 KiB
            data += b"2000\r\n" + chunk + b"\r\n"
        data += b"0\r\n\r\n"
        s = raw_request(self.stack.port, data)
        try:
            self.assertJsonError(read_response(s), 413, "payload_too_large")
        finally:
            s.close()

    def test_body_over_nginx_client_max_body_size_is_413_json(self):
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends an oversized body", "nginx")
        # 2 MiB is over nginx's own client_max_body_size default (1m) as well: still JSON
        resp = self.request("GET", "/ping", body=b"x" * (2 * 1024 * 1024))
        self.assertJsonError(resp, 413, "payload_too_large")


class BodyLimitDirectiveTest(StackTestCase):
    nginx = {"paygate_max_body_size": "1k"}

    def test_limit_from_directive(self):
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends an oversized body", "nginx")
        self.assertJsonError(self.request("GET", "/ping", body=b"y" * 1025), 413, "payload_too_large")
        status, headers, body = self.request("GET", "/ping", body=b"y" * 1024)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertJson(headers, body), {"status": "ok"})


# nginx's [warn] when it writes a request body to client_body_temp_path.
SPOOLED = "a client request body is buffered to a temporary file"
LIMIT = 64 * 1024   # paygate_max_body_size's default


class BodyInMemoryTest(PaymentStackTestCase):
    """A body just below paygate_max_body_size, with nginx's default client_body_buffer_size (8k
    or 16k, far below it), reaches the daemon whole from memory: Content-Length, chunked and
    HTTP/2 without a length. nginx would otherwise write it to a temporary file (its [warn]
    SPOOLED) and the module read it back with blocking file I/O."""

    nginx = {"h2c": True}

    def setUp(self) -> None:
        super().setUp()
        ngx = self.stack.nginxes["nginx"]
        self.log_from = ngx.error_log.stat().st_size

    def new_log(self) -> str:
        with open(self.stack.nginxes["nginx"].error_log, "rb") as f:
            f.seek(self.log_from)
            return f.read().decode("utf-8", "replace")

    def body(self, size: int):
        sender = "in-memory-" + new_uuid()[:8]
        return sender, padded_json(create_body(sender=sender), size)

    def assertCreated(self, status: int, body: bytes, sender: str) -> None:
        self.assertEqual(status, 200, body[:300])
        pid = json.loads(body)["transaction_id"]
        self.assertEqual(self.stack.psql(f"SELECT id FROM payments WHERE sender_id = '{sender}'"), pid)
        self.assertNotIn(SPOOLED, self.new_log())

    def raw_create(self, framing: bytes, body_bytes: bytes):
        head = (f"POST {PAYMENT_API}/create HTTP/1.1\r\nHost: t\r\nx_auth_token: {self.token}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n").encode()
        s = raw_request(self.stack.port, head + framing + body_bytes)
        try:
            return read_response(s, "POST")
        finally:
            s.close()

    def test_content_length_body_below_the_limit(self):
        sender, body = self.body(LIMIT - 1)
        status, _, raw = self.api("POST", "create", body)
        self.assertCreated(status, raw, sender)

    def test_chunked_body_below_the_limit(self):
        sender, body = self.body(LIMIT - 1)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                          for i in range(0, len(body), 4096))
        status, _, raw = self.raw_create(b"Transfer-Encoding: chunked\r\n\r\n", chunks + b"0\r\n\r\n")
        self.assertCreated(status, raw, sender)

    def test_http2_body_without_length_below_the_limit(self):
        sender, body = self.body(LIMIT - 1)
        h2 = h2_connect(self.stack.nginxes["nginx"].h2c_port)
        try:
            sid = h2.request("POST", f"{PAYMENT_API}/create", body=body,
                             headers=[("x_auth_token", self.token), ("content-type", "application/json")])
            h2.wait_ended([sid])
        finally:
            h2.close()
        self.assertCreated(h2.streams[sid].status, h2.streams[sid].body, sender)

    def test_chunked_framing_beyond_the_buffer_is_413_before_any_disk_write(self):
        # 16 KiB of JSON in 1-byte chunks is 96 KiB on the wire: more than a payment body's
        # buffer holds. It is refused rather than written to disk (no SPOOLED), nothing created.
        sender, body = self.body(16 * 1024)
        chunks = b"".join(b"1\r\n%c\r\n" % c for c in body)
        status, headers, raw = self.raw_create(b"Transfer-Encoding: chunked\r\n\r\n", chunks + b"0\r\n\r\n")
        doc = self.assertJsonError((status, headers, raw), 413, "payload_too_large")
        self.assertIn("chunk", doc["message"])
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM payments WHERE sender_id = '{sender}'"), "0")
        self.assertNotIn(SPOOLED, self.new_log())


class BodyInFileOnlyRefusedTest(StackTestCase):
    """client_body_in_file_only would write every body to disk: refused in a paygate_pass
    location when nginx reads its configuration."""

    start_nginx_in_setup = False

    def test_client_body_in_file_only_is_refused(self):
        rc, out = self.stack.check_nginx_conf()
        self.assertEqual(rc, 0, out)   # the same configuration without it is fine
        for value in ("on", "clean"):
            with self.subTest(value):
                rc, out = self.stack.check_nginx_conf(client_body_in_file_only=value)
                self.assertNotEqual(rc, 0, out)
                self.assertIn('"paygate_pass" keeps request bodies in memory: "client_body_in_file_only" must be off',
                              out)


if __name__ == "__main__":
    unittest.main()
