"""Exactly once beyond one process (docs/idempotency.md): two nginx nodes (each with its own replay
zone) and two daemons on one PostgreSQL execute a key once; a daemon SIGKILLed between COMMIT and
its reply (the test-only fault switch PAYGATED_TEST_FAULT=kill-after-commit) loses nothing: the
client's retry gets the stored answer."""

import json
import time
import unittest

from e2e_base import (IdempotencyTestCase, REPLAY_ZONE, REPLAYED_HEADER, create_body, unique_id,
                      wait_until)

NODES = ("nginx", "edge2")
REQUESTS = 120
THREADS = 40


class TwoNodesTwoDaemonsTest(IdempotencyTestCase):
    """nginx -> d1 and edge2 -> d2, both zones, one PostgreSQL."""

    @classmethod
    def extend_stack(cls, stack) -> None:
        stack.start_daemon("d2")
        stack.start_nginx(name="edge2", daemons=["d2"], **REPLAY_ZONE)

    def create_lines(self, daemon: str) -> int:
        return len(self.stack.daemons[daemon].requests(route="payment.create"))

    def test_duplicates_across_nodes_make_one_payment(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        seen = {d: self.create_lines(d) for d in ("d1", "d2")}
        calls = [(lambda n=NODES[i % 2]: (n, self.post("create", body, nginx=n)))
                 for i in range(REQUESTS)]
        results = self.run_many(calls, threads=THREADS)
        other = [(n, r[0], r[2][:200]) for n, r in results if r[0] not in (200, 409)]
        self.assertEqual(other, [], "answers other than 200 and 409")
        ok = [r for _, r in results if r[0] == 200]
        busy = [(n, r) for n, r in results if r[0] == 409]
        for _, r in busy:
            self.assertJsonError(r, 409, "idempotency_in_progress")
        bodies = {r[2] for r in ok}
        self.assertEqual(len(bodies), 1, bodies)
        executed = [r for r in ok if r[1].get(REPLAYED_HEADER) is None]
        self.assertEqual(len(executed), 1, f"{len(executed)} executed answers")
        retried = self.run_many([(lambda n=n: self.post_until_settled("create", body, nginx=n))
                                 for n, _ in busy], threads=THREADS) if busy else []
        for r in retried + ok:
            if r is not executed[0]:
                self.assertReplayOf(r, executed[0])
        pid = json.loads(executed[0][2])["transaction_id"]
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertEqual(self.count("payment_events", pid), 1)
        # both daemons were asked (each node's first request with the key misses its own zone)
        for d in ("d1", "d2"):
            self.assertGreater(self.create_lines(d), seen[d], f"daemon {d} got no create")
        # and each node now answers from its zone
        for n in NODES:
            r = self.post("create", body, nginx=n)
            self.assertReplayOf(r, executed[0])
            self.assertNotSeenByDaemon(r)

    def test_replay_on_the_other_node_comes_from_postgresql(self):
        sender = unique_id()
        body = create_body(sender=sender)
        first = self.post("create", body, nginx="nginx")
        self.assertExecuted(first)
        self.assertSeenByDaemon(first, idempotency="stored")
        other = self.post("create", body, nginx="edge2")     # edge2's zone: a miss
        self.assertReplayOf(other, first)
        self.assertIn("d2", [d.name for d in self.stack.daemons.values()
                             if any(other[1]["X-Request-Id"] in ln for ln in d.request_lines())])
        self.assertSeenByDaemon(other, idempotency="replayed")
        again = self.post("create", body, nginx="edge2")     # now filled from d2's replay
        self.assertReplayOf(again, first)
        self.assertNotSeenByDaemon(again)
        changed = dict(body, sender={"sender_id": sender + "x"})
        for n in NODES:
            self.assertJsonError(self.post("create", changed, nginx=n), 422, "idempotency_key_reused")
        self.assertEqual(len(self.payments_of_sender(sender)), 1)
        self.assertEqual(self.payments_of_sender(sender + "x"), [])


class KilledAfterCommitTest(IdempotencyTestCase):
    """d1 runs with the test-only fault switch: it SIGKILLs itself after the first COMMIT of an
    idempotent request, before replying."""

    daemon_env = {"PAYGATED_TEST_FAULT": "kill-after-commit"}
    nginx = {"paygate_timeout": "3s"}

    def test_retry_after_kill_between_commit_and_reply_gets_the_stored_answer(self):
        d1 = self.stack.daemons["d1"]
        self.stack.expect_daemon_exit("d1", "the kill-after-commit fault SIGKILLs it on purpose")
        self.assertTrue(d1.events("test_fault_armed", whole=False))
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        lost = self.post("create", body)
        # the request was forwarded and the daemon died before replying: nginx times it out
        # (paygate_timeout 3s); 503 would mean it was never sent, and the module has no 502
        doc = self.assertJsonError(lost, 504, "gateway_timeout")
        self.assertEqual(doc["message"], "payment core did not answer in time")
        self.assertIsNone(lost[1].get(REPLAYED_HEADER))
        wait_until(lambda: not d1.running(), 10, "paygated d1 to die")
        self.assertEqual(d1.proc.returncode, -9)
        self.assertTrue(d1.events("test_fault_kill", whole=False))
        rows = self.payments_of_sender(sender)
        self.assertEqual(len(rows), 1, "the payment was not committed once")
        self.assertEqual(self.stack.psql(
            "SELECT count(*) FROM idempotency_keys WHERE route = 'payment.create' AND "
            f"response_body LIKE '%{rows[0]}%'"), "1")

        self.stack.start_daemon("d1")                      # without the switch
        self.assertFalse(d1.events("test_fault_armed", whole=False))
        retry = self.post_until_settled("create", body, retry_statuses=(409, 502, 503, 504),
                                        timeout=20)
        self.assertEqual(retry[0], 200, retry[2][:300])
        self.assertEqual(retry[1].get(REPLAYED_HEADER), "true", dict(retry[1]))
        self.assertEqual(json.loads(retry[2])["transaction_id"], rows[0])
        self.assertSeenByDaemon(retry, idempotency="replayed")
        # the token table is fresh again (it went stale while d1 was down: 503 until the next sync
        # confirms it)
        self.wait_until_token_accepted_on(self.stack, self.token)
        again = self.post("create", body)                  # now from the zone
        self.assertReplayOf(again, retry)
        self.assertNotSeenByDaemon(again)
        self.assertEqual(self.payments_of_sender(sender), rows)
        self.assertEqual(self.count("payment_events", rows[0]), 1)
        # the restarted daemon executes new keys normally
        self.assertExecuted(self.post("create", create_body(sender=sender)))
        self.assertEqual(len(self.payments_of_sender(sender)), 2)
        self.assertTrue(d1.running())


if __name__ == "__main__":
    unittest.main()
