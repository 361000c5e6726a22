"""The module's own answers: 404, 405 with Allow, 413 for bodies over paygate_max_body_size."""

import socket
import unittest

from e2e_base import TOO_LARGE_BODY, StackTestCase, raw_request, read_response, wait_until


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


if __name__ == "__main__":
    unittest.main()
