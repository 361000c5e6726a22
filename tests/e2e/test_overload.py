"""Honest overload and zero-downtime restarts (P8 #4, #5).

- A request that cannot get a worker in time is answered 503 `overloaded` at once (queue_max_age_ms),
  not left to run into the module's 504.
- SIGTERM drains a daemon: what reaches it afterwards is refused "not executed", and the module
  sends that request once to another daemon. A rolling restart of both daemons under steady load
  gives no 5xx at all, and every create the clients were told about is in the database once."""

import json
import signal
import subprocess
import threading
import time
import unittest

from e2e_base import PaymentStackTestCase, create_body, new_uuid
from stack import DB_NAME, DB_USER, PG_BIN, wait_until


class OverloadIsA503Test(PaymentStackTestCase):
    daemon_workers = 1
    daemon_config = {"queue_max_age_ms": 300}
    nginx = {"paygate_timeout": "4s"}

    def test_queued_past_its_bound_gets_503_at_once(self):
        locked = self.create_payment()
        other = self.create_payment()
        # another session holds the payment's row: a cancel keeps the only worker waiting (up to
        # the request's deadline, 4 s)
        sql = (f"BEGIN; SELECT id FROM payments WHERE id = '{locked}' FOR UPDATE; SELECT pg_sleep(6); COMMIT;")
        holder = subprocess.Popen([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.stack.pg.port),
                                   "-U", DB_USER, "-d", DB_NAME, "-X", "-q", "-c", sql],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(holder.wait, 60)
        time.sleep(0.5)
        result = {}
        blocked = threading.Thread(target=lambda: result.setdefault("cancel", self.cancel(locked)))
        blocked.start()
        wait_until(lambda: self.stack.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                           "'paygated' AND wait_event_type = 'Lock'") != "0",
                   10, "the worker waiting on the lock")
        started = time.monotonic()
        status, headers, body = self.retrieve(other)
        waited = time.monotonic() - started
        self.assertJsonError((status, headers, body), 503, "overloaded")
        self.assertLess(waited, 2.5, "the refusal came only with the timeout")
        self.assertNotIn("x-paygate-not-executed", {k.lower() for k in headers})
        blocked.join(30)
        self.assertEqual(result["cancel"][0], 504, result["cancel"][2])   # the lock outlived its deadline
        self.stack.allow_log(r"event=request_not_executed .*reason=queue_age", "the test overloads the daemon",
                             "daemon")


class RollingRestartTest(PaymentStackTestCase):
    daemon_names = ("d1", "d2")
    nginx = {"paygate_timeout": "5s"}

    def test_rolling_restart_under_load_gives_no_5xx(self):
        stop = threading.Event()
        answers = []          # (status, body) of every request
        created = []          # (idempotency_token, transaction_id) of every 200 create
        lock = threading.Lock()

        def client():
            while not stop.is_set():
                token = new_uuid()
                status, _, body = self.create(create_body(token=token))
                with lock:
                    answers.append((status, body))
                    if status == 200:
                        created.append((token, json.loads(body)["transaction_id"]))
                status, _, body = self.api("GET", "/ping", token=None)
                with lock:
                    answers.append((status, body))

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            for name in ("d1", "d2"):
                code = self.stack.kill_daemon(name, signal.SIGTERM)
                self.assertEqual(code, 0, f"{name} did not drain cleanly")
                time.sleep(0.5)   # load on the other daemon alone
                self.stack.start_daemon(name, **self.daemon_config)
                before = len(self.stack.daemons[name].request_lines())
                wait_until(lambda: len(self.stack.daemons[name].request_lines()) > before, 15,
                           f"restarted {name} to serve again")
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        errors = [(s, b) for s, b in answers if s >= 500]
        self.assertGreater(len(answers), 200, "too little load to prove anything")
        self.assertEqual(errors, [], f"{len(errors)} of {len(answers)} answers were 5xx")
        # every create a client was told about is there, once
        self.assertGreater(len(created), 50)
        in_db = set(self.stack.psql("SELECT id FROM payments").split())
        missing = [pid for _, pid in created if pid not in in_db]
        self.assertEqual(missing, [], "creates answered 200 but not in the database")
        self.assertEqual(len({pid for _, pid in created}), len(created))
        nginx_log = (self.stack.root / "nginx" / "logs" / "error.log").read_text()
        self.assertIn("did not execute request", nginx_log, "no request was ever resent: the drain was not tested")


if __name__ == "__main__":
    unittest.main()
