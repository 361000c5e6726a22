#!/usr/bin/env python3
"""The chaos drill behind bench/chaos.sh (docs/testing.md#the-chaos-drill).

One stack (scripts/stack.py): PostgreSQL primary with a synchronous streaming standby, two
paygated (d1, d2) on a multi-host connection string (target_session_attrs=read-write), two nginx
(each linked to both daemons), the sky-technologies sandbox. For --seconds a load generator runs
payment stories at a steady rate against both nginx: create, accept, cancel, refund, and retries
of every unanswered or 5xx request with the same idempotency token (and, now and then, a replay
of an answered one). Meanwhile a fault injector works through the schedule it prints first:
kill -9 of a daemon, a PostgreSQL restart (fast shutdown), nginx reload of both, a rolling SIGTERM
of both daemons, the sandbox answering 5xx and then timing out, callbacks dropped and then sent
twice, and a failover (primary killed, standby promoted; later the lost node comes back as the
new primary's synchronous standby).

After the load stops and the tasks drain, three ledgers are reconciled: what clients were told
(every 2xx, with its ids), what PostgreSQL holds, and what the sandbox charged and reversed.
Printed per category; the exit status is 1 when any of lost, duplicated, double-charged, stuck
or amounts mismatched is not zero, or the stack's log check found a problem. The last line is
`chaos: N payments, L lost, D duplicated, C double-charged, S stuck`.

Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import http.client
import json
import random
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack, StackError, wait_until  # noqa: E402

API = "/api/v1/payment"
CLIENT = "chaos"
CURRENCY = "USD"
FINAL = ("completed", "declined", "cancelled", "reversed")
# Answers after which a client sends the very same request again (same idempotency token).
RETRY_STATUSES = (409, 500, 502, 503, 504)

# The fault schedule, as fractions of the run (the order of docs/testing.md). Fault windows are
# 20 s in the 5-minute drill and shrink in proportion for shorter runs (at least 3 s).
SCHEDULE = (
    (0.05, "kill_daemon", "kill -9 of paygated d1 (started again 2 s later)"),
    (0.12, "provider_5xx", "sandbox answers 5xx for {window:.0f} s"),
    (0.22, "postgres_restart", "PostgreSQL restart (pg_ctl stop -m fast, start)"),
    (0.30, "nginx_reload", "nginx -s reload on both instances"),
    (0.37, "provider_timeout", "sandbox answers time out (held) for {window:.0f} s"),
    (0.47, "rolling_sigterm", "rolling SIGTERM of d1 then d2 (each started again at once)"),
    (0.56, "callbacks_drop", "callbacks dropped for {window:.0f} s"),
    (0.64, "callbacks_double", "callbacks sent twice for {window:.0f} s"),
    (0.73, "failover", "failover: SIGKILL of the primary, pg_ctl promote of the standby"),
    (0.83, "rejoin", "the lost node back as the new primary's synchronous standby"),
)

# The stack's task retry backoff (200 ms doubling to 2 s) is a test's: 12 attempts span about
# 7 to 13 s (equal jitter). Production's (500 ms to 300 s) outlasts outages of ten minutes and
# more; a cap of 8 s keeps that proportion to the drill's 20 s provider outages (12 attempts span
# 27 to 54 s). Only work that never reached the provider counts attempts (docs/tasks.md).
DAEMON_CONFIG = {"task_backoff_max_ms": "8000"}

# No log line is excused: the faults make the daemons warn (db_connection_lost, db_unavailable,
# provider_outcome_unknown…), never log an error; the stack's log check (no error lines, no
# sanitizer report, no crash, every SIGTERM an exit 0) is part of the verdict.


def minor_to_text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


class Told:
    """What clients were told: every answer (for the error budget), every 2xx with its ids."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str, object, str]] = []   # (time, op, status, code)
        self.creates: dict[str, dict] = {}      # create token -> {amount, ids}
        self.payments: dict[str, dict] = {}     # payment id -> what was told about it
        self.actions: dict[str, tuple[str, str]] = {}   # action token -> (payment id, action)
        self.gave_up = collections.Counter()    # op -> requests never answered for sure
        self.replays_differing = 0

    def answer(self, op: str, status, code: str) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), op, status, code))


class Load:
    """Payment stories at a steady rate against both nginx."""

    def __init__(self, ports: list[int], token: str, told: Told, rate: float, seed: int,
                 request_deadline: float, story_threads: int):
        self.ports = ports
        self.token = token
        self.told = told
        self.rate = rate
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.request_deadline = request_deadline
        self.stop_new = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=story_threads,
                                                          thread_name_prefix="story")
        self.pending = 0
        self.pending_lock = threading.Lock()
        self.started = collections.Counter()
        self.shed = 0
        self.max_pending = story_threads * 2

    def random(self):
        with self.rng_lock:
            return self.rng.random()

    def choice(self, items):
        with self.rng_lock:
            return self.rng.choice(items)

    # -- one request ----------------------------------------------------------------------------

    def call(self, op: str, method: str, path: str, body=None):
        port = self.choice(self.ports)
        headers = {"x_auth_token": self.token}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            conn.request(method, API + path, body=raw, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as e:
            self.told.answer(op, None, type(e).__name__)
            return None, None
        finally:
            conn.close()
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        code = (doc or {}).get("code", "") if isinstance(doc, dict) else ""
        self.told.answer(op, status, code)
        return status, doc

    def until_answered(self, op: str, path: str, body: dict):
        """POSTs `body` until a final answer (not a 409/5xx/broken connection), always with the
        same idempotency token. (None, None) when the deadline passes first: never told."""
        deadline = time.monotonic() + self.request_deadline
        pause = 0.2
        while True:
            status, doc = self.call(op, "POST", path, body)
            if status is not None and status not in RETRY_STATUSES:
                return status, doc
            if time.monotonic() + pause > deadline:
                with self.told.lock:
                    self.told.gave_up[op] += 1
                return None, None
            time.sleep(pause)
            pause = min(2.0, pause * 1.5)

    def replay_now_and_then(self, op: str, path: str, body: dict, first: dict, key: str) -> None:
        """A client that did not trust its 200 sends the same request again: same answer."""
        if self.random() >= 0.15:
            return
        status, doc = self.until_answered(op + "_replay", path, body)
        if status is not None and 200 <= status < 300 and doc.get(key) != first.get(key):
            with self.told.lock:
                self.told.replays_differing += 1
            print(f"chaos: replay of {op} {body['idempotency_token']} answered {doc} after {first}",
                  flush=True)

    def status_of(self, pid: str):
        status, doc = self.call("status", "GET", f"/{pid}/retrieve/status")
        return doc.get("payment_status") if status == 200 and isinstance(doc, dict) else None

    def wait_status(self, pid: str, wanted: tuple, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_new.is_set():
            st = self.status_of(pid)
            if st in wanted:
                return st
            time.sleep(0.5)
        return None

    # -- stories ----------------------------------------------------------------------------------

    def create(self, method_id: str):
        minor = 100 + int(self.random() * 9900)
        token = str(uuid.uuid4())
        body = {"idempotency_token": token,
                "money_info": {"method_id": method_id, "currency": CURRENCY, "amount": minor_to_text(minor)},
                "recipcient": {"recipcient_id": "merchant-chaos"}, "sender": {"sender_id": "user-chaos"}}
        status, doc = self.until_answered("create", "/create", body)
        if status != 200:
            return None, minor
        pid = doc["transaction_id"]
        with self.told.lock:
            self.told.creates.setdefault(token, {"amount": minor, "ids": set()})["ids"].add(pid)
            self.told.payments.setdefault(pid, {"token": token, "amount": minor, "accepted": False,
                                                "cancelled": False, "reverse": False, "refunds": 0})
        self.replay_now_and_then("create", "/create", body, doc, "transaction_id")
        return pid, minor

    def action(self, pid: str, action: str, extra: dict):
        token = str(uuid.uuid4())
        body = {"idempotency_token": token, **extra}
        status, doc = self.until_answered(action, f"/{pid}/{action}", body)
        if status is None or not 200 <= status < 300:
            return status, doc
        with self.told.lock:
            self.told.actions[token] = (pid, action)
            told = self.told.payments[pid]
            if action == "accept":
                told["accepted"] = True
            elif action == "cancel":
                told["cancelled" if doc.get("payment_status") == "cancelled" else "reverse"] = True
        self.replay_now_and_then(action, f"/{pid}/{action}", body, doc, "payment_status")
        return status, doc

    def story(self, kind: str) -> None:
        try:
            self._story(kind)
        finally:
            with self.pending_lock:
                self.pending -= 1

    def _story(self, kind: str) -> None:
        method = {"decline": "sky-decline-chaos", "async": "sky-processing-chaos"}.get(kind, "card-chaos")
        pid, minor = self.create(method)
        if pid is None or self.stop_new.is_set():
            return
        if kind == "cancel":
            self.action(pid, "cancel", {"reason": "user_request"})
            return
        status, _ = self.action(pid, "accept", {"accept_info": {"drill": "chaos"}})
        if status != 200 or kind in ("charge", "decline", "async"):
            return
        if self.wait_status(pid, ("completed", "declined"), 60) != "completed" or self.stop_new.is_set():
            return
        if kind == "reverse":
            self.action(pid, "cancel", {"reason": "merchant_request"})
        elif kind == "refund":
            part = max(1, minor // 3)
            status, _ = self.refund(pid, part)
            if status == 200 and not self.stop_new.is_set():
                self.refund(pid, minor - part)

    def refund(self, pid: str, minor: int):
        token = str(uuid.uuid4())
        body = {"idempotency_token": token, "amount": minor_to_text(minor)}
        status, doc = self.until_answered("refund", f"/{pid}/refund", body)
        if status == 200:
            with self.told.lock:
                self.told.actions[token] = (pid, "refund")
                self.told.payments[pid]["refunds"] += minor
            self.replay_now_and_then("refund", f"/{pid}/refund", body, doc, "operation_id")
        return status, doc

    KINDS = ("charge", "charge", "refund", "reverse", "cancel", "decline", "async")

    def run(self, seconds: float) -> None:
        """Starts stories at `rate` per second for `seconds` (on its own thread)."""
        started = time.monotonic()
        n = 0
        while not self.stop_new.is_set():
            due = started + n / self.rate
            now = time.monotonic()
            if now - started >= seconds:
                break
            if due > now:
                time.sleep(min(0.05, due - now))
                continue
            n += 1
            kind = self.choice(self.KINDS)
            with self.pending_lock:
                if self.pending >= self.max_pending:
                    self.shed += 1
                    continue
                self.pending += 1
            self.started[kind] += 1
            self.pool.submit(self.story, kind)
        self.stop_new.set()

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.pending_lock:
                if self.pending == 0:
                    break
            time.sleep(0.2)
        self.pool.shutdown(wait=False, cancel_futures=True)


class Faults:
    """The fault injector: runs on the main thread (the harness starts daemons with a parent-
    death signal, which fires when the starting thread ends)."""

    def __init__(self, stack: Stack, seconds: float):
        self.stack = stack
        self.seconds = seconds
        self.window = max(3.0, 20.0 * seconds / 300.0)
        self.log: list[str] = []
        self.first = None
        self.last_end = None

    def plan(self) -> list[tuple[float, str, str]]:
        return [(frac * self.seconds, name, text.format(window=self.window)) for frac, name, text in SCHEDULE]

    def note(self, t0: float, text: str) -> None:
        line = f"  t={time.monotonic() - t0:6.1f} s  {text}"
        self.log.append(line)
        print(line, flush=True)

    def run(self, t0: float, stop: threading.Event) -> None:
        for at, name, text in self.plan():
            while time.monotonic() - t0 < at:
                if stop.wait(0.05):
                    return
            started = time.monotonic()
            self.first = self.first or started
            detail = getattr(self, name)()
            self.last_end = max(self.last_end or 0, time.monotonic(),
                                started + (self.window if name.startswith(("provider", "callbacks")) else 0))
            self.note(t0, f"{text}: done in {time.monotonic() - started:.1f} s{detail or ''}")

    # -- the faults -----------------------------------------------------------------------------

    def kill_daemon(self):
        code = self.stack.kill_daemon("d1", signal.SIGKILL)
        time.sleep(2.0)
        self.stack.start_daemon("d1", **DAEMON_CONFIG)
        return f" (exit {code})"

    def provider_5xx(self):
        self.stack.sandbox_post("/_sandbox/faults", {"provider": "5xx", "seconds": self.window})

    def provider_timeout(self):
        self.stack.sandbox_post("/_sandbox/faults", {"provider": "timeout", "seconds": self.window})

    def callbacks_drop(self):
        self.stack.sandbox_post("/_sandbox/faults", {"callbacks": "drop", "seconds": self.window})

    def callbacks_double(self):
        self.stack.sandbox_post("/_sandbox/faults", {"callbacks": "double", "seconds": self.window})

    def postgres_restart(self):
        self.stack.stop_postgres()
        self.stack.start_postgres()

    def nginx_reload(self):
        for name in self.stack.nginxes:
            self.stack.reload_nginx(name)

    def rolling_sigterm(self):
        codes = []
        for name in ("d1", "d2"):
            codes.append(self.stack.kill_daemon(name, signal.SIGTERM))
            self.stack.start_daemon(name, **DAEMON_CONFIG)
        return f" (exits {codes})"

    def failover(self):
        old = self.stack.pg.port
        new = self.stack.failover()
        return f" (primary was :{old}, now :{new.port})"

    def rejoin(self):
        standby = self.stack.rejoin_standby()
        return f" (standby :{standby.port}, sync)"


# ---------------------------------------------------------------------------------------------
# reconciliation

def rows(stack: Stack, sql: str) -> list[list[str]]:
    out = stack.psql(sql, timeout=120)
    return [line.split("|") for line in out.splitlines() if line]


def drain(stack: Stack, client_id: str, timeout: float) -> float:
    """Waits until nothing of this client's payments is in flight: no payment in
    bank_processing or waiting for its reversal, no task pending or running, no provider operation
    unresolved. Returns the seconds it took (the rest is what reconciliation calls stuck)."""
    started = time.monotonic()
    sql = (f"SELECT (SELECT count(*) FROM payments WHERE client_id = {client_id} AND (status = 'bank_processing'"
           f" OR (status = 'completed' AND reversal_requested))) + "
           f"(SELECT count(*) FROM tasks t JOIN payments p ON p.id = t.payment_id"
           f"  WHERE p.client_id = {client_id} AND t.state IN ('pending', 'running')) + "
           f"(SELECT count(*) FROM provider_operations o JOIN payments p ON p.id = o.payment_id"
           f"  WHERE p.client_id = {client_id} AND o.state NOT IN ('completed', 'declined'))")
    try:
        wait_until(lambda: stack.psql(sql) == "0", timeout, "the tasks to drain", interval=0.5)
    except StackError:
        pass
    return time.monotonic() - started


def reconcile(stack: Stack, told: Told, client_id: str) -> tuple[dict, list[str]]:
    """Reads PostgreSQL's and the sandbox's ledgers and compares them with what clients were told."""
    db = {r[0]: {"status": r[1], "amount": int(r[2]), "captured": int(r[3]), "refunded": int(r[4]),
                 "reversal_requested": r[5] == "t"}
          for r in rows(stack, "SELECT id, status, amount_minor, captured_minor, refunded_minor, reversal_requested "
                               f"FROM payments WHERE client_id = {client_id}")}
    events = rows(stack, "SELECT e.payment_id, e.action, coalesce(e.idempotency_token::text, '') FROM payment_events e "
                         f"JOIN payments p ON p.id = e.payment_id WHERE p.client_id = {client_id}")
    open_tasks = rows(stack, "SELECT t.payment_id, t.kind, t.state FROM tasks t JOIN payments p ON p.id = t.payment_id "
                             f"WHERE p.client_id = {client_id} AND t.state IN ('pending', 'running', 'dead')")
    open_ops = rows(stack, "SELECT o.payment_id, o.kind, o.state FROM provider_operations o JOIN payments p "
                           f"ON p.id = o.payment_id WHERE p.client_id = {client_id} "
                           "AND o.state NOT IN ('completed', 'declined')")
    ledger = stack.sandbox_get("/_sandbox/ledger")
    with told.lock:
        snapshot = {"creates": dict(told.creates), "payments": dict(told.payments),
                    "actions": dict(told.actions), "replays_differing": told.replays_differing}
    return compare(snapshot, db, events, open_tasks, open_ops, ledger)


def compare(told: dict, db: dict, events: list, open_tasks: list, open_ops: list,
            ledger: dict) -> tuple[dict, list[str]]:
    """The three ledgers side by side (plain data, so bench/test_chaos_reconcile.py can plant
    each kind of fault). Returns (category -> count, one explanation per finding)."""
    why: list[str] = []
    cat = collections.Counter()
    creates_of = collections.defaultdict(set)
    action_events = collections.Counter()
    for pid, action, token in events:
        if action == "create":
            creates_of[token].add(pid)
        elif token:
            action_events[token] += 1
    charges = collections.defaultdict(list)
    reversals = collections.defaultdict(list)
    for op in ledger["operations"]:
        if op["operation"] == "payment":
            charges[op["payment_id"]].append(op)
        else:
            reversals[op["payment_id"]].append(op)

    creates, payments, actions = told["creates"], told["payments"], told["actions"]
    cat["created"] = len(payments)

    # lost: told 2xx, not in PostgreSQL (or charged at the sandbox with no row)
    for pid in payments:
        if pid not in db:
            cat["lost"] += 1
            why.append(f"lost: payment {pid} was answered 200 but has no row")
    for token, (pid, action) in actions.items():
        if pid in db and action_events[token] == 0:
            cat["lost"] += 1
            why.append(f"lost: {action} {token} of {pid} was answered 2xx but is not in its history")
    for pid in charges:
        if pid not in db:
            cat["lost"] += 1
            why.append(f"lost: the sandbox charged {pid}, which PostgreSQL does not know")

    # duplicated: one idempotency token, two rows (or two ids told)
    for token, info in creates.items():
        ids = info["ids"] | creates_of.get(token, set())
        if len(ids) > 1:
            cat["duplicated"] += 1
            why.append(f"duplicated: create token {token} -> {sorted(ids)}")
    for token, n in action_events.items():
        if n > 1:
            cat["duplicated"] += 1
            why.append(f"duplicated: action token {token} is in the history {n} times")
    cat["duplicated"] += told["replays_differing"]

    # double-charged: two charges at the sandbox for one payment, or more reversed than charged
    for pid, ops in charges.items():
        live = [op for op in ops if op["status"] != "DECLINED"]
        if len(live) > 1:
            cat["double-charged"] += 1
            why.append(f"double-charged: {pid} has {len(live)} charges at the sandbox")
        charged = sum(int(op["amount_minor"]) for op in live if op["status"] == "COMPLETED")
        back = sum(int(op["amount_minor"]) for op in reversals.get(pid, []) if op["status"] == "COMPLETED")
        if back > charged:
            cat["double-charged"] += 1
            why.append(f"double-charged: {pid} reversed {back} of a {charged} charge")

    # stuck: not final after the drain
    for pid, p in db.items():
        if p["status"] == "bank_processing" or (p["status"] == "completed" and p["reversal_requested"]):
            cat["stuck"] += 1
            why.append(f"stuck: {pid} is {p['status']}" + (" (reversal requested)" if p["reversal_requested"] else ""))
    for pid, kind, state in open_tasks:
        cat["stuck"] += 1
        why.append(f"stuck: task {kind} of {pid} is {state}")
    for pid, kind, state in open_ops:
        cat["stuck"] += 1
        why.append(f"stuck: provider operation {kind} of {pid} is {state}")

    # amounts mismatched: what was told, what PostgreSQL says, what the sandbox moved
    for pid, t in payments.items():
        p = db.get(pid)
        if p is None:
            continue
        live = [op for op in charges.get(pid, []) if op["status"] != "DECLINED"]
        charged = sum(int(op["amount_minor"]) for op in live if op["status"] == "COMPLETED")
        back = sum(int(op["amount_minor"]) for op in reversals.get(pid, []) if op["status"] == "COMPLETED")
        problems = []
        if p["amount"] != t["amount"]:
            problems.append(f"amount {p['amount']} != told {t['amount']}")
        if p["captured"] != charged:
            problems.append(f"captured {p['captured']} != sandbox charged {charged}")
        if p["refunded"] != back:
            problems.append(f"refunded {p['refunded']} != sandbox reversed {back}")
        if any(int(op["amount_minor"]) != p["amount"] for op in live):
            problems.append("a sandbox charge of another amount")
        if t["accepted"] and p["status"] in ("created", "cancelled"):
            problems.append(f"accepted but {p['status']}")
        if not t["accepted"] and charges.get(pid) and p["status"] in ("created", "cancelled"):
            problems.append(f"charged at the sandbox but {p['status']}")
        if t["cancelled"] and p["status"] != "cancelled":
            problems.append(f"cancel answered cancelled but {p['status']}")
        if t["reverse"] and (p["status"] != "reversed" or back != charged):
            problems.append(f"full reversal answered but {p['status']}, {back} of {charged} back")
        if t["refunds"] > p["refunded"]:
            problems.append(f"refunds told {t['refunds']} > refunded {p['refunded']}")
        if p["status"] == "completed" and charged != p["amount"]:
            problems.append(f"completed with {charged} charged of {p['amount']}")
        if problems:
            cat["amounts mismatched"] += 1
            why.append(f"amounts mismatched: {pid}: " + "; ".join(problems))
    cat["untold rows"] = len([pid for pid in db if pid not in payments])
    return cat, why


def faults_seen(stack: Stack, client_id: str) -> str:
    """What the faults did, from the sandbox's ledger and PostgreSQL: proof they hit something."""
    ledger = stack.sandbox_get("/_sandbox/ledger")
    dropped = sum(1 for c in ledger["callbacks"] if c.get("dropped"))
    deliveries = collections.Counter((c["request_id"], c.get("delivery")) for c in ledger["callbacks"]
                                     if not c.get("dropped") and c.get("attempt") == 1)
    per_op = collections.Counter(rid for rid, _ in deliveries)
    unknown = stack.psql("SELECT count(*) FROM provider_operations o JOIN payments p ON p.id = o.payment_id "
                         f"WHERE p.client_id = {client_id} AND o.status_checks > 0")
    return (f"sandbox 5xx answers {ledger['failed_calls']}, callbacks dropped {dropped}, operations "
            f"called back more than once {sum(1 for n in per_op.values() if n > 1)}, provider operations "
            f"resolved by status checks {unknown}, sandbox duplicate request_ids refused "
            f"{len(ledger['duplicate_attempts'])}")


def error_budget(told: Told, start: float, end: float) -> list[str]:
    with told.lock:
        answers = [a for a in told.answers if start <= a[0] <= end]
    total = len(answers)
    bad = collections.Counter()
    for _, op, status, code in answers:
        if status is None:
            bad[f"no answer ({code})"] += 1
        elif status >= 500:
            bad[f"{status} {code or '-'}"] += 1
    n_bad = sum(bad.values())
    lines = [f"error budget during faults ({end - start:.0f} s): {n_bad} of {total} answers 5xx or none "
             f"({100.0 * n_bad / max(1, total):.2f} %)"]
    for what, n in bad.most_common():
        lines.append(f"  {what}: {n} ({100.0 * n / max(1, total):.2f} %)")
    return lines


# ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--seconds", type=float, default=300.0, help="load and faults (CHAOS_SECONDS)")
    ap.add_argument("--rate", type=float, default=6.0, help="payment stories started per second")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--drain-seconds", type=float, default=120.0)
    ap.add_argument("--fsync", action="store_true", help="PostgreSQL with fsync on (the full drill)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    told = Told()
    results: dict = {}
    problems: list[str] = []
    stack = Stack(args.build_dir, fsync=args.fsync, daemon_workers=4)
    try:
        with stack:
            stack.start_postgres()
            stack.migrate()
            stack.start_standby()
            token = stack.create_token(CLIENT)
            client_id = stack.psql(f"SELECT id FROM clients WHERE name = '{CLIENT}'")
            stack.start_sandbox(processing_seconds=1)
            for name in ("d1", "d2"):
                stack.start_daemon(name, **DAEMON_CONFIG)
            for name in ("nginx", "nginx2"):
                stack.start_nginx(name=name, worker_processes=2, paygate_timeout="5s")
            for name in stack.nginxes:   # each instance has its own token table
                wait_until(lambda: stack.http("GET", f"{API}/00000000-0000-4000-8000-000000000000/retrieve/status",
                                              headers={"x_auth_token": token}, name=name)[0] == 404,
                           30, f"nginx {name} to accept the chaos token", interval=0.1)
            ports = [n.port for n in stack.nginxes.values()]
            faults = Faults(stack, args.seconds)
            print(f"chaos: {args.seconds:.0f} s at {args.rate:g} payment stories/s against nginx :{ports[0]} and "
                  f":{ports[1]}; PostgreSQL :{stack.pg.port} with synchronous standby :{stack.pg_standby.port}; "
                  f"seed {seed}", flush=True)
            print("chaos: fault schedule", flush=True)
            for at, _, text in faults.plan():
                print(f"  t={at:6.1f} s  {text}", flush=True)
            print("chaos: faults as they happen", flush=True)

            load = Load(ports, token, told, args.rate, seed, request_deadline=max(30.0, args.seconds / 4),
                        story_threads=64)
            t0 = time.monotonic()
            pacer = threading.Thread(target=load.run, args=(args.seconds,), name="pacer")
            pacer.start()
            stop = threading.Event()
            try:
                faults.run(t0, stop)
            finally:
                stop.set()
                pacer.join()
            load.finish(timeout=max(60.0, args.seconds / 3))
            print(f"chaos: load stopped at t={time.monotonic() - t0:.1f} s; stories started "
                  f"{dict(load.started)}, shed {load.shed}", flush=True)
            drained = drain(stack, client_id, args.drain_seconds)
            print(f"chaos: drained in {drained:.1f} s", flush=True)
            cat, why = reconcile(stack, told, client_id)
            results["seen"] = faults_seen(stack, client_id)
            results.update(cat=cat, why=why,
                           budget=error_budget(told, faults.first or t0, faults.last_end or time.monotonic()),
                           overall=len(told.answers), gave_up=dict(told.gave_up))
    except StackError as e:
        problems.append(str(e))

    if "cat" not in results:
        print("chaos: the drill did not finish:\n" + "\n".join(problems), flush=True)
        print("chaos: 0 payments, drill failed", flush=True)
        return 1
    cat, why = results["cat"], results["why"]
    for line in why[:50]:
        print(f"  {line}", flush=True)
    if len(why) > 50:
        print(f"  ... {len(why) - 50} more", flush=True)
    for line in results["budget"]:
        print(line, flush=True)
    if results["gave_up"]:
        print(f"requests never answered for sure (clients gave up, so were told nothing): {results['gave_up']}",
              flush=True)
    print(f"answers in all: {results['overall']}; rows no client heard of (answer lost, retries gave up): "
          f"{cat['untold rows']}", flush=True)
    print(f"faults seen: {results['seen']}", flush=True)
    for name in ("created", "lost", "duplicated", "double-charged", "stuck", "amounts mismatched"):
        print(f"  {name:<20} {cat[name]}", flush=True)
    if problems:
        print("stack problems (log check):\n" + "\n".join(problems), flush=True)
    failed = any(cat[k] for k in ("lost", "duplicated", "double-charged", "stuck", "amounts mismatched"))
    print(f"chaos: {cat['created']} payments, {cat['lost']} lost, {cat['duplicated']} duplicated, "
          f"{cat['double-charged']} double-charged, {cat['stuck']} stuck", flush=True)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
