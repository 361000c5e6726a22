"""Self-test of the mserver wallet sandbox (tests/sandboxes/mserver.py). No C++ build needed:

    python3 -m unittest tests/sandboxes/test_mserver_sandbox.py
"""

import base64
import hashlib
import http.client
import http.server
import json
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid
from pathlib import Path

SANDBOX = Path(__file__).resolve().parent / "mserver.py"
LOGIN, PASSWORD, APP_ID, APP_SECRET = "+79261111111", "wallet-pass", "paygate-test", "s3cret-app"


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class Receiver:
    """Records every notification (path with query, headers, body)."""

    def __init__(self):
        self.got = []
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                me.got.append({"path": self.path, "headers": dict(self.headers),
                               "body": json.loads(self.rfile.read(n))})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"


class MserverSandboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        d = Path(cls.dir.name)
        (d / "password").write_text(PASSWORD + "\n")
        (d / "secret").write_text(APP_SECRET + "\n")
        cls.receiver = Receiver()
        cls.proc = subprocess.Popen(
            [sys.executable, str(SANDBOX), "--port", "0", "--port-file", str(d / "port"), "--login", LOGIN,
             "--password-file", str(d / "password"), "--app-id", APP_ID, "--app-secret-file", str(d / "secret"),
             "--notify-url", cls.receiver.url, "--processing-seconds", "0.1", "--log", str(d / "log")])
        cls.port = int(wait_until(lambda: (d / "port").exists() and (d / "port").read_text().strip()))

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.receiver.server.shutdown()
        cls.dir.cleanup()

    def call(self, method, path, body=None, auth=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
        c.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = c.getresponse()
        doc = json.loads(r.read())
        c.close()
        return r.status, doc

    def out(self, amount=100, **extra):
        body = {"type": "out", "client_payment_id": str(uuid.uuid4()), "amount": amount, "service": 61,
                "parameters": {"phoneNumber": "9267101283"}}
        body.update(extra)
        return body

    def test_two_phase_with_commission_and_notification(self):
        st, doc = self.call("POST", "/v1/payments", self.out(100))
        self.assertEqual(st, 200)
        self.assertEqual(doc["meta"], {"code": 200, "next_action": "pay"})
        self.assertEqual((doc["data"]["status"], doc["data"]["amount"], doc["data"]["total"]), ("created", 100, 103))
        pid = doc["data"]["id"]
        st, doc = self.call("POST", f"/v1/payments/{pid}/pay")
        self.assertEqual((st, doc["meta"]["next_action"], doc["data"]["status"]), (200, "get", "processing"))
        wait_until(lambda: self.call("GET", f"/v1/payments/{pid}")[1]["data"]["status"] == "completed")
        note = wait_until(lambda: [n for n in self.receiver.got if n["body"]["payment"]["id"] == pid])[0]
        self.assertEqual(note["body"]["type"], "complete")
        self.assertEqual(note["headers"]["App-Id"], APP_ID)
        self.assertEqual(note["headers"]["Access-Token"], hashlib.sha1((APP_ID + APP_SECRET).encode()).hexdigest())

    def test_at_most_once_per_client_payment_id(self):
        body = self.out(250)
        ids = {self.call("POST", "/v1/payments", body)[1]["data"]["id"] for _ in range(3)}
        self.assertEqual(len(ids), 1)
        ledger = self.call("GET", "/_sandbox/ledger")[1]
        self.assertEqual(ledger["creates"][body["client_payment_id"]], 3)
        self.assertEqual(len([p for p in ledger["payments"] if p["client_payment_id"] == body["client_payment_id"]]), 1)

    def test_drop_after_create_then_the_repeat_gets_it(self):
        self.call("POST", "/_sandbox/plan", {"amount": "77.77", "scenario": "drop_after_create"})
        body = self.out(77.77)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/v1/payments", json.dumps(body), {
            "Authorization": "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            c.getresponse()
        st, doc = self.call("POST", "/v1/payments", body)
        self.assertEqual((st, doc["data"]["status"], doc["data"]["total"]), (200, "created", 80.11))

    def test_drop_after_pay_records_the_pay(self):
        self.call("POST", "/_sandbox/plan", {"amount": "78.78", "scenario": "drop_after_pay"})
        pid = self.call("POST", "/v1/payments", self.out(78.78))[1]["data"]["id"]
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", f"/v1/payments/{pid}/pay", None, {
            "Authorization": "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            c.getresponse()
        self.assertNotEqual(self.call("GET", f"/v1/payments/{pid}")[1]["data"]["status"], "created")
        st, doc = self.call("POST", f"/v1/payments/{pid}/pay")   # a second pay changes nothing
        self.assertEqual((st, doc["meta"]["next_action"]), (200, "get"))
        self.assertEqual(self.call("GET", "/_sandbox/ledger")[1]["pays"][str(pid)], 2)

    def test_error_codes(self):
        cases = [({"client_payment_id": str(uuid.uuid4()), "amount": 1}, "missing_type"),
                 ({"type": "out", "amount": 1}, "missing_client_payment_id"),
                 (self.out(amount=None), "missing_amount"),
                 (self.out(amount=0.5), "invalid_amount"),
                 (self.out(service=999), "service_not_found"),
                 (self.out(parameters={}), "missing_parameters"),
                 ({"type": "p2p", "client_payment_id": str(uuid.uuid4()), "amount": 1}, "missing_destination"),
                 ({"type": "p2p", "client_payment_id": str(uuid.uuid4()), "amount": 1, "destination": "+70000000000"},
                  "destination_not_found"),
                 ({"type": "p2p", "client_payment_id": str(uuid.uuid4()), "amount": 1, "destination": LOGIN},
                  "invalid_destination"),
                 ({"type": "p2p", "client_payment_id": str(uuid.uuid4()), "amount": 10 ** 7,
                   "destination": "+79261111112"}, "insufficient_funds")]
        for body, code in cases:
            if body.get("amount", 0) is None:
                del body["amount"]
            st, doc = self.call("POST", "/v1/payments", body)
            self.assertEqual(doc["meta"]["error_type"], code, body)
            self.assertEqual(doc["meta"]["code"], st)
        body = self.out(1)
        del body["service"]
        self.assertEqual(self.call("POST", "/v1/payments", body)[1]["meta"]["error_type"], "missing_service")

    def test_auth_required(self):
        st, doc = self.call("POST", "/v1/payments", self.out(), auth=False)
        self.assertEqual((st, doc["meta"]["error_type"]), (401, "unauthorized"))

    def test_decline_reasons_and_deferred_choice(self):
        for i, reason in enumerate(("invalid_data", "insufficient_funds", "internal_error")):
            amount = f"{31 + i}.01"
            self.call("POST", "/_sandbox/plan", {"amount": amount, "scenario": "decline:" + reason})
            pid = self.call("POST", "/v1/payments", self.out(float(amount)))[1]["data"]["id"]
            self.call("POST", f"/v1/payments/{pid}/pay")
            data = wait_until(lambda: (lambda d: d["status"] == "declined" and d)(
                self.call("GET", f"/v1/payments/{pid}")[1]["data"]))
            self.assertEqual(data["decline_reason"], reason)
        pid = self.call("POST", "/v1/payments", self.out(100))[1]["data"]["id"]
        st, doc = self.call("POST", f"/v1/payments/{pid}/pay", {"type": "inout", "card": 7222})
        self.assertEqual((doc["data"]["type"], doc["data"]["card"]["id"]), ("inout", 7222))

    def test_undo_redo_notifications_and_history(self):
        pid = self.call("POST", "/v1/payments", self.out(42))[1]["data"]["id"]
        self.call("POST", f"/v1/payments/{pid}/pay")
        wait_until(lambda: self.call("GET", f"/v1/payments/{pid}")[1]["data"]["status"] == "completed")
        res = self.call("POST", "/_sandbox/notify", {"id": pid, "type": "undo", "where": "query"})[1]
        self.assertEqual(res["http_status"], 200)
        note = self.receiver.got[-1]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(note["path"]).query)
        self.assertEqual(q["access_token"], [hashlib.sha1((APP_ID + APP_SECRET).encode()).hexdigest()])
        self.assertEqual((note["body"]["type"], note["body"]["from"], note["body"]["to"]), ("undo", "completed", "declined"))
        self.call("POST", "/_sandbox/notify", {"id": pid, "type": "redo"})
        self.assertEqual(self.call("GET", f"/v1/payments/{pid}")[1]["data"]["status"], "completed")
        self.call("POST", "/_sandbox/notify", {"id": pid, "type": "undo", "credentials": "bad"})
        self.assertNotEqual(self.receiver.got[-1]["headers"]["Access-Token"],
                            hashlib.sha1((APP_ID + APP_SECRET).encode()).hexdigest())
        st, doc = self.call("GET", "/v1/payments?page=0&size=2&type=out&status=declined,completed")
        self.assertEqual(st, 200)
        self.assertLessEqual(len(doc["data"]), 2)
        self.assertGreaterEqual(doc["meta"]["page"]["total_elements"], 1)
        self.assertTrue(all(p["status"] != "created" for p in doc["data"]))


if __name__ == "__main__":
    unittest.main()
