#!/usr/bin/env python3
"""Sandbox of the payment provider sky-technologies: a real HTTP server implementing the partner
contract of docs/providers/sky-technologies.md (paygate -> sky-technologies), plus the signed
Standard Webhooks callbacks back to paygate and a few /_sandbox/ endpoints for tests and the demo.

Run:
    sky_technologies.py keygen DIR
    sky_technologies.py --host 127.0.0.1 --port 0 --port-file PATH --merchant-id ID \
        --payment-public-key DIR/payment.pub --reversal-public-key DIR/reversal.pub \
        --callback-private-key DIR/callback.key [--processing-seconds 2] [--slow-seconds 1.5] \
        [--timeout-seconds 30] [--log PATH]

Python 3.11 standard library plus `cryptography` (Debian's python3-cryptography). All state is in
memory, under one lock. SIGTERM/SIGINT stop it cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.client
import http.server
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SESSION_TTL = 600            # seconds a session lives (initSession's expires_in)
MAX_CLOCK_SKEW = 300         # seconds X-Request-Timestamp may be away from now
CALLBACK_DELAY = 0.05        # seconds between the answer and the first callback attempt
DOUBLE_CALLBACK_GAP = 0.2    # seconds between the two deliveries of sky-double-callback
CALLBACK_RETRY_DELAYS = (0.5, 1.0, 2.0)   # after a failed attempt: up to 3 more attempts
CALLBACK_HTTP_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
FIVE_XX_FAILURES = 2         # sky-5xx: this many 500s per request_id before it succeeds

UUID_LOWER = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID_ANY = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
AMOUNT = re.compile(r"^[0-9]{1,18}$")
CURRENCY = re.compile(r"^[A-Z]{3,5}$")
TIMESTAMP = re.compile(r"^[0-9]{1,12}$")

REFUSED_KINDS = ("invalid_signature", "wrong_key", "stale_request", "invalid_session",
                 "unknown_merchant", "invalid_request")
ENDPOINTS = ("initSession", "completeMerchantAcquiring", "processPaymentReversal", "paymentStatus")


# ---------------------------------------------------------------------------------------------
# keys

def generate_keys(directory: str) -> list[str]:
    """Writes P-521 key pairs payment/reversal/callback .key (PKCS#8, 0600) and .pub (SPKI)."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for name in ("payment", "reversal", "callback"):
        key = ec.generate_private_key(ec.SECP521R1())
        private_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        for suffix, data, mode in (("key", private_pem, 0o600), ("pub", public_pem, 0o644)):
            path = os.path.join(directory, f"{name}.{suffix}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.fchmod(fd, mode)
                os.write(fd, data)
            finally:
                os.close(fd)
            written.append(path)
    return written


def _check_p521(key, path: str) -> None:
    if not isinstance(key.curve, ec.SECP521R1):
        raise ValueError(f"{path}: not a P-521 (secp521r1) key")


def load_public_key(path: str) -> ec.EllipticCurvePublicKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: not an EC public key")
    _check_p521(key, path)
    return key


def load_private_key(path: str) -> ec.EllipticCurvePrivateKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    _check_p521(key, path)
    return key


def verify(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA512()))
        return True
    except InvalidSignature:
        return False


# ---------------------------------------------------------------------------------------------
# helpers

def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Refusal(Exception):
    """An error answer: HTTP status, error code, message, and the ledger 'refused' counter."""

    def __init__(self, status: int, error: str, message: str, counter: str | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.counter = counter
        self.extra = extra or {}


def bad_request(message: str) -> Refusal:
    return Refusal(400, "invalid_request", message, "invalid_request")


def want_str(body: dict, name: str, pattern: re.Pattern | None = None, what: str = "") -> str:
    value = body.get(name)
    if not isinstance(value, str) or value == "":
        raise bad_request(f"{name} must be a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise bad_request(f"{name} must be {what}")
    return value


def want_amount(body: dict) -> int:
    value = want_str(body, "amount_minor", AMOUNT, "a string of 1 to 18 decimal digits")
    amount = int(value)
    if amount <= 0:
        raise bad_request("amount_minor must be greater than 0")
    return amount


def want_url(body: dict, name: str = "paymentCompletedCallbackUrl") -> str:
    value = want_str(body, name)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise bad_request(f"{name} must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise bad_request(f"{name} must be an absolute http(s) URL")
    return value


def outcome_of(method_id: str) -> str:
    for prefix in ("sky-decline", "sky-processing-lost-callback", "sky-processing", "sky-slow", "sky-5xx", "sky-timeout",
                   "sky-lost-callback", "sky-double-callback", "sky-unpaid"):
        if method_id.startswith(prefix):
            return prefix
    return "default"


# ---------------------------------------------------------------------------------------------
# the sandbox state and logic

class Sandbox:
    def __init__(self, merchant_id: str, payment_key, reversal_key, callback_key,
                 processing_seconds: float, slow_seconds: float, timeout_seconds: float,
                 log_file):
        self.merchant_id = merchant_id
        self.keys = {"payment": payment_key, "reversal": reversal_key}
        self.callback_key = callback_key
        self.processing_seconds = processing_seconds
        self.slow_seconds = slow_seconds
        self.timeout_seconds = timeout_seconds
        self.log_file = log_file
        self.log_lock = threading.Lock()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sessions: dict[str, tuple[str, float]] = {}     # session_id -> (purpose, expires_at)
        self.operations: dict[str, dict] = {}               # request_id -> operation (ordered)
        self.duplicate_attempts: list[dict] = []
        self.failed_calls = 0
        self.five_xx_seen: dict[str, int] = {}
        self.refused = {k: 0 for k in REFUSED_KINDS}
        self.callbacks: list[dict] = []
        # /_sandbox/faults: what goes wrong for everyone until a monotonic deadline (chaos drill)
        self.faults: dict[str, tuple[str, float]] = {}
        self.fault_log: list[dict] = []

    # -- logging ---------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        with self.log_lock:
            self.log_file.write(f"{now_iso()} {line}\n")
            self.log_file.flush()

    # -- state helpers (call with self.lock held) ---------------------------------------------

    def _refresh(self, op: dict) -> None:
        """Lazy evaluation: a sky-processing charge is COMPLETED once its time has come."""
        if op["status"] == "PROCESSING" and op.get("complete_at") is not None \
                and time.time() >= op["complete_at"]:
            op["status"] = "COMPLETED"

    def _record(self, **fields) -> dict:
        op = {"request_id": fields["request_id"], "operation": fields["operation"],
              "status": fields["status"], "amount_minor": fields["amount_minor"],
              "currency": fields["currency"], "method_id": fields.get("method_id"),
              "payment_id": fields.get("payment_id"),
              "original_request_id": fields.get("original_request_id"),
              "decline_reason": fields.get("decline_reason"), "created_at": now_iso(),
              # internal (not in the ledger)
              "callback_url": fields["callback_url"], "webhook_id": "msg_" + secrets.token_hex(16),
              "complete_at": fields.get("complete_at"), "deliveries": 0}
        self.operations[op["request_id"]] = op
        return op

    @staticmethod
    def _answer(op: dict) -> dict:
        answer = {"request_id": op["request_id"], "status": op["status"]}
        if op["status"] == "DECLINED":
            answer["decline_reason"] = op["decline_reason"]
        return answer

    def _duplicate(self, request_id: str, endpoint: str) -> Refusal | None:
        op = self.operations.get(request_id)
        if op is None:
            return None
        self._refresh(op)
        self.duplicate_attempts.append({"request_id": request_id, "endpoint": endpoint})
        return Refusal(409, "duplicate_request_id",
                       f"request_id {request_id} was already recorded", None,
                       {"status": op["status"]})

    # -- injected faults --------------------------------------------------------------------------

    def set_fault(self, body) -> dict:
        """{"provider": "5xx"|"timeout"|"none"} and/or {"callbacks": "drop"|"double"|"none"}, with
        "seconds" (how long; default 20). provider 5xx: every /v1/ call is answered 500 and does
        nothing; timeout: calls are carried out but their answers held until the window closes
        (at most --timeout-seconds), so the caller cannot know the outcome. callbacks drop: no
        delivery is sent; double: every delivery is sent twice."""
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        seconds = body.get("seconds", 20)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise bad_request("seconds must be a number in (0, 3600]")
        allowed = {"provider": ("5xx", "timeout", "none"), "callbacks": ("drop", "double", "none")}
        changes = {k: body[k] for k in allowed if k in body}
        if not changes or set(body) - set(allowed) - {"seconds"}:
            raise bad_request('give "provider" and/or "callbacks" (and "seconds")')
        for kind, mode in changes.items():
            if mode not in allowed[kind]:
                raise bad_request(f"{kind} must be one of {', '.join(allowed[kind])}")
        with self.lock:
            until = time.monotonic() + seconds
            for kind, mode in changes.items():
                if mode == "none":
                    self.faults.pop(kind, None)
                else:
                    self.faults[kind] = (mode, until)
                self.fault_log.append({"kind": kind, "mode": mode, "seconds": seconds, "at": now_iso()})
            return self.active_faults()

    def active_faults(self) -> dict:
        """{kind: (mode, seconds left)} of the faults still on (call with self.lock held)."""
        now = time.monotonic()
        return {k: {"mode": m, "seconds_left": round(u - now, 3)} for k, (m, u) in self.faults.items() if u > now}

    def fault(self, kind: str) -> tuple[str | None, float]:
        with self.lock:
            mode, until = self.faults.get(kind, (None, 0.0))
        left = until - time.monotonic()
        return (mode, left) if left > 0 else (None, 0.0)

    # -- authentication --------------------------------------------------------------------------

    def authenticate(self, headers, raw: bytes) -> str:
        """Checks X-Merchant-Id, X-Request-Timestamp and X-Signature; returns which key signed."""
        merchant = headers.get("X-Merchant-Id")
        if merchant != self.merchant_id:
            raise Refusal(403, "unknown_merchant", "X-Merchant-Id is missing or unknown",
                          "unknown_merchant")
        ts = headers.get("X-Request-Timestamp")
        if ts is None or not TIMESTAMP.match(ts):
            raise Refusal(401, "stale_request",
                          "X-Request-Timestamp must be unix seconds in decimal", "stale_request")
        if abs(time.time() - int(ts)) > MAX_CLOCK_SKEW:
            raise Refusal(401, "stale_request",
                          f"X-Request-Timestamp is more than {MAX_CLOCK_SKEW} s away from now",
                          "stale_request")
        sig_b64 = headers.get("X-Signature")
        signature = None
        if sig_b64:
            try:
                signature = base64.b64decode(sig_b64.strip(), validate=True)
            except ValueError:
                signature = None
        if signature:
            signed = ts.encode("ascii") + b"." + raw
            for kind in ("payment", "reversal"):
                if verify(self.keys[kind], signature, signed):
                    return kind
        raise Refusal(401, "invalid_signature",
                      "X-Signature is missing or does not verify", "invalid_signature")

    def require_key(self, signed_with: str, wanted: str, endpoint: str) -> None:
        if signed_with != wanted:
            raise Refusal(401, "invalid_signature",
                          f"{endpoint} must be signed with the {wanted} key", "wrong_key")

    def require_session(self, body: dict, purposes: tuple[str, ...]) -> None:
        session_id = want_str(body, "session_id")
        with self.lock:
            entry = self.sessions.get(session_id)
            now = time.time()
            if entry is not None and entry[1] <= now:
                del self.sessions[session_id]
                entry = None
        if entry is None:
            raise Refusal(401, "invalid_session", "session_id is unknown or expired",
                          "invalid_session")
        if entry[0] not in purposes:
            raise Refusal(401, "invalid_session",
                          f"this endpoint needs a {' or '.join(purposes)} session, "
                          f"not a {entry[0]} one", "invalid_session")

    # -- endpoints: each returns (status, body dict, after) where after() runs after answering --

    def init_session(self, body: dict, signed_with: str):
        purpose = body.get("purpose")
        if purpose not in ("payment", "reversal"):
            raise bad_request('purpose must be "payment" or "reversal"')
        self.require_key(signed_with, purpose, f"a {purpose} initSession")
        session_id = secrets.token_urlsafe(24)
        with self.lock:
            now = time.time()
            for sid in [s for s, (_, exp) in self.sessions.items() if exp <= now]:
                del self.sessions[sid]
            self.sessions[session_id] = (purpose, now + SESSION_TTL)
        return 200, {"session_id": session_id, "expires_in": SESSION_TTL}, None, purpose

    def complete_merchant_acquiring(self, body: dict, signed_with: str):
        request_id = want_str(body, "request_id", UUID_LOWER, "a lower-case UUID")
        payment_id = want_str(body, "payment_id", UUID_ANY, "a UUID")
        method_id = want_str(body, "method_id")
        amount = want_amount(body)
        currency = want_str(body, "currency", CURRENCY, "3 to 5 upper-case letters")
        url = want_url(body)
        self.require_key(signed_with, "payment", "completeMerchantAcquiring")
        self.require_session(body, ("payment",))
        outcome = outcome_of(method_id)
        with self.lock:
            dup = self._duplicate(request_id, "completeMerchantAcquiring")
            if dup is not None:
                raise dup
            if outcome == "sky-5xx":
                seen = self.five_xx_seen.get(request_id, 0)
                if seen < FIVE_XX_FAILURES:
                    self.five_xx_seen[request_id] = seen + 1
                    self.failed_calls += 1
                    raise Refusal(500, "internal_error",
                                  f"sandbox failure {seen + 1} of {FIVE_XX_FAILURES} (sky-5xx)")
            status, reason, complete_at = "COMPLETED", None, None
            if outcome == "sky-decline":
                status, reason = "DECLINED", "insufficient_funds"
            elif outcome in ("sky-processing", "sky-processing-lost-callback"):
                status, complete_at = "PROCESSING", time.time() + self.processing_seconds
            elif outcome == "sky-unpaid":
                status = "PROCESSING"
            op = self._record(request_id=request_id, operation="payment", status=status,
                              amount_minor=str(amount), currency=currency, method_id=method_id,
                              payment_id=payment_id, decline_reason=reason, callback_url=url,
                              complete_at=complete_at)
            answer = self._answer(op)

        delay = 0.0
        after = None
        if outcome == "sky-slow":
            delay = self.slow_seconds
        elif outcome == "sky-timeout":
            delay = self.timeout_seconds
        if outcome == "sky-processing":
            self._start(self._complete_later, request_id)
        elif outcome == "sky-double-callback":
            def after():
                self._start(self._deliver, request_id, CALLBACK_DELAY)
                self._start(self._deliver, request_id, CALLBACK_DELAY + DOUBLE_CALLBACK_GAP)
        elif outcome not in ("sky-timeout", "sky-lost-callback", "sky-unpaid", "sky-processing-lost-callback"):
            def after():
                self._start(self._deliver, request_id, CALLBACK_DELAY)
        if delay > 0:
            self.stopping.wait(delay)
        return 200, answer, after, status

    def process_payment_reversal(self, body: dict, signed_with: str):
        request_id = want_str(body, "request_id", UUID_LOWER, "a lower-case UUID")
        original_id = want_str(body, "original_request_id", UUID_LOWER, "a lower-case UUID")
        amount = want_amount(body)
        currency = want_str(body, "currency", CURRENCY, "3 to 5 upper-case letters")
        url = want_url(body)
        self.require_key(signed_with, "reversal", "processPaymentReversal")
        self.require_session(body, ("reversal",))
        with self.lock:
            dup = self._duplicate(request_id, "processPaymentReversal")
            if dup is not None:
                raise dup
            original = self.operations.get(original_id)
            if original is not None:
                self._refresh(original)
            if original is None or original["operation"] != "payment" \
                    or original["status"] != "COMPLETED":
                raise Refusal(404, "unknown_original_request",
                              f"{original_id} is not a COMPLETED charge")
            if currency != original["currency"]:
                raise Refusal(400, "invalid_request",
                              f"currency {currency} differs from the charge's "
                              f"{original['currency']}", "invalid_request")
            reversed_so_far = sum(int(op["amount_minor"]) for op in self.operations.values()
                                  if op["operation"] == "reversal"
                                  and op["original_request_id"] == original_id
                                  and op["status"] in ("COMPLETED", "PROCESSING"))
            if reversed_so_far + amount > int(original["amount_minor"]):
                raise Refusal(400, "reversal_exceeds_charge",
                              f"{reversed_so_far} + {amount} exceeds the charge's "
                              f"{original['amount_minor']}")
            op = self._record(request_id=request_id, operation="reversal", status="COMPLETED",
                              amount_minor=str(amount), currency=currency,
                              method_id=original["method_id"], payment_id=original["payment_id"],
                              original_request_id=original_id, callback_url=url)
            answer = self._answer(op)
            silent = original["method_id"].startswith("sky-lost-callback")
        after = None
        if not silent:
            def after():
                self._start(self._deliver, request_id, CALLBACK_DELAY)
        return 200, answer, after, "COMPLETED"

    def payment_status(self, body: dict, signed_with: str):
        request_id = want_str(body, "request_id")
        self.require_session(body, ("payment", "reversal"))
        with self.lock:
            op = self.operations.get(request_id)
            if op is None:
                raise Refusal(404, "not_found", f"request_id {request_id} was never recorded")
            self._refresh(op)
            answer = {"request_id": op["request_id"], "operation": op["operation"],
                      "status": op["status"], "amount_minor": op["amount_minor"],
                      "currency": op["currency"]}
            if op["status"] == "DECLINED":
                answer["decline_reason"] = op["decline_reason"]
        return 200, answer, None, op["status"]

    # -- callbacks -------------------------------------------------------------------------------

    def _start(self, target, *args) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _complete_later(self, request_id: str) -> None:
        with self.lock:
            complete_at = self.operations[request_id]["complete_at"]
        if self.stopping.wait(max(0.0, complete_at - time.time())):
            return
        with self.lock:
            self._refresh(self.operations[request_id])
        self._deliver(request_id, 0.0)

    def _deliver(self, request_id: str, delay: float, injected: bool = False) -> None:
        """One delivery: up to 1 + len(CALLBACK_RETRY_DELAYS) attempts, the same webhook-id."""
        if delay > 0 and self.stopping.wait(delay):
            return
        mode, _ = self.fault("callbacks")
        if mode == "drop" and not injected:
            with self.lock:
                self.callbacks.append({"request_id": request_id, "dropped": True})
            self.log(f"CALLBACK dropped request_id={request_id} (fault callbacks=drop)")
            return
        if mode == "double" and not injected:
            self._start(self._deliver, request_id, DOUBLE_CALLBACK_GAP, True)
        with self.lock:
            op = self.operations[request_id]
            self._refresh(op)
            op["deliveries"] += 1
            delivery = op["deliveries"]
            url, webhook_id = op["callback_url"], op["webhook_id"]
            body = compact({"request_id": request_id, "operation": op["operation"],
                            "status": op["status"]})
        for attempt in range(1, len(CALLBACK_RETRY_DELAYS) + 2):
            status = self._post_callback(url, webhook_id, body)
            with self.lock:
                self.callbacks.append({"request_id": request_id, "webhook_id": webhook_id,
                                       "attempt": attempt, "http_status": status,
                                       "delivery": delivery})
            self.log(f"CALLBACK {url} request_id={request_id} webhook_id={webhook_id} "
                     f"delivery={delivery} attempt={attempt} http_status={status}")
            if status is not None and 200 <= status < 300:
                return
            if attempt > len(CALLBACK_RETRY_DELAYS):
                return
            if self.stopping.wait(CALLBACK_RETRY_DELAYS[attempt - 1]):
                return

    def sign_webhook(self, webhook_id: str, timestamp: str, body: bytes) -> str:
        signed = f"{webhook_id}.{timestamp}.".encode("ascii") + body
        signature = self.callback_key.sign(signed, ec.ECDSA(hashes.SHA512()))
        return "v1e," + base64.b64encode(signature).decode("ascii")

    def _post_callback(self, url: str, webhook_id: str, body: bytes) -> int | None:
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "webhook-id": webhook_id,
                   "webhook-timestamp": timestamp,
                   "webhook-signature": self.sign_webhook(webhook_id, timestamp, body),
                   "User-Agent": "sky-technologies-sandbox"}
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=CALLBACK_HTTP_TIMEOUT)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def resend(self, request_id) -> dict | None:
        with self.lock:
            op = self.operations.get(request_id) if isinstance(request_id, str) else None
            if op is None:
                return None
            webhook_id = op["webhook_id"]
        self._start(self._deliver, request_id, 0.0)
        return {"request_id": request_id, "webhook_id": webhook_id}

    # -- ledger ----------------------------------------------------------------------------------

    def ledger(self) -> dict:
        fields = ("request_id", "operation", "status", "amount_minor", "currency", "method_id",
                  "payment_id", "original_request_id", "decline_reason", "created_at")
        with self.lock:
            operations = []
            for op in self.operations.values():
                self._refresh(op)
                operations.append({k: op[k] for k in fields})
            return {"operations": operations,
                    "duplicate_attempts": [dict(d) for d in self.duplicate_attempts],
                    "failed_calls": self.failed_calls, "refused": dict(self.refused),
                    "callbacks": [dict(c) for c in self.callbacks],
                    "faults": [dict(f) for f in self.fault_log]}

    def count_refusal(self, counter: str | None) -> None:
        if counter:
            with self.lock:
                self.refused[counter] += 1


# ---------------------------------------------------------------------------------------------
# HTTP

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the body would wait for the client's
    # delayed ACK (40 ms on Linux) on every keep-alive answer.
    disable_nagle_algorithm = True
    server_version = "sky-technologies-sandbox"
    sys_version = ""

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002  (silence the default access log)
        pass

    def _send(self, status: int, body: dict) -> None:
        data = compact(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True   # the caller went away (e.g. its timeout fired)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.isdigit() \
                or int(length) > MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def _log(self, request_id, outcome) -> None:
        self.sandbox.log(f"{self.command} {self.path} request_id={request_id or '-'} "
                         f"outcome={outcome}")

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/_sandbox/health":
            self._send(200, {"status": "ok"})
            self._log(None, "200 ok")
        elif path == "/_sandbox/ledger":
            self._send(200, self.sandbox.ledger())
            self._log(None, "200 ledger")
        elif path in ("/_sandbox/callback",) or path.startswith("/v1/"):
            self._send(405, {"error": "method_not_allowed", "message": "use POST"})
            self._log(None, "405 method_not_allowed")
        else:
            self._send(404, {"error": "not_found", "message": f"no such path {path}"})
            self._log(None, "404 not_found")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        if path == "/_sandbox/callback":
            self._sandbox_callback(raw)
            return
        if path == "/_sandbox/faults":
            try:
                body = json.loads((raw or b"").decode("utf-8"))
                self._send(200, {"faults": self.sandbox.set_fault(body)})
                self._log(None, f"200 faults {body}")
            except (UnicodeDecodeError, ValueError):
                self._send(400, {"error": "invalid_request", "message": "the body is not UTF-8 JSON"})
                self._log(None, "400 faults")
            except Refusal as r:
                self._send(r.status, {"error": r.error, "message": r.message})
                self._log(None, f"{r.status} faults")
            return
        if path == "/_sandbox/forget_sessions":
            # as after a provider restart: every session handed out so far is unknown now
            with self.sandbox.lock:
                forgotten = len(self.sandbox.sessions)
                self.sandbox.sessions.clear()
            self._send(200, {"forgotten": forgotten})
            self._log(None, f"200 forget_sessions {forgotten}")
            return
        name = path[len("/v1/"):] if path.startswith("/v1/") else None
        if name not in ENDPOINTS:
            self._send(404, {"error": "not_found", "message": f"no such path {path}"})
            self._log(None, "404 not_found")
            return
        request_id = None
        after = None
        try:
            if raw is None:
                raise bad_request(f"a body with Content-Length up to {MAX_BODY} bytes is required")
            signed_with = self.sandbox.authenticate(self.headers, raw)
            body = self._parse(raw)
            if isinstance(body.get("request_id"), str):
                request_id = body["request_id"]
            if not isinstance(body.get("merchant_id"), str):
                raise bad_request("merchant_id must be a string")
            if body["merchant_id"] != self.headers.get("X-Merchant-Id"):
                raise Refusal(403, "unknown_merchant",
                              "merchant_id differs from X-Merchant-Id", "unknown_merchant")
            fault, left = self.sandbox.fault("provider")
            if fault == "5xx":
                with self.sandbox.lock:
                    self.sandbox.failed_calls += 1
                raise Refusal(500, "internal_error", "sandbox failure (fault provider=5xx)")
            handler = {"initSession": self.sandbox.init_session,
                       "completeMerchantAcquiring": self.sandbox.complete_merchant_acquiring,
                       "processPaymentReversal": self.sandbox.process_payment_reversal,
                       "paymentStatus": self.sandbox.payment_status}[name]
            status, answer, after, outcome = handler(body, signed_with)
        except Refusal as r:
            self.sandbox.count_refusal(r.counter)
            error = {"error": r.error, "message": r.message}
            error.update(r.extra)
            self._send(r.status, error)
            self._log(request_id, f"{r.status} {r.error}" + (f" ({r.counter})"
                                                             if r.counter == "wrong_key" else ""))
            return
        if fault == "timeout":
            # carried out, but the caller gives up before it hears so
            self.sandbox.stopping.wait(min(left, self.sandbox.timeout_seconds))
            outcome += " (answer held: fault provider=timeout)"
        self._send(status, answer)
        self._log(request_id, f"{status} {outcome}")
        if after is not None:
            after()

    def _parse(self, raw: bytes) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise bad_request("Content-Type must be application/json")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise bad_request("the body is not UTF-8 JSON") from None
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        return body

    def _sandbox_callback(self, raw: bytes | None) -> None:
        try:
            body = json.loads((raw or b"").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        request_id = body.get("request_id") if isinstance(body, dict) else None
        result = self.sandbox.resend(request_id)
        if result is None:
            self._send(404, {"error": "not_found", "message": "no such request_id"})
            self._log(request_id, "404 not_found")
        else:
            self._send(200, result)
            self._log(request_id, "200 callback_queued")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# ---------------------------------------------------------------------------------------------
# command line

def write_port_file(path: str, port: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sky_technologies.py",
                                description="sky-technologies provider sandbox "
                                            "(or: sky_technologies.py keygen DIR)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="written (decimal port + newline, atomically) once listening")
    p.add_argument("--merchant-id", required=True)
    p.add_argument("--payment-public-key", required=True, metavar="PEM")
    p.add_argument("--reversal-public-key", required=True, metavar="PEM")
    p.add_argument("--callback-private-key", required=True, metavar="PEM")
    p.add_argument("--processing-seconds", type=float, default=2.0)
    p.add_argument("--slow-seconds", type=float, default=1.5)
    p.add_argument("--timeout-seconds", type=float, default=30.0)
    p.add_argument("--log", metavar="PATH", help="append log lines here instead of stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "keygen":
        if len(argv) != 2:
            print("usage: sky_technologies.py keygen DIR", file=sys.stderr)
            return 2
        for path in generate_keys(argv[1]):
            print(path)
        return 0

    args = parse_args(argv)
    try:
        payment_key = load_public_key(args.payment_public_key)
        reversal_key = load_public_key(args.reversal_public_key)
        callback_key = load_private_key(args.callback_private_key)
    except (OSError, ValueError) as e:
        print(f"sky_technologies: {e}", file=sys.stderr)
        return 2
    log_file = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    sandbox = Sandbox(args.merchant_id, payment_key, reversal_key, callback_key,
                      args.processing_seconds, args.slow_seconds, args.timeout_seconds, log_file)
    server = Server((args.host, args.port), Handler)
    server.sandbox = sandbox  # type: ignore[attr-defined]
    port = server.server_address[1]

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               daemon=True)
    serving.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    sandbox.log(f"listening on {args.host}:{port} merchant_id={args.merchant_id}")
    while not stop.wait(1.0):
        pass
    sandbox.log("stopping")
    sandbox.stopping.set()          # wakes delayed answers and pending callbacks
    server.shutdown()
    server.server_close()
    if log_file is not sys.stderr:
        log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
