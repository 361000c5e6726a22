"""Concurrent actions on one payment are serialized by PostgreSQL (docs/api.md "Payment
statuses"): exactly one wins, the others see the new status; history and queued tasks agree."""

import json
import re
import threading
import unittest

from e2e_base import PaymentStackTestCase, create_body, new_uuid

THREADS = 20


class ConcurrentActionsTest(PaymentStackTestCase):
    daemon_workers = 4   # real parallelism in the daemon: 4 PostgreSQL connections

    def run_together(self, calls):
        """Runs every call in its own thread, released together; returns their results."""
        barrier = threading.Barrier(len(calls))
        results = [None] * len(calls)

        def run(i, call):
            barrier.wait(timeout=30)
            try:
                results[i] = call()
            except Exception as e:   # reported by the caller, not lost in the thread
                results[i] = e
        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for r in results:
            if isinstance(r, Exception) or r is None:
                self.fail(f"a concurrent request failed: {r!r}")
        return results

    def events(self, pid: str, action: str) -> int:
        return int(self.stack.psql(
            f"SELECT count(*) FROM payment_events WHERE payment_id = '{pid}' AND action = '{action}'"))

    def tasks(self, pid: str, kind: str) -> int:
        return int(self.stack.psql(
            f"SELECT count(*) FROM tasks WHERE payment_id = '{pid}' AND kind = '{kind}'"))

    def outcome(self, results):
        statuses = sorted(r[0] for r in results)
        winners = [r for r in results if r[0] == 200]
        for r in results:
            if r[0] != 200:
                self.assertJsonError(r, 400, "invalid_state")
        return statuses, winners

    def test_concurrent_accepts_one_wins(self):
        pid = self.create_payment()
        results = self.run_together([lambda: self.accept(pid) for _ in range(THREADS)])
        statuses, winners = self.outcome(results)
        self.assertEqual(statuses, [200] + [400] * (THREADS - 1))
        self.assertEqual(self.assertJson(winners[0][1], winners[0][2]),
                         {"transaction_id": pid, "payment_status": "bank_processing"})
        for r in results:   # the losers saw the winner's status
            if r[0] == 400:
                self.assertEqual(json.loads(r[2])["message"],
                                 f"payment {pid} is bank_processing: accept is not allowed")
        self.assertEqual(self.status_of(pid), "bank_processing")
        self.assertEqual(self.events(pid, "accept"), 1)
        self.assertEqual(self.tasks(pid, "sky_technologies_integration_process_payment"), 1)

    def test_concurrent_accepts_and_cancels_one_wins(self):
        pid = self.create_payment()
        calls = [(lambda: self.accept(pid)) if i % 2 else (lambda: self.cancel(pid))
                 for i in range(THREADS)]
        results = self.run_together(calls)
        statuses, winners = self.outcome(results)
        self.assertEqual(statuses, [200] + [400] * (THREADS - 1))
        won = self.assertJson(winners[0][1], winners[0][2])["payment_status"]
        # either kind may win the race; the winner's answer, the row and the losers must agree
        self.assertIn(won, ("bank_processing", "cancelled"))
        self.assertEqual(self.assertJson(winners[0][1], winners[0][2]),
                         {"transaction_id": pid, "payment_status": won})
        self.assertEqual(self.status_of(pid), won)
        for r in results:
            if r[0] == 400:
                self.assertRegex(json.loads(r[2])["message"],
                                 rf"^payment {pid} is {won}: (accept|cancel) is not allowed$")
        accepted = int(won == "bank_processing")
        self.assertEqual(self.events(pid, "accept"), accepted)
        self.assertEqual(self.events(pid, "cancel"), 1 - accepted)
        self.assertEqual(self.tasks(pid, "sky_technologies_integration_process_payment"), accepted)

    def test_concurrent_edits_all_apply_in_some_order(self):
        pid = self.create_payment()
        amounts = {new_uuid(): f"{i}.00" for i in range(1, THREADS + 1)}   # token -> amount
        results = self.run_together([
            (lambda t=t, a=a: self.edit(pid, body={"idempotency_token": t, "money_info": {
                "method_id": "m", "currency": "USD", "amount": a}}))
            for t, a in amounts.items()])
        self.assertEqual([r[0] for r in results], [200] * THREADS, [r[2] for r in results])
        for r in results:
            self.assertEqual(json.loads(r[2]), {"transaction_id": pid, "payment_status": "created"})
        p, raw = self.retrieve_ok(pid)
        self.assertEqual(p["status"], "created")
        self.assertEqual(self.events(pid, "edit"), THREADS)
        # every edit has its own event, and the money is the one of the edit recorded last
        tokens = self.stack.psql(f"SELECT idempotency_token FROM payment_events WHERE payment_id = '{pid}' "
                                 "AND action = 'edit' ORDER BY id").split()
        self.assertEqual(sorted(tokens), sorted(amounts))
        self.assertIn(b'"amount":' + amounts[tokens[-1]].encode() + b',', raw)

    def test_concurrent_creates_are_distinct_payments(self):
        before = self.payment_count()
        results = self.run_together([lambda: self.create(create_body()) for _ in range(THREADS)])
        self.assertEqual([r[0] for r in results], [200] * THREADS, [r[2] for r in results])
        ids = {self.assertJson(r[1], r[2])["transaction_id"] for r in results}
        self.assertEqual(len(ids), THREADS)
        self.assertEqual(self.payment_count(), before + THREADS)


class BatchedReadsTest(PaymentStackTestCase):
    """Concurrent status reads reach a worker in batches (the broker hands consecutive queued
    reads to one worker, which reads their rows in one round trip): each answer is still its
    own request's, with ownership, not-found and malformed ids decided per request."""
    daemon_workers = 1   # one worker: concurrent reads must queue, so they are batched
    run_together = ConcurrentActionsTest.run_together

    def test_concurrent_status_reads_are_answered_each_for_itself(self):
        mine = [self.create_payment() for _ in range(3)]
        self.assertEqual(self.accept(mine[0])[0], 200)
        theirs = self.create_payment(token=self.tokens["bob"])
        unknown = new_uuid()
        cases = []
        for _ in range(8):
            cases += [(mine[0], 200, "bank_processing"), (mine[1], 200, "created"), (mine[2], 200, "created"),
                      (theirs, 403, "acces_error"), (unknown, 404, "not_found"), ("nope", 400, "validation_error")]
        results = self.run_together([lambda pid=pid: self.api("GET", f"{pid}/retrieve/status") for pid, _, _ in cases])
        for (pid, status, expected), (got, headers, body) in zip(cases, results):
            self.assertEqual(got, status, (pid, body))
            doc = json.loads(body)
            self.assertEqual(doc.get("payment_status") if status == 200 else doc.get("code"), expected, (pid, body))
        lines = self.stack.daemons["d1"].requests(route="payment.status")
        self.assertGreaterEqual(len(lines), len(cases))
        batched = [e for e in lines if 2 <= e.get("batch", 1) <= 16]
        self.assertTrue(batched, "no status read was served in a batch: the test proves nothing")


if __name__ == "__main__":
    unittest.main()
