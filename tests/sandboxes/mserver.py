#!/usr/bin/env python3
"""Sandbox of the mserver wallet (seed 003), for paygate's end-to-end tests and `make run`.

A real HTTP server speaking the seed's API as paygate reads it (docs/providers/mserver.md):
HTTP Basic auth, the {meta, data} envelope, the two-phase protocol (POST /v1/payments to prepare,
POST /v1/payments/{id}/pay), GET /v1/payments/{id}, the history GET /v1/payments with
page/size/type/status, the seed's error codes, a wallet ledger, at most one payment per
client_payment_id, and notifications signed with app_id + access_token = sha1(app_id + app_secret).

Standard library only. State in memory. One log line per request to stderr or --log.

    python3 tests/sandboxes/mserver.py --port 0 --port-file var/mserver.port \\
        --login +79261111111 --password-file var/mserver.password \\
        --app-id paygate-demo --app-secret-file var/mserver.app_secret \\
        --notify-url http://127.0.0.1:8080/callbacks/mserver/notify

Sandbox-only endpoints (no auth), see docs/providers/mserver.md:
    GET  /_sandbox/health
    GET  /_sandbox/ledger
    POST /_sandbox/plan       {"amount": "12.34", "scenario": "..."}  the scenario of the next
                              payments of that amount (rubles, as text)
    POST /_sandbox/notify     {"id": ..., "type": "undo"|"redo"|"complete"|"decline",
                               "credentials": "good"|"bad"|"missing"|"wrong_app", "where": "header"|"query",
                               "created_at": "...", "change": true}
    POST /_sandbox/set_status {"id": ..., "status": "...", "decline_reason": "..."}  silently
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import http.server
from decimal import Decimal, InvalidOperation

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SERVICES = {61: "Мультибанк", 834: "Мегафон"}        # id -> name; amount limits below
SERVICE_MIN_MINOR, SERVICE_MAX_MINOR = 100, 1_500_000
OWN_PHONE = "+79261111111"
WALLETS = {"+79261111112", "+79261111113"}          # other wallets p2p may reach
COMMISSION_PERCENT = 3                              # out and inout; in and p2p are free
REASONS = ("invalid_data", "insufficient_funds", "internal_error")


def now_iso() -> str:
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def rubles(minor: int):
    """Kopecks as the JSON number the seed shows (100, 103, 8.03): exact, since a float's repr
    is the shortest text that reads back as the same float."""
    return minor // 100 if minor % 100 == 0 else float(f"{minor // 100}.{minor % 100:02d}")


def to_minor(value):
    """A request amount (JSON number, read as Decimal) in kopecks, or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        return None
    d = Decimal(value) * 100
    if d != d.to_integral_value():
        return None
    return int(d)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Wallet:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.payments = {}           # id -> dict (internal, amounts in kopecks)
        self.by_client_id = {}       # client_payment_id -> id
        self.next_id = 1401089240000
        self.balance = args.balance_minor
        self.plans = {}              # amount_minor -> scenario
        self.creates = {}            # client_payment_id -> create calls
        self.pays = {}               # id -> pay calls
        self.notifications = []
        self.refused = {"unauthorized": 0}
        self.dropped = []            # connections dropped on purpose
        self.log_file = open(args.log, "a", buffering=1) if args.log else sys.stderr

    def log(self, line: str) -> None:
        self.log_file.write(f"{now_iso()} {line}\n")

    # -- views ---------------------------------------------------------------------------------

    def view(self, p: dict) -> dict:
        v = {"id": p["id"], "client_payment_id": p["client_payment_id"], "amount": rubles(p["amount"]),
             "total": rubles(p["total"]), "created_at": p["created_at"], "status": p["status"], "type": p["type"]}
        if p.get("processed_at"):
            v["processed_at"] = p["processed_at"]
        if p["status"] == "declined" and p.get("decline_reason"):
            v["decline_reason"] = p["decline_reason"]
        if p["type"] in ("out", "inout"):
            v["service"] = {"id": p["service"], "name": SERVICES.get(p["service"], "")}
            v["parameters"] = [{"code": k, "name": k, "value": str(val)} for k, val in sorted(p["parameters"].items())]
            v["outbound"] = {"id": 1, "code": "tpr_out", "name": "Кредит Пилот"}
        if p["type"] in ("in", "inout"):
            v["inbound"] = {"id": 4, "code": "ipsp_in", "name": "ООО ИПСП (агент)"}
            card = {"state": "created" if p["status"] == "created" else "active"}
            if p.get("card") is not None:
                card["id"] = p["card"]
            v["card"] = card
        if p["type"] == "p2p":
            v["destination"] = p["destination"]
            if p.get("message") is not None:
                v["message"] = p["message"]
        v["wallet"] = {"phone": OWN_PHONE}
        return v

    # -- the API -------------------------------------------------------------------------------

    def create(self, body: dict):
        """POST /v1/payments: returns (view, next_action, drop) where drop asks the handler to
        close the connection without an answer (the payment is created all the same)."""
        if not isinstance(body, dict):
            raise ApiError(400, "missing_type", "body is not a JSON object")
        ptype = body.get("type")
        if ptype is None:
            raise ApiError(400, "missing_type", "type is required")
        if ptype not in ("out", "p2p", "in", "inout"):
            raise ApiError(400, "missing_type", "type must be out, p2p, in or inout")
        cid = body.get("client_payment_id")
        if not isinstance(cid, str) or not UUID_RE.match(cid):
            raise ApiError(400, "missing_client_payment_id", "client_payment_id: a lower-case UUID is required")
        with self.lock:
            self.creates[cid] = self.creates.get(cid, 0) + 1
            if cid in self.by_client_id:
                # At most one payment per client_payment_id: the repeat gets the one made before.
                p = self.payments[self.by_client_id[cid]]
                self.log(f"create client_payment_id={cid} repeat -> {p['id']} {p['status']}")
                return self.view(p), ("pay" if p["status"] == "created" else "get"), False
        if "amount" not in body:
            raise ApiError(400, "missing_amount", "amount is required")
        amount = to_minor(body["amount"])
        if amount is None or amount <= 0:
            raise ApiError(400, "invalid_amount", "amount must be a positive sum in rubles and kopecks")
        p = {"client_payment_id": cid, "amount": amount, "type": ptype, "status": "created",
             "created_at": now_iso(), "service": None, "parameters": {}, "card": body.get("card"),
             "store_card": bool(body.get("store_card", False))}
        if ptype in ("out", "inout"):
            if "service" not in body:
                raise ApiError(400, "missing_service", "service is required")
            if body["service"] not in SERVICES:
                raise ApiError(404, "service_not_found", "no such service")
            if not SERVICE_MIN_MINOR <= amount <= SERVICE_MAX_MINOR:
                raise ApiError(400, "invalid_amount", "amount outside the service's limits")
            if not isinstance(body.get("parameters"), dict) or not body["parameters"]:
                raise ApiError(400, "missing_parameters", "parameters are required")
            p["service"] = int(body["service"])
            p["parameters"] = body["parameters"]
        if ptype == "p2p":
            dest = body.get("destination")
            if not dest:
                raise ApiError(400, "missing_destination", "destination is required")
            if dest == OWN_PHONE:
                raise ApiError(400, "invalid_destination", "a p2p transfer to oneself")
            if dest not in WALLETS:
                raise ApiError(404, "destination_not_found", "no such wallet")
            p["destination"] = dest
            p["message"] = body.get("message")
        commission = (amount * COMMISSION_PERCENT + 99) // 100 if ptype in ("out", "inout") else 0
        p["total"] = amount + commission
        with self.lock:
            scenario = self.plans.get(amount, "complete")
            if ptype == "p2p" and p["total"] > self.balance and not scenario.startswith("decline"):
                raise ApiError(400, "insufficient_funds", "not enough money in the wallet")
            if scenario.startswith("error:"):
                code = scenario.split(":", 1)[1]
                raise ApiError(404 if code.endswith("_not_found") else 400, code, "planned error")
            if cid in self.by_client_id:   # a concurrent repeat won the race
                q = self.payments[self.by_client_id[cid]]
                return self.view(q), ("pay" if q["status"] == "created" else "get"), False
            self.next_id += 1
            p["id"] = self.next_id
            p["scenario"] = scenario
            self.payments[p["id"]] = p
            self.by_client_id[cid] = p["id"]
            drop = scenario == "drop_after_create" and self.creates[cid] == 1
            self.log(f"create client_payment_id={cid} -> {p['id']} type={ptype} amount={amount} total={p['total']}"
                     f" scenario={scenario}{' (dropping the connection)' if drop else ''}")
            return self.view(p), ("update" if scenario == "update" else "pay"), drop

    def find(self, pid: str) -> dict:
        try:
            p = self.payments.get(int(pid))
        except ValueError:
            p = None
        if p is None:
            raise ApiError(404, "payment_not_found", "no such payment")
        return p

    def pay(self, pid: str, body):
        with self.lock:
            p = self.find(pid)
            self.pays[p["id"]] = self.pays.get(p["id"], 0) + 1
            if p["status"] != "created":
                return self.view(p), "get", False
            if isinstance(body, dict) and body.get("type") == "inout":
                # The deferred choice: an out payment is paid by card instead (in -> inout).
                if p["type"] != "out":
                    raise ApiError(400, "missing_type", "only an out payment may become inout")
                p["type"] = "inout"
                if body.get("card") is not None:
                    p["card"] = body["card"]
                p["store_card"] = bool(body.get("store_card", False))
            p["status"] = "processing"
            scenario = p["scenario"]
            self.log(f"pay {p['id']} -> processing scenario={scenario}")
            if scenario != "stuck":
                threading.Timer(self.args.processing_seconds, self.finish, (p["id"],)).start()
            # drop_after_pay: paid, but the caller never hears it (its outcome is unknown)
            return self.view(p), "get", scenario == "drop_after_pay"

    def finish(self, pid: int) -> None:
        with self.lock:
            p = self.payments[pid]
            if p["status"] != "processing":
                return
            scenario = p["scenario"]
            reason = scenario.split(":", 1)[1] if scenario.startswith("decline:") else None
            debit = p["total"] if p["type"] in ("out", "p2p") else 0
            if reason is None and debit > self.balance:
                reason = "insufficient_funds"
            if reason:
                p["status"], p["decline_reason"] = "declined", reason
            else:
                p["status"] = "completed"
                self.balance -= debit
                if p["type"] == "in":
                    self.balance += p["amount"]
            p["processed_at"] = now_iso()
            kind = "decline" if reason else "complete"
            self.log(f"finish {pid} -> {p['status']} {reason or ''}")
        self.notify(pid, kind, "processing", p["status"])

    def history(self, query: dict):
        def one(name, default):
            return query.get(name, [default])[0]
        try:
            page, size = int(one("page", "0")), int(one("size", "35"))
        except ValueError:
            raise ApiError(400, "invalid_request", "page and size are numbers")
        if page < 0 or not 1 <= size <= 1000:
            raise ApiError(400, "invalid_request", "page >= 0, 1 <= size <= 1000")
        statuses = set(one("status", "processing,completed,declined").split(","))
        types = set(one("type", "out,p2p,in,inout").split(","))
        with self.lock:
            rows = [p for p in sorted(self.payments.values(), key=lambda p: p["id"], reverse=True)
                    if p["status"] in statuses and p["type"] in types]
            return [self.view(p) for p in rows[page * size:(page + 1) * size]], len(rows)

    # -- notifications -------------------------------------------------------------------------

    def token(self, app_id: str) -> str:
        return hashlib.sha1((app_id + self.args.app_secret).encode()).hexdigest()

    def notify(self, pid: int, ntype: str, frm: str, to: str, credentials: str = "good",
               where: str = "header", created_at: str = None) -> dict:
        """POSTs one notification; returns what happened (also kept in the ledger)."""
        if not self.args.notify_url:
            return {"http_status": None, "error": "no --notify-url"}
        with self.lock:
            payment = self.view(self.payments[pid])
        body = {"created_at": created_at or now_iso(), "payment": payment, "from": frm, "to": to, "type": ntype}
        app_id = self.args.app_id if credentials != "wrong_app" else self.args.app_id + "-other"
        token = {"good": self.token(app_id), "wrong_app": self.token(app_id), "missing": None,
                 "bad": hmac.new(b"not-the-secret", app_id.encode(), hashlib.sha1).hexdigest()}[credentials]
        url, headers = self.args.notify_url, {"Content-Type": "application/json"}
        creds = {"app_id": app_id}
        if token is not None:
            creds["access_token"] = token
        if where == "query":
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(creds)
        else:
            headers.update({"App-Id": creds["app_id"]})
            if token is not None:
                headers["Access-Token"] = token
        data = json.dumps(body, ensure_ascii=False).encode()
        entry = {"payment_id": pid, "type": ntype, "created_at": body["created_at"], "credentials": credentials,
                 "where": where, "http_status": None, "answer": None}
        try:
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                entry["http_status"], entry["answer"] = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            entry["http_status"], entry["answer"] = e.code, e.read().decode(errors="replace")
        except OSError as e:
            entry["answer"] = str(e)
        with self.lock:
            self.notifications.append(entry)
        self.log(f"notify {pid} {ntype} credentials={credentials} where={where} -> {entry['http_status']}")
        return entry

    def sandbox_notify(self, body: dict) -> dict:
        pid, ntype = int(body["id"]), body["type"]
        with self.lock:
            p = self.find(str(pid))
            frm = p["status"]
            if body.get("change", True):
                # undo: a completed payment is reversed (declined); redo: made completed again.
                if ntype == "undo" and p["status"] == "completed":
                    p["status"], p["decline_reason"] = "declined", None
                elif ntype == "redo" and p["status"] == "declined":
                    p["status"] = "completed"
                elif ntype == "complete" and p["status"] in ("processing", "created"):
                    p["status"] = "completed"
                elif ntype == "decline" and p["status"] in ("processing", "created"):
                    p["status"], p["decline_reason"] = "declined", body.get("decline_reason", "internal_error")
            to = p["status"]
        return self.notify(pid, ntype, frm, to, body.get("credentials", "good"), body.get("where", "header"),
                           body.get("created_at"))

    def ledger(self) -> dict:
        with self.lock:
            return {"payments": [dict(self.view(p), amount_minor=p["amount"], total_minor=p["total"],
                                      scenario=p["scenario"]) for p in self.payments.values()],
                    "creates": dict(self.creates), "pays": {str(k): v for k, v in self.pays.items()},
                    "balance_minor": self.balance, "notifications": list(self.notifications),
                    "refused": dict(self.refused), "dropped": list(self.dropped)}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mserver-sandbox/1"

    @property
    def wallet(self) -> Wallet:
        return self.server.wallet

    def log_message(self, format, *args):  # noqa: A002  (our own log line per request instead)
        pass

    def answer(self, status: int, doc) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def envelope(self, data, next_action=None, extra_meta=None) -> None:
        meta = {"code": 200}
        if next_action:
            meta["next_action"] = next_action
        meta.update(extra_meta or {})
        self.answer(200, {"meta": meta, "data": data})

    def error(self, e: ApiError) -> None:
        self.answer(e.status, {"meta": {"code": e.status, "error_type": e.code, "error_message": e.message},
                               "data": None})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw, parse_float=Decimal)
        except (ValueError, InvalidOperation):
            raise ApiError(400, "invalid_request", "body is not JSON")

    def authorized(self) -> bool:
        expected = base64.b64encode(f"{self.wallet.args.login}:{self.wallet.args.password}".encode()).decode()
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Basic {expected}".encode())

    def drop(self, why: str) -> None:
        """Closes the connection without any answer (the caller's outcome is unknown)."""
        self.wallet.dropped.append(why)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        w = self.wallet
        try:
            if path.startswith("/_sandbox/"):
                return self.sandbox(method, path)
            if not self.authorized():
                w.refused["unauthorized"] += 1
                self.body()
                raise ApiError(401, "unauthorized", "HTTP Basic credentials required")
            if method == "POST" and path == "/v1/payments":
                view, next_action, drop = w.create(self.body())
                if drop:
                    return self.drop(f"after create {view['client_payment_id']}")
                return self.envelope(view, next_action)
            m = re.fullmatch(r"/v1/payments/([0-9]+)/pay", path)
            if method == "POST" and m:
                view, next_action, drop = w.pay(m.group(1), self.body())
                if drop:
                    return self.drop(f"after pay {view['id']}")
                return self.envelope(view, next_action)
            m = re.fullmatch(r"/v1/payments/([0-9]+)", path)
            if method == "GET" and m:
                with w.lock:
                    view = w.view(w.find(m.group(1)))
                return self.envelope(view)
            if method == "GET" and path == "/v1/payments":
                rows, total = w.history(query)
                return self.envelope(rows, extra_meta={"page": {"total_elements": total}})
            raise ApiError(404, "not_found", "no such endpoint")
        except ApiError as e:
            w.log(f"{method} {path} -> {e.status} {e.code}")
            self.error(e)

    def sandbox(self, method: str, path: str) -> None:
        w = self.wallet
        if method == "GET" and path == "/_sandbox/health":
            return self.answer(200, {"status": "ok"})
        if method == "GET" and path == "/_sandbox/ledger":
            return self.answer(200, w.ledger())
        body = self.body() or {}
        if method == "POST" and path == "/_sandbox/plan":
            amount = to_minor(Decimal(str(body["amount"])))
            with w.lock:
                w.plans[amount] = body["scenario"]
            return self.answer(200, {"amount_minor": amount, "scenario": body["scenario"]})
        if method == "POST" and path == "/_sandbox/notify":
            return self.answer(200, w.sandbox_notify(body))
        if method == "POST" and path == "/_sandbox/set_status":
            with w.lock:
                p = w.find(str(body["id"]))
                p["status"] = body["status"]
                p["decline_reason"] = body.get("decline_reason")
                view = w.view(p)
            return self.answer(200, view)
        raise ApiError(404, "not_found", "no such sandbox endpoint")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def read_first_line(path: str) -> str:
    with open(path) as f:
        return f.readline().rstrip("\r\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mserver.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--login", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--app-id", required=True)
    p.add_argument("--app-secret-file", required=True)
    p.add_argument("--notify-url", default="")
    p.add_argument("--processing-seconds", type=float, default=0.3)
    p.add_argument("--balance-minor", type=int, default=100_000_000)
    p.add_argument("--log")
    args = p.parse_args(argv)
    args.password = read_first_line(args.password_file)
    args.app_secret = read_first_line(args.app_secret_file)
    server = Server((args.host, args.port), Handler)
    server.wallet = Wallet(args)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    server.wallet.log(f"listening on {args.host}:{port}")

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
