"""The daemon dies, hangs or is saturated: the module answers 503/504 JSON, nginx never crashes."""

import json
import signal
import time
import unittest

from e2e_base import StackTestCase, raw_request, read_response

PING = b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class DaemonKilledTest(StackTestCase):
    nginx = {"paygate_timeout": "3s"}

    def test_sigkill_gives_503_then_recovers_after_restart(self):
        self.assertEqual(self.get("/ping")[0], 200)
        workers = self.stack.nginx_worker_pids()
        self.stack.kill_daemon("d1", signal.SIGKILL)
        time.sleep(0.2)  # let the workers' ZeroMQ sockets see the peer go away
        for _ in range(3):
            resp, elapsed = self.timed_get("/ping")
            self.assertJsonError(resp, 503, "service_unavailable")
            # "immediately": well before paygate_timeout (3s), i.e. not a timeout in disguise
            self.assertLess(elapsed, 3.0)
        self.assertJsonError(self.get("/health"), 503, "service_unavailable")
        # The merchant API answers the same in its own envelope.
        st, _, body = self.stack.http("GET", "/v1/payments/ZT_0000000001",
                                      headers={"Authorization": f"Bearer {self.stack.mint_merchant_jwt()}"})
        self.assertEqual((st, json.loads(body)), (503, {"success": False, "message": "payment core unavailable, retry later",
                                                        "error": {"code": "service_unavailable"}}))
        self.assertEqual(self.stack.nginx_worker_pids(), workers, "nginx workers changed")

        self.stack.start_daemon("d1")
        self.wait_for_steady("/ping", 200)   # every worker has reconnected
        # /health also needs the new daemon's PostgreSQL connection, opened on its own schedule.
        self.wait_for_steady("/health", 200, consecutive=3)
        status, headers, body = self.get("/health")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.assertJson(headers, body).get("status"), "healthy", body)
        self.assertEqual(self.stack.nginx_worker_pids(), workers, "nginx workers changed")

    def test_daemon_down_at_nginx_start_then_up(self):
        self.assertEqual(self.stack.kill_daemon("d1", signal.SIGTERM), 0, "paygated exit status")
        self.stack.reload_nginx()
        workers = self.stack.nginx_worker_pids()
        self.assertJsonError(self.get("/ping"), 503, "service_unavailable")
        self.stack.start_daemon("d1")
        self.wait_for_steady("/ping", 200)
        self.assertEqual(self.stack.nginx_worker_pids(), workers)


class DaemonStoppedTest(StackTestCase):
    nginx = {"paygate_timeout": "1s"}

    def test_sigstop_gives_504_then_recovers_after_sigcont(self):
        self.assertEqual(self.get("/ping")[0], 200)
        workers = self.stack.nginx_worker_pids()
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        # /health is the one left unanswered: its late reply must not be taken for the /ping below
        resp, elapsed = self.timed_get("/health")
        self.assertJsonError(resp, 504, "gateway_timeout")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertJsonError(self.get("/ping"), 504, "gateway_timeout")

        self.stack.kill_daemon("d1", signal.SIGCONT)
        status, headers, body = self.wait_for_status("/ping", 200, timeout=10)
        self.assertEqual(self.assertJson(headers, body), {"status": "ok"})
        for _ in range(5):
            status, headers, body = self.get("/ping")
            self.assertEqual(status, 200, body)
            self.assertEqual(self.assertJson(headers, body), {"status": "ok"})
        self.assertEqual(self.stack.nginx_worker_pids(), workers, "nginx workers changed")


class InFlightBoundTest(StackTestCase):
    # one worker, so the bound (per worker) applies to every connection
    nginx = {"worker_processes": 1, "paygate_max_in_flight": 2, "paygate_timeout": "5s"}

    def test_third_concurrent_request_gets_503_immediately(self):
        self.assertEqual(self.get("/ping")[0], 200)
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        held = [raw_request(self.stack.port, PING, timeout=20) for _ in range(2)]
        try:
            # The module answers a 404 itself; once it has, the worker has also read the two
            # earlier connections' requests (same worker, accepted and readable before it).
            time.sleep(0.3)
            self.assertJsonError(self.get("/no-such-route"), 404, "not_found")
            resp, elapsed = self.timed_get("/ping")
            self.assertJsonError(resp, 503, "service_unavailable")
            self.assertLess(elapsed, 5.0)  # not the 5s timeout
            self.stack.kill_daemon("d1", signal.SIGCONT)
            # The two held requests were forwarded (not refused) and still waiting when the daemon
            # woke up, well inside paygate_timeout: each gets the daemon's own /ping answer.
            for s in held:
                status, headers, body = read_response(s)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body), {"status": "ok"})
                self.assertTrue(headers.get("X-Request-Id"), dict(headers))
        finally:
            for s in held:
                s.close()
        self.wait_for_status("/ping", 200, timeout=10)


if __name__ == "__main__":
    unittest.main()
