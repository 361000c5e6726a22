"""The failure table of docs/idempotency.md ("Failure cases", "The lease of an in-flight key",
"Retention and purge"), one class per row, each failing if its promise breaks:

- a daemon frozen inside the transaction (SIGSTOP, short `idempotency_lease_ms`): a retry through
  another daemon gets 409 while the lease holds, then executes once; the frozen one, woken up,
  cannot commit a second payment and answers 503;
- a daemon killed before COMMIT: rolled back, the retry executes once (200, not a replay);
- a key after its retention: executes again; the janitor purges the expired row and logs it; an
  expired row not yet purged is replaced by the new execution.

The daemon is frozen *inside* the transaction by the test-only fault switch
PAYGATED_TEST_FAULT=stop-before-commit (docs/daemon.md): right before the COMMIT of its first
idempotent request it logs event=test_fault_stop and sends itself SIGSTOP, holding the key's lock
in an idle transaction. Layout of the lease classes: nginx -> d1 (normal) and edge2 -> d2 (the
switch), one PostgreSQL; the first request goes through edge2, every retry through nginx.
"""

import concurrent.futures
import json
import os
import signal
import unittest

from e2e_base import (IdempotencyTestCase, REPLAY_ZONE, REPLAYED_HEADER, create_body, unique_id,
                      wait_until)

STOP_BEFORE_COMMIT = {"PAYGATED_TEST_FAULT": "stop-before-commit"}
# PostgreSQL's own log line when idle_in_transaction_session_timeout ends a session.
LEASE_ENDED = "terminating connection due to idle-in-transaction timeout"


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat ('T': stopped); '' when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


class FrozenDaemonTestCase(IdempotencyTestCase):
    """nginx -> d1; edge2 -> d2, which runs with PAYGATED_TEST_FAULT=stop-before-commit and the
    class's `d2_config` (its lease). `edge2` holds the edge2 directives (its paygate_timeout)."""

    d2_config: dict = {}
    edge2: dict = {}

    @classmethod
    def extend_stack(cls, stack) -> None:
        stack.start_daemon("d2", env=STOP_BEFORE_COMMIT, **cls.d2_config)
        stack.start_nginx(name="edge2", daemons=["d2"], **REPLAY_ZONE, **cls.edge2)

    def setUp(self) -> None:
        super().setUp()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.addCleanup(self.pool.shutdown, wait=True)
        # Whatever happens in the test, d2 must not stay frozen (the class's stack stops it).
        self.addCleanup(self._resume_d2)

    def _resume_d2(self) -> None:
        d2 = self.stack.daemons["d2"]
        if d2.running() and process_state(d2.pid) == "T":
            self.stack.kill_daemon("d2", signal.SIGCONT)

    def pg_log(self) -> str:
        with open(self.stack.pg.logfile, errors="replace") as f:
            return f.read()

    def start_frozen_create(self, body, timeout: float):
        """Sends the create through edge2 (-> d2) on a thread; waits until d2 has frozen itself
        inside the transaction. Returns (future of edge2's answer, request id d2 logged)."""
        d2 = self.stack.daemons["d2"]
        self.assertTrue(d2.events("test_fault_armed", whole=False, fault="stop-before-commit"))
        first = self.pool.submit(self.post, "create", body, nginx="edge2", timeout=timeout)

        def frozen():
            if first.done():   # answered without freezing: the switch did not fire
                r = first.result()
                self.fail(f"edge2 answered {r[0]} {r[2][:200]!r} before d2 froze")
            lines = d2.events("test_fault_stop", whole=False)
            return lines if lines and process_state(d2.pid) == "T" else None
        lines = wait_until(frozen, 30, "d2 to SIGSTOP itself before COMMIT")
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0].get("route"), "payment.create", lines[0])
        # d2 stopped itself; this SIGSTOP is a no-op that tells the harness (stop() resumes it).
        self.stack.kill_daemon("d2", signal.SIGSTOP)
        rid = lines[0]["request_id"]
        return first, rid

    def key_rows_naming(self, pid: str) -> int:
        return int(self.stack.psql(
            f"SELECT count(*) FROM idempotency_keys WHERE response_body LIKE '%{pid}%'"))


class FrozenInTransactionTest(FrozenDaemonTestCase):
    """"the daemon freezes in the transaction | retries get 409 for up to idempotency_lease_ms,
    then execute". d2's lease is 3 s (the first retry is sent well within it, only a few
    requests after the freeze); edge2 waits far longer than the whole test (60 s), so the frozen
    request's own late answer reaches its client."""

    d2_config = {"idempotency_lease_ms": 3000}
    edge2 = {"paygate_timeout": "60s"}

    def test_retry_gets_409_during_the_lease_then_executes_once_and_the_frozen_one_cannot_commit(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        first, frozen_rid = self.start_frozen_create(body, timeout=120)

        # While d2's transaction holds the key's lock: 409, nothing committed.
        busy = self.post("create", body, nginx="nginx")
        self.assertJsonError(busy, 409, "idempotency_in_progress")
        self.assertIsNone(busy[1].get(REPLAYED_HEADER))
        self.assertEqual(self.payments_of_sender(sender), [])
        self.assertNotIn("idempotency", self.assertSeenByDaemon(busy))   # d1: nothing stored

        # PostgreSQL ends the frozen session after the lease: the retry executes (once).
        executed = self.post_until_settled("create", body, nginx="nginx", timeout=60)
        self.assertExecuted(executed)
        self.assertSeenByDaemon(executed, idempotency="stored")
        pid = json.loads(executed[2])["transaction_id"]
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertIn(LEASE_ENDED, self.pg_log(), "the lock was not released by the lease")
        self.assertFalse(first.done(), "the frozen request was answered while d2 was stopped")

        # d2 wakes up: its COMMIT meets a connection the lease has closed -> 503, nothing written.
        self.stack.kill_daemon("d2", signal.SIGCONT)
        late = first.result(timeout=120)
        self.assertJsonError(late, 503, "service_unavailable")
        self.assertIsNone(late[1].get(REPLAYED_HEADER))
        self.assertEqual(late[1].get("X-Request-Id"), frozen_rid)
        d2 = self.stack.daemons["d2"]
        line = wait_until(lambda: d2.requests(request_id=frozen_rid), 10,
                          "d2's request line of the frozen create")
        self.assertEqual(len(line), 1, line)
        self.assertEqual(line[0]["status"], 503)
        self.assertNotIn("idempotency", line[0])
        self.assertTrue(d2.events("db_connection_lost", whole=False))
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertEqual(self.count("payment_events", pid), 1)
        self.assertEqual(self.key_rows_naming(pid), 1)

        # Every later retry, on either node, is the one stored answer.
        again = self.post("create", body, nginx="nginx")
        self.assertReplayOf(again, executed)
        other = self.post_until_settled("create", body, nginx="edge2", retry_statuses=(409, 503))
        self.assertReplayOf(other, executed)
        self.assertSeenByDaemon(other, idempotency="replayed")   # d2, from PostgreSQL
        self.assertEqual(self.payments_of_sender(sender), [pid])
        # The switch fires once: d2 executes a new key normally.
        self.assertExecuted(self.post("create", create_body(sender=sender), nginx="edge2"))
        self.assertEqual(len(self.payments_of_sender(sender)), 2)
        self.assertNotEqual(process_state(d2.pid), "T")


class KilledBeforeCommitTest(FrozenDaemonTestCase):
    """"the daemon dies before COMMIT | rolled back; the retry executes". d2 is SIGKILLed while
    frozen before its COMMIT. Its lease (60 s) outlasts every wait of the test, so only the
    kill can release the key."""

    d2_config = {"idempotency_lease_ms": 60000}
    edge2 = {"paygate_timeout": "3s"}

    def test_retry_after_kill_before_commit_executes_once(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        first, _ = self.start_frozen_create(body, timeout=60)
        self.assertJsonError(self.post("create", body, nginx="nginx"), 409, "idempotency_in_progress")

        self.assertEqual(self.stack.kill_daemon("d2", signal.SIGKILL), -9)
        lost = first.result(timeout=60)
        self.assertIn(lost[0], (502, 503, 504), lost[2][:300])
        self.assertJson(lost[1], lost[2])
        self.assertIsNone(lost[1].get(REPLAYED_HEADER))

        retry = self.post_until_settled("create", body, nginx="nginx", timeout=30)
        self.assertExecuted(retry)                           # executed, not a replay
        self.assertSeenByDaemon(retry, idempotency="stored")
        pid = json.loads(retry[2])["transaction_id"]
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertEqual(self.count("payment_events", pid), 1)
        self.assertEqual(self.key_rows_naming(pid), 1)
        self.assertNotIn(LEASE_ENDED, self.pg_log(), "the lease, not the kill, released the key")

        # d2 restarted (without the switch): edge2 answers the stored outcome, from PostgreSQL.
        self.stack.start_daemon("d2")
        replay = self.post_until_settled("create", body, nginx="edge2",
                                         retry_statuses=(409, 502, 503, 504))
        self.assertReplayOf(replay, retry)
        self.assertSeenByDaemon(replay, idempotency="replayed")
        self.assertEqual(self.payments_of_sender(sender), [pid])


class RetentionTestCase(IdempotencyTestCase):
    """No replay zone (it has a ttl of its own): every answer comes from paygated. d1 is
    restarted with `idempotency_retention_s = 1` and the class's purge interval."""

    zone = False
    purge_interval_s = 1

    @classmethod
    def extend_stack(cls, stack) -> None:
        assert stack.kill_daemon("d1", signal.SIGTERM) == 0
        stack.start_daemon("d1", idempotency_retention_s=1,
                           idempotency_purge_interval_s=cls.purge_interval_s)

    def create_once(self, body):
        r = self.post("create", body)
        self.assertExecuted(r)
        self.assertSeenByDaemon(r, idempotency="stored")
        return r, json.loads(r[2])["transaction_id"]

    def key_of_payment(self, pid: str) -> list:
        """[(scope, response_body)] of idempotency_keys rows recording payment `pid`."""
        out = self.stack.psql("SELECT scope || ' ' || response_body FROM idempotency_keys "
                              f"WHERE response_body LIKE '%{pid}%'")
        return [tuple(ln.split(" ", 1)) for ln in out.splitlines() if ln]


class RetentionPurgeTest(RetentionTestCase):
    """"same key after the retention | a new key: the request executes again"; the janitor
    deletes the expired row and logs event=idempotency_purged count=N."""

    purge_interval_s = 1

    def test_expired_key_is_purged_and_executes_again(self):
        d1 = self.stack.daemons["d1"]
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        log_from = len(d1.events(whole=False))
        first, pid1 = self.create_once(body)   # its row may be purged any time from now on

        wait_until(lambda: not self.key_of_payment(pid1), 60, "the janitor to purge the key")

        def purged_lines():
            return [e for e in d1.events(whole=False)[log_from:]
                    if e.get("event") == "idempotency_purged" and e.get("count") != 0]
        lines = wait_until(purged_lines, 10, "idempotency_purged with count >= 1 in d1's log")
        counts = [e["count"] for e in lines]
        self.assertGreaterEqual(sum(counts), 1, lines)

        second, pid2 = self.create_once(body)               # no Idempotent-Replayed
        self.assertNotEqual(pid2, pid1)
        self.assertNotEqual(second[2], first[2])
        self.assertEqual(sorted(self.payments_of_sender(sender)), sorted([pid1, pid2]))
        self.assertEqual(len(self.key_of_payment(pid2)), 1)


class RetentionExpiredNotPurgedTest(RetentionTestCase):
    """"After that the row is ignored (a new request with the key replaces it)": retention 1 s,
    but no purge while the test runs (the janitor purges at start, then every 86400 s)."""

    purge_interval_s = 86400

    def test_expired_row_is_ignored_and_replaced(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        first, pid1 = self.create_once(body)
        [(scope, _)] = self.key_of_payment(pid1)
        wait_until(lambda: self.stack.psql(
            f"SELECT expires_at <= now() FROM idempotency_keys WHERE scope = '{scope}'") == "t",
            30, "the key to expire")

        second, pid2 = self.create_once(body)               # no Idempotent-Replayed
        self.assertNotEqual(pid2, pid1)
        self.assertEqual(sorted(self.payments_of_sender(sender)), sorted([pid1, pid2]))
        # the same row (scope), now recording the second execution
        self.assertEqual(self.key_of_payment(pid1), [])
        self.assertEqual(self.key_of_payment(pid2), [(scope, second[2].decode())])


if __name__ == "__main__":
    unittest.main()
