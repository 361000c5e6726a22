"""Clients that go away mid-request: nginx keeps serving, and at teardown ASan/LSan report
nothing and error.log has no alert (checked by StackTestCase for every test)."""

import signal
import time
import unittest

from e2e_base import StackTestCase, close_with_reset, raw_request

PING = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"
# Held while the daemon is stopped: its late reply ({"status":"healthy",...}) cannot pass for the
# /ping answers checked afterwards ({"status":"ok"}).
HEALTH = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"


class ClientDisconnectTest(StackTestCase):
    nginx = {"worker_processes": 1, "paygate_timeout": "2s"}

    def test_partial_body_then_close(self):
        workers = self.stack.nginx_worker_pids()
        heads = [b"GET /ping HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                 b"POST /ping HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                 b"GET /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
                 b"GET /ping HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n"]
        for i in range(12):
            s = raw_request(self.stack.port, heads[i % len(heads)] + b"x" * 100)
            time.sleep(0.02)
            if i % 2:
                close_with_reset(s)
            else:
                s.close()
        # headers cut short, too
        for _ in range(3):
            raw_request(self.stack.port, b"GET /ping HTTP/1.1\r\nHo").close()
        self.wait_for_status("/ping", 200, timeout=10)
        self.assertEqual(self.stack.nginx_worker_pids(), workers)

    def test_close_while_daemon_is_stopped_then_timeout_then_sigcont(self):
        workers = self.stack.nginx_worker_pids()
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        socks = [raw_request(self.stack.port, HEALTH) for _ in range(6)]
        time.sleep(0.3)  # the requests are forwarded and waiting for the daemon
        for i, s in enumerate(socks):
            close_with_reset(s) if i % 2 else s.close()
        time.sleep(2.5)  # past paygate_timeout: any timer left behind would fire now
        self.stack.kill_daemon("d1", signal.SIGCONT)  # late replies for requests long gone
        self.wait_for_status("/ping", 200, timeout=10)
        self.assertPingAnswers()
        self.assertEqual(self.stack.nginx_worker_pids(), workers)

    def test_close_then_reply_arrives_before_timeout(self):
        workers = self.stack.nginx_worker_pids()
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        socks = [raw_request(self.stack.port, HEALTH) for _ in range(6)]
        time.sleep(0.3)
        for i, s in enumerate(socks):
            close_with_reset(s) if i % 2 else s.close()
        time.sleep(0.2)
        self.stack.kill_daemon("d1", signal.SIGCONT)  # replies arrive while timers would be live
        self.wait_for_status("/ping", 200, timeout=10)
        self.assertPingAnswers()
        self.assertEqual(self.stack.nginx_worker_pids(), workers)

    def assertPingAnswers(self, n: int = 5):
        """/ping answers its own body: no late /health reply of a closed request is taken for it."""
        for _ in range(n):
            status, headers, body = self.get("/ping")
            self.assertEqual(status, 200, body)
            self.assertEqual(self.assertJson(headers, body), {"status": "ok"})

    def test_close_while_daemon_is_dead(self):
        workers = self.stack.nginx_worker_pids()
        socks = [raw_request(self.stack.port, PING) for _ in range(3)]
        self.stack.kill_daemon("d1", signal.SIGKILL)
        for s in socks:
            s.close()
        self.stack.start_daemon("d1")
        self.wait_for_steady("/ping", 200)
        self.assertEqual(self.stack.nginx_worker_pids(), workers)


if __name__ == "__main__":
    unittest.main()
