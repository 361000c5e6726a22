"""WhiteBird, paygate as its fiat PaymentProvider (issue P5, seed 004, docs/partners/whitebird.md).

Through real nginx, paygated, PostgreSQL and the sky-technologies sandbox: the seed's example
order answers PROCESSING, then SUCCESS on a retry; a sandbox decline is FAILED with an
errorMessage; 50 concurrent retries of one externalOperationId make one operation, one payment
and one provider charge; a repeat with another body is refused (409) and changes nothing; the
timeout takes the seed's Cyrillic "СANCELLED" and the Latin alias, answers 200 for unknown and
finished operations, never undoes a SUCCESS, and reverses a charge that completes after it; every
bad field is a 4xx JSON error that creates nothing; a wrong, missing, revoked or client-token
X-Api-Key is refused by nginx (401) without reaching the daemon.
"""

import json

import jsonschema
import yaml
import time
import unittest
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

from e2e_base import (TOO_LARGE_BODY, UNKNOWN_PAYMENT, PaymentStackTestCase, RawNumber, new_uuid, raw_request, read_response,
                      wait_until)

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "whitebird.yaml"
ORDERS = "/partners/whitebird/orders"
TIMEOUT = "/partners/whitebird/timeout"
CYRILLIC_CANCELLED = "\u0421ANCELLED"   # the seed's spelling: Cyrillic Es, then Latin "ANCELLED"


def seed_order(**changes) -> dict:
    """The seed's request example with fresh ids (each test its own operation)."""
    body = {
        "externalUserId": "9ee9e9f7-a7ff-4dc4-9804-5d7dd2cf2df5",
        "externalOperationId": new_uuid(),
        "paymentMethodToken": "4b13260e-e642-438f-ab40-adc6a1edb039",
        "currency": 933,
        "amount": 100,
        "type": "PAYMENT",
        "status": "EXCHANGED",
    }
    body.update(changes)
    return body


def answer_schema(name: str) -> jsonschema.protocols.Validator:
    """A schema of docs/openapi/whitebird.yaml (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    doc = yaml.safe_load(OPENAPI.read_text())
    schema = dict(doc["components"]["schemas"][name], components=doc["components"])
    return jsonschema.Draft202012Validator(schema)


class WhiteBirdTestCase(PaymentStackTestCase):
    with_sandbox = True
    # "sky-processing" methods stay PROCESSING at the sandbox this long before they complete.
    sandbox_options = {"processing_seconds": 3}
    prefix = "/partners"   # paygate_partner_api_prefix

    @classmethod
    def path(cls, path: str) -> str:
        return cls.prefix + path[len("/partners"):]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            cls.api_key = cls.shared_stack.create_partner_key("whitebird")
            cls.wait_for_key(cls.api_key, accepted=True)
        except BaseException:
            cls._stop_shared_stack(failed=True, raise_problems=False)
            raise

    @classmethod
    def wait_for_key(cls, key: str, accepted: bool, timeout: float = 20.0, consecutive: int = 8) -> float:
        """Until `consecutive` timeouts of an unknown operation in a row are answered 200
        (accepted) or 401 (refused) — every worker agrees. Returns how long it took."""
        started = time.monotonic()
        streak = [0]
        want = 200 if accepted else 401

        def poll():
            st, _, _ = cls.shared_stack.http("POST", cls.path(TIMEOUT), json.dumps(
                {"externalOperationId": "probe", "status": "CANCELLED"}).encode(),
                {"X-Api-Key": key, "Content-Type": "application/json"}, timeout=10)
            streak[0] = streak[0] + 1 if st == want else 0
            return streak[0] >= consecutive
        wait_until(poll, timeout, f"the partner key to be {'accepted' if accepted else 'refused'}", interval=0.05)
        return time.monotonic() - started

    def wb(self, path: str, body, *, key="default", content_type="application/json", headers=None):
        hdrs = dict(headers or {})
        if key == "default":
            key = self.api_key
        if key is not None:
            hdrs["X-Api-Key"] = key
        return self.api("POST", self.path(path), body, token=None, content_type=content_type, headers=hdrs)

    def order(self, body, **kw):
        """POSTs an order; a 200 answer is checked against the OpenAPI document's OrderAnswer."""
        st, hdrs, raw = self.wb(ORDERS, body, **kw)
        doc = json.loads(raw) if raw else None
        if st == 200:
            answer_schema("OrderAnswer").validate(doc)
        return st, doc

    def order_until_final(self, body, timeout: float = 30.0) -> dict:
        last = {}

        def final():
            st, doc = self.order(body)
            self.assertEqual(st, 200, doc)
            last.update(doc)
            return doc["status"] != "PROCESSING"
        wait_until(final, timeout, "the order to leave PROCESSING", interval=0.2)
        return last

    def operations(self, op_id: str) -> int:
        return int(self.stack.psql(f"SELECT count(*) FROM whitebird_operations WHERE external_operation_id = '{op_id}'"))

    def payment_of(self, op_id: str) -> str:
        return self.stack.psql(f"SELECT payment_id FROM whitebird_operations WHERE external_operation_id = '{op_id}'")

    def totals(self) -> tuple:
        return (int(self.stack.psql("SELECT count(*) FROM whitebird_operations")),
                int(self.stack.psql("SELECT count(*) FROM payments")),
                int(self.stack.psql("SELECT count(*) FROM provider_operations")))

    def charges_at_sandbox(self, pid: str, operation: str = "payment") -> int:
        ledger = self.stack.sandbox_get("/_sandbox/ledger")
        return len([o for o in ledger["operations"] if o["payment_id"] == pid and o["operation"] == operation])


class OrderTest(WhiteBirdTestCase):
    def test_seed_example_processing_then_success(self):
        body = seed_order()
        st, doc = self.order(body)
        self.assertEqual((st, doc), (200, {"status": "PROCESSING"}))
        self.assertEqual(self.order_until_final(body), {"status": "SUCCESS"})
        pid = self.payment_of(body["externalOperationId"])
        row = self.stack.psql(f"SELECT status, currency, amount_minor, recipient_id, sender_id, client_id = "
                              f"(SELECT id FROM clients WHERE name = 'partner.whitebird') FROM payments WHERE id = '{pid}'")
        # PAYMENT credits the user: WhiteBird sends 100 BYN (933) to externalUserId.
        self.assertEqual(row, f"completed|BYN|10000|{body['externalUserId']}|whitebird|t")
        self.assertEqual(self.charges_at_sandbox(pid), 1)
        self.assertEqual(self.order(body), (200, {"status": "SUCCESS"}))   # retries keep answering

    def test_disbursement_debits_the_user(self):
        body = seed_order(type="DISBURSEMENT", amount=RawNumber("12.5"))
        self.assertEqual(self.order(body), (200, {"status": "PROCESSING"}))
        pid = self.payment_of(body["externalOperationId"])
        self.assertEqual(self.stack.psql(f"SELECT sender_id, recipient_id, amount_minor FROM payments WHERE id = '{pid}'"),
                         f"{body['externalUserId']}|whitebird|1250")

    def test_same_order_spelled_differently_is_a_retry(self):
        body = seed_order(amount=RawNumber("100.00"))
        self.assertEqual(self.order(body)[0], 200)
        again = dict(body, amount=RawNumber("1e2"))
        before = self.totals()
        self.assertIn(self.order(again)[1]["status"], ("PROCESSING", "SUCCESS"))
        self.assertEqual(self.totals(), before)

    def test_decline_is_failed_with_error_message(self):
        body = seed_order(paymentMethodToken="sky-decline-1")
        self.assertEqual(self.order(body), (200, {"status": "PROCESSING"}))
        doc = self.order_until_final(body)
        self.assertEqual(doc["status"], "FAILED")
        self.assertEqual(set(doc), {"status", "errorMessage"})
        self.assertIn("insufficient funds", doc["errorMessage"].lower())
        self.assertNotIn("_", doc["errorMessage"])   # the provider's code is mapped, not copied

    def test_fifty_concurrent_retries_make_one_operation_and_one_charge(self):
        body = seed_order(externalUserId=new_uuid())
        before = self.totals()
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda _: self.order(body), range(50)))
        for st, doc in results:
            self.assertEqual(st, 200, doc)
            self.assertIn(doc["status"], ("PROCESSING", "SUCCESS"), doc)
        op_id = body["externalOperationId"]
        self.assertEqual(self.operations(op_id), 1)
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM payments WHERE recipient_id = '{body['externalUserId']}'"), "1")
        after = self.totals()
        self.assertEqual((after[0] - before[0], after[1] - before[1], after[2] - before[2]), (1, 1, 1))
        self.assertEqual(self.order_until_final(body), {"status": "SUCCESS"})
        self.assertEqual(self.charges_at_sandbox(self.payment_of(op_id)), 1)

    def test_same_id_with_another_body_is_refused(self):
        body = seed_order()
        self.assertEqual(self.order(body)[0], 200)
        pid = self.payment_of(body["externalOperationId"])
        before = (self.totals(), self.stack.psql(f"SELECT amount_minor, updated_at FROM payments WHERE id = '{pid}'"))
        for change in ({"amount": 101}, {"currency": 840}, {"type": "DISBURSEMENT"},
                       {"externalUserId": new_uuid()}, {"paymentMethodToken": None}):
            with self.subTest(change=change):
                st, hdrs, raw = self.wb(ORDERS, dict(body, **change))
                doc = self.assertJsonError((st, hdrs, raw), 409, "operation_conflict")
                self.assertIn(body["externalOperationId"], doc["message"])
        self.assertEqual((self.totals(), self.stack.psql(f"SELECT amount_minor, updated_at FROM payments WHERE id = '{pid}'")),
                         before)


class TimeoutTest(WhiteBirdTestCase):
    def timeout(self, op_id: str, status: str = CYRILLIC_CANCELLED):
        st, _, raw = self.wb(TIMEOUT, {"externalOperationId": op_id, "status": status})
        if st == 200:
            answer_schema("TimeoutAnswer").validate(json.loads(raw))
        return st, json.loads(raw)

    def test_unknown_operation_is_200_with_both_spellings(self):
        for spelling in (CYRILLIC_CANCELLED, "CANCELLED"):
            with self.subTest(spelling=spelling):
                op_id = new_uuid()
                self.assertEqual(self.timeout(op_id, spelling), (200, {"externalOperationId": op_id, "status": "NOT_FOUND"}))
        self.assertNotEqual(CYRILLIC_CANCELLED.encode(), b"CANCELLED")

    def test_order_after_its_timeout_is_never_executed(self):
        body = seed_order()
        op_id = body["externalOperationId"]
        self.assertEqual(self.timeout(op_id), (200, {"externalOperationId": op_id, "status": "NOT_FOUND"}))
        before = self.totals()
        for _ in range(2):
            st, doc = self.order(body)
            self.assertEqual(st, 200)
            self.assertEqual(doc["status"], "FAILED")
            self.assertIn("cancelled", doc["errorMessage"])
        self.assertEqual(self.totals(), before)
        self.assertEqual(self.timeout(op_id, "CANCELLED"), (200, {"externalOperationId": op_id, "status": "NOT_FOUND"}))

    def test_success_is_never_undone(self):
        body = seed_order()
        self.order(body)
        self.assertEqual(self.order_until_final(body), {"status": "SUCCESS"})
        op_id = body["externalOperationId"]
        for spelling in (CYRILLIC_CANCELLED, "CANCELLED"):
            self.assertEqual(self.timeout(op_id, spelling), (200, {"externalOperationId": op_id, "status": "SUCCESS"}))
        self.assertEqual(self.order(body), (200, {"status": "SUCCESS"}))
        pid = self.payment_of(op_id)
        self.assertEqual(self.stack.psql(f"SELECT status, reversal_requested FROM payments WHERE id = '{pid}'"), "completed|f")
        self.assertEqual(self.charges_at_sandbox(pid, "reversal"), 0)

    def test_failed_operation_stays_failed(self):
        body = seed_order(paymentMethodToken="sky-decline-2")
        self.order(body)
        self.assertEqual(self.order_until_final(body)["status"], "FAILED")
        op_id = body["externalOperationId"]
        self.assertEqual(self.timeout(op_id, "CANCELLED"), (200, {"externalOperationId": op_id, "status": "FAILED"}))

    def test_timeout_in_flight_reverses_the_late_charge(self):
        # The sandbox holds "sky-processing" charges PROCESSING for 3 s: the timeout comes first.
        body = seed_order(paymentMethodToken="sky-processing-wb")
        self.assertEqual(self.order(body), (200, {"status": "PROCESSING"}))
        op_id = body["externalOperationId"]
        self.assertEqual(self.timeout(op_id), (200, {"externalOperationId": op_id, "status": "CANCELLING"}))
        doc = self.order_until_final(body)
        self.assertEqual(doc["status"], "FAILED")
        self.assertIn("cancelled", doc["errorMessage"])
        pid = self.payment_of(op_id)

        def reversed_():
            return self.stack.psql(f"SELECT status FROM payments WHERE id = '{pid}'") == "reversed"
        wait_until(reversed_, 30, "the late charge to be reversed", interval=0.2)
        self.assertEqual(self.charges_at_sandbox(pid, "payment"), 1)
        self.assertEqual(self.charges_at_sandbox(pid, "reversal"), 1)
        self.assertEqual(self.timeout(op_id, "CANCELLED"), (200, {"externalOperationId": op_id, "status": "CANCELLED"}))

    def test_bad_timeout_bodies(self):
        before = self.totals()
        for body in ({"status": "CANCELLED"}, {"externalOperationId": new_uuid()},
                     {"externalOperationId": new_uuid(), "status": "CANCELED"},
                     {"externalOperationId": new_uuid(), "status": "cancelled"},
                     {"externalOperationId": 5, "status": "CANCELLED"}, [1]):
            with self.subTest(body=body):
                self.assertJsonError(self.wb(TIMEOUT, body), 400, "validation_error")
        self.assertEqual(self.totals(), before)


class ValidationTest(WhiteBirdTestCase):
    def test_every_bad_field_is_refused_and_creates_nothing(self):
        cases = {
            "currency 999": {"currency": 999},
            "currency as a string": {"currency": "933"},
            "currency alphabetic": {"currency": "BYN"},
            "currency with a fraction": {"currency": RawNumber("933.5")},
            "amount with too many decimals": {"amount": RawNumber("1.001")},
            "amount negative": {"amount": -5},
            "amount zero": {"amount": 0},
            "amount as a string": {"amount": "100"},
            "type outside the enum": {"type": "REFUND"},
            "type lower case": {"type": "payment"},
            "status outside the enum": {"status": "PENDING"},
            "externalUserId not a string": {"externalUserId": 12},
            "externalOperationId with a space": {"externalOperationId": "a b"},
            "paymentMethodToken not a string": {"paymentMethodToken": 7},
        }
        missing = ("externalUserId", "externalOperationId", "currency", "amount", "type", "status")
        before = self.totals()
        for name, change in cases.items():
            with self.subTest(name):
                self.assertJsonError(self.wb(ORDERS, seed_order(**change)), 400, "validation_error")
        for field in missing:
            with self.subTest(missing=field):
                body = seed_order()
                del body[field]
                doc = self.assertJsonError(self.wb(ORDERS, body), 400, "validation_error")
                self.assertIn(field, doc["message"])
        with self.subTest("malformed JSON"):
            self.assertJsonError(self.wb(ORDERS, b'{"externalUserId": '), 400, "validation_error")
        with self.subTest("not JSON"):
            self.assertJsonError(self.wb(ORDERS, b"a=1", content_type="application/x-www-form-urlencoded"),
                                 415, "unsupported_media_type")
        self.assertEqual(self.totals(), before)

    def test_method_size_and_media_type(self):
        before = self.totals()
        st, hdrs, raw = self.api("GET", ORDERS, token=None, headers={"X-Api-Key": self.api_key})
        self.assertJsonError((st, hdrs, raw), 405, "method_not_allowed")
        self.assertEqual(hdrs.get("Allow"), "POST")
        big = seed_order(padding="x" * (70 * 1024))   # over the default paygate_max_body_size (64k)
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends an oversized body", "nginx")
        self.assertJsonError(self.wb(ORDERS, big), 413, "payload_too_large")
        self.assertJsonError(self.wb(ORDERS, seed_order(), content_type="text/plain"), 415, "unsupported_media_type")
        self.assertEqual(self.totals(), before)

    def test_optional_payment_method_token(self):
        body = seed_order()
        del body["paymentMethodToken"]
        self.assertEqual(self.order(body), (200, {"status": "PROCESSING"}))


class ApiKeyTest(WhiteBirdTestCase):
    def assertRefused(self, key, headers=None):
        before = self.totals()
        body = seed_order()
        st, hdrs, raw = self.wb(ORDERS, body, key=key, headers=headers)
        self.assertJsonError((st, hdrs, raw), 401, "unauthorized")
        self.assertEqual(self.totals(), before)
        self.assertEqual(self.operations(body["externalOperationId"]), 0)

    def test_missing_wrong_and_client_token_are_refused(self):
        self.assertRefused(None)
        self.assertRefused("pgk_" + "0" * 64)
        self.assertRefused(self.api_key[:-1] + ("0" if self.api_key[-1] != "0" else "1"))
        self.assertRefused(self.token)   # a client token is not a partner key
        with self.subTest("a partner key is not a client token"):
            st, hdrs, raw = self.api("GET", f"{UNKNOWN_PAYMENT}/retrieve/status", token=self.api_key)
            self.assertJsonError((st, hdrs, raw), 403, "acces_error")

    def test_no_client_token_for_the_partner_client(self):
        res = self.stack.ctl("token", "create", "--client", "partner.whitebird", check=False)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("belong to partners", res.stderr)
        self.assertEqual(res.stdout, "")
        self.assertEqual(self.stack.psql("SELECT count(*) FROM api_tokens t JOIN clients c ON c.id = t.client_id"
                                         " WHERE c.name = 'partner.whitebird' AND t.partner IS NULL"), "0")

    def test_key_sent_twice_is_refused(self):
        before = self.totals()
        body = json.dumps(seed_order()).encode()
        sock = raw_request(self.stack.http_port,
                           b"POST " + ORDERS.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                           b"Content-Type: application/json\r\nX-Api-Key: " + self.api_key.encode() + b"\r\n"
                           b"X-Api-Key: " + self.api_key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                           b"\r\n\r\n" + body)
        try:
            st, hdrs, raw = read_response(sock, "POST")
        finally:
            sock.close()
        doc = self.assertJsonError((st, hdrs, raw), 401, "unauthorized")
        self.assertIn("exactly one", doc["message"])
        self.assertEqual(self.totals(), before)

    def test_revoked_key_is_refused_within_seconds(self):
        key = self.stack.create_partner_key("whitebird")
        self.wait_for_key(key, accepted=True)
        self.stack.revoke_partner_key("whitebird", key)
        self.wait_for_key(key, accepted=False, timeout=10)   # docs: refused within a second or so
        self.assertRefused(key)
        self.assertEqual(self.order(seed_order())[0], 200)   # the other key still works
        listed = self.stack.ctl("partner", "key", "list", "--partner", "whitebird").stdout
        self.assertIn(key[:8], listed)
        self.assertNotIn(key, listed)


class PrefixTest(WhiteBirdTestCase):
    """paygate_partner_api_prefix moves the partner routes; the default paths are then 404."""
    prefix = "/fiat/v2"
    nginx = {"paygate_partner_api_prefix": prefix}

    def test_routes_under_the_prefix(self):
        body = seed_order()
        self.assertEqual(self.order(body), (200, {"status": "PROCESSING"}))
        st, hdrs, raw = self.api("POST", ORDERS, body, token=None, headers={"X-Api-Key": self.api_key})
        self.assertJsonError((st, hdrs, raw), 404, "not_found")
        self.assertEqual(self.operations(body["externalOperationId"]), 1)

    def test_bad_prefixes_fail_nginx_t(self):
        for bad in ("partners", "/partners/", "/a?b", "/"):
            with self.subTest(prefix=bad):
                status, out = self.stack.check_nginx_conf(paygate_partner_api_prefix=bad)
                self.assertNotEqual(status, 0, out)
                self.assertIn("paygate_partner_api_prefix", out)
        status, out = self.stack.check_nginx_conf(paygate_partner_api_prefix="/fiat")
        self.assertEqual(status, 0, out)


if __name__ == "__main__":
    unittest.main()
