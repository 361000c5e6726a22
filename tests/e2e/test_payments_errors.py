"""Payment API errors (docs/api.md): every code with its status, and that a rejected request
changes nothing (a rejected create adds no row; a rejected mutation leaves retrieve unchanged)."""

import copy
import json
import unittest

from e2e_base import (PAYMENT_API, TOO_LARGE_BODY, UNKNOWN_PAYMENT, PaymentStackTestCase, RawNumber, create_body,
                      new_uuid, padded_json)

DELETE = object()


def with_field(base: dict, path: str, value) -> dict:
    """A copy of `base` with the dotted `path` set to `value` (DELETE removes it)."""
    body = copy.deepcopy(base)
    node = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return body


def create_with(path: str, value, **kw) -> dict:
    return with_field(create_body(**kw), path, value)


def valid_create_json() -> str:
    return json.dumps(create_body())


# (label, body) pairs; every one must be 400 validation_error and add no row.
def create_validation_cases():
    token = new_uuid()
    dup = ('{"idempotency_token": "%s", "idempotency_token": "%s", '
           '"money_info": {"method_id": "m", "currency": "USD", "amount": "1.00"}, '
           '"recipcient": {"recipcient_id": "r"}, "sender": {"sender_id": "s"}}' % (token, new_uuid()))
    dup_inner = ('{"idempotency_token": "%s", '
                 '"money_info": {"method_id": "m", "currency": "USD", "amount": "1.00", "amount": "2.00"}, '
                 '"recipcient": {"recipcient_id": "r"}, "sender": {"sender_id": "s"}}' % new_uuid())
    bad_utf8 = valid_create_json().replace("user-1001", "user-\udcff").encode("utf-8", "surrogateescape")
    cases = [
        # malformed JSON
        ("empty body", b""),
        ("not JSON", b"not json"),
        ("truncated JSON", valid_create_json()[:-5].encode()),
        ("trailing garbage", (valid_create_json() + " x").encode()),
        ("two documents", (valid_create_json() + valid_create_json()).encode()),
        ("single quotes", valid_create_json().replace('"', "'").encode()),
        ("trailing comma", valid_create_json()[:-1].encode() + b", }"),
        ("top-level array", b"[]"),
        ("top-level string", b'"create"'),
        ("top-level null", b"null"),
        ("empty object", b"{}"),
        ("duplicate key", dup.encode()),
        ("duplicate key in money_info", dup_inner.encode()),
        ("invalid UTF-8", bad_utf8),
        ("byte order mark", b"\xef\xbb\xbf" + valid_create_json().encode()),
        ("deeply nested arrays", b"[" * 30000 + b"]" * 30000),
        ("deeply nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("lone surrogate escape", valid_create_json().replace("user-1001", "\\ud800").encode()),
        # wrong types
        ("idempotency_token number", create_with("idempotency_token", 123)),
        ("idempotency_token null", create_with("idempotency_token", None)),
        ("money_info string", create_with("money_info", "USD 1.00")),
        ("money_info array", create_with("money_info", [])),
        ("amount true", create_with("money_info.amount", True)),
        ("amount null", create_with("money_info.amount", None)),
        ("amount object", create_with("money_info.amount", {"value": 1})),
        ("amount array", create_with("money_info.amount", [1])),
        ("currency number", create_with("money_info.currency", 840)),
        ("method_id number", create_with("money_info.method_id", 7781)),
        ("recipcient string", create_with("recipcient", "merchant-42")),
        ("recipcient_id number", create_with("recipcient.recipcient_id", 42)),
        ("sender null", create_with("sender", None)),
        ("sender_id number", create_with("sender.sender_id", 1001)),
        ("sender.method_id number", create_with("sender.method_id", 5)),
        # missing fields
        ("missing idempotency_token", create_with("idempotency_token", DELETE)),
        ("missing money_info", create_with("money_info", DELETE)),
        ("missing recipcient", create_with("recipcient", DELETE)),
        ("missing sender", create_with("sender", DELETE)),
        ("missing money_info.method_id", create_with("money_info.method_id", DELETE)),
        ("missing money_info.currency", create_with("money_info.currency", DELETE)),
        ("missing money_info.amount", create_with("money_info.amount", DELETE)),
        ("missing recipcient_id", create_with("recipcient.recipcient_id", DELETE)),
        ("missing sender_id", create_with("sender.sender_id", DELETE)),
        # unknown fields
        ("unknown top-level field", create_with("extra", 1)),
        ("unknown money_info field", create_with("money_info.amont", "1.00")),
        ("unknown recipcient field", create_with("recipcient.name", "Bob")),
        ("unknown sender field", create_with("sender.email", "a@example.com")),
        # bad idempotency_token
        ("idempotency_token not a UUID", create_with("idempotency_token", "not-a-uuid")),
        ("idempotency_token empty", create_with("idempotency_token", "")),
        ("idempotency_token too short", create_with("idempotency_token", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6")),
        ("idempotency_token too long", create_with("idempotency_token", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f0")),
        ("idempotency_token no hyphens", create_with("idempotency_token", "0b6f7a528c1e4c1b9f7e2f4a1d3c5e6f")),
        ("idempotency_token braces", create_with("idempotency_token", "{0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f}")),
        ("idempotency_token non-hex", create_with("idempotency_token", "0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6g")),
        ("idempotency_token spaces", create_with("idempotency_token", " 0b6f7a52-8c1e-4c1b-9f7e-2f4a1d3c5e6f")),
        # bad amounts
        ("amount 0", create_with("money_info.amount", 0)),
        ("amount '0'", create_with("money_info.amount", "0")),
        ("amount 0.00", create_with("money_info.amount", RawNumber("0.00"))),
        ("amount -1", create_with("money_info.amount", -1)),
        ("amount -1.50", create_with("money_info.amount", RawNumber("-1.50"))),
        ("amount '-1.50'", create_with("money_info.amount", "-1.50")),
        ("amount -0", create_with("money_info.amount", RawNumber("-0"))),
        ("USD amount 1.001", create_with("money_info.amount", RawNumber("1.001"))),
        ("USD amount '1.001'", create_with("money_info.amount", "1.001")),
        ("USD amount 1e-3", create_with("money_info.amount", RawNumber("1e-3"))),
        ("JPY amount 1.5", create_with("money_info.amount", RawNumber("1.5"), currency="JPY")),
        ("BTC amount 9 decimals", create_with("money_info.amount", "0.000000001", currency="BTC")),
        ("ETH amount 19 decimals", create_with("money_info.amount", RawNumber("1.0000000000000000001"),
                                              currency="ETH")),
        ("amount 16 integer digits", create_with("money_info.amount", RawNumber("1000000000000000"))),
        ("amount '1000000000000000.00'", create_with("money_info.amount", "1000000000000000.00")),
        ("amount 1e15", create_with("money_info.amount", RawNumber("1e15"))),
        ("amount 1e400", create_with("money_info.amount", RawNumber("1e400"))),
        ("amount huge exponent", create_with("money_info.amount", RawNumber("1e99999999999999999999"))),
        ("amount huge negative exponent",
         create_with("money_info.amount", RawNumber("1e-99999999999999999999"))),
        ("amount exponent 2^31", create_with("money_info.amount", RawNumber("1e2147483648"))),
        ("amount 0e99999999999", create_with("money_info.amount", RawNumber("0e99999999999"))),
        ("amount 60000 digits", create_with("money_info.amount", RawNumber("1" + "0" * 60000))),
        ("amount string '.5'", create_with("money_info.amount", ".5")),
        ("amount string '1.'", create_with("money_info.amount", "1.")),
        ("amount string with exponent", create_with("money_info.amount", "1e3")),
        ("amount string with spaces", create_with("money_info.amount", " 1.00")),
        ("amount string with comma", create_with("money_info.amount", "1,00")),
        ("amount string with plus", create_with("money_info.amount", "+1.00")),
        ("amount 'NaN'", create_with("money_info.amount", "NaN")),
        ("amount 'Infinity'", create_with("money_info.amount", "Infinity")),
        ("amount empty string", create_with("money_info.amount", "")),
        ("amount hex string", create_with("money_info.amount", "0x10")),
        ("amount string with two dots", create_with("money_info.amount", "1.0.0")),
        # bad currency
        ("unknown currency ABC", create_with("money_info.currency", "ABC")),
        ("lowercase currency usd", create_with("money_info.currency", "usd")),
        ("mixed-case currency Usd", create_with("money_info.currency", "Usd")),
        ("currency too short", create_with("money_info.currency", "US")),
        ("currency empty", create_with("money_info.currency", "")),
        ("currency with space", create_with("money_info.currency", "USD ")),
        # bad opaque ids
        ("recipcient_id empty", create_with("recipcient.recipcient_id", "")),
        ("recipcient_id 129 chars", create_with("recipcient.recipcient_id", "a" * 129)),
        ("recipcient_id e-mail", create_with("recipcient.recipcient_id", "john@example.com")),
        ("sender_id with space", create_with("sender.sender_id", "John Smith")),
        ("sender_id card number", create_with("sender.sender_id", "4111 1111 1111 1111")),
        ("sender_id non-ASCII", create_with("sender.sender_id", "j\u00fcrgen")),
        ("method_id empty", create_with("money_info.method_id", "")),
        ("method_id with slash", create_with("money_info.method_id", "card/1")),
        ("sender.method_id with space", create_with("sender.method_id", "my card")),
    ]
    return cases


class CreateValidationTest(PaymentStackTestCase):

    def test_create_validation_errors_add_no_row(self):
        cases = create_validation_cases()
        before = self.payment_count()
        last_event = self.stack.psql("SELECT coalesce(max(id), 0) FROM payment_events")
        for label, body in cases:
            with self.subTest(case=label):
                doc = self.assertJsonError(self.api("POST", "create", body), 400, "validation_error")
                for leak in ("Traceback", "SELECT", "INSERT", "ERROR:", "pgt_", self.token[4:]):
                    self.assertNotIn(leak, doc["message"])
        added = self.payment_count() - before
        if added:
            # name the culprits by the idempotency_token their creation event recorded
            tokens = self.stack.psql(f"SELECT idempotency_token FROM payment_events "
                                     f"WHERE id > {last_event} AND action = 'create'").split()
            culprits = [label for label, body in cases for t in tokens
                        if t.encode() in self.encode(body).lower()]
            self.fail(f"{added} rejected creates added a payment: {culprits or tokens}")

    def test_validation_message_names_the_field(self):
        doc = self.assertJsonError(self.create(create_with("money_info.amount", 0)), 400,
                                   "validation_error")
        self.assertEqual(doc["message"], "money_info.amount: must be greater than zero")
        doc = self.assertJsonError(self.create(create_with("money_info.currency", "usd")), 400,
                                   "validation_error")
        self.assertTrue(doc["message"].startswith('money_info.currency: unknown currency "usd"'), doc)


class MutationValidationTest(PaymentStackTestCase):
    """edit / cancel / accept bodies and payment ids in paths: 400 validation_error, no change."""

    def setUp(self):
        super().setUp()
        self.pid = self.create_payment(currency="USD", amount="12.50")
        self.before = self.snapshot(self.pid)

    def edit_body(self, **money):
        m = {"method_id": "card-2", "currency": "USD", "amount": "5.00"}
        m.update(money)
        return {"idempotency_token": new_uuid(), "money_info": m}

    def check_rejected(self, cases, action: str):
        for label, body in cases:
            with self.subTest(action=action, case=label):
                self.assertJsonError(self.api("POST", f"{self.pid}/{action}", body), 400,
                                     "validation_error")
                self.assertUnchanged(self.pid, self.before, f"({action}: {label})")

    def test_edit_validation_errors(self):
        good = self.edit_body   # a fresh idempotency_token for every case
        cases = [
            ("not JSON", b"{"),
            ("top-level array", b"[]"),
            ("missing idempotency_token", with_field(good(), "idempotency_token", DELETE)),
            ("bad idempotency_token", with_field(good(), "idempotency_token", "123")),
            ("missing money_info", with_field(good(), "money_info", DELETE)),
            ("money_info not an object", with_field(good(), "money_info", "x")),
            ("unknown top-level field", with_field(good(), "reason", "other")),
            ("unknown money_info field", with_field(good(), "money_info.note", "x")),
            ("missing amount", with_field(good(), "money_info.amount", DELETE)),
            ("missing currency", with_field(good(), "money_info.currency", DELETE)),
            ("missing method_id", with_field(good(), "money_info.method_id", DELETE)),
            ("amount 0", self.edit_body(amount=0)),
            ("amount negative", self.edit_body(amount=RawNumber("-5"))),
            ("amount over-precise", self.edit_body(amount="5.001")),
            ("amount too large", self.edit_body(amount=RawNumber("1234567890123456"))),
            ("amount wrong type", self.edit_body(amount=[5])),
            ("unknown currency", self.edit_body(currency="XYZ")),
            ("lowercase currency", self.edit_body(currency="eur")),
            ("bad method_id", self.edit_body(method_id="a b")),
        ]
        self.check_rejected(cases, "edit")

    def test_cancel_validation_errors(self):
        def body(**kw):
            b = {"idempotency_token": new_uuid(), "reason": "user_request"}
            b.update(kw)
            return b
        cases = [
            ("not JSON", b"reason=user_request"),
            ("missing idempotency_token", with_field(body(), "idempotency_token", DELETE)),
            ("bad idempotency_token", body(idempotency_token="zz")),
            ("missing reason", with_field(body(), "reason", DELETE)),
            ("unknown reason", body(reason="because")),
            ("upper-case reason", body(reason="USER_REQUEST")),
            ("reason with space", body(reason="user request")),
            ("empty reason", body(reason="")),
            ("reason number", body(reason=1)),
            ("reason null", body(reason=None)),
            ("unknown field", body(comment="x")),
        ]
        self.check_rejected(cases, "cancel")

    def test_accept_validation_errors(self):
        deep = {}
        for _ in range(40):
            deep = {"a": deep}

        def body(**kw):
            b = {"idempotency_token": new_uuid(), "accept_info": {}}
            b.update(kw)
            return b
        cases = [
            ("not JSON", b"{]"),
            ("missing idempotency_token", {"accept_info": {}}),
            ("bad idempotency_token", body(idempotency_token=new_uuid()[:-1])),
            ("accept_info string", body(accept_info="ok")),
            ("accept_info array", body(accept_info=[])),
            ("accept_info number", body(accept_info=1)),
            ("accept_info too deep", body(accept_info=deep)),
            ("unknown field", body(money_info={})),
        ]
        self.check_rejected(cases, "accept")

    def test_accept_info_values_postgres_cannot_store_are_not_internal_errors(self):
        """accept_info is "any JSON object ... stored as given" (api.md), and every bad input gets
        a clear 4xx: a JSON value PostgreSQL's jsonb cannot hold as given (\\u0000 in a string or
        key, a number outside numeric's range) is refused with 400 validation_error naming
        accept_info, never a 500 (nor stored altered), and the refusal changes nothing."""
        for label, info, message in (
                ("\\u0000 in a string", '{"note": "a\\u0000b"}', "accept_info: text must not contain U+0000"),
                ("\\u0000 in a key", '{"\\u0000": 1}', "accept_info: keys must not contain U+0000"),
                ("number 1e999999", '{"n": 1e999999}',
                 "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude"),
                ("number 1e-999999", '{"n": 1e-999999}',
                 "accept_info: numbers must lie within 1e-300 and 1e300 in magnitude"),
                # numeric bounds the number as written (fuzz_payment_body found the first one)
                ("number 0e-3505550503", '{"n": 0e-3505550503}',
                 "accept_info: number exponents may be at most 16000 in magnitude"),
                ("number 1.000... (16384 zeros)", '{"n": 1.%s}' % ("0" * 16384),
                 "accept_info: numbers may have at most 16000 fraction digits (as written, counting the exponent)")):
            with self.subTest(case=label):
                pid = self.create_payment()
                before = self.snapshot(pid)
                body = '{"idempotency_token": "%s", "accept_info": %s}' % (new_uuid(), info)
                doc = self.assertJsonError(self.api("POST", f"{pid}/accept", body), 400, "validation_error")
                self.assertEqual(doc["message"], message)
                self.assertUnchanged(pid, before, f"(accept_info with {label})")

    def test_bad_payment_id_in_path(self):
        # malformed spellings of this test's own payment: a lenient parser (prefix, no hyphens,
        # braces) would reach it, and the cancel/edit/accept below would change it
        pid = self.pid
        bad_ids = ["not-a-uuid", "1234", pid[:-1], pid + "0", pid.replace("-", ""), pid[:-1] + "g",
                   "%7B" + pid + "%7D"]
        for bad in bad_ids:
            for method, suffix, body in (
                    ("GET", "retrieve", None),
                    ("GET", "retrieve/status", None),
                    ("POST", "cancel", {"idempotency_token": new_uuid(), "reason": "other"}),
                    ("POST", "edit", self.edit_body()),
                    ("POST", "accept", {"idempotency_token": new_uuid(), "accept_info": {}})):
                with self.subTest(id=bad, route=suffix):
                    self.assertJsonError(self.api(method, f"{bad}/{suffix}", body), 400,
                                         "validation_error")
        self.assertUnchanged(self.pid, self.before)


class InvalidStateTest(PaymentStackTestCase):
    """Actions the state machine refuses: 400 invalid_state, nothing changes."""

    def refused(self, pid: str, before: bytes, action: str, call, status: str):
        with self.subTest(action=action):
            doc = self.assertJsonError(call(pid), 400, "invalid_state")
            verb = action.split()[0]
            self.assertEqual(doc["message"], f"payment {pid} is {status}: {verb} is not allowed")
            self.assertUnchanged(pid, before, f"({action})")

    def test_nothing_but_reads_while_bank_processing(self):
        pid = self.create_payment()
        self.assertEqual(self.accept(pid)[0], 200)
        before = self.snapshot(pid)
        self.refused(pid, before, "edit", self.edit, "bank_processing")
        self.refused(pid, before, "cancel", self.cancel, "bank_processing")
        self.refused(pid, before, "accept again", self.accept, "bank_processing")
        self.assertEqual(self.status_of(pid), "bank_processing")

    def test_nothing_after_cancel(self):
        pid = self.create_payment()
        self.assertEqual(self.cancel(pid)[0], 200)
        before = self.snapshot(pid)
        self.refused(pid, before, "edit", self.edit, "cancelled")
        self.refused(pid, before, "accept", self.accept, "cancelled")
        self.refused(pid, before, "cancel again", lambda p: self.cancel(p, "other"), "cancelled")
        self.assertEqual(self.status_of(pid), "cancelled")


class NotFoundAndProtocolTest(PaymentStackTestCase):
    """404 unknown payment / route, 405, 413, 415."""

    def test_unknown_payment_is_404_with_exact_message(self):
        pid = new_uuid()
        for method, suffix, body in (
                ("GET", "retrieve", None),
                ("GET", "retrieve/status", None),
                ("POST", "cancel", {"idempotency_token": new_uuid(), "reason": "other"}),
                ("POST", "edit", {"idempotency_token": new_uuid(),
                                  "money_info": {"method_id": "m", "currency": "USD", "amount": "1.00"}}),
                ("POST", "accept", {"idempotency_token": new_uuid(), "accept_info": {}}),
                ("POST", "extra_charge", {"idempotency_token": new_uuid(), "amount": "1.00"}),
                ("POST", "refund", {"idempotency_token": new_uuid(), "amount": "1.00"})):
            with self.subTest(route=suffix):
                doc = self.assertJsonError(self.api(method, f"{pid}/{suffix}", body), 404,
                                           "not_found")
                self.assertEqual(doc["message"], f"payment {pid} not found")

    def test_unknown_route_is_404(self):
        pid = self.create_payment()
        before = self.snapshot(pid)
        sender = "unknown-route-" + new_uuid()[:8]
        for method, path in (("POST", f"{PAYMENT_API}/{pid}/capture"),
                             ("GET", f"{PAYMENT_API}/{pid}"),
                             ("GET", f"{PAYMENT_API}/{pid}/retrieve/history"),
                             ("GET", PAYMENT_API),
                             ("POST", "/api/v1/payments/create"),
                             ("POST", "/api/v2/payment/create")):
            with self.subTest(method=method, path=path):
                body = create_body(sender=sender) if method == "POST" else None
                doc = self.assertJsonError(self.api(method, path, body), 404, "not_found")
                self.assertEqual(doc["message"], "no such route")
        # a valid create body on an unknown route creates nothing; the payment in the path is untouched
        self.assertEqual(self.stack.psql(f"SELECT count(*) FROM payments WHERE sender_id = '{sender}'"), "0")
        self.assertUnchanged(pid, before)

    def test_wrong_method_is_405_with_allow(self):
        pid = self.create_payment()
        before = self.snapshot(pid)
        for method, suffix, allow in (("GET", "create", "POST"),
                                      ("PUT", "create", "POST"),
                                      ("POST", f"{pid}/retrieve", "GET"),
                                      ("DELETE", f"{pid}/retrieve", "GET"),
                                      ("POST", f"{pid}/retrieve/status", "GET"),
                                      ("GET", f"{pid}/cancel", "POST"),
                                      ("GET", f"{pid}/edit", "POST"),
                                      ("GET", f"{pid}/accept", "POST"),
                                      ("PATCH", f"{pid}/edit", "POST")):
            with self.subTest(method=method, path=suffix):
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                resp = self.api(method, suffix, body)
                self.assertJsonError(resp, 405, "method_not_allowed")
                self.assertEqual([m.strip() for m in resp[1].get("Allow", "").split(",")], [allow])
        self.assertUnchanged(pid, before)

    def padded(self, body: dict, size: int) -> bytes:
        return padded_json(body, size)

    def test_body_over_64k_is_413(self):
        self.stack.allow_log(TOO_LARGE_BODY, "the test sends oversized bodies", "nginx")
        before_count = self.payment_count()
        big = self.padded(create_body(), 64 * 1024 + 1)
        self.assertJsonError(self.api("POST", "create", big), 413, "payload_too_large")
        self.assertEqual(self.payment_count(), before_count)
        pid = self.create_payment()
        before = self.snapshot(pid)
        for action, body in (("edit", {"idempotency_token": new_uuid(),
                                       "money_info": {"method_id": "m", "currency": "USD",
                                                      "amount": "1.00"}}),
                             ("accept", {"idempotency_token": new_uuid(), "accept_info": {}}),
                             ("cancel", {"idempotency_token": new_uuid(), "reason": "other"})):
            with self.subTest(action=action):
                self.assertJsonError(self.api("POST", f"{pid}/{action}",
                                              self.padded(body, 100 * 1024)),
                                     413, "payload_too_large")
                self.assertUnchanged(pid, before, f"({action} with 100 KiB body)")

    def test_body_of_exactly_64k_is_accepted(self):
        sender = "exactly-64k-" + new_uuid()[:8]
        st, hdrs, raw = self.api("POST", "create", self.padded(create_body(sender=sender), 64 * 1024))
        self.assertEqual(st, 200, raw)
        pid = self.assertJson(hdrs, raw)["transaction_id"]
        self.assertEqual(self.stack.psql(f"SELECT id FROM payments WHERE sender_id = '{sender}'"), pid)

    def test_non_json_content_type_is_415(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                      "text/json", None):
            with self.subTest(content_type=ctype):
                before = self.payment_count()
                self.assertJsonError(self.api("POST", "create", json.dumps(create_body()),
                                              content_type=ctype),
                                     415, "unsupported_media_type")
                self.assertEqual(self.payment_count(), before)
        pid = self.create_payment()
        before = self.snapshot(pid)
        for action, body in (("edit", {"idempotency_token": new_uuid(),
                                       "money_info": {"method_id": "m", "currency": "USD",
                                                      "amount": "1.00"}}),
                             ("accept", {"idempotency_token": new_uuid(), "accept_info": {}}),
                             ("cancel", {"idempotency_token": new_uuid(), "reason": "other"})):
            with self.subTest(action=action):
                self.assertJsonError(self.api("POST", f"{pid}/{action}", json.dumps(body),
                                              content_type="text/plain"),
                                     415, "unsupported_media_type")
                self.assertUnchanged(pid, before, f"({action} as text/plain)")


if __name__ == "__main__":
    unittest.main()
