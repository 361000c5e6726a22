"""Self-test of the sky-technologies sandbox (tests/sandboxes/sky_technologies.py).

Starts the sandbox as a subprocess on port 0 with keys from its own `keygen`, signs requests
itself with `cryptography`, and receives callbacks on a small local HTTP server. Needs no C++
build. From the repository root:

    python3 -m unittest tests/sandboxes/test_sky_technologies_sandbox.py
"""

import base64
import http.client
import http.server
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SANDBOX = Path(__file__).resolve().parent / "sky_technologies.py"
MERCHANT = "merchant-sky-test"


def load_private(path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def load_public(path):
    return serialization.load_pem_public_key(Path(path).read_bytes())


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class CallbackReceiver:
    """A local HTTP server recording every callback; can fail the first N for a request_id."""

    def __init__(self):
        self.received = []
        self.fail = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    request_id = json.loads(body).get("request_id")
                except ValueError:
                    request_id = None
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "request_id": request_id})
                    failing = receiver.fail.get(request_id, 0)
                    if failing:
                        receiver.fail[request_id] = failing - 1
                status = 500 if failing else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, query="k=v&x=1"):
        return f"http://127.0.0.1:{self.port}/v1/on_payment_completed?{query}"

    def of(self, request_id):
        with self.lock:
            return [r for r in self.received if r["request_id"] == request_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SkySandboxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sky-sandbox-test-")
        d = Path(cls.tmp.name)
        keys = d / "keys"
        subprocess.run([sys.executable, str(SANDBOX), "keygen", str(keys)], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        cls.keys_dir = keys
        cls.payment_key = load_private(keys / "payment.key")
        cls.reversal_key = load_private(keys / "reversal.key")
        cls.callback_pub = load_public(keys / "callback.pub")
        cls.port_file = d / "port"
        cls.log_path = d / "sandbox.log"
        cls.proc = subprocess.Popen(
            [sys.executable, str(SANDBOX), "--host", "127.0.0.1", "--port", "0",
             "--port-file", str(cls.port_file), "--merchant-id", MERCHANT,
             "--payment-public-key", str(keys / "payment.pub"),
             "--reversal-public-key", str(keys / "reversal.pub"),
             "--callback-private-key", str(keys / "callback.key"),
             "--processing-seconds", "0.6", "--slow-seconds", "0.3", "--timeout-seconds", "3",
             "--log", str(cls.log_path)])
        try:
            wait_until(lambda: cls.port_file.exists() or cls.proc.poll() is not None, 15)
            if cls.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {cls.proc.returncode}")
            cls.port = int(cls.port_file.read_text())
        except BaseException:
            cls.proc.kill()
            cls.proc.wait()
            cls.tmp.cleanup()
            raise
        cls.receiver = CallbackReceiver()

    @classmethod
    def tearDownClass(cls):
        cls.receiver.close()
        cls.proc.send_signal(signal.SIGTERM)
        try:
            code = cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
            code = "timeout"
        cls.tmp.cleanup()
        if code != 0:
            raise AssertionError(f"the sandbox did not exit 0 on SIGTERM: {code}")

    # -- helpers -------------------------------------------------------------------------------

    def http(self, method, path, body=None, headers=None, timeout=10.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def call(self, name, body, key=None, timestamp=None, signature=None, merchant=MERCHANT,
             timeout=10.0):
        raw = json.dumps(body).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        if signature is None:
            der = (key or self.payment_key).sign(ts.encode() + b"." + raw,
                                                 ec.ECDSA(hashes.SHA512()))
            signature = base64.b64encode(der).decode()
        headers = {"Content-Type": "application/json", "X-Merchant-Id": merchant,
                   "X-Request-Timestamp": ts, "X-Signature": signature}
        return self.http("POST", f"/v1/{name}", raw, headers, timeout)

    def session(self, purpose="payment"):
        key = self.payment_key if purpose == "payment" else self.reversal_key
        status, body = self.call("initSession", {"merchant_id": MERCHANT, "purpose": purpose},
                                 key)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["expires_in"], 600)
        return body["session_id"]

    def charge_body(self, method_id="card-1", amount="1250", currency="USD", request_id=None,
                    session=None):
        return {"merchant_id": MERCHANT, "session_id": session or self.session("payment"),
                "request_id": request_id or str(uuid.uuid4()), "payment_id": str(uuid.uuid4()),
                "method_id": method_id, "amount_minor": amount, "currency": currency,
                "paymentCompletedCallbackUrl": self.receiver.url()}

    def charge(self, method_id="card-1", **kw):
        body = self.charge_body(method_id, **kw)
        status, answer = self.call("completeMerchantAcquiring", body, self.payment_key)
        return body, status, answer

    def reversal_body(self, original, amount, request_id=None):
        return {"merchant_id": MERCHANT, "session_id": self.session("reversal"),
                "request_id": request_id or str(uuid.uuid4()), "original_request_id": original,
                "amount_minor": amount, "currency": "USD",
                "paymentCompletedCallbackUrl": self.receiver.url()}

    def status_of(self, request_id, purpose="payment"):
        key = self.payment_key if purpose == "payment" else self.reversal_key
        return self.call("paymentStatus", {"merchant_id": MERCHANT,
                                           "session_id": self.session(purpose),
                                           "request_id": request_id}, key)

    def ledger(self):
        status, body = self.http("GET", "/_sandbox/ledger")
        self.assertEqual(status, 200)
        return body

    def ops(self, request_id):
        return [op for op in self.ledger()["operations"] if op["request_id"] == request_id]

    def assert_webhook_signed(self, callback):
        h = {k.lower(): v for k, v in callback["headers"].items()}
        self.assertEqual(h["content-type"], "application/json")
        self.assertRegex(h["webhook-id"], r"^msg_[0-9a-f]{32}$")
        self.assertLessEqual(abs(int(h["webhook-timestamp"]) - time.time()), 10)
        scheme, _, sig = h["webhook-signature"].partition(",")
        self.assertEqual(scheme, "v1e")
        signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + callback["body"]
        try:
            self.callback_pub.verify(base64.b64decode(sig, validate=True), signed,
                                     ec.ECDSA(hashes.SHA512()))
        except InvalidSignature:
            self.fail("the callback's v1e signature does not verify")
        return h["webhook-id"]

    # -- tests ---------------------------------------------------------------------------------

    def test_keygen_files(self):
        for name in ("payment", "reversal", "callback"):
            self.assertEqual(stat.S_IMODE(os.stat(self.keys_dir / f"{name}.key").st_mode), 0o600)
            self.assertIn(b"BEGIN PRIVATE KEY", (self.keys_dir / f"{name}.key").read_bytes())
            pub = load_public(self.keys_dir / f"{name}.pub")
            self.assertIsInstance(pub.curve, ec.SECP521R1)

    def test_health_and_not_found(self):
        self.assertEqual(self.http("GET", "/_sandbox/health"), (200, {"status": "ok"}))
        self.assertEqual(self.http("GET", "/nope")[0], 404)

    def test_charge_completed_end_to_end_with_signed_callback(self):
        body, status, answer = self.charge("card-7781")
        rid = body["request_id"]
        self.assertEqual((status, answer), (200, {"request_id": rid, "status": "COMPLETED"}))
        callbacks = wait_until(lambda: self.receiver.of(rid))
        time.sleep(0.3)
        self.assertEqual(len(self.receiver.of(rid)), 1)
        cb = callbacks[0]
        self.assertEqual(cb["path"], "/v1/on_payment_completed?k=v&x=1")   # query kept as given
        self.assertEqual(cb["body"], json.dumps({"request_id": rid, "operation": "payment",
                                                 "status": "COMPLETED"},
                                                separators=(",", ":")).encode())
        webhook_id = self.assert_webhook_signed(cb)
        status, st = self.status_of(rid)
        self.assertEqual(status, 200)
        self.assertEqual(st, {"request_id": rid, "operation": "payment", "status": "COMPLETED",
                              "amount_minor": "1250", "currency": "USD"})
        [op] = self.ops(rid)
        self.assertEqual((op["method_id"], op["payment_id"]), ("card-7781", body["payment_id"]))
        ledger_cbs = [c for c in self.ledger()["callbacks"] if c["request_id"] == rid]
        self.assertEqual([(c["webhook_id"], c["attempt"], c["http_status"]) for c in ledger_cbs],
                         [(webhook_id, 1, 204)])

    def test_bad_signature_records_nothing(self):
        before = self.ledger()["refused"]["invalid_signature"]
        body = self.charge_body()
        for signature in ("", "bm90IGEgc2lnbmF0dXJl", "!!!"):
            status, answer = self.call("completeMerchantAcquiring", body, signature=signature)
            self.assertEqual((status, answer["error"]), (401, "invalid_signature"))
            self.assertIn("message", answer)
        # a valid signature over other bytes
        raw = json.dumps(body).encode()
        ts = str(int(time.time()))
        der = self.payment_key.sign(ts.encode() + b"." + raw + b" ", ec.ECDSA(hashes.SHA512()))
        status, answer = self.http("POST", "/v1/completeMerchantAcquiring", raw, {
            "Content-Type": "application/json", "X-Merchant-Id": MERCHANT,
            "X-Request-Timestamp": ts, "X-Signature": base64.b64encode(der).decode()})
        self.assertEqual((status, answer["error"]), (401, "invalid_signature"))
        self.assertEqual(self.ops(body["request_id"]), [])
        self.assertEqual(self.ledger()["refused"]["invalid_signature"], before + 4)

    def test_charge_signed_with_reversal_key_is_wrong_key(self):
        before = self.ledger()["refused"]
        body = self.charge_body()
        status, answer = self.call("completeMerchantAcquiring", body, self.reversal_key)
        self.assertEqual((status, answer["error"]), (401, "invalid_signature"))
        # a reversal session asked with the payment key, too
        status, answer = self.call("initSession", {"merchant_id": MERCHANT,
                                                   "purpose": "reversal"}, self.payment_key)
        self.assertEqual((status, answer["error"]), (401, "invalid_signature"))
        after = self.ledger()["refused"]
        self.assertEqual(after["wrong_key"], before["wrong_key"] + 2)
        self.assertEqual(after["invalid_signature"], before["invalid_signature"])
        self.assertEqual(self.ops(body["request_id"]), [])

    def test_stale_timestamp_and_unknown_merchant(self):
        body = self.charge_body()
        for ts in (int(time.time()) - 400, int(time.time()) + 400):
            status, answer = self.call("completeMerchantAcquiring", body, timestamp=ts)
            self.assertEqual((status, answer["error"]), (401, "stale_request"))
        status, answer = self.call("completeMerchantAcquiring", body, timestamp=int(time.time()) - 200)
        self.assertEqual(status, 200, answer)                          # within 300 s is fine
        status, answer = self.call("initSession", {"merchant_id": MERCHANT, "purpose": "payment"},
                                   merchant="someone-else")
        self.assertEqual((status, answer["error"]), (403, "unknown_merchant"))
        status, answer = self.call("initSession", {"merchant_id": "someone-else",
                                                   "purpose": "payment"})
        self.assertEqual((status, answer["error"]), (403, "unknown_merchant"))

    def test_invalid_session(self):
        body = self.charge_body()
        body["session_id"] = "no-such-session"
        status, answer = self.call("completeMerchantAcquiring", body)
        self.assertEqual((status, answer["error"]), (401, "invalid_session"))
        body["session_id"] = self.session("reversal")                 # wrong purpose
        status, answer = self.call("completeMerchantAcquiring", body)
        self.assertEqual((status, answer["error"]), (401, "invalid_session"))
        self.assertEqual(self.ops(body["request_id"]), [])

    def test_bad_body_is_400_and_records_nothing(self):
        cases = [("amount_minor", "12.50"), ("amount_minor", "0"), ("amount_minor", 1250),
                 ("currency", "usd"), ("request_id", str(uuid.uuid4()).upper()),
                 ("paymentCompletedCallbackUrl", "/relative"), ("method_id", None)]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                body = self.charge_body()
                body[field] = value
                status, answer = self.call("completeMerchantAcquiring", body)
                self.assertEqual((status, answer["error"]), (400, "invalid_request"))
                self.assertEqual(self.ops(body["request_id"]), [])

    def test_duplicate_request_id(self):
        body, status, answer = self.charge()
        self.assertEqual(status, 200)
        rid = body["request_id"]
        status, answer = self.call("completeMerchantAcquiring", self.charge_body(request_id=rid))
        self.assertEqual(status, 409)
        self.assertEqual((answer["error"], answer["status"]), ("duplicate_request_id", "COMPLETED"))
        self.assertEqual(len(self.ops(rid)), 1)
        self.assertIn({"request_id": rid, "endpoint": "completeMerchantAcquiring"},
                      self.ledger()["duplicate_attempts"])

    def test_decline(self):
        body, status, answer = self.charge("sky-decline-card")
        rid = body["request_id"]
        self.assertEqual((status, answer), (200, {"request_id": rid, "status": "DECLINED",
                                                  "decline_reason": "insufficient_funds"}))
        [cb] = wait_until(lambda: self.receiver.of(rid))
        self.assertEqual(json.loads(cb["body"])["status"], "DECLINED")
        status, st = self.status_of(rid, "reversal")                 # either key and session
        self.assertEqual((st["status"], st["decline_reason"]), ("DECLINED", "insufficient_funds"))

    def test_5xx_twice_then_ok(self):
        failed_before = self.ledger()["failed_calls"]
        body = self.charge_body("sky-5xx")
        for _ in range(2):
            status, answer = self.call("completeMerchantAcquiring", body)
            self.assertEqual((status, answer["error"]), (500, "internal_error"))
            self.assertEqual(self.ops(body["request_id"]), [])
        status, answer = self.call("completeMerchantAcquiring", body)
        self.assertEqual((status, answer["status"]), (200, "COMPLETED"))
        self.assertEqual(self.ledger()["failed_calls"], failed_before + 2)
        self.assertEqual(len(self.ops(body["request_id"])), 1)

    def test_payment_status_unknown_is_404(self):
        status, answer = self.status_of(str(uuid.uuid4()))
        self.assertEqual((status, answer["error"]), (404, "not_found"))

    def test_reversal_within_and_above_the_charge(self):
        body, status, _ = self.charge(amount="1000")
        original = body["request_id"]
        rev1 = self.reversal_body(original, "400")
        status, answer = self.call("processPaymentReversal", rev1, self.reversal_key)
        self.assertEqual((status, answer), (200, {"request_id": rev1["request_id"],
                                                  "status": "COMPLETED"}))
        status, answer = self.call("processPaymentReversal", self.reversal_body(original, "601"),
                                   self.reversal_key)
        self.assertEqual((status, answer["error"]), (400, "reversal_exceeds_charge"))
        # signed with the payment key: wrong key; with a payment session: invalid session
        status, answer = self.call("processPaymentReversal", self.reversal_body(original, "1"),
                                   self.payment_key)
        self.assertEqual((status, answer["error"]), (401, "invalid_signature"))
        bad_session = self.reversal_body(original, "1")
        bad_session["session_id"] = self.session("payment")
        status, answer = self.call("processPaymentReversal", bad_session, self.reversal_key)
        self.assertEqual((status, answer["error"]), (401, "invalid_session"))
        wrong_currency = self.reversal_body(original, "1")
        wrong_currency["currency"] = "EUR"
        status, answer = self.call("processPaymentReversal", wrong_currency, self.reversal_key)
        self.assertEqual((status, answer["error"]), (400, "invalid_request"))
        status, answer = self.call("processPaymentReversal",
                                   self.reversal_body(str(uuid.uuid4()), "1"), self.reversal_key)
        self.assertEqual((status, answer["error"]), (404, "unknown_original_request"))
        rev2 = self.reversal_body(original, "600")
        status, answer = self.call("processPaymentReversal", rev2, self.reversal_key)
        self.assertEqual((status, answer["status"]), (200, "COMPLETED"))
        status, answer = self.call("processPaymentReversal", rev2, self.reversal_key)
        self.assertEqual((status, answer["error"], answer["status"]),
                         (409, "duplicate_request_id", "COMPLETED"))
        status, st = self.status_of(rev1["request_id"], "reversal")
        self.assertEqual((st["operation"], st["status"], st["amount_minor"]),
                         ("reversal", "COMPLETED", "400"))
        [cb] = wait_until(lambda: self.receiver.of(rev2["request_id"]))
        self.assertEqual(json.loads(cb["body"])["operation"], "reversal")
        self.assert_webhook_signed(cb)
        reversals = [op for op in self.ledger()["operations"]
                     if op["original_request_id"] == original]
        self.assertEqual(sorted(op["amount_minor"] for op in reversals), ["400", "600"])

    def test_double_callback_has_one_webhook_id(self):
        body, status, answer = self.charge("sky-double-callback")
        self.assertEqual(answer["status"], "COMPLETED")
        callbacks = wait_until(lambda: len(self.receiver.of(body["request_id"])) == 2
                               and self.receiver.of(body["request_id"]))
        ids = {self.assert_webhook_signed(cb) for cb in callbacks}
        self.assertEqual(len(ids), 1)

    def test_callback_retried_with_same_webhook_id(self):
        body = self.charge_body()
        self.receiver.fail[body["request_id"]] = 1
        status, _ = self.call("completeMerchantAcquiring", body)
        self.assertEqual(status, 200)
        rid = body["request_id"]
        wait_until(lambda: len(self.receiver.of(rid)) == 2)
        # the sandbox writes an attempt into its ledger once the answer is back: after our receiver saw it
        cbs = wait_until(lambda: [c for c in self.ledger()["callbacks"] if c["request_id"] == rid][1:] and
                         [c for c in self.ledger()["callbacks"] if c["request_id"] == rid])
        self.assertEqual([(c["attempt"], c["http_status"]) for c in cbs], [(1, 500), (2, 204)])
        self.assertEqual(len({c["webhook_id"] for c in cbs}), 1)

    def test_processing_then_completed_with_callback(self):
        body, status, answer = self.charge("sky-processing")
        rid = body["request_id"]
        self.assertEqual(answer["status"], "PROCESSING")
        self.assertEqual(self.status_of(rid)[1]["status"], "PROCESSING")
        [cb] = wait_until(lambda: self.receiver.of(rid), timeout=5)
        self.assertEqual(json.loads(cb["body"])["status"], "COMPLETED")
        self.assertEqual(self.status_of(rid)[1]["status"], "COMPLETED")

    def test_timeout_records_and_does_not_block(self):
        body = self.charge_body("sky-timeout")
        rid = body["request_id"]
        started = time.monotonic()
        with self.assertRaises(OSError):                               # socket.timeout
            self.call("completeMerchantAcquiring", body, timeout=0.5)
        self.assertEqual(self.http("GET", "/_sandbox/health")[0], 200)
        self.assertEqual(self.status_of(rid)[1]["status"], "COMPLETED")
        self.assertLess(time.monotonic() - started, 2.5)
        time.sleep(0.2)
        self.assertEqual(self.receiver.of(rid), [])

    def test_lost_callback_and_unpaid_and_resend(self):
        body, _, answer = self.charge("sky-lost-callback")
        lost = body["request_id"]
        self.assertEqual(answer["status"], "COMPLETED")
        body, _, answer = self.charge("sky-unpaid")
        unpaid = body["request_id"]
        self.assertEqual(answer["status"], "PROCESSING")
        time.sleep(0.3)
        self.assertEqual(self.receiver.of(lost), [])
        self.assertEqual(self.receiver.of(unpaid), [])
        self.assertEqual(self.status_of(unpaid)[1]["status"], "PROCESSING")
        status, answer = self.http("POST", "/_sandbox/callback",
                                   json.dumps({"request_id": lost}).encode(),
                                   {"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        [cb] = wait_until(lambda: self.receiver.of(lost))
        self.assertEqual(self.assert_webhook_signed(cb), answer["webhook_id"])
        status, _ = self.http("POST", "/_sandbox/callback",
                              json.dumps({"request_id": str(uuid.uuid4())}).encode(),
                              {"Content-Type": "application/json"})
        self.assertEqual(status, 404)

    def test_slow_answer(self):
        started = time.monotonic()
        _, status, answer = self.charge("sky-slow")
        self.assertEqual((status, answer["status"]), (200, "COMPLETED"))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    # -- injected faults (/_sandbox/faults, the chaos drill's) ---------------------------------

    def set_fault(self, **body):
        raw = json.dumps(body).encode()
        return self.http("POST", "/_sandbox/faults", raw, {"Content-Type": "application/json"})

    def test_fault_provider_5xx_refuses_everything_until_lifted(self):
        session = self.session("payment")
        self.addCleanup(self.set_fault, provider="none")
        status, answer = self.set_fault(provider="5xx", seconds=60)
        self.assertEqual(status, 200)
        self.assertEqual(answer["faults"]["provider"]["mode"], "5xx")
        body = self.charge_body(session=session)
        status, answer = self.call("completeMerchantAcquiring", body)
        self.assertEqual((status, answer["error"]), (500, "internal_error"))
        self.assertEqual(self.ops(body["request_id"]), [])
        status, _ = self.call("initSession", {"merchant_id": MERCHANT, "purpose": "payment"})
        self.assertEqual(status, 500)
        self.assertEqual(self.set_fault(provider="none")[1]["faults"], {})
        status, answer = self.call("completeMerchantAcquiring", body)
        self.assertEqual((status, answer["status"]), (200, "COMPLETED"))
        self.assertEqual(len(self.ops(body["request_id"])), 1)
        self.assertIn({"kind": "provider", "mode": "5xx", "seconds": 60},
                      [{k: f[k] for k in ("kind", "mode", "seconds")} for f in self.ledger()["faults"]])

    def test_fault_provider_timeout_carries_out_but_holds_the_answer(self):
        session = self.session("payment")
        self.addCleanup(self.set_fault, provider="none")
        self.assertEqual(self.set_fault(provider="timeout", seconds=1.5)[0], 200)
        body = self.charge_body(session=session)
        with self.assertRaises(OSError):                               # socket.timeout
            self.call("completeMerchantAcquiring", body, timeout=0.3)
        self.assertEqual(self.http("GET", "/_sandbox/health")[0], 200)  # sandbox endpoints answer
        [op] = self.ops(body["request_id"])
        self.assertEqual(op["status"], "COMPLETED")
        # the window closes by itself: then answers come at once again
        wait_until(lambda: self.http("POST", "/_sandbox/faults", b'{"callbacks":"none"}',
                                     {"Content-Type": "application/json"})[1]["faults"] == {}, timeout=5)
        self.assertEqual(self.status_of(body["request_id"], "payment")[1]["status"], "COMPLETED")

    def test_fault_callbacks_dropped_then_doubled(self):
        self.addCleanup(self.set_fault, callbacks="none")
        self.assertEqual(self.set_fault(callbacks="drop", seconds=60)[0], 200)
        body, status, _ = self.charge("card-1")
        self.assertEqual(status, 200)
        rid = body["request_id"]
        wait_until(lambda: [c for c in self.ledger()["callbacks"] if c["request_id"] == rid])
        time.sleep(0.3)
        self.assertEqual(self.receiver.of(rid), [])
        self.assertEqual([c for c in self.ledger()["callbacks"] if c["request_id"] == rid],
                         [{"request_id": rid, "dropped": True}])
        self.assertEqual(self.set_fault(callbacks="double", seconds=60)[0], 200)
        body, status, _ = self.charge("card-1")
        rid = body["request_id"]
        callbacks = wait_until(lambda: len(self.receiver.of(rid)) == 2 and self.receiver.of(rid))
        self.assertEqual(len({self.assert_webhook_signed(cb) for cb in callbacks}), 1)
        time.sleep(0.4)
        self.assertEqual(len(self.receiver.of(rid)), 2)

    def test_fault_bad_requests_change_nothing(self):
        for raw in (b"not json", b"[]", b"{}", b'{"provider":"slow"}', b'{"callbacks":"5xx"}',
                    b'{"provider":"5xx","seconds":0}', b'{"provider":"5xx","seconds":"20"}',
                    b'{"provider":"5xx","extra":1}'):
            status, answer = self.http("POST", "/_sandbox/faults", raw, {"Content-Type": "application/json"})
            self.assertEqual((status, answer["error"]), (400, "invalid_request"), raw)
        self.assertEqual(self.set_fault(callbacks="none")[1]["faults"], {})


if __name__ == "__main__":
    unittest.main()
