"""Money operations beyond the first charge (docs/api.md): extra charges and partial refunds of a
completed payment, against the sky-technologies sandbox, whose own ledger is the witness. A refund
never takes back more than was captured, not even twenty of them at once; refunds that reach the
captured total reverse the payment; extra_charge and refund are idempotent like every change."""

import concurrent.futures
import json
import signal
import unittest

from e2e_base import new_uuid, wait_until
from test_providers import ProviderTestCase

# the task that sends an operation of each kind
SEND_TASK = {"extra_charge": "sky_technologies_integration_process_extra_payment",
             "reversal": "sky_technologies_integration_process_payment_reversal"}


class MoneyOperationTestCase(ProviderTestCase):
    sandbox_options = {}

    def extra_charge(self, pid: str, amount, *, token=None):
        return self.api("POST", f"{pid}/extra_charge", {"idempotency_token": token or new_uuid(), "amount": amount})

    def refund(self, pid: str, amount, *, token=None):
        return self.api("POST", f"{pid}/refund", {"idempotency_token": token or new_uuid(), "amount": amount})

    def completed_payment(self, amount: str = "40.00", method_id: str = "card-7781") -> str:
        pid = self.accepted_payment(method_id=method_id, amount=amount)
        self.wait_status(pid, "completed")
        return pid

    def assertQueued(self, response, pid: str, kind: str, amount_minor: str) -> str:
        """A 200 answer naming the operation it queued, of `kind` and `amount_minor`, with the
        task that sends it."""
        st, hdrs, raw = response
        self.assertEqual(st, 200, raw)
        doc = self.assertJson(hdrs, raw)
        self.assertEqual(set(doc), {"transaction_id", "payment_status", "operation_id"}, doc)
        self.assertEqual((doc["transaction_id"], doc["payment_status"]), (pid, "completed"))
        self.assertEqual(self.stack.psql(f"SELECT kind || ':' || amount_minor || ':' || currency FROM provider_operations "
                                         f"WHERE id = '{doc['operation_id']}' AND payment_id = '{pid}'"),
                         f"{kind}:{amount_minor}:USD")
        # its sending task (follow-up tasks may be there already: the sandbox is fast)
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM tasks WHERE payload ->> 'operation_id' = "
                                         f"'{doc['operation_id']}' AND kind = '{SEND_TASK[kind]}'"), "1")
        return doc["operation_id"]

    def totals(self, pid: str) -> str:
        return self.stack.psql(f"SELECT status || ' ' || captured_minor || ' ' || refunded_minor FROM payments "
                               f"WHERE id = '{pid}'")

    def wait_operations_final(self, pid: str, timeout: float = 30.0) -> None:
        wait_until(lambda: self.stack.psql(
            f"SELECT count(*) FROM provider_operations WHERE payment_id = '{pid}' "
            f"AND state NOT IN ('completed', 'declined')") == "0", timeout, f"the operations of {pid} to finish")

    def rows(self, pid: str) -> str:
        """'<provider_operations>/<tasks>' rows of payment `pid`."""
        return self.stack.psql(
            f"SELECT (SELECT count(*) FROM provider_operations WHERE payment_id = '{pid}') || '/' || "
            f"(SELECT count(*) FROM tasks WHERE payment_id = '{pid}')")

    def settle(self, pid: str) -> None:
        """Waits until nothing moves `pid` by itself any more: every provider operation's callback
        is in the inbox and no task is pending or running (a late callback would add a task)."""
        wait_until(lambda: self.stack.psql(
            f"SELECT (SELECT count(*) FROM provider_operations o WHERE o.payment_id = '{pid}' AND NOT EXISTS "
            f"(SELECT 1 FROM callback_inbox c WHERE c.operation_id = o.id)) + (SELECT count(*) FROM tasks "
            f"WHERE payment_id = '{pid}' AND state IN ('pending', 'running'))") == "0", 20,
            f"the callbacks and tasks of {pid} to settle")

    def retrieve_amounts(self, pid: str) -> bytes:
        _, raw = self.retrieve_ok(pid)
        start = raw.index(b'"amount":')
        return raw[start:raw.index(b',"status"', start)]


class ExtraChargeTest(MoneyOperationTestCase):

    def test_extra_charge_is_charged_and_captured(self):
        pid = self.completed_payment("40.00")
        op = self.assertQueued(self.extra_charge(pid, "12.50"), pid, "extra_charge", "1250")
        wait_until(lambda: self.totals(pid) == "completed 5250 0", 30, "the extra charge to be captured")
        charges, _ = self.ledger_ops(pid)
        self.assertEqual([(c["amount_minor"], c["status"]) for c in charges], [("4000", "COMPLETED"),
                                                                               ("1250", "COMPLETED")])
        self.assertEqual(charges[1]["request_id"], op)
        self.assertEqual(self.retrieve_amounts(pid),
                         b'"amount":40.00,"captured_amount":52.50,"refunded_amount":0.00')
        self.assertEqual(self.status_of(pid), "completed")
        self.assertIn("extra_charge:completed>completed:client:", "\n".join(self.events(pid)))
        self.assertEqual(self.events(pid)[-1], "extra_charge_completed:completed>completed:provider:sky-technologies")
        # a number works as well; the amount is in the payment's currency
        self.assertQueued(self.extra_charge(pid, 3), pid, "extra_charge", "300")
        wait_until(lambda: self.totals(pid) == "completed 5550 0", 30, "the second extra charge")

    def test_refund_across_the_charge_and_an_extra_charge(self):
        """A provider reverses a charge by at most its amount: a refund larger than what is left of
        the first charge goes back as one reversal per charge."""
        pid = self.completed_payment("40.00")
        extra = self.assertQueued(self.extra_charge(pid, "10.00"), pid, "extra_charge", "1000")
        wait_until(lambda: self.totals(pid) == "completed 5000 0", 30, "the extra charge to be captured")
        first = self.assertQueued(self.refund(pid, "45.00"), pid, "reversal", "4000")
        self.wait_operations_final(pid)
        charge, _ = self.ledger_ops(pid)
        reversals, _ = self.ledger_ops(pid, "reversal")
        self.assertEqual(sorted((r["original_request_id"], r["amount_minor"], r["status"]) for r in reversals),
                         sorted([(charge[0]["request_id"], "4000", "COMPLETED"), (extra, "500", "COMPLETED")]))
        self.assertIn(first, [r["request_id"] for r in reversals])
        self.assertEqual(self.totals(pid), "completed 5000 4500")
        # the rest: what is left of the extra charge; then everything went back
        self.assertQueued(self.refund(pid, "5.00"), pid, "reversal", "500")
        self.wait_status(pid, "reversed")
        self.assertEqual(self.totals(pid), "reversed 5000 5000")
        self.assertEqual(self.retrieve_amounts(pid),
                         b'"amount":40.00,"captured_amount":50.00,"refunded_amount":50.00')


class RefundDuringExtraChargeTest(MoneyOperationTestCase):
    sandbox_options = {"processing_seconds": 2}

    def test_refund_and_cancel_wait_for_an_open_extra_charge(self):
        """Money going back while more is being taken: refused until the extra charge is final
        (otherwise it could complete on a reversed payment)."""
        pid = self.completed_payment("40.00", method_id="sky-processing-extra")
        self.assertQueued(self.extra_charge(pid, "10.00"), pid, "extra_charge", "1000")
        before = self.snapshot(pid)
        for name, response in (("refund", self.refund(pid, "5.00")), ("cancel", self.cancel(pid))):
            with self.subTest(name):
                st, _, raw = response
                self.assertEqual((st, json.loads(raw)["code"]), (400, "invalid_state"), raw)
                self.assertIn(b"extra charge in progress", raw)
        self.assertUnchanged(pid, before)
        wait_until(lambda: self.totals(pid) == "completed 5000 0", 30, "the extra charge to be captured")
        self.assertQueued(self.refund(pid, "5.00"), pid, "reversal", "500")


class RefundTest(MoneyOperationTestCase):

    def test_partial_refund_then_the_rest_reverses(self):
        pid = self.completed_payment("40.00")
        op = self.assertQueued(self.refund(pid, "12.50"), pid, "reversal", "1250")
        # reserved at once: refunded grows with the request, the payment stays completed
        self.assertEqual(self.totals(pid), "completed 4000 1250")
        self.wait_operations_final(pid)
        reversals, _ = self.ledger_ops(pid, "reversal")
        charge, _ = self.ledger_ops(pid)
        self.assertEqual([(r["request_id"], r["amount_minor"], r["original_request_id"], r["status"]) for r in reversals],
                         [(op, "1250", charge[0]["request_id"], "COMPLETED")])
        self.assertEqual(self.status_of(pid), "completed")
        self.assertEqual(self.retrieve_amounts(pid),
                         b'"amount":40.00,"captured_amount":40.00,"refunded_amount":12.50')
        self.assertEqual(self.events(pid)[-1], "reversal_completed:completed>completed:provider:sky-technologies")
        # two more refunds reach the captured total: reversed
        self.assertQueued(self.refund(pid, 20), pid, "reversal", "2000")
        self.assertQueued(self.refund(pid, "7.5"), pid, "reversal", "750")
        self.wait_status(pid, "reversed")
        self.assertEqual(self.totals(pid), "reversed 4000 4000")
        reversals, _ = self.ledger_ops(pid, "reversal")
        self.assertEqual(sum(int(r["amount_minor"]) for r in reversals), 4000)
        self.assertEqual({r["original_request_id"] for r in reversals}, {charge[0]["request_id"]})
        self.assertEqual(self.events(pid)[-1], "reversal_completed:completed>reversed:provider:sky-technologies")
        # nothing more on a reversed payment
        for response in (self.refund(pid, "1.00"), self.extra_charge(pid, "1.00")):
            doc = self.assertJsonError(response, 400, "invalid_state")
            self.assertRegex(doc["message"], rf"^payment {pid} is reversed: (refund|extra_charge) is not allowed$")

    def test_refund_above_what_is_left_changes_nothing(self):
        pid = self.completed_payment("40.00")
        self.assertQueued(self.refund(pid, "27.50"), pid, "reversal", "2750")
        self.wait_operations_final(pid)
        self.settle(pid)   # the reversal's callback would add a task meanwhile
        _, before = self.retrieve_ok(pid)
        rows, events = self.rows(pid), self.events(pid)
        for amount in ("12.51", "40.00", 13):
            with self.subTest(amount=amount):
                doc = self.assertJsonError(self.refund(pid, amount), 400, "validation_error")
                self.assertEqual(doc["message"], "amount: only 12.50 USD of the captured 40.00 USD can still be refunded")
                self.assertRetrieveUnchanged(pid, before, f"(refund {amount})")
                self.assertEqual((self.rows(pid), self.events(pid)), (rows, events))
        self.assertEqual(self.totals(pid), "completed 4000 2750")
        reversals, _ = self.ledger_ops(pid, "reversal")
        self.assertEqual(len(reversals), 1)
        # exactly what is left is fine
        self.assertQueued(self.refund(pid, "12.50"), pid, "reversal", "1250")
        self.wait_status(pid, "reversed")

    def test_bad_amounts_and_bodies(self):
        pid = self.completed_payment("40.00")
        self.settle(pid)   # the charge's callback would add a task meanwhile
        _, before = self.retrieve_ok(pid)
        rows = self.rows(pid)
        for route in ("refund", "extra_charge"):
            for body, message in (
                    ({"amount": "1.005"}, "amount: has more fraction digits than USD allows (at most 2)"),
                    ({"amount": "0"}, "amount: must be greater than zero"),
                    ({"amount": -5}, "amount: must be greater than zero"),
                    ({"amount": "abc"}, 'amount: must be a decimal number such as "12.50"'),
                    ({"amount": True}, "amount: must be a number or a decimal string, not a boolean"),
                    ({}, "amount: required"),
                    ({"amount": "1.00", "currency": "USD"}, 'unknown field "currency"')):
                with self.subTest(route=route, body=body):
                    doc = self.assertJsonError(self.api("POST", f"{pid}/{route}",
                                                        {"idempotency_token": new_uuid(), **body}),
                                               400, "validation_error")
                    self.assertEqual(doc["message"], message)
        self.assertRetrieveUnchanged(pid, before)
        self.assertEqual(self.rows(pid), rows)

    def test_concurrent_refunds_never_exceed_the_capture(self):
        pid = self.completed_payment("40.00")
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda _: self.refund(pid, "5.00"), range(20)))
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses.count(200), 8, [(r[0], r[2][:120]) for r in results])
        self.assertEqual(statuses.count(400), 12, [(r[0], r[2][:120]) for r in results])
        # A refused refund either found nothing left to refund (validation_error) or, when the 8
        # reversals had already finished, the payment reversed (invalid_state): both are right.
        for st, hdrs, raw in results:
            if st == 400:
                doc = self.assertJson(hdrs, raw)
                if doc["code"] == "validation_error":
                    self.assertEqual(doc["message"], "amount: only 0.00 USD of the captured 40.00 USD can still be refunded")
                else:
                    self.assertEqual(doc, {"code": "invalid_state",
                                           "message": f"payment {pid} is reversed: refund is not allowed"})
            else:
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw)["transaction_id"], pid)
        self.assertEqual(self.stack.psql(f"SELECT refunded_minor = captured_minor FROM payments WHERE id = '{pid}'"), "t")
        self.wait_status(pid, "reversed")
        self.assertEqual(self.totals(pid), "reversed 4000 4000")
        reversals, ledger = self.ledger_ops(pid, "reversal")
        self.assertEqual((len(reversals), sum(int(r["amount_minor"]) for r in reversals)), (8, 4000))
        charge, _ = self.ledger_ops(pid)
        self.assertEqual({r["original_request_id"] for r in reversals}, {charge[0]["request_id"]})
        ids = {r["request_id"] for r in reversals}
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] in ids], [])
        self.assertEqual(self.stack.psql(f"SELECT string_agg(DISTINCT state || '/' || calls, ',') FROM provider_operations"
                                         f" WHERE payment_id = '{pid}' AND kind = 'reversal'"), "completed/1")


class WrongStateTest(MoneyOperationTestCase):

    def restart_daemon(self, **config) -> None:
        """Restarts d1 (e.g. task_workers=0: queued provider work waits) and waits until every
        nginx worker is connected to it again."""
        self.assertEqual(self.stack.kill_daemon("d1", signal.SIGTERM), 0, "paygated exit status")
        self.stack.start_daemon("d1", **{**self.daemon_config, **config})
        for token in self.tokens.values():
            self.wait_until_token_accepted(self.stack, token)

    def assertInvalidState(self, pid: str, status: str, suffix: str = "") -> None:
        _, before = self.retrieve_ok(pid)
        rows = self.rows(pid)
        for route, response in (("extra_charge", self.extra_charge(pid, "1.00")), ("refund", self.refund(pid, "1.00"))):
            with self.subTest(status=status, route=route):
                doc = self.assertJsonError(response, 400, "invalid_state")
                self.assertEqual(doc["message"], f"payment {pid} is {status}: {route} is not allowed{suffix}")
        self.assertRetrieveUnchanged(pid, before)
        self.assertEqual(self.rows(pid), rows)

    def test_created_declined_and_after_cancel(self):
        created = self.create_payment(sender=new_uuid())
        self.assertInvalidState(created, "created")
        declined = self.accepted_payment(method_id="sky-decline-1")
        self.wait_status(declined, "declined")
        self.settle(declined)
        self.assertInvalidState(declined, "declined")
        # the full reversal (cancel) was asked: nothing more goes either way. The sandbox reverses
        # at once, so the task runners are off meanwhile: the payment stays completed with its
        # reversal requested (not already reversed) while the refusals are checked.
        pid = self.completed_payment("40.00")
        self.settle(pid)
        self.restart_daemon(task_workers=0)
        try:
            st, hdrs, raw = self.cancel(pid)
            self.assertEqual(st, 200, raw)
            self.assertEqual(self.assertJson(hdrs, raw), {"transaction_id": pid, "payment_status": "completed"})
            self.assertInvalidState(pid, "completed", " (its reversal was requested already)")
        finally:
            self.restart_daemon()
        self.wait_status(pid, "reversed")

    def test_another_clients_payment(self):
        pid = self.completed_payment("40.00")
        other = self.tokens["bob"]
        self.settle(pid)
        _, before = self.retrieve_ok(pid)
        rows, events = self.rows(pid), self.events(pid)
        for route in ("extra_charge", "refund"):
            self.assertJsonError(self.api("POST", f"{pid}/{route}", {"idempotency_token": new_uuid(), "amount": "1.00"},
                                          token=other), 403, "acces_error")
        self.assertEqual(self.totals(pid), "completed 4000 0")
        self.assertRetrieveUnchanged(pid, before, "(another client's extra_charge/refund)")
        self.assertEqual((self.rows(pid), self.events(pid)), (rows, events), "operations, tasks or history added")


class ReplayTest(MoneyOperationTestCase):

    def test_refund_replay_is_the_same_answer_and_one_reversal(self):
        pid = self.completed_payment("40.00")
        token = new_uuid()
        first = self.refund(pid, "10.00", token=token)
        op = self.assertQueued(first, pid, "reversal", "1000")
        self.assertIsNone(first[1].get("Idempotent-Replayed"))
        replay = self.refund(pid, "10.00", token=token)
        self.assertEqual((replay[0], replay[2]), (first[0], first[2]))
        self.assertEqual(replay[1].get("Idempotent-Replayed"), "true")
        # the same token with another amount is another request: 422, nothing executed
        doc = self.assertJsonError(self.refund(pid, "11.00", token=token), 422, "idempotency_key_reused")
        self.assertIn("idempotency_token", doc["message"])
        self.wait_operations_final(pid)
        reversals, _ = self.ledger_ops(pid, "reversal")
        self.assertEqual([r["request_id"] for r in reversals], [op])
        self.assertEqual(self.totals(pid), "completed 4000 1000")

    def test_extra_charge_replay(self):
        pid = self.completed_payment("40.00")
        token = new_uuid()
        body = {"idempotency_token": token, "amount": "5.00"}
        first = self.api("POST", f"{pid}/extra_charge", body)
        op = self.assertQueued(first, pid, "extra_charge", "500")
        replay = self.api("POST", f"{pid}/extra_charge", body)
        self.assertEqual((replay[0], replay[2], replay[1].get("Idempotent-Replayed")), (200, first[2], "true"))
        self.assertJsonError(self.extra_charge(pid, "6.00", token=token), 422, "idempotency_key_reused")
        wait_until(lambda: self.totals(pid) == "completed 4500 0", 30, "the extra charge to be captured")
        charges, _ = self.ledger_ops(pid)
        self.assertEqual([c["request_id"] for c in charges[1:]], [op])


if __name__ == "__main__":
    unittest.main()
