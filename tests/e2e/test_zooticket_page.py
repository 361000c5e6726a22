"""The ZooTicket hosted payment page (confirmation_url) in a real browser: Debian's chromium driven
by chromedriver + python3-selenium (tests/e2e/zooticket_browser.py, run with /usr/bin/python3).
Pay -> the sky-technologies sandbox charges once -> the browser lands on return_url; cancel ->
cancel_url; an expired link says so. The shop is a small HTTP server on loopback here."""

import http.server
import json
import socket
import subprocess
import threading
import unittest
from pathlib import Path

from e2e_base import PaymentStackTestCase
from stack import wait_until
from test_zooticket_sessions import SESSIONS, seed_body

BROWSER = Path(__file__).resolve().parent / "zooticket_browser.py"


class Shop(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        text = b"<!DOCTYPE html><html lang='en'><title>shop</title><h1>Shop: " + self.path.encode() + b"</h1></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args):
        pass


class PageTestBase(PaymentStackTestCase):
    clients = ("alice",)

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.shop = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
        cls.shop_url = f"http://127.0.0.1:{cls.shop.server_address[1]}"
        threading.Thread(target=cls.shop.serve_forever, daemon=True).start()
        cls.jwt = cls.shared_stack.mint_merchant_jwt()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.shop.shutdown()
        cls.shop.server_close()
        super().tearDownClass()

    def new_session(self, name: str) -> dict:
        body = seed_body(f"page-{name}")
        body["confirmation"] = {"type": "redirect", "return_url": f"{self.shop_url}/success?order={name}",
                                "cancel_url": f"{self.shop_url}/cancel?order={name}"}
        st, _, raw = self.stack.http("POST", SESSIONS, body=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.jwt}",
                                              "Content-Type": "application/json"})
        self.assertEqual(st, 201, raw)
        data = json.loads(raw)["data"]
        # The link's token is a credential: no log of the stack may show it (the module masks it
        # in $uri and the request line; Stack's log check greps every log at teardown).
        self.stack.register_secret(data["confirmation_url"].rsplit("/", 1)[1], "a payment page link's token")
        return data

    def payment(self, payment_id: str) -> dict:
        st, _, raw = self.stack.http("GET", f"/v1/payments/{payment_id}",
                                     headers={"Authorization": f"Bearer {self.jwt}"})
        self.assertEqual(st, 200, raw)
        return json.loads(raw)["data"]

    def browse(self, *args) -> dict:
        res = subprocess.run(["/usr/bin/python3", str(BROWSER), *args], capture_output=True, text=True, timeout=180)
        self.assertEqual(res.returncode, 0, res.stderr[-3000:])
        return json.loads(res.stdout.strip().splitlines()[-1])

    def assertOwnOrigin(self, page: dict):
        origin = f"http://127.0.0.1:{self.stack.http_port}/"
        for resource in page["resources"]:
            self.assertTrue(resource.startswith(origin), f"third-party resource {resource}")


class PageTest(PageTestBase):
    with_sandbox = True

    def test_pay_in_the_browser_lands_on_return_url(self):
        session = self.new_session("pay")
        out = self.browse("pay", session["confirmation_url"], f"{self.shop_url}/success?order=pay", "apple_pay")
        page = out["page"]
        self.assertEqual(page["lang"], "en")
        self.assertEqual(page["h1"], "Pay for your order")
        self.assertEqual(page["description"], "Билеты в зоопарк на 25.10.2024")
        self.assertEqual(page["total"], "2500.00 RUB")
        self.assertRegex(page["time-left"], r"^Time left to pay: 1[0-4] min \d+ s$")
        self.assertEqual(page["labels"], {"bank_card": "Bank card", "apple_pay": "Apple Pay"})
        self.assertOwnOrigin(page)
        self.assertEqual(out["checked"], "apple_pay")   # chosen by its label
        self.assertFalse(out.get("timeout"), out)
        self.assertEqual(out["final_url"], f"{self.shop_url}/success?order=pay")
        paid = self.payment(session["payment_id"])
        self.assertEqual((paid["status"], paid["payment_method"]), ("succeeded", "apple_pay"))
        self.assertIsNotNone(paid["captured_at"])
        # Charged exactly once, at the sandbox, for the session's amount.
        core = self.stack.psql(f"SELECT core_payment_id FROM zooticket_payments WHERE payment_id = '{session['payment_id']}'")
        ledger = self.stack.sandbox_get("/_sandbox/ledger")
        charges = [o for o in ledger["operations"] if o["payment_id"] == core and o["operation"] == "payment"]
        self.assertEqual(len(charges), 1, ledger)
        self.assertEqual(self.stack.psql(
            f"SELECT count(*) || ' ' || min(state) FROM provider_operations WHERE payment_id = '{core}' AND kind = 'charge'"),
            "1 completed")
        # The link is spent: opening it again goes to return_url, a second pay changes nothing.
        st, headers, _ = self.stack.http("GET", session["confirmation_url"].split(str(self.stack.http_port), 1)[1])
        self.assertEqual((st, headers.get("Location")), (303, f"{self.shop_url}/success?order=pay"))

    def test_cancel_in_the_browser_lands_on_cancel_url(self):
        session = self.new_session("cancel")
        out = self.browse("cancel", session["confirmation_url"], f"{self.shop_url}/cancel?order=cancel")
        self.assertFalse(out.get("timeout"), out)
        self.assertEqual(out["final_url"], f"{self.shop_url}/cancel?order=cancel")
        self.assertEqual(self.payment(session["payment_id"])["status"], "cancelled")
        self.assertEqual(self.stack.psql(
            "SELECT cancel_reason FROM payments WHERE id = (SELECT core_payment_id FROM zooticket_payments"
            f" WHERE payment_id = '{session['payment_id']}')"), "user_request")

    def test_page_over_http(self):
        session = self.new_session("http")
        path = session["confirmation_url"].split(str(self.stack.http_port), 1)[1]
        st, headers, body = self.stack.http("GET", path)
        self.assertEqual(st, 200, body[:300])
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"))
        self.assertIn("default-src 'none'", headers.get("Content-Security-Policy", ""))
        self.assertEqual(headers.get("Referrer-Policy"), "no-referrer")
        self.assertEqual(headers.get("Cache-Control"), "no-store")
        self.assertNotIn(b"<script", body)
        self.assertNotIn(b"visitor@example.com", body)
        # A method the session does not offer: the page again, with the error, nothing accepted.
        st, _, body = self.stack.http("POST", path + "/pay", body=b"method=sbp",
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 422, body[:300])
        self.assertIn(b'role="alert"', body)
        self.assertEqual(self.payment(session["payment_id"])["status"], "pending")
        # The access log shows the link by its first 6 characters only.
        token = path.rsplit("/", 1)[1]
        access_log = (self.stack.nginxes["nginx"].prefix / "logs" / "access.log")
        wait_until(lambda: f"/pay/{token[:6]}***/pay " in access_log.read_text(), 5, "the masked access log line")
        # Unknown and malformed tokens.
        for bad in ("/pay/" + "A" * 43, "/pay/short", "/pay/" + "A" * 42 + "%2F"):
            st, _, body = self.stack.http("GET", bad)
            self.assertEqual(st, 404, bad)
            self.assertIn(b"This payment link is not valid", body)


class PageExpiryTest(PageTestBase):
    daemon_config = {"zooticket_session_lifetime_s": "5", "task_workers": "2"}

    def test_expired_link_says_so(self):
        session = self.new_session("expired")
        core = self.stack.psql(
            f"SELECT core_payment_id FROM zooticket_payments WHERE payment_id = '{session['payment_id']}'")
        wait_until(lambda: self.stack.psql(f"SELECT cancel_reason FROM payments WHERE id = '{core}'") == "expired",
                   30, "the session's expiry")
        out = self.browse("look", session["confirmation_url"])
        page = out["page"]
        self.assertEqual(page["h1"], "This payment link has expired")
        self.assertIn("nothing was charged", page["status"])
        self.assertEqual(page["back"], f"{self.shop_url}/cancel?order=expired")
        self.assertEqual(page["labels"], {})   # nothing to pay with
        path = session["confirmation_url"].split(str(self.stack.http_port), 1)[1]
        st, headers, _ = self.stack.http("POST", path + "/pay", body=b"method=bank_card",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 303)
        self.assertEqual(self.payment(session["payment_id"])["status"], "expired")


class PageLiveExpiryTest(PageTestBase):
    # Long enough for chromium to start and show the form before the time is up.
    daemon_config = {"zooticket_session_lifetime_s": "20"}

    def test_an_open_page_turns_into_the_expired_page_by_itself(self):
        # The page reloads itself when its time is up (a meta refresh: no script), so a customer
        # who waited sees that the link expired instead of a form that no longer works.
        session = self.new_session("waited")
        out = self.browse("stay", session["confirmation_url"])
        self.assertEqual(out["page"]["h1"], "Pay for your order")
        self.assertRegex(out["page"]["time-left"], r"^Time left to pay: 0 min ([1-9]|1[0-9]|20) s$")
        self.assertFalse(out.get("timeout"), out)
        self.assertEqual(out["final"]["h1"], "This payment link has expired")
        self.assertEqual(out["final"]["back"], f"{self.shop_url}/cancel?order=waited")


if __name__ == "__main__":
    unittest.main()
