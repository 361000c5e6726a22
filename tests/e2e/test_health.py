"""GET /health and GET /ping through nginx -> module -> paygated -> PostgreSQL; request ids; reload."""

import re
import unittest
from datetime import datetime, timedelta, timezone

from e2e_base import StackTestCase

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
        line = [ln for ln in self.stack.daemons["d1"].request_lines() if rid in ln]
        self.assertEqual(len(line), 1, self.stack.daemons["d1"].log_text()[-2000:])
        self.assertIn("route=health", line[0])
        self.assertIn("status=200", line[0])

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
        status, _, body = self.get("/ping", headers={"x_auth_token": "not-a-real-token"})
        self.assertEqual(status, 200, body)

    def test_query_string_and_trailing_slash(self):
        self.assertEqual(self.get("/ping?x=1")[0], 200)
        self.assertEqual(self.get("/ping/")[0], 200)

    def test_keepalive_connection_serves_many_requests(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=10)
        try:
            for _ in range(20):
                conn.request("GET", "/ping")
                resp = conn.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 200, body)
        finally:
            conn.close()

    def test_reload_keeps_serving(self):
        before = self.stack.nginx_worker_pids()
        after = self.stack.reload_nginx()
        self.assertFalse(set(before) & set(after), (before, after))
        self.wait_for_status("/ping", 200, timeout=10)
        status, _, body = self.get("/health")
        self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
