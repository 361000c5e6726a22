"""The production shape: nginx listens `ssl http2` (conf/nginx.conf, plus HTTP/2).

- The payment API smoke (token → create → retrieve → status → accept → status, exact 200 bodies)
  over HTTPS with HTTP/1.1 (http.client, the stack's self-signed certificate as the only CA) and
  over HTTP/2 (curl --http2, ALPN h2).
- test_client_abort's scenario over TLS: a parked request whose client goes away frees its
  paygate_max_in_flight slot at once, however it goes: a TLS close_notify alert then FIN, a
  close_notify alone (TCP left open), FIN without close_notify, RST, an HTTP/2 stream reset, a
  whole HTTP/2 connection closed. Over TLS the bytes waiting on the socket are TLS records, not
  HTTP: a close_notify must not pass for a pipelined request (which would keep the slot until
  paygate_timeout), while a real pipelined request in a later TLS record must keep the first one
  waiting and then be answered itself.
"""

import http.client
import json
import subprocess
import tempfile
import unittest
from pathlib import Path

from e2e_base import (PAYMENT_API, TIMESTAMP_RE, UUID_RE, PaymentStackTestCase, StackTestCase,
                      check_answer, close_with_reset, create_body, new_uuid)
from stack import tls_client_context
from test_client_abort import (HEALTH, PING, UNAVAILABLE, AbortScenario, h2_connect,
                               send_close_notify)

PAYMENT_KEYS = {"transaction_id", "sender", "recipcient", "currency", "amount", "captured_amount",
                "refunded_amount", "status", "decline_reason", "created_at", "updated_at"}


def read_http1(stream, method: str, path: str):
    """(status, body) of the next HTTP/1.1 response (Content-Length framed) on a file object,
    the answer to `method path` (checked against docs/openapi/)."""
    status = int(stream.readline().split()[1])
    length = 0
    headers = []
    for line in iter(stream.readline, b"\r\n"):
        if not line:
            raise AssertionError("connection closed inside the response headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value)
    body = stream.read(length)
    check_answer(method, path, status, headers, body, "read_http1")
    return status, body


class TlsApiTest(PaymentStackTestCase):
    """The API smoke over TLS, HTTP/1.1 and HTTP/2, each with a token created for it."""

    clients = ("alice",)
    nginx = {"tls": True}

    def new_token(self, client: str) -> str:
        token = self.stack.create_token(client)
        self.wait_until_token_accepted(self.stack, token)
        return token

    def run_smoke(self, call) -> None:
        """`call(method, path, body)` -> (status, content_type, x_request_id, body bytes)."""
        pid = None
        steps = [("POST", "create", create_body(currency="USD", amount="12.50")),
                 ("GET", "{pid}/retrieve", None),
                 ("GET", "{pid}/retrieve/status", None),
                 ("POST", "{pid}/accept", {"idempotency_token": new_uuid(),
                                           "accept_info": {"terminal": "t-1"}}),
                 ("GET", "{pid}/retrieve/status", None)]
        answers = []
        for method, path, body in steps:
            path = f"{PAYMENT_API}/{path.format(pid=pid)}"
            status, ctype, rid, raw = call(method, path, body)
            self.assertEqual(status, 200, f"{method} {path}: {raw[:300]!r}")
            self.assertTrue(ctype.startswith("application/json"), ctype)
            self.assertTrue(rid, f"no X-Request-Id on {method} {path}")
            doc = json.loads(raw)
            answers.append((doc, raw))
            if pid is None:
                self.assertEqual(set(doc), {"transaction_id"}, doc)
                self.assertRegex(doc["transaction_id"], UUID_RE)
                pid = doc["transaction_id"]
        (_, _), (retrieved, raw), (status1, _), (accepted, _), (status2, _) = answers
        self.assertEqual(set(retrieved), {"payment"}, retrieved)
        p = retrieved["payment"]
        self.assertEqual(set(p), PAYMENT_KEYS, p)
        self.assertEqual((p["transaction_id"], p["status"], p["currency"]), (pid, "created", "USD"))
        self.assertEqual(p["sender"], {"user_id": "user-1001", "method_id": None})
        self.assertEqual(p["recipcient"], {"user_id": "merchant-42", "method_id": "card-7781"})
        self.assertIn(b'"amount":12.50', raw)
        self.assertIn(b'"captured_amount":0.00,"refunded_amount":0.00,', raw)
        self.assertIsNone(p["decline_reason"])
        self.assertRegex(p["created_at"], TIMESTAMP_RE)
        self.assertEqual(p["created_at"], p["updated_at"])
        self.assertEqual(status1, {"payment_status": "created"})
        self.assertEqual(accepted, {"transaction_id": pid, "payment_status": "bank_processing"})
        self.assertEqual(status2, {"payment_status": "bank_processing"})

    def test_api_over_https_http11(self):
        token = self.new_token("tls-http11")
        ngx = self.stack.nginxes["nginx"]
        # one keep-alive TLS connection for the whole walk, the certificate verified
        conn = http.client.HTTPSConnection("127.0.0.1", ngx.port, timeout=15,
                                           context=tls_client_context(ngx.cafile))
        self.addCleanup(conn.close)

        def call(method, path, body):
            hdrs = {"x_auth_token": token}
            data = None
            if body is not None:
                data = self.encode(body)
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            check_answer(method, path, resp.status, resp.headers, raw, "keep-alive HTTPS")
            self.assertEqual(resp.version, 11)
            return resp.status, resp.headers.get("Content-Type", ""), resp.headers.get("X-Request-Id"), raw
        self.run_smoke(call)
        self.assertIn(conn.sock.version(), ("TLSv1.2", "TLSv1.3"))
        # Stack.http speaks HTTPS to this nginx too
        self.assertEqual(self.stack.https("GET", "/ping")[2], b'{"status":"ok"}')

    def test_api_over_http2(self):
        token = self.new_token("tls-http2")
        ngx = self.stack.nginxes["nginx"]
        tmp = Path(tempfile.mkdtemp(prefix="curl-", dir=self.stack.root))

        def call(method, path, body):
            head = tmp / "head"
            cmd = ["curl", "-sS", "--http2", "--cacert", str(ngx.cafile), "-X", method,
                   "-H", f"x_auth_token: {token}", "-D", str(head), "-o", "-",
                   "-w", "\n%{http_version}", f"https://127.0.0.1:{ngx.port}{path}"]
            if body is not None:
                cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            res = subprocess.run(cmd, input=self.encode(body) if body is not None else b"",
                                 capture_output=True, timeout=30)
            self.assertEqual(res.returncode, 0, res.stderr)
            raw, _, version = res.stdout.rpartition(b"\n")
            self.assertEqual(version, b"2", "curl did not speak HTTP/2 (ALPN h2)")
            lines = head.read_text().splitlines()
            first = lines[0].split()
            self.assertEqual(first[0], "HTTP/2", lines[0])
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (ln.partition(":") for ln in lines[1:] if ":" in ln)}
            check_answer(method, path, int(first[1]), headers, raw, "curl --http2")
            return int(first[1]), headers.get("content-type", ""), headers.get("x-request-id"), raw
        self.run_smoke(call)


class TlsClientAbortTest(AbortScenario, StackTestCase):
    """test_client_abort's scenario on an `ssl http2` listener."""

    nginx_extra = {"tls": True}

    def h2(self):
        ngx = self.stack.nginxes["nginx"]
        return h2_connect(ngx.port, cafile=ngx.cafile)

    def test_close_notify_then_fin_frees_the_slots(self):
        def abort(s):
            send_close_notify(s)
            s.close()
        self.run_http1_abort(abort)

    def test_close_notify_alone_frees_the_slots(self):
        # the TCP connection stays open (closed at the end of the scenario)
        self.run_http1_abort(send_close_notify)

    def test_fin_without_close_notify_frees_the_slots(self):
        self.run_http1_abort(lambda s: s.close())   # ssl.SSLSocket.close() sends no close_notify

    def test_rst_frees_the_slots(self):
        self.run_http1_abort(close_with_reset)

    def test_http2_stream_reset_frees_the_slots(self):
        self.run_h2_abort(self.h2)

    def test_http2_connection_close_frees_the_slots(self):
        self.run_h2_abort(self.h2, close_connection=True)

    def test_pipelined_request_in_a_later_record_keeps_waiting(self):
        """Application data after a parked request is a pipelined request, not a close."""
        logs = self.logs_since()
        self.assertEqual(self.get("/ping")[0], 200)
        hold = self.block_daemon()
        sock = self.open_http1(HEALTH)        # keep-alive
        self.addCleanup(sock.close)
        self.wait_parked(1)
        sock.sendall(PING)                    # its own TLS record, while /health waits
        # nginx has had the record's read event before it answers a later request of ours (one
        # worker, and the record was queued before we connected): the first is still waiting
        self.assertEqual(self.parked(), 1)
        self.assertEqual(self.parked(), 1)
        hold.release()
        stream = sock.makefile("rb")         # both answers through one buffered reader
        answers = [read_http1(stream, "GET", "/health"), read_http1(stream, "GET", "/ping")]
        self.assertEqual(answers[0][0], 200, answers)
        self.assertEqual(json.loads(answers[0][1])["status"], "healthy", answers)
        self.assertEqual(answers[1], (200, b'{"status":"ok"}'))
        self.wait_parked(0)
        err, acc = logs()
        self.assertEqual(self.count_status(acc, "/health", 499), 0, acc)
        self.assertNotIn("paygate: client", err)
        # the bound is intact: four requests park, a fifth is refused
        hold = self.block_daemon()
        fresh = self.park(lambda: self.open_http1(HEALTH))
        self.assertEqual(self.assertJsonError(self.get("/ping"), 503, "service_unavailable"),
                         UNAVAILABLE)
        hold.release()
        for s in fresh:
            self.addCleanup(s.close)
        self.wait_parked(0)


if __name__ == "__main__":
    unittest.main()
