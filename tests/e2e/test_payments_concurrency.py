"""Concurrent actions on one payment are serialized by PostgreSQL (docs/api.md "Payment
statuses"): exactly one wins, the others see the new status; history and queued tasks agree."""

import json
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


if __name__ == "__main__":
    unittest.main()
