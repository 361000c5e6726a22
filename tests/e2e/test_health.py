"""GET /health and GET /ping through nginx -> module -> paygated -> PostgreSQL; request ids; reload."""

import json
import re
import unittest
from datetime import datetime, timedelta, timezone

from e2e_base import PAYMENT_API, UNKNOWN_PAYMENT, PaymentStackTestCase, StackTestCase, check_answer

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|\+00:00)$")


class HealthTest(StackTestCase):

    def test_health_is_200_json_with_utc_timestamp(self):
        status, headers, body = self.get("/health")
        self.assertEqual(status, 200, body)
        doc = self.assertJson(headers, body)
        self.assertEqual(doc.get("status"), "healthy", doc)
        ts = doc.get("timestamp")
        self.assertIsInstance(ts, str, doc)
        self.assertRegex(ts, RFC3339_UTC)
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        self.assertEqual(when.utcoffset(), timedelta(0))
        # same clock, so only a sanity bound (catches local-time or epoch mistakes)
        self.assertLess(abs(datetime.now(timezone.utc) - when), timedelta(hours=1))
        rid = self.assertRequestId(headers)
        # the daemon's log line for this request carries nginx's request id and the route
        line = self.stack.daemons["d1"].requests(request_id=rid)
        self.assertEqual(len(line), 1, self.stack.daemons["d1"].log_text()[-2000:])
        self.assertEqual(line[0]["route"], "health")
        self.assertEqual(line[0]["status"], 200)

    def test_ping_is_200_ok(self):
        status, headers, body = self.get("/ping")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertJson(headers, body), {"status": "ok"})
        self.assertRequestId(headers)

    def test_request_ids_are_unique(self):
        ids = set()
        for path in ["/ping", "/health", "/nope", "/ping", "/health"]:
            _, headers, _ = self.get(path)
            ids.add(self.assertRequestId(headers))
        self.assertEqual(len(ids), 5, ids)

    def test_underscore_auth_header_is_accepted(self):
        """nginx ignores header names with underscores by default: `x_auth_token` must still reach
        the module. Checked on a route that needs a token (/ping needs none, so it proves nothing)."""
        path = f"{PAYMENT_API}/{UNKNOWN_PAYMENT}/retrieve/status"
        self.assertJsonError(self.get(path), 403, "acces_error")   # the route does check a token
        token = self.stack.create_token("underscore")
        # polls this route with x_auth_token until every worker answers 404, i.e. accepts it
        PaymentStackTestCase.wait_until_token_accepted(self.stack, token)
        doc = self.assertJsonError(self.get(path, headers={"x_auth_token": token}), 404, "not_found")
        self.assertEqual(doc["message"], f"payment {UNKNOWN_PAYMENT} not found")
        # the header is read, not merely tolerated: a wrong token in it is refused
        self.assertJsonError(self.get(path, headers={"x_auth_token": token[:-1]}), 403, "acces_error")

    def test_query_string_and_trailing_slash(self):
        for path in ("/ping?x=1", "/ping/"):
            with self.subTest(path=path):
                status, headers, body = self.get(path)
                self.assertEqual(status, 200, body)
                self.assertEqual(self.assertJson(headers, body), {"status": "ok"})

    def test_keepalive_connection_serves_many_requests(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=10)
        try:
            sock = None
            for i in range(20):
                conn.request("GET", "/ping")
                sock = sock or conn.sock
                resp = conn.getresponse()
                body = resp.read()
                check_answer("GET", "/ping", resp.status, resp.headers, body, "keep-alive")
                self.assertEqual(resp.status, 200, body)
                self.assertEqual(json.loads(body), {"status": "ok"})
                # http.client would silently reconnect: the one socket must carry every request
                self.assertFalse(resp.will_close, f"request {i}: {resp.getheaders()}")
                self.assertIs(conn.sock, sock, f"request {i} went over a new connection")
        finally:
            conn.close()

    def test_reload_keeps_serving(self):
        before = self.stack.nginx_worker_pids()
        after = self.stack.reload_nginx()
        self.assertFalse(set(before) & set(after), (before, after))
        self.wait_for_status("/ping", 200, timeout=10)
        status, headers, body = self.get("/health")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertJson(headers, body).get("status"), "healthy", body)


if __name__ == "__main__":
    unittest.main()
