"""Payment API success paths (docs/api.md): every endpoint's exact response shape, both token
header spellings, and exact money (amounts as JSON numbers with the currency's exponent digits)."""

import http.client
import json
import re
import unittest
from datetime import datetime, timedelta, timezone

from e2e_base import (PAYMENT_API, TIMESTAMP_RE, TOO_LARGE_BODY, UUID_RE, PaymentStackTestCase, RawNumber,
                      check_answer, create_body, new_uuid, raw_request, read_response)


def parse_time(text: str) -> datetime:
    """An RFC 3339 UTC timestamp ("…T10:00:00.123456Z") as an aware datetime."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z", text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {text!r}")
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return base + timedelta(microseconds=int((m.group(2) or "0").ljust(9, "0")[:6]))


def raw_amount(raw: bytes):
    """The `amount` lexeme exactly as the response body writes it (b"1.50"), or None."""
    m = re.search(rb'"amount"\s*:\s*(-?[0-9][0-9.eE+-]*)\s*[,}]', raw)
    return m.group(1).decode() if m else None


class PaymentFlowTest(PaymentStackTestCase):
    """create, retrieve, status, edit, accept, cancel: 200 answers with exact bodies."""

    PAYMENT_KEYS = {"transaction_id", "sender", "recipcient", "currency", "amount", "captured_amount",
                    "refunded_amount", "status", "decline_reason", "created_at", "updated_at"}

    def test_create_answers_transaction_id(self):
        st, hdrs, raw = self.create()
        self.assertEqual(st, 200, raw)
        doc = self.assertJson(hdrs, raw)
        self.assertEqual(set(doc), {"transaction_id"}, doc)
        self.assertRegex(doc["transaction_id"], UUID_RE)
        self.assertRequestId(hdrs)
        # two creates are two payments
        self.assertNotEqual(self.create_payment(), doc["transaction_id"])

    def test_create_adds_one_row(self):
        before = self.payment_count()
        self.create_payment()
        self.assertEqual(self.payment_count(), before + 1)

    def test_retrieve_gives_every_field(self):
        pid = self.create_payment(currency="BTC", amount=RawNumber("1.0"), method_id="card-7781",
                                  recipient="merchant-42", sender="user-1001")
        st, hdrs, raw = self.retrieve(pid)
        self.assertEqual(st, 200, raw)
        doc = self.assertJson(hdrs, raw)
        self.assertEqual(set(doc), {"payment"}, doc)
        p = doc["payment"]
        self.assertEqual(set(p), self.PAYMENT_KEYS, p)
        self.assertEqual(p["transaction_id"], pid)
        self.assertEqual(p["sender"], {"user_id": "user-1001", "method_id": None})
        self.assertEqual(p["recipcient"], {"user_id": "merchant-42", "method_id": "card-7781"})
        self.assertEqual(p["currency"], "BTC")
        self.assertEqual(p["status"], "created")
        self.assertEqual(raw_amount(raw), "1.00000000", raw)
        # nothing captured or refunded yet, no decline: totals with the currency's digits too
        self.assertIn(b'"captured_amount":0.00000000,"refunded_amount":0.00000000,', raw)
        self.assertIsNone(p["decline_reason"])
        self.assertRegex(p["created_at"], TIMESTAMP_RE)
        self.assertRegex(p["updated_at"], TIMESTAMP_RE)
        self.assertEqual(p["created_at"], p["updated_at"])

    def test_retrieve_with_sender_method_id(self):
        pid = self.create_payment(sender_method_id="wallet:77.a_b-c")
        p, raw = self.retrieve_ok(pid)
        self.assertEqual(p["sender"], {"user_id": "user-1001", "method_id": "wallet:77.a_b-c"})
        self.assertEqual(raw_amount(raw), "12.50", raw)

    def test_status(self):
        pid = self.create_payment()
        st, hdrs, raw = self.api("GET", f"{pid}/retrieve/status")
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.assertJson(hdrs, raw), {"payment_status": "created"})

    def test_edit_replaces_money_info(self):
        pid = self.create_payment(currency="USD", amount="12.50", method_id="card-1")
        before, _ = self.retrieve_ok(pid)
        st, hdrs, raw = self.edit(pid, {"method_id": "card-2", "currency": "EUR",
                                        "amount": RawNumber("99.9")})
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.assertJson(hdrs, raw),
                         {"transaction_id": pid, "payment_status": "created"})
        after, raw = self.retrieve_ok(pid)
        self.assertEqual(after["currency"], "EUR")
        self.assertEqual(raw_amount(raw), "99.90", raw)
        self.assertEqual(after["recipcient"], {"user_id": "merchant-42", "method_id": "card-2"})
        self.assertEqual(after["sender"], before["sender"])
        self.assertEqual(after["status"], "created")
        self.assertEqual(after["created_at"], before["created_at"])
        self.assertGreater(parse_time(after["updated_at"]), parse_time(before["updated_at"]))
        # edit again: still created, money replaced again
        st, _, raw = self.edit(pid, {"method_id": "card-3", "currency": "JPY", "amount": 500})
        self.assertEqual(st, 200, raw)
        after, raw = self.retrieve_ok(pid)
        self.assertEqual((after["currency"], raw_amount(raw), after["recipcient"]["method_id"]),
                         ("JPY", "500", "card-3"))

    def test_accept_moves_to_bank_processing(self):
        pid = self.create_payment()
        st, hdrs, raw = self.accept(pid, {"terminal": "t-1", "nested": {"list": [1, "two", None]}})
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.assertJson(hdrs, raw),
                         {"transaction_id": pid, "payment_status": "bank_processing"})
        self.assertEqual(self.status_of(pid), "bank_processing")
        p, _ = self.retrieve_ok(pid)
        self.assertEqual(p["status"], "bank_processing")
        # accept_info is stored as given; the provider charge is queued with the transition
        stored = self.stack.psql(f"SELECT accept_info FROM payments WHERE id = '{pid}'")
        self.assertEqual(json.loads(stored),
                         {"terminal": "t-1", "nested": {"list": [1, "two", None]}})
        self.assertEqual(self.stack.psql(
            f"SELECT count(*) FROM tasks WHERE payment_id = '{pid}' AND kind = 'sky_technologies_integration_process_payment'"), "1")

    def test_accept_info_may_be_omitted_or_empty(self):
        for body in ({"idempotency_token": new_uuid()},
                     {"idempotency_token": new_uuid(), "accept_info": {}}):
            with self.subTest(body=body):
                pid = self.create_payment()
                st, hdrs, raw = self.accept(pid, body=body)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw),
                                 {"transaction_id": pid, "payment_status": "bank_processing"})
                self.assertEqual(self.status_of(pid), "bank_processing")
                stored = self.stack.psql(f"SELECT accept_info FROM payments WHERE id = '{pid}'")
                self.assertEqual(json.loads(stored), {})

    def test_accept_info_deeply_nested(self):
        info = {}   # accept_info 31 levels deep, the whole body 32
        for _ in range(30):
            info = {"a": info}
        pid = self.create_payment()
        st, hdrs, raw = self.accept(pid, info)
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.assertJson(hdrs, raw),
                         {"transaction_id": pid, "payment_status": "bank_processing"})
        # stored as given, all 31 levels
        stored = self.stack.psql(f"SELECT accept_info FROM payments WHERE id = '{pid}'")
        self.assertEqual(json.loads(stored), info)

    def test_cancel_with_each_reason(self):
        for reason in ("user_request", "merchant_request", "expired", "fraud_suspected", "other"):
            with self.subTest(reason=reason):
                pid = self.create_payment()
                st, hdrs, raw = self.cancel(pid, reason)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw),
                                 {"transaction_id": pid, "payment_status": "cancelled"})
                self.assertEqual(self.status_of(pid), "cancelled")
                self.assertEqual(self.retrieve_ok(pid)[0]["status"], "cancelled")

    def test_history_records_every_transition(self):
        """Every transition is a payment_events row: action, from/to status, actor, reason,
        the request's idempotency_token; cancel stores its reason on the payment too."""
        tokens = [new_uuid() for _ in range(3)]
        st, hdrs, raw = self.create(create_body(token=tokens[0]))
        self.assertEqual(st, 200, raw)
        pid = self.assertJson(hdrs, raw)["transaction_id"]
        self.assertEqual(self.edit(pid, body={"idempotency_token": tokens[1], "money_info": {
            "method_id": "m-2", "currency": "USD", "amount": "2.00"}})[0], 200)
        self.assertEqual(self.cancel(pid, body={"idempotency_token": tokens[2],
                                                "reason": "fraud_suspected"})[0], 200)
        rows = self.stack.psql(
            "SELECT action, coalesce(from_status, '-'), to_status, coalesce(reason, '-'), "
            f"idempotency_token, actor <> '' FROM payment_events WHERE payment_id = '{pid}' "
            "ORDER BY id").splitlines()
        self.assertEqual(rows, [f"create|-|created|-|{tokens[0]}|t",
                                f"edit|created|created|-|{tokens[1]}|t",
                                f"cancel|created|cancelled|fraud_suspected|{tokens[2]}|t"])
        self.assertEqual(self.stack.psql(
            f"SELECT status || ' ' || cancel_reason FROM payments WHERE id = '{pid}'"),
            "cancelled fraud_suspected")
        self.assertEqual(self.stack.psql(
            f"SELECT count(*) FROM tasks WHERE payment_id = '{pid}'"), "0")

    def test_walkthrough(self):
        """The make run walk-through: create, retrieve, status, edit, accept, status."""
        pid = self.create_payment(currency="USD", amount="12.50")
        p, raw = self.retrieve_ok(pid)
        self.assertEqual((p["status"], p["currency"], raw_amount(raw)), ("created", "USD", "12.50"))
        self.assertEqual(self.status_of(pid), "created")
        self.assertEqual(self.edit(pid, {"method_id": "card-7781", "currency": "EUR",
                                         "amount": RawNumber("9.99")})[0], 200)
        self.assertEqual(self.accept(pid, {"note": "demo"})[0], 200)
        self.assertEqual(self.status_of(pid), "bank_processing")
        p, raw = self.retrieve_ok(pid)
        self.assertEqual((p["status"], p["currency"], raw_amount(raw)),
                         ("bank_processing", "EUR", "9.99"))

    def test_both_token_header_spellings(self):
        for create_header, read_header in (("x_auth_token", "X-Auth-Token"),
                                           ("X-Auth-Token", "x_auth_token")):
            with self.subTest(create=create_header, read=read_header):
                st, hdrs, raw = self.api("POST", "create", create_body(), header=create_header)
                self.assertEqual(st, 200, raw)
                pid = self.assertJson(hdrs, raw)["transaction_id"]
                self.assertRegex(pid, UUID_RE)
                st, hdrs, raw = self.api("GET", f"{pid}/retrieve", header=read_header)
                self.assertEqual(st, 200, raw)
                p = self.assertJson(hdrs, raw)["payment"]
                self.assertEqual((p["transaction_id"], p["status"]), (pid, "created"))
                st, hdrs, raw = self.api("GET", f"{pid}/retrieve/status", header=read_header)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw), {"payment_status": "created"})
                st, hdrs, raw = self.edit(pid, header=read_header)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw), {"transaction_id": pid, "payment_status": "created"})
                st, hdrs, raw = self.accept(pid, header=create_header)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw),
                                 {"transaction_id": pid, "payment_status": "bank_processing"})
                pid2 = self.create_payment()
                st, hdrs, raw = self.cancel(pid2, header=read_header)
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.assertJson(hdrs, raw), {"transaction_id": pid2, "payment_status": "cancelled"})
                # the edit and the accept took effect, on this client's payment
                p, raw = self.retrieve_ok(pid)
                self.assertEqual((p["status"], p["currency"], raw_amount(raw)), ("bank_processing", "EUR", "3.00"))

    def test_json_content_type_parameters_allowed(self):
        for ctype in ("application/json; charset=utf-8", "application/json;charset=UTF-8",
                      "Application/JSON"):
            with self.subTest(content_type=ctype):
                st, hdrs, raw = self.api("POST", "create", create_body(), content_type=ctype)
                self.assertEqual(st, 200, raw)
                pid = self.assertJson(hdrs, raw)["transaction_id"]
                self.assertEqual(self.status_of(pid), "created")

    def test_idempotency_token_any_case_and_version(self):
        for token in (new_uuid().upper(),
                      "0b6f7a52-8c1e-1c1b-9f7e-2f4a1d3c5e6f",    # version 1
                      "0B6F7A52-8C1E-5C1B-9F7E-2F4A1D3C5E6F"):   # version 5, upper case
            with self.subTest(token=token):
                st, hdrs, raw = self.create(create_body(token=token))
                self.assertEqual(st, 200, raw)
                pid = self.assertJson(hdrs, raw)["transaction_id"]
                # the create event records this very token (a uuid column: lower-case)
                self.assertEqual(self.stack.psql(
                    f"SELECT idempotency_token FROM payment_events WHERE payment_id = '{pid}' "
                    "AND action = 'create'"), token.lower())

    def test_opaque_ids_charset_and_length(self):
        long_id = "a" * 128
        pid = self.create_payment(recipient=long_id, sender="A-Z.a_z:0-9", method_id="m" * 128)
        p, _ = self.retrieve_ok(pid)
        self.assertEqual(p["recipcient"], {"user_id": long_id, "method_id": "m" * 128})
        self.assertEqual(p["sender"]["user_id"], "A-Z.a_z:0-9")

    def test_chunked_body_and_keepalive(self):
        """A chunked create works; one keep-alive connection carries creates, a 400 and reads in
        turn, up to a 413 (after which nginx closes it); a new connection goes on."""
        self.stack.allow_log(TOO_LARGE_BODY, "one request carries a 65 KiB body", "nginx")
        body = self.encode(create_body())
        req = (b"POST /api/v1/payment/create HTTP/1.1\r\nHost: t\r\nx_auth_token: "
               + self.token.encode() + b"\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), 40):
            chunk = body[i:i + 40]
            req += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        sock = raw_request(self.stack.port, req + b"0\r\n\r\n")
        try:
            st, hdrs, raw = read_response(sock, "POST")
        finally:
            sock.close()
        self.assertEqual(st, 200, raw)
        pid = self.assertJson(hdrs, raw)["transaction_id"]

        self.assertEqual(self.status_of(pid), "created")

        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=15)
        try:
            headers = {"x_auth_token": self.token, "Content-Type": "application/json"}
            answers = []
            socks = []
            for method, path, payload in (
                    ("POST", f"{PAYMENT_API}/create", self.encode(create_body())),
                    ("POST", f"{PAYMENT_API}/create", b"{"),
                    ("GET", f"{PAYMENT_API}/{pid}/retrieve/status", None),
                    ("POST", f"{PAYMENT_API}/create", b" " * (65 * 1024)),
                    ("GET", f"{PAYMENT_API}/{pid}/retrieve", None),
                    ("POST", f"{PAYMENT_API}/{pid}/accept",
                     self.encode({"idempotency_token": new_uuid()}))):
                conn.request(method, path, body=payload, headers=headers)
                # http.client reconnects silently: count the sockets that carried the requests
                if conn.sock not in socks:
                    socks.append(conn.sock)
                resp = conn.getresponse()
                raw = resp.read()
                check_answer(method, path, resp.status, resp.headers, raw, "keep-alive")
                doc = json.loads(raw)
                answers.append((resp.status, doc.get("code") or doc.get("payment_status")
                                or doc.get("payment", {}).get("transaction_id")
                                or bool(UUID_RE.match(doc.get("transaction_id", ""))),
                                len(socks), resp.getheader("Connection")))
            # One connection carries the 200s, the daemon's 400 and the 413; nginx closes it after
            # a body it refused unread (its own client_max_body_size 413 turns keep-alive off), and
            # the next connection carries the rest.
            self.assertEqual(answers, [(200, True, 1, "keep-alive"), (400, "validation_error", 1, "keep-alive"),
                                       (200, "created", 1, "keep-alive"), (413, "payload_too_large", 1, "close"),
                                       (200, pid, 2, "keep-alive"), (200, "bank_processing", 2, "keep-alive")])
        finally:
            conn.close()

    def test_trailing_slash_is_not_significant(self):
        pid = self.create_payment()
        self.assertEqual(self.cancel(pid)[0], 200)   # a status the default could not fake
        st, hdrs, raw = self.api("GET", f"{PAYMENT_API}/{pid}/retrieve/status/")
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.assertJson(hdrs, raw), {"payment_status": "cancelled"})


class AmountExactnessTest(PaymentStackTestCase):
    """Amounts are decimals, never binary floats; responses carry exactly the exponent's digits."""

    def amount_of(self, pid: str) -> str:
        _, raw = self.retrieve_ok(pid)
        lexeme = raw_amount(raw)
        self.assertIsNotNone(lexeme, raw)
        return lexeme

    def test_amount_forms(self):
        cases = [
            ("USD", RawNumber("1.5"), "1.50"),
            ("USD", RawNumber("1.50"), "1.50"),
            ("USD", RawNumber("15e-1"), "1.50"),
            ("USD", RawNumber("0.15E1"), "1.50"),
            ("USD", "1.50", "1.50"),
            ("USD", "1.5", "1.50"),
            ("USD", 1, "1.00"),
            ("USD", "7", "7.00"),
            ("USD", RawNumber("1.500"), "1.50"),      # trailing zeros beyond the exponent
            ("USD", RawNumber("0.01"), "0.01"),
            ("JPY", 150, "150"),
            ("JPY", "150", "150"),
            ("JPY", RawNumber("1.5e2"), "150"),
            ("BTC", RawNumber("1.0"), "1.00000000"),
            ("BTC", RawNumber("0.00000001"), "0.00000001"),
            ("KWD", "1.5", "1.500"),
            ("CLF", 1, "1.0000"),
            ("USDT", RawNumber("0.000001"), "0.000001"),
            ("ETH", RawNumber("0.000000000000000001"), "0.000000000000000001"),
            ("USD", "999999999999999.99", "999999999999999.99"),
        ]
        for currency, amount, expected in cases:
            with self.subTest(currency=currency, amount=amount):
                st, hdrs, raw = self.create(currency=currency, amount=amount)
                self.assertEqual(st, 200, raw)
                pid = self.assertJson(hdrs, raw)["transaction_id"]
                self.assertEqual(self.amount_of(pid), expected)

    def test_point_one_then_edits(self):
        pid = self.create_payment(currency="USD", amount=RawNumber("0.1"))
        self.assertEqual(self.amount_of(pid), "0.10")
        self.assertEqual(self.stack.psql(f"SELECT amount_minor FROM payments WHERE id = '{pid}'"), "10")
        for amount, expected in (("0.30", "0.30"), (RawNumber("0.2"), "0.20"),
                                 (RawNumber("0.7"), "0.70"), ("0.1", "0.10")):
            with self.subTest(amount=amount):
                st, _, raw = self.edit(pid, {"method_id": "card-1", "currency": "USD",
                                             "amount": amount})
                self.assertEqual(st, 200, raw)
                self.assertEqual(self.amount_of(pid), expected)

    def test_eth_18_decimals_round_trip(self):
        for amount in (RawNumber("1.000000000000000001"), "1.000000000000000001"):
            with self.subTest(amount=amount):
                pid = self.create_payment(currency="ETH", amount=amount)
                self.assertEqual(self.amount_of(pid), "1.000000000000000001")
                self.assertEqual(self.stack.psql(
                    f"SELECT amount_minor FROM payments WHERE id = '{pid}'"), "1000000000000000001")
        # the largest ETH amount: 15 integer digits + 18 decimals (more than 64 bits of wei)
        big = "999999999999999.999999999999999999"
        pid = self.create_payment(currency="ETH", amount=RawNumber(big))
        self.assertEqual(self.amount_of(pid), big)
        # edit keeps exactness too
        st, _, raw = self.edit(pid, {"method_id": "w", "currency": "ETH",
                                     "amount": "123456789012345.123456789012345678"})
        self.assertEqual(st, 200, raw)
        self.assertEqual(self.amount_of(pid), "123456789012345.123456789012345678")


if __name__ == "__main__":
    unittest.main()
