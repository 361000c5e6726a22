"""The callback proxy (docs/callbacks.md): nginx verifies a partner callback's capability URL and
its Standard Webhooks signature, with no database; paygated stores it in the inbox and queues a
status check; only the provider's answer to that check moves a payment."""

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import time
import unittest

from e2e_base import PaymentStackTestCase, Stack, StackTestCase, new_uuid, wait_until

CALLBACK_PATH = "/callbacks/sky-technologies/v1/on_payment_completed"


def keyring(stack):
    kid, secret = (stack.keys_dir / "callback.keys").read_text().splitlines()[1].split()
    return kid, base64.b64decode(secret)


def capability_query(stack, ref: str) -> str:
    kid, secret = keyring(stack)
    tag = hmac.new(secret, f"paygate-capability-v1\n{kid}\n{ref}".encode(), hashlib.sha256).digest()
    return f"ref={ref}&kid={kid}&tag={base64.urlsafe_b64encode(tag).rstrip(b'=').decode()}"


def sign_v1e(key_file, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The sandbox's scheme, computed independently with the openssl CLI."""
    der = subprocess.run(["openssl", "dgst", "-sha512", "-sign", str(key_file)],
                         input=f"{webhook_id}.{timestamp}.".encode() + body, capture_output=True, check=True).stdout
    return "v1e," + base64.b64encode(der).decode()


class CallbackTestCase(PaymentStackTestCase):
    with_sandbox = True

    def callback(self, ref, body=None, *, query=None, webhook_id=None, timestamp=None, signature=None,
                 key=None, headers=None, drop=(), path=CALLBACK_PATH):
        body = body if body is not None else json.dumps(
            {"request_id": ref, "operation": "payment", "status": "COMPLETED"}).encode()
        webhook_id = webhook_id or "msg_" + new_uuid().replace("-", "")
        timestamp = timestamp or str(int(time.time()))
        if signature is None:
            signature = sign_v1e(key or self.stack.keys_dir / "callback.key", webhook_id, timestamp, body)
        hdrs = {"Content-Type": "application/json", "webhook-id": webhook_id,
                "webhook-timestamp": timestamp, "webhook-signature": signature}
        for name in drop:
            del hdrs[name]
        hdrs.update(headers or {})
        q = query if query is not None else capability_query(self.stack, ref)
        return self.stack.http("POST", f"{path}?{q}", body, hdrs)

    def operation_of(self, pid):
        return self.stack.psql(f"SELECT id FROM provider_operations WHERE payment_id = '{pid}'")

    def inbox(self, ref) -> int:
        return int(self.stack.psql(f"SELECT count(*) FROM callback_inbox WHERE operation_id = '{ref}'"))

    def accepted(self, method_id):
        pid = self.create_payment(method_id=method_id, sender=new_uuid())
        st, _, raw = self.accept(pid)
        self.assertEqual(st, 200, raw)
        return pid


class CallbackProxyTest(CallbackTestCase):

    def test_sandbox_callback_is_stored_once_and_checked(self):
        pid = self.accepted("card-1")
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")
        wait_until(lambda: self.inbox(ref) == 1, 15, "the sandbox's callback in the inbox")
        ledger = self.stack.sandbox_get("/_sandbox/ledger")
        deliveries = [c for c in ledger["callbacks"] if c["request_id"] == ref]
        self.assertEqual([c["http_status"] for c in deliveries], [200])
        wait_until(lambda: self.stack.psql(
            f"SELECT state FROM tasks WHERE kind = 'sky_technologies_integration_payment_status' "
            f"AND payment_id = '{pid}'") == "done", 15, "the callback's status check")
        self.assertEqual(self.status_of(pid), "completed")

    def test_double_callback_gives_one_inbox_row(self):
        pid = self.accepted("sky-double-callback-1")
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")

        def both_delivered():
            ledger = self.stack.sandbox_get("/_sandbox/ledger")
            return [c["http_status"] for c in ledger["callbacks"] if c["request_id"] == ref] == [200, 200]
        wait_until(both_delivered, 15, "both deliveries answered 200")
        self.assertEqual(self.inbox(ref), 1)
        # the same request_id under another webhook-id is a duplicate too
        st, _, raw = self.callback(ref)
        self.assertEqual((st, json.loads(raw)), (200, {"status": "duplicate"}))
        self.assertEqual(self.inbox(ref), 1)

    def test_refused_callbacks_change_nothing(self):
        pid = self.accepted("sky-unpaid-1")   # the provider keeps it PROCESSING
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")
        other = self.operation_of(self.accepted("sky-unpaid-2"))
        now = int(time.time())
        kid, _ = keyring(self.stack)
        good_q = capability_query(self.stack, ref)
        tag = good_q.split("tag=")[1]
        flipped = ("A" if tag[0] != "A" else "B") + tag[1:]
        cases = {
            "no query": dict(query=""),
            "bad tag": dict(query=f"ref={ref}&kid={kid}&tag={flipped}"),
            "tag of another operation": dict(
                query=f"ref={ref}&kid={kid}&tag=" + capability_query(self.stack, other).split("tag=")[1]),
            "unknown key id": dict(query=f"ref={ref}&kid=zz&tag={tag}"),
            "extra parameter": dict(query=good_q + "&x=1"),
            "wrong signing key": dict(key=self.stack.keys_dir / "payment.key"),
            "flipped signature": dict(signature="v1e," + base64.b64encode(b"\x30" * 139).decode()),
            "garbage base64": dict(signature="v1e,!!!notbase64!!!"),
            "stale timestamp": dict(timestamp=str(now - 301)),
            # taken when it is sent (the cases before it take a while): more than the 300 s
            # tolerance ahead even if the request crosses a second or two on its way
            "future timestamp": lambda: dict(timestamp=str(int(time.time()) + 303)),
            "no signature header": dict(drop=("webhook-signature",)),
            "no id header": dict(drop=("webhook-id",)),
            "hmac v1 with no such secret": dict(signature="v1," + base64.b64encode(b"x" * 32).decode()),
        }
        for name, kw in cases.items():
            with self.subTest(name):
                st, hdrs, raw = self.callback(ref, **(kw() if callable(kw) else kw))
                self.assertEqual(st, 401, raw)
                self.assertEqual(json.loads(raw)["code"], "unauthorized")
        # a body changed after signing
        webhook_id, ts = "msg_" + new_uuid().replace("-", ""), str(now)
        body = json.dumps({"request_id": ref, "operation": "payment", "status": "COMPLETED"}).encode()
        sig = sign_v1e(self.stack.keys_dir / "callback.key", webhook_id, ts, body)
        st, _, raw = self.callback(ref, body.replace(b"COMPLETED", b"DECLINED"), webhook_id=webhook_id,
                                   timestamp=ts, signature=sig)
        self.assertEqual(st, 401, raw)
        self.assertEqual(self.inbox(ref), 0, "nothing reached the inbox")
        self.assertEqual(self.status_of(pid), "bank_processing")

    def test_forged_but_well_signed_callback_for_an_unpaid_payment_changes_nothing(self):
        pid = self.accepted("sky-unpaid-3")
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")
        st, _, raw = self.callback(ref)   # "COMPLETED", signed with the partner's real key
        self.assertEqual((st, json.loads(raw)), (200, {"status": "accepted"}))
        self.assertEqual(self.inbox(ref), 1)
        wait_until(lambda: self.stack.psql(
            f"SELECT reschedules > 0 OR state = 'done' FROM tasks WHERE kind = "
            f"'sky_technologies_integration_payment_status' AND payment_id = '{pid}'") == "t", 15,
            "the callback's status check to ask the provider")
        self.assertEqual(self.status_of(pid), "bank_processing", "the provider says PROCESSING: no change")
        wait_until(lambda: self.stack.psql(f"SELECT state FROM provider_operations WHERE id = '{ref}'")
                   == "processing", 10, "the charge answered PROCESSING")
        self.assertEqual(self.status_of(pid), "bank_processing")

    def test_callback_whose_body_names_another_operation_is_refused(self):
        pid = self.accepted("sky-unpaid-4")
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")
        body = json.dumps({"request_id": new_uuid(), "status": "COMPLETED"}).encode()
        st, _, raw = self.callback(ref, body)
        self.assertEqual((st, json.loads(raw)["code"]), (400, "validation_error"))
        self.assertEqual(self.inbox(ref), 0)


class CallbackPrefixTest(CallbackTestCase):
    """paygate_callback_prefix moves the callback routes (and paygated's callback_base_url names
    the same place): callbacks arrive there, the default /callbacks path is not served."""
    PREFIX = "/hooks/paygate"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.shared_stack
        s.stop_nginx()
        s.kill_daemon("d1", signal.SIGTERM)
        s.start_daemon("d1", callback_base_url=f"http://127.0.0.1:{s.http_port}{cls.PREFIX}")
        s.start_nginx(paygate_callback_prefix=cls.PREFIX)
        for token in cls.tokens.values():
            cls.wait_until_token_accepted(s, token)

    def test_callbacks_arrive_under_the_prefix_only(self):
        pid = self.accepted("card-prefix")
        ref = wait_until(lambda: self.operation_of(pid), 10, "operation")
        wait_until(lambda: self.inbox(ref) == 1, 15, "the sandbox's callback through the prefix")
        ledger = self.stack.sandbox_get("/_sandbox/ledger")
        self.assertEqual([c["http_status"] for c in ledger["callbacks"] if c["request_id"] == ref], [200])
        st, _, raw = self.callback(ref)   # the default path, well signed and tagged
        self.assertEqual((st, json.loads(raw)["code"]), (404, "not_found"), raw)
        st, _, raw = self.callback(ref, path=self.PREFIX + CALLBACK_PATH[len("/callbacks"):])
        self.assertEqual((st, json.loads(raw)), (200, {"status": "duplicate"}))


class NoKeysTest(StackTestCase):
    """Without callback keys the proxy fails closed: a clear [warn] at start-up, every callback 401."""
    start_nginx_in_setup = False

    def test_fail_closed_without_keys(self):
        ngx = self.stack.start_nginx(paygate_callback_keys=None, paygate_partner_key=None)
        log = ngx.error_log.read_text()
        self.assertIn('no "paygate_callback_keys": every partner callback is refused', log)
        self.assertIn('no "paygate_partner_key sky-technologies"', log)
        self.assertNotIn("[emerg]", log)
        # a callback that would pass every check with keys: a valid capability tag and a
        # Standard Webhooks signature by the partner's real key
        ref = new_uuid()
        q = capability_query(self.stack, ref)
        body = json.dumps({"request_id": ref, "operation": "payment", "status": "COMPLETED"}).encode()
        webhook_id, ts = "msg_" + new_uuid().replace("-", ""), str(int(time.time()))
        st, _, raw = self.stack.http("POST", f"{CALLBACK_PATH}?{q}", body, {
            "Content-Type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": ts,
            "webhook-signature": sign_v1e(self.stack.keys_dir / "callback.key", webhook_id, ts, body)})
        self.assertEqual((st, json.loads(raw)["code"]), (401, "unauthorized"))
        self.assertIn(b"no keys configured", raw)
        self.assertEqual(self.stack.psql("SELECT count(*) FROM callback_inbox"), "0")


if __name__ == "__main__":
    unittest.main()
