"""Payments that finish (docs/tasks.md, docs/providers/sky-technologies.md): accepted payments are
charged at the sky-technologies sandbox by durable tasks and reach completed / declined; a cancel
of a completed payment is reversed; 5xx, timeouts and a killed daemon never charge twice (the
sandbox's own ledger is the witness); PostgreSQL itself refuses transitions the state machine
does not allow."""

import json
import signal
import unittest

from e2e_base import PaymentStackTestCase, new_uuid, wait_until

CHARGE_TASK = "sky_technologies_integration_process_payment"
REVERSAL_TASK = "sky_technologies_integration_process_payment_reversal"


class ProviderTestCase(PaymentStackTestCase):
    with_sandbox = True
    # The sandbox's "timeout" answer comes after 8 s: past paygated's provider_timeout_ms (2 s).
    sandbox_options = {"timeout_seconds": 8, "processing_seconds": 1}

    def accepted_payment(self, method_id="card-7781", amount="12.50") -> str:
        pid = self.create_payment(method_id=method_id, amount=amount, sender=new_uuid())
        st, _, raw = self.accept(pid)
        self.assertEqual(st, 200, raw)
        self.assertEqual(json.loads(raw)["payment_status"], "bank_processing")
        return pid

    def wait_status(self, pid: str, status: str, timeout: float = 30.0) -> None:
        seen = []

        def reached():
            st, _, raw = self.api("GET", f"{pid}/retrieve/status")
            if st == 503:      # right after a daemon restart nginx has not reconnected yet
                return False
            self.assertEqual(st, 200, raw)
            seen.append(json.loads(raw)["payment_status"])
            return seen[-1] == status
        try:
            wait_until(reached, timeout, f"payment {pid} to become {status}", interval=0.1)
        except Exception:
            self.fail(f"payment {pid} never became {status}; last {seen[-1:]}; tasks:\n"
                      + self.stack.psql(f"SELECT kind, state, attempts, last_error FROM tasks "
                                        f"WHERE payment_id = '{pid}'"))

    def ledger_ops(self, pid: str, operation: str = "payment"):
        ledger = self.stack.sandbox_get("/_sandbox/ledger")
        return [o for o in ledger["operations"] if o["payment_id"] == pid and o["operation"] == operation], ledger

    def operations(self, pid: str) -> str:
        return self.stack.psql(f"SELECT kind || ':' || state || ':' || amount_minor FROM provider_operations "
                               f"WHERE payment_id = '{pid}' ORDER BY created_at")

    def events(self, pid: str) -> list:
        return self.stack.psql(f"SELECT action || ':' || coalesce(from_status, '-') || '>' || to_status || ':' || actor"
                               f" FROM payment_events WHERE payment_id = '{pid}' ORDER BY id").splitlines()


class ChargeTest(ProviderTestCase):

    def test_accept_completes_with_one_charge(self):
        pid = self.accepted_payment(amount="12.50")
        self.wait_status(pid, "completed")
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual((ops[0]["status"], ops[0]["amount_minor"], ops[0]["currency"]), ("COMPLETED", "1250", "USD"))
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] == ops[0]["request_id"]], [])
        self.assertEqual(self.operations(pid), "charge:completed:1250")
        self.assertEqual(self.stack.psql(f"SELECT provider || ' ' || captured_minor || ' ' || refunded_minor "
                                         f"FROM payments WHERE id = '{pid}'"), "sky-technologies 1250 0")
        self.assertEqual(self.events(pid)[-1], "provider_completed:bank_processing>completed:provider:sky-technologies")
        # our reference is the provider's request_id, recorded before the call
        self.assertEqual(self.stack.psql(f"SELECT id FROM provider_operations WHERE payment_id = '{pid}'"),
                         ops[0]["request_id"])
        # the charge, its follow-up, and the status check the sandbox's callback queued
        wait_until(lambda: self.stack.psql(
            f"SELECT string_agg(kind || '=' || state, ',' ORDER BY kind) FROM tasks WHERE payment_id = '{pid}'")
            == "sky_technologies_integration_handle_payment_completed=done,"
               f"sky_technologies_integration_payment_status=done,{CHARGE_TASK}=done", 15, "tasks done")

    def test_decline(self):
        pid = self.accepted_payment(method_id="sky-decline-1")
        self.wait_status(pid, "declined")
        self.assertEqual(self.stack.psql(f"SELECT decline_reason || ' ' || captured_minor FROM payments "
                                         f"WHERE id = '{pid}'"), "insufficient_funds 0")
        self.assertEqual(self.events(pid)[-1], "provider_declined:bank_processing>declined:provider:sky-technologies")
        # a declined payment cannot be cancelled or accepted again
        _, before = self.retrieve_ok(pid)
        for action, call in (("cancel", self.cancel), ("accept", self.accept)):
            with self.subTest(action=action):
                doc = self.assertJsonError(call(pid), 400, "invalid_state")
                self.assertEqual(doc["message"], f"payment {pid} is declined: {action} is not allowed")
        self.assertRetrieveUnchanged(pid, before)
        self.assertEqual(self.operations(pid), "charge:declined:1250", "no second charge queued")

    def test_processing_then_completed_by_status_checks(self):
        pid = self.accepted_payment(method_id="sky-processing-1")
        self.wait_status(pid, "completed")
        checks = int(self.stack.psql(f"SELECT status_checks FROM provider_operations WHERE payment_id = '{pid}'"))
        self.assertGreaterEqual(checks, 1)
        ops, _ = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1)

    def test_lost_callback_still_completes_by_status_checks(self):
        pid = self.accepted_payment(method_id="sky-processing-lost-callback-1")
        self.wait_status(pid, "completed")
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual([c for c in ledger["callbacks"] if c["request_id"] == ops[0]["request_id"]], [],
                         "the sandbox never called back")
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM callback_inbox WHERE request_id = "
                                         f"'{ops[0]['request_id']}'"), "0")
        self.assertGreaterEqual(int(self.stack.psql(
            f"SELECT status_checks FROM provider_operations WHERE payment_id = '{pid}'")), 1)

    def test_sessions_are_reused_and_renewed_when_the_provider_forgets_them(self):
        first = self.accepted_payment()
        self.wait_status(first, "completed")
        before = self.stack.sandbox_get("/_sandbox/ledger")["refused"]["invalid_session"]
        import urllib.request
        req = urllib.request.Request(self.stack.sandbox_url + "/_sandbox/forget_sessions", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertGreaterEqual(json.loads(resp.read())["forgotten"], 1, "paygate kept a session open")
        pid = self.accepted_payment()
        self.wait_status(pid, "completed")
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        # the cached session was refused once (nothing ran), a new one was opened, the charge went through
        self.assertEqual(ledger["refused"]["invalid_session"] - before, 1)
        self.assertEqual(self.stack.psql(f"SELECT calls FROM provider_operations WHERE payment_id = '{pid}'"), "1")

    def test_5xx_is_retried_and_charges_once(self):
        before = self.stack.sandbox_get("/_sandbox/ledger")["failed_calls"]
        pid = self.accepted_payment(method_id="sky-5xx-1")
        self.wait_status(pid, "completed")
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual(ledger["failed_calls"] - before, 2)
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] == ops[0]["request_id"]], [])
        calls = self.stack.psql(f"SELECT calls FROM provider_operations WHERE payment_id = '{pid}'")
        self.assertEqual(calls, "3", "two 5xx answers, then the charge")

    def test_timeout_is_unknown_and_resolved_by_a_status_check_never_a_second_charge(self):
        pid = self.accepted_payment(method_id="sky-timeout-1")
        self.wait_status(pid, "completed", timeout=40)
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] == ops[0]["request_id"]], [])
        row = self.stack.psql(f"SELECT calls || ' ' || status_checks FROM provider_operations WHERE payment_id = '{pid}'")
        calls, checks = map(int, row.split())
        self.assertEqual(calls, 1, "the charge was sent once")
        self.assertGreaterEqual(checks, 1, "the unknown outcome was resolved by paymentStatus")
        self.assertTrue(self.stack.daemons["d1"].events("provider_outcome_unknown"))


class ReversalTest(ProviderTestCase):

    def test_cancel_of_completed_payment_is_reversed(self):
        pid = self.accepted_payment(amount="40.00")
        self.wait_status(pid, "completed")
        st, _, raw = self.cancel(pid)
        self.assertEqual(st, 200, raw)
        self.assertEqual(json.loads(raw), {"transaction_id": pid, "payment_status": "completed"})
        self.wait_status(pid, "reversed")
        ops, _ = self.ledger_ops(pid, "reversal")
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual(ops[0]["amount_minor"], "4000")
        charge, _ = self.ledger_ops(pid)
        self.assertEqual(ops[0]["original_request_id"], charge[0]["request_id"])
        self.assertEqual(self.stack.psql(f"SELECT captured_minor || ' ' || refunded_minor FROM payments "
                                         f"WHERE id = '{pid}'"), "4000 4000")
        self.assertEqual(self.events(pid)[-1], "reversal_completed:completed>reversed:provider:sky-technologies")
        # a second cancel: nothing left to reverse
        _, before = self.retrieve_ok(pid)
        doc = self.assertJsonError(self.cancel(pid), 400, "invalid_state")
        self.assertEqual(doc["message"], f"payment {pid} is reversed: cancel is not allowed")
        self.assertRetrieveUnchanged(pid, before)
        self.assertEqual(len(self.ledger_ops(pid, "reversal")[0]), 1, "no second reversal")


class DatabaseStateMachineTest(ProviderTestCase):

    def test_postgres_refuses_transitions_outside_the_table(self):
        pid = self.accepted_payment()
        self.wait_status(pid, "completed")
        for sql, message in (
                (f"UPDATE payments SET status = 'created' WHERE id = '{pid}'", "cannot move from completed to created"),
                (f"UPDATE payments SET status = 'bank_processing' WHERE id = '{pid}'", "cannot move from completed"),
                (f"UPDATE payments SET amount_minor = 1 WHERE id = '{pid}'", "its amount is fixed"),
                (f"UPDATE payments SET refunded_minor = captured_minor + 1 WHERE id = '{pid}'",
                 "payments_refund_within_capture"),
                (f"UPDATE payment_events SET actor = 'x' WHERE payment_id = '{pid}'", "append-only"),
                (f"DELETE FROM payment_events WHERE payment_id = '{pid}'", "append-only"),
                (f"UPDATE provider_operations SET state = 'new' WHERE payment_id = '{pid}'", "cannot become new"),
                (f"UPDATE tasks SET state = 'exploded' WHERE payment_id = '{pid}'", "tasks_state_check"),
                ("INSERT INTO payments (client_id, status, currency, amount_minor, method_id, recipient_id, sender_id)"
                 " SELECT client_id, 'completed', 'USD', 1, 'm', 'r', 's' FROM payments LIMIT 1",
                 "starts as created")):
            with self.subTest(sql=sql):
                with self.assertRaises(Exception) as ctx:
                    self.stack.psql(sql)
                self.assertIn(message, str(ctx.exception))
        self.assertEqual(self.status_of(pid), "completed")


class DaemonKilledMidTaskTest(ProviderTestCase):
    # The sandbox answers "slow" charges after 3 s: time to SIGKILL the daemon inside the call.
    sandbox_options = {"slow_seconds": 3}

    def test_killed_daemon_task_is_finished_by_the_restarted_one_with_one_charge(self):
        pid = self.accepted_payment(method_id="sky-slow-1")
        # kill once the sandbox has recorded the charge and before paygate has learnt its outcome
        # (on a loaded machine a call can time out before it reaches the sandbox: then sending it
        # again is right, and this test would not be about a crash after the charge)
        wait_until(lambda: self.ledger_ops(pid)[0], 10, "the sandbox to record the charge", interval=0.02)
        self.assertIn(self.stack.psql(f"SELECT state FROM provider_operations WHERE payment_id = '{pid}'"),
                      ("sending", "unknown"))
        self.assertEqual(self.stack.kill_daemon("d1", signal.SIGKILL), -9)
        self.stack.start_daemon("d1")
        # the lease (task_lease_ms 9 s) runs out, the task is taken again, a status check finds
        # the charge the sandbox recorded: completed without sending it again
        self.wait_status(pid, "completed", timeout=40)
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] == ops[0]["request_id"]], [])
        self.assertEqual(self.stack.psql(f"SELECT calls FROM provider_operations WHERE payment_id = '{pid}'"), "1")


if __name__ == "__main__":
    unittest.main()


class ProviderOutageTest(ProviderTestCase):
    """A charge whose outcome is unknown is checked until the provider answers, however long it
    is down: its status checks follow the re-check schedule and never use up task_max_attempts
    (found by the chaos drill: a 20 s sandbox outage left charges in dead tasks, their payments
    stuck in bank_processing)."""
    daemon_config = {"task_max_attempts": 3}

    def test_unknown_charge_outlasts_an_outage_and_charges_once(self):
        # a first payment opens the daemon's payment session, so the next charge is sent (and
        # answered 500: outcome unknown) rather than refused at initSession (nothing sent)
        self.wait_status(self.accepted_payment(), "completed")
        self.addCleanup(self.stack.sandbox_post, "/_sandbox/faults", {"provider": "none"})
        self.stack.sandbox_post("/_sandbox/faults", {"provider": "5xx", "seconds": 60})
        pid = self.accepted_payment()
        # the charge answered 500 (outcome unknown), then more failed status checks than attempts
        def checked_or_dead():
            row = self.stack.psql(f"SELECT t.state || ' ' || o.status_checks FROM tasks t JOIN provider_operations o "
                                  f"ON o.payment_id = t.payment_id WHERE t.payment_id = '{pid}' AND t.kind = '{CHARGE_TASK}'")
            state, checks = row.split() if row else ("", "0")
            return (state, int(checks)) if state == "dead" or int(checks) > 4 else None
        state, checks = wait_until(checked_or_dead, 30, "status checks during the outage", interval=0.1)
        self.assertNotEqual(state, "dead", f"the charge's task gave up after {checks} status checks during the outage")
        self.assertEqual(self.status_of(pid), "bank_processing")
        self.stack.sandbox_post("/_sandbox/faults", {"provider": "none"})
        self.wait_status(pid, "completed", timeout=40)
        ops, ledger = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1, ops)
        self.assertEqual([d for d in ledger["duplicate_attempts"] if d["request_id"] == ops[0]["request_id"]], [])


class DeadTaskTest(ProviderTestCase):
    """A task that keeps failing is dead after task_max_attempts, never dropped: an operator sees
    it in `paygatectl tasks list` and retries (or cancels) it."""
    # The sandbox refuses our merchant id (403 unknown_merchant): nothing is ever executed.
    daemon_config = {"sky_technologies_merchant_id": "not-our-merchant", "task_max_attempts": 3}

    def test_dead_task_is_listed_and_retried_by_an_operator(self):
        pid = self.accepted_payment()
        wait_until(lambda: self.stack.psql(f"SELECT state || ' ' || attempts FROM tasks WHERE payment_id = '{pid}' "
                                           f"AND kind = '{CHARGE_TASK}'") == "dead 3", 30, "the charge task to die")
        task_id = self.stack.psql(f"SELECT id FROM tasks WHERE payment_id = '{pid}' AND kind = '{CHARGE_TASK}'")
        last_error = self.stack.psql(f"SELECT last_error FROM tasks WHERE id = {task_id}")
        self.assertIn("gave up after 3 attempts", last_error)
        self.assertIn("HTTP 403 unknown_merchant", last_error)
        self.assertTrue(self.stack.daemons["d1"].events("task_dead"))
        self.assertEqual(self.status_of(pid), "bank_processing")
        self.assertEqual(self.stack.psql(f"SELECT state FROM provider_operations WHERE payment_id = '{pid}'"), "new",
                         "refused before anything ran: safe to send again")
        ops, _ = self.ledger_ops(pid)
        self.assertEqual(ops, [])

        listed = self.stack.ctl("tasks", "list", "--state", "dead").stdout
        self.assertRegex(listed, rf"(?m)^{task_id}\tdead\t{CHARGE_TASK}\t{pid}\tattempts=3\t")
        self.assertNotIn(f"{task_id}\t", self.stack.ctl("tasks", "list", "--state", "pending").stdout)
        shown = self.stack.ctl("tasks", "show", task_id).stdout
        self.assertIn(f"payload: {{\"operation_id\": \"{self.stack.psql(f'SELECT id FROM provider_operations WHERE payment_id = {chr(39)}{pid}{chr(39)}')}\"}}", shown)
        # a running or done task cannot be retried or cancelled; bad ids are usage errors
        self.assertEqual(self.stack.ctl("tasks", "retry", "999999", check=False).returncode, 1)
        self.assertEqual(self.stack.ctl("tasks", "show", "x1", check=False).returncode, 2)

        # the operator fixes the configuration and retries the task: the payment completes
        self.stack.kill_daemon("d1", signal.SIGTERM)
        self.stack.start_daemon("d1")
        self.assertIn("is pending again", self.stack.ctl("tasks", "retry", task_id).stdout)
        self.wait_status(pid, "completed")
        ops, _ = self.ledger_ops(pid)
        self.assertEqual(len(ops), 1)
        self.assertEqual(self.stack.ctl("tasks", "cancel", task_id, "--reason", "done already",
                                        check=False).returncode, 1, "a done task cannot be cancelled")

    def test_cancelled_task_never_runs(self):
        pid = self.accepted_payment()
        wait_until(lambda: self.stack.psql(f"SELECT state FROM tasks WHERE payment_id = '{pid}' "
                                           f"AND kind = '{CHARGE_TASK}'") == "dead", 30, "the charge task to die")
        task_id = self.stack.psql(f"SELECT id FROM tasks WHERE payment_id = '{pid}' AND kind = '{CHARGE_TASK}'")
        self.assertEqual(self.stack.ctl("tasks", "cancel", task_id, check=False).returncode, 2, "--reason is required")
        self.stack.ctl("tasks", "cancel", task_id, "--reason", "customer gave up")
        self.assertEqual(self.stack.psql(f"SELECT state || ': ' || last_error FROM tasks WHERE id = {task_id}"),
                         "cancelled: cancelled by operator: customer gave up")
