"""The mserver wallet (seed 003, docs/providers/mserver.md) end to end through real nginx:
RUB payments are routed to the mserver sandbox (tests/sandboxes/mserver.py), prepared and paid
by durable tasks; the sandbox's ledger is the witness that a dropped connection never makes two
wallet payments; notifications go through the module's app_id/access_token check into the inbox
and only the re-read of the payment moves it."""

import hashlib
import json
import time
import unittest

from e2e_base import PaymentStackTestCase, new_uuid, wait_until

OUT = {"type": "out", "service": 61, "parameters": {"phoneNumber": "9267101283"}}
NOTIFY = "/callbacks/mserver/notify"


class MserverTestCase(PaymentStackTestCase):
    with_mserver = True
    mserver_options = {"processing_seconds": 0.3}

    def paid(self, amount: str, mserver: dict) -> str:
        """A RUB payment accepted with accept_info {"mserver": ...}; returns its id."""
        pid = self.create_payment(currency="RUB", amount=amount, sender=new_uuid())
        st, _, raw = self.accept(pid, {"mserver": mserver})
        self.assertEqual(st, 200, raw)
        return pid

    def wait_status(self, pid: str, status: str, timeout: float = 30.0) -> None:
        seen = []

        def reached():
            seen.append(self.status_of(pid))
            return seen[-1] == status
        try:
            wait_until(reached, timeout, f"payment {pid} to become {status}", interval=0.1)
        except Exception:
            self.fail(f"payment {pid} never became {status}; last {seen[-1:]}; tasks:\n"
                      + self.stack.psql(f"SELECT kind, state, attempts, last_error FROM tasks WHERE payment_id = '{pid}'"))

    def op(self, pid: str) -> dict:
        row = self.stack.psql(
            "SELECT json_build_object('id', id, 'state', state, 'ref', provider_ref, 'total', provider_total_minor::text,"
            f" 'amount', amount_minor::text) FROM provider_operations WHERE payment_id = '{pid}' AND kind = 'charge'")
        return json.loads(row)

    def wallet(self, op_id: str) -> list:
        ledger = self.stack.mserver_call("GET", "/_sandbox/ledger")
        return [p for p in ledger["payments"] if p["client_payment_id"] == op_id], ledger

    def events(self, pid: str) -> list:
        return self.stack.psql(f"SELECT action || ':' || coalesce(from_status, '-') || '>' || to_status || ':' || actor"
                               f" FROM payment_events WHERE payment_id = '{pid}' ORDER BY id").splitlines()

    def inbox(self, where: str) -> list:
        out = self.stack.psql(f"SELECT notification_type || '|' || coalesce(resolution, '') FROM callback_inbox"
                              f" WHERE provider = 'mserver' AND {where} ORDER BY id")
        return out.splitlines() if out else []

    def completed_payment(self, amount: str):
        pid = self.paid(amount, OUT)
        self.wait_status(pid, "completed")
        op = self.op(pid)
        # the sandbox's own "complete" notification has been handled (nothing left to apply)
        wait_until(lambda: self.inbox(f"provider_payment_id = '{op['ref']}' AND resolved_at IS NOT NULL"), 15,
                   "the complete notification resolved")
        return pid, op


class PaymentsTest(MserverTestCase):

    def test_out_prepare_then_pay_records_total_above_amount(self):
        pid = self.paid("100.00", OUT)
        self.wait_status(pid, "completed")
        op = self.op(pid)
        # our client_payment_id is the operation id, lower-case, stored before the first call
        self.assertRegex(op["id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual((op["amount"], op["total"], op["state"]), ("10000", "10300", "completed"))
        wallet, ledger = self.wallet(op["id"])
        self.assertEqual(len(wallet), 1)
        self.assertEqual((wallet[0]["type"], wallet[0]["amount_minor"], wallet[0]["total_minor"], wallet[0]["status"]),
                         ("out", 10000, 10300, "completed"))
        self.assertEqual(str(wallet[0]["id"]), op["ref"])
        self.assertEqual((ledger["creates"][op["id"]], ledger["pays"][op["ref"]]), (1, 1))
        self.assertEqual(self.stack.psql(f"SELECT provider || ' ' || captured_minor FROM payments WHERE id = '{pid}'"),
                         "mserver 10000")
        self.assertEqual(self.events(pid)[-1], "provider_completed:bank_processing>completed:provider:mserver")

    def test_each_payment_type(self):
        cases = {
            "p2p": ({"type": "p2p", "destination": "+79261111112", "message": "за обед"}, "10.00", 1000),
            "in": ({"type": "in", "store_card": True}, "20.00", 2000),
            "inout": ({"type": "inout", "service": 834, "parameters": {"phoneNumber": "9267101283"}, "card": 21},
                      "30.00", 3090),
        }
        pids = {t: self.paid(amount, m) for t, (m, amount, _) in cases.items()}
        for t, pid in pids.items():
            self.wait_status(pid, "completed")
            op = self.op(pid)
            wallet, _ = self.wallet(op["id"])
            self.assertEqual(len(wallet), 1, t)
            self.assertEqual((wallet[0]["type"], wallet[0]["total_minor"]), (t, cases[t][2]))
            self.assertEqual(op["total"], str(cases[t][2]))
        wallet, _ = self.wallet(self.op(pids["p2p"])["id"])
        self.assertEqual((wallet[0]["destination"], wallet[0]["message"]), ("+79261111112", "за обед"))
        wallet, _ = self.wallet(self.op(pids["inout"])["id"])
        self.assertEqual(wallet[0]["card"]["id"], 21)

    def test_deferred_choice_pays_out_as_inout(self):
        pid = self.paid("40.00", dict(OUT, pay={"type": "inout", "card": 7222}))
        self.wait_status(pid, "completed")
        wallet, _ = self.wallet(self.op(pid)["id"])
        self.assertEqual((wallet[0]["type"], wallet[0]["card"]["id"]), ("inout", 7222))

    def test_dropped_connection_after_create_is_retried_with_the_same_id(self):
        self.stack.mserver_call("POST", "/_sandbox/plan", {"amount": "77.77", "scenario": "drop_after_create"})
        pid = self.paid("77.77", OUT)
        self.wait_status(pid, "completed")
        op = self.op(pid)
        wallet, ledger = self.wallet(op["id"])
        self.assertEqual(len(wallet), 1, wallet)                   # exactly one wallet payment
        self.assertEqual(ledger["creates"][op["id"]], 2)           # the create came twice, same id
        self.assertIn(f"after create {op['id']}", ledger["dropped"])
        self.assertEqual(ledger["pays"][op["ref"]], 1)
        # the second create is ours (not libcurl re-sending on its own), with the same id
        self.assertTrue(self.stack.daemons["d1"].events("mserver_prepare_retry", operation_id=op["id"]))

    def test_dropped_pay_is_resolved_by_status_reads_never_paid_twice(self):
        self.stack.mserver_call("POST", "/_sandbox/plan", {"amount": "78.78", "scenario": "drop_after_pay"})
        pid = self.paid("78.78", OUT)
        self.wait_status(pid, "completed")
        op = self.op(pid)
        wallet, ledger = self.wallet(op["id"])
        self.assertEqual(len(wallet), 1, wallet)
        self.assertIn(f"after pay {op['ref']}", ledger["dropped"])
        self.assertEqual((ledger["creates"][op["id"]], ledger["pays"][op["ref"]]), (1, 1))   # never paid again
        checks = self.stack.psql(f"SELECT status_checks FROM provider_operations WHERE id = '{op['id']}'")
        self.assertGreaterEqual(int(checks), 1)

    def test_each_decline_reason(self):
        pids = {}
        for i, reason in enumerate(("invalid_data", "insufficient_funds", "internal_error")):
            amount = f"{51 + i}.05"
            self.stack.mserver_call("POST", "/_sandbox/plan", {"amount": amount, "scenario": "decline:" + reason})
            pids[reason] = self.paid(amount, OUT)
        for reason, pid in pids.items():
            self.wait_status(pid, "declined")
            self.assertEqual(self.stack.psql(f"SELECT decline_reason FROM payments WHERE id = '{pid}'"), reason)
            self.assertEqual(self.op(pid)["state"], "declined")
            self.assertEqual(self.events(pid)[-1], "provider_declined:bank_processing>declined:provider:mserver")

    def test_error_codes_decline_with_the_code(self):
        cases = [(dict(OUT, service=999), "service_not_found"),
                 ({"type": "p2p", "destination": "+70000000000"}, "destination_not_found"),
                 ({"type": "p2p", "destination": "+79261111111"}, "invalid_destination"),
                 ({"type": "out", "service": 61}, "missing_parameters"),
                 ({"type": "out", "parameters": {"a": "b"}}, "missing_service")]
        pids = [(self.paid("5.00", m), code) for m, code in cases]
        pids.append((self.paid("0.50", OUT), "invalid_amount"))     # below the service's minimum
        pids.append((self.paid("2000000.00", {"type": "p2p", "destination": "+79261111112"}), "insufficient_funds"))
        for pid, code in pids:
            self.wait_status(pid, "declined")
            self.assertEqual(self.stack.psql(f"SELECT decline_reason FROM payments WHERE id = '{pid}'"), code)
            wallet, _ = self.wallet(self.op(pid)["id"])
            self.assertEqual(wallet, [])                            # nothing was created there
        # no mserver object in accept_info: refused before any call
        pid = self.create_payment(currency="RUB", amount="5.00", sender=new_uuid())
        self.assertEqual(self.accept(pid, {"other": 1})[0], 200)
        self.wait_status(pid, "declined")
        self.assertEqual(self.stack.psql(f"SELECT decline_reason FROM payments WHERE id = '{pid}'"), "invalid_data")


class NotificationsTest(MserverTestCase):

    def notify(self, ref: str, type_: str, **kw) -> dict:
        return self.stack.mserver_call("POST", "/_sandbox/notify", dict(id=int(ref), type=type_, **kw))

    def test_undo_then_redo_move_the_payment_and_are_in_the_history(self):
        pid, op = self.completed_payment("61.00")
        got = self.notify(op["ref"], "undo")
        self.assertEqual((got["http_status"], json.loads(got["answer"])), (200, {"status": "accepted"}))
        self.wait_status(pid, "reversed")
        self.assertEqual(self.events(pid)[-1], "provider_undo:completed>reversed:provider:mserver")
        self.assertEqual(self.stack.psql(f"SELECT refunded_minor FROM payments WHERE id = '{pid}'"), "6100")
        got = self.notify(op["ref"], "redo", where="query")        # credentials in the query this time
        self.assertEqual(got["http_status"], 200)
        self.wait_status(pid, "completed")
        self.assertEqual(self.events(pid)[-1], "provider_redo:reversed>completed:provider:mserver")
        self.assertEqual(self.stack.psql(f"SELECT refunded_minor FROM payments WHERE id = '{pid}'"), "0")

    def test_bad_or_missing_credentials_are_401_and_change_nothing(self):
        pid, op = self.completed_payment("62.00")
        before = self.stack.psql("SELECT count(*) FROM callback_inbox")
        for creds, where in (("bad", "header"), ("missing", "header"), ("wrong_app", "header"),
                             ("bad", "query"), ("missing", "query")):
            got = self.notify(op["ref"], "undo", credentials=creds, where=where, change=False)
            self.assertEqual(got["http_status"], 401, (creds, where, got))
            self.assertEqual(json.loads(got["answer"])["code"], "unauthorized")
        # an upper-case token is not the seed's lower-case hex
        secret = (self.stack.keys_dir / "mserver.app_secret").read_text().strip()
        token = hashlib.sha1(("paygate-dev" + secret).encode()).hexdigest()
        body = json.dumps({"created_at": "2026-01-01T00:00:00.000Z", "type": "undo",
                           "payment": {"id": int(op["ref"])}}).encode()
        st, _, raw = self.stack.http("POST", NOTIFY, body, {"Content-Type": "application/json",
                                                            "App-Id": "paygate-dev", "Access-Token": token.upper()})
        self.assertEqual(st, 401, raw)
        st, _, raw = self.stack.http("POST", NOTIFY + "?app_id=paygate-dev&access_token=" + token, body,
                                     {"Content-Type": "application/json", "Access-Token": token})
        self.assertEqual(st, 401, raw)                              # given twice: ambiguous
        time.sleep(0.5)
        self.assertEqual(self.stack.psql("SELECT count(*) FROM callback_inbox"), before)
        self.assertEqual(self.status_of(pid), "completed")
        # the right token, as the control: accepted
        st, _, raw = self.stack.http("POST", NOTIFY, body, {"Content-Type": "application/json",
                                                            "App-Id": "paygate-dev", "Access-Token": token})
        self.assertEqual((st, json.loads(raw)), (200, {"status": "accepted"}), raw)

    def test_malformed_notification_is_400_and_not_stored(self):
        secret = (self.stack.keys_dir / "mserver.app_secret").read_text().strip()
        headers = {"Content-Type": "application/json", "App-Id": "paygate-dev",
                   "Access-Token": hashlib.sha1(("paygate-dev" + secret).encode()).hexdigest()}
        before = self.stack.psql("SELECT count(*) FROM callback_inbox")
        for body, field in ((b"not json", "body"), (b"{}", "payment"),
                            (json.dumps({"payment": {"id": "x y"}, "type": "undo", "created_at": "t"}).encode(), "payment.id"),
                            (json.dumps({"payment": {"id": 5}, "created_at": "t"}).encode(), "type"),
                            (json.dumps({"payment": {"id": 5}, "type": "x" * 17, "created_at": "t"}).encode(), "type"),
                            (json.dumps({"payment": {"id": 5}, "type": "undo", "created_at": "t" * 41}).encode(),
                             "created_at")):
            st, _, raw = self.stack.http("POST", NOTIFY, body, headers)
            self.assertEqual(st, 400, raw)
            doc = json.loads(raw)
            self.assertEqual(doc["code"], "validation_error")
            self.assertTrue(doc["message"].startswith(field), (field, doc))
        self.assertEqual(self.stack.psql("SELECT count(*) FROM callback_inbox"), before)
        # the longest accepted key still fits the inbox (64 + 16 + 40 characters)
        body = json.dumps({"payment": {"id": "9" * 64}, "type": "x" * 16, "created_at": "t" * 40}).encode()
        st, _, raw = self.stack.http("POST", NOTIFY, body, headers)
        self.assertEqual((st, json.loads(raw)), (200, {"status": "accepted"}), raw)

    def test_duplicate_notification_is_one_inbox_row(self):
        pid, op = self.completed_payment("63.00")
        when = "2026-02-02T10:00:00.000Z"
        first = self.notify(op["ref"], "undo", created_at=when)
        second = self.notify(op["ref"], "undo", created_at=when, change=False)
        self.assertEqual(json.loads(first["answer"]), {"status": "accepted"})
        self.assertEqual(json.loads(second["answer"]), {"status": "duplicate"})
        self.assertEqual(len(self.inbox(f"provider_payment_id = '{op['ref']}' AND notification_type = 'undo'")), 1)
        self.wait_status(pid, "reversed")
        self.assertEqual([e for e in self.events(pid) if e.startswith("provider_undo")],
                         ["provider_undo:completed>reversed:provider:mserver"])

    def test_out_of_order_undo_is_kept_and_resolved_by_the_reread(self):
        # mserver did not undo anything: an "undo" that claims it is kept, but changes nothing
        pid, op = self.completed_payment("64.00")
        got = self.notify(op["ref"], "undo", change=False, created_at="2026-03-03T00:00:00.000Z")
        self.assertEqual(got["http_status"], 200)
        rows = wait_until(lambda: self.inbox(f"provider_payment_id = '{op['ref']}' AND notification_type = 'undo'"
                                             " AND resolved_at IS NOT NULL"), 15, "resolved")
        self.assertIn("nothing to apply", rows[0])
        self.assertEqual(self.status_of(pid), "completed")

    def test_undo_before_complete_is_resolved_by_the_reread(self):
        # mserver completes and then undoes a payment; the undo arrives first, the complete later
        self.stack.mserver_call("POST", "/_sandbox/plan", {"amount": "65.00", "scenario": "stuck"})
        pid = self.paid("65.00", OUT)
        op = wait_until(lambda: (lambda o: o["ref"] and o)(self.op(pid)), 15, "prepared")
        wait_until(lambda: self.wallet(op["id"])[0][0]["status"] == "processing", 15, "paid")
        self.stack.mserver_call("POST", "/_sandbox/set_status", {"id": int(op["ref"]), "status": "completed"})
        got = self.notify(op["ref"], "undo", created_at="2026-04-04T00:00:02.000Z")
        self.assertEqual(got["http_status"], 200)
        got = self.notify(op["ref"], "complete", change=False, created_at="2026-04-04T00:00:01.000Z")
        self.assertEqual(got["http_status"], 200)
        # the re-read says declined: never completed on our side, so the payment is declined
        self.wait_status(pid, "declined")
        rows = wait_until(lambda: (lambda r: len(r) == 2 and r)(
            self.inbox(f"provider_payment_id = '{op['ref']}' AND resolved_at IS NOT NULL")), 15, "both resolved")
        self.assertEqual(sorted(r.split("|")[0] for r in rows), ["complete", "undo"])
        self.assertEqual([e for e in self.events(pid) if e.startswith("provider_")],
                         ["provider_declined:bank_processing>declined:provider:mserver"])

    def test_unknown_payment_is_kept_and_logged(self):
        # a wallet payment paygate never made (the sandbox's own create, with Basic auth)
        import base64
        import urllib.request
        password = (self.stack.keys_dir / "mserver.password").read_text().strip()
        req = urllib.request.Request(
            self.stack.mserver_url + "/v1/payments", method="POST",
            data=json.dumps({"type": "in", "client_payment_id": new_uuid(), "amount": 5}).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": "Basic " + base64.b64encode(f"+79261111111:{password}".encode()).decode()})
        with urllib.request.urlopen(req, timeout=10) as resp:
            ref = str(json.loads(resp.read())["data"]["id"])
        got = self.notify(ref, "complete")
        self.assertEqual(got["http_status"], 200)
        rows = wait_until(lambda: self.inbox(f"provider_payment_id = '{ref}' AND resolved_at IS NOT NULL"), 15,
                          "resolved")
        self.assertIn("not a payment of ours", rows[0])
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM callback_inbox WHERE provider_payment_id = '{ref}'"
                                         " AND operation_id IS NULL"), "1")


class ReconcileTest(MserverTestCase):

    def reconcile(self, since: str):
        conf = self.stack.daemons["d1"].conf
        return self.stack.ctl("reconcile", "mserver", "--since", since, "--page-size", "2", "--config", str(conf),
                              check=False)

    def test_reconcile_finds_a_planted_mismatch(self):
        since = self.stack.psql("SELECT to_char(now() AT TIME ZONE 'UTC' - interval '1 second',"
                                " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        pids = [self.paid(f"{70 + i}.00", OUT) for i in range(3)]
        for pid in pids:
            self.wait_status(pid, "completed")
        res = self.reconcile(since)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("compared 3 paygate operations with 3 mserver payments", res.stdout)
        self.assertTrue(res.stdout.rstrip().endswith("0 difference(s)"), res.stdout)
        # planted: mserver declines one silently (no notification): only reconcile can tell
        op = self.op(pids[1])
        self.stack.mserver_call("POST", "/_sandbox/set_status", {"id": int(op["ref"]), "status": "declined",
                                                                 "decline_reason": "internal_error"})
        res = self.reconcile(since)
        self.assertEqual(res.returncode, 3, res.stdout + res.stderr)
        lines = [ln for ln in res.stdout.splitlines() if "\tours=" in ln]
        self.assertEqual(lines, [f"{pids[1]}\t{op['id']}\t{op['ref']}\tours=completed\tmserver=declined"])
        self.assertEqual(self.status_of(pids[1]), "completed")     # reconcile only reports
        # a bad --since is a usage error
        self.assertEqual(self.reconcile("yesterday-ish").returncode, 2)


if __name__ == "__main__":
    unittest.main()
