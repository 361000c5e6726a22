"""PostgreSQL failover (docs/operations.md#postgresql-high-availability): a primary with a
synchronous streaming standby, paygated on a multi-host connection string
(`target_session_attrs=read-write`). The primary is killed (SIGKILL of every process of it) and the
standby promoted (`pg_ctl promote`); paygated finds the new primary by itself.

What must hold: every payment a client was told about (any 2xx) is on the new primary, new
payments and the provider engine work after the promotion, and no client hears 2xx for a write
the standby does not have: with the standby gone a create times out (504) and retries of its
idempotency token are not answered 200 either (the COMMIT's wait for the standby is not bounded
by the request's statement_timeout, which PostgreSQL ends before committing; were it, the commit
would stay local and a replay would report a payment the failover loses)."""

import http.client
import json
import threading
import time
import unittest

from e2e_base import PAYMENT_API, PaymentStackTestCase, StackTestCase, create_body, new_uuid
from stack import wait_until

# The daemons' connections to the killed primary end; these are how they say so.
FAILOVER_LOGS = r"event=(db_error|db_unavailable|db_connection_lost|task_failed|request_failed)"


class FailoverTestCase(StackTestCase):
    """Primary + synchronous standby, the sandbox, two daemons, nginx; one client token."""
    daemons = ()
    start_nginx_in_setup = False
    nginx_directives: dict = {}

    def setUp(self) -> None:
        super().setUp()
        s = self.stack
        s.start_standby()
        self.assertIn("target_session_attrs=read-write", s.conninfo)
        self.token = s.create_token("alice")
        s.start_sandbox(processing_seconds=0.3)
        for name in ("d1", "d2"):
            s.start_daemon(name)
        s.start_nginx(**self.nginx_directives)
        PaymentStackTestCase.wait_until_token_accepted(s, self.token)
        s.allow_log(FAILOVER_LOGS, "PostgreSQL is killed under the daemons", "daemon")

    def api(self, method, path, body=None, timeout=15.0):
        headers = {"x_auth_token": self.token}
        raw = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            raw = json.dumps(body).encode()
        return self.stack.http(method, f"{PAYMENT_API}/{path}", raw, headers, timeout=timeout)

    def create_ok(self, **kw) -> str:
        st, _, raw = self.api("POST", "create", create_body(**kw))
        self.assertEqual(st, 200, raw)
        return json.loads(raw)["transaction_id"]

    def status(self, pid) -> str:
        st, _, raw = self.api("GET", f"{pid}/retrieve/status")
        self.assertEqual(st, 200, raw)
        return json.loads(raw)["payment_status"]

    def wait_status(self, pid, wanted, timeout=30.0):
        last = [None]

        def poll():
            try:
                last[0] = self.status(pid)
            except (OSError, http.client.HTTPException, AssertionError):
                return False
            return last[0] == wanted
        wait_until(poll, timeout, f"payment {pid} {wanted} (last {last[0]})", interval=0.1)

    def rows(self, pid) -> int:
        return int(self.stack.psql(f"SELECT count(*) FROM payments WHERE id = '{pid}'"))


class FailoverTest(FailoverTestCase):

    def test_payments_survive_and_new_ones_succeed(self):
        s = self.stack
        completed = self.create_ok()
        st, _, raw = self.api("POST", f"{completed}/accept", {"idempotency_token": new_uuid(), "accept_info": {}})
        self.assertEqual(st, 200, raw)
        self.wait_status(completed, "completed")
        waiting = self.create_ok()

        # Clients keep creating through the failover; each retries its own token until it
        # hears 200 (a retry executes nothing twice), and records every 2xx.
        told, answers, stop = {}, [], threading.Event()
        lock = threading.Lock()

        def client():
            while not stop.is_set():
                body = create_body()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        st, _, raw = self.api("POST", "create", body, timeout=10)
                    except (OSError, http.client.HTTPException):
                        st, raw = None, b""
                    with lock:
                        answers.append(st)
                    if st == 200:
                        with lock:
                            told.setdefault(body["idempotency_token"], set()).add(json.loads(raw)["transaction_id"])
                        break
                    time.sleep(0.1)
        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(told) >= 5, 30, "creates before the failover")
            s.failover()
            with lock:
                after = len(answers)
            wait_until(lambda: 200 in answers[after:], 60, "a create answered 200 after the promotion")
            with lock:
                count = len(told)
            wait_until(lambda: len(told) >= count + 5, 30, "more creates after the promotion")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=90)

        self.assertEqual(s.psql("SELECT pg_is_in_recovery()"), "f")
        self.assertEqual(self.status(completed), "completed")
        self.assertEqual(self.status(waiting), "created")
        for token, ids in told.items():
            self.assertEqual(len(ids), 1, f"token {token} was told two transaction ids: {ids}")
            [pid] = ids
            self.assertEqual(self.rows(pid), 1, f"payment {pid} answered 200 is missing after the failover")
            events = s.psql(f"SELECT count(*) FROM payment_events WHERE action = 'create' "
                            f"AND idempotency_token = '{token}'")
            self.assertEqual(events, "1", f"token {token} created {events} payments")
        # the provider engine runs on the new primary: a payment created before it completes
        st, _, raw = self.api("POST", f"{waiting}/accept", {"idempotency_token": new_uuid(), "accept_info": {}})
        self.assertEqual(st, 200, raw)
        self.wait_status(waiting, "completed")
        charges = [op for op in s.sandbox_get("/_sandbox/ledger")["operations"]
                   if op["operation"] == "payment" and op["payment_id"] in (completed, waiting)]
        self.assertEqual(sorted(op["payment_id"] for op in charges), sorted([completed, waiting]))

        # the old primary's port comes back as the new primary's synchronous standby
        s.rejoin_standby()
        self.create_ok()
        self.assertEqual(s.psql("SELECT sync_state FROM pg_stat_replication"), "sync")


class StandbyLostTest(FailoverTestCase):
    """The standby stops receiving: commits wait for it. The request times out (504), a retry of
    its idempotency token must not be answered 200 while the standby lacks the write, and when
    the primary dies and the (behind) standby is promoted, nothing a client was told is missing."""
    nginx_directives = {"paygate_timeout": "1s"}

    def test_no_2xx_for_a_write_only_the_primary_has(self):
        s = self.stack
        before = self.create_ok()
        s.pg_standby.stop()              # the standby is gone: commits wait for it
        body = create_body()
        seen = []
        for _ in range(6):               # the first times out; its retries must not be told 200
            st, _, raw = self.api("POST", "create", body, timeout=10)
            seen.append(st)
            self.assertNotEqual(st, 200, f"a create answered 200 while its COMMIT waits for the "
                                         f"standby: {raw[:200]!r} (answers {seen})")
            time.sleep(0.4)
        self.assertIn(504, seen)
        # the primary (which has the write locally) dies; the standby, which never got it, wins
        s.pg.kill_server()
        s.pg_standby.start()
        s.failover()
        self.assertEqual(self.rows(before), 1)
        # the same token now creates the payment for real, once
        st, raw = None, b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                st, _, raw = self.api("POST", "create", body, timeout=10)
            except (OSError, http.client.HTTPException):
                st = None
            if st == 200:
                break
            time.sleep(0.2)
        self.assertEqual(st, 200, raw)
        pid = json.loads(raw)["transaction_id"]
        self.assertEqual(self.rows(pid), 1)
        self.assertEqual(s.psql(f"SELECT count(*) FROM payment_events WHERE action = 'create' "
                                f"AND idempotency_token = '{body['idempotency_token']}'"), "1")


if __name__ == "__main__":
    unittest.main()
