"""Lifecycle promises that only show under real contention (docs/daemon.md "Signals",
docs/api.md "Payment statuses"), with the contention made by hand: a psql session we control
holds a row lock, and PostgreSQL's own lock views (pg_locks, pg_blocking_pids) tell us when the
daemon's requests are really waiting on it. No sleeps: every step waits for a state.

- SIGTERM while a create waits on a row lock: the daemon keeps the request, finishes it once the
  lock goes, the client gets 200, the row is committed, exit status 0.
- The same with `shutdown_timeout_ms` shorter than the wait: `shutdown_timeout`, exit status 1,
  the client gets nginx's 504 `gateway_timeout`, and the orphaned transaction commits nothing.
- accept vs edit vs cancel of one payment queued on its row lock: exactly one of accept/cancel
  wins, the edit lands before the winner or is refused after it, and the history and the stored
  amount agree with the answers.
"""

import signal
import subprocess
import threading
import unittest

from e2e_base import PaymentStackTestCase, StackError, UUID_RE, create_body, new_uuid, wait_until
import stack as stackmod

CHARGE_TASK = "sky_technologies_integration_process_payment"


class HeldRowLock:
    """`SELECT 1 FROM <table> WHERE <where> FOR UPDATE` in an open transaction of a psql session
    of our own (application_name `tag`), held until release(). Returns once PostgreSQL shows the
    row locked (a SKIP LOCKED read from another session skips it)."""

    def __init__(self, stack, table: str, where: str, tag: str):
        self.stack, self.table, self.where, self.tag = stack, table, where, tag
        if stack.psql(f"SELECT count(*) FROM {table} WHERE {where}") != "1":
            raise StackError(f"HeldRowLock: no single row in {table} WHERE {where}")
        self.proc = subprocess.Popen(
            [str(stackmod.PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             "-d", f"{stack.conninfo} application_name={tag}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.released = False
        try:
            self._send(f"BEGIN;\nSELECT 1 FROM {table} WHERE {where} FOR UPDATE;\n")
            wait_until(self._held, 30, f"psql {tag} to hold the row lock on {table} WHERE {where}")
            self.pid = int(stack.psql(
                f"SELECT pid FROM pg_stat_activity WHERE application_name = '{tag}' "
                f"AND state = 'idle in transaction'"))
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stderr.close()
            raise

    def _send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def _held(self) -> bool:
        if self.proc.poll() is not None:
            raise StackError(f"psql {self.tag} exited ({self.proc.returncode}): "
                             f"{self.proc.stderr.read()}")
        return self.stack.psql(f"SELECT count(*) FROM (SELECT 1 FROM {self.table} WHERE {self.where} "
                               f"FOR UPDATE SKIP LOCKED) free") == "0"

    def release(self, how: str = "ROLLBACK") -> None:
        if self.released:
            return
        self.released = True
        self._send(f"{how};\n")
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=60)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if rc != 0:
            raise StackError(f"psql {self.tag} holding the lock failed ({rc}): {err}")


class Call(threading.Thread):
    """One request on a thread of its own; outcome() waits for its (status, headers, body)."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as e:   # reported by the test, not lost in the thread
            self.error = e

    def outcome(self, timeout: float = 120.0):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"request still running after {timeout}s")
        if self.error is not None:
            raise AssertionError(f"request failed: {self.error!r}")
        return self.result


class LifecycleCase(PaymentStackTestCase):
    """Helpers over PostgreSQL's view of the daemon's backends."""

    def client_id(self, name: str) -> str:
        return self.stack.psql(f"SELECT id FROM clients WHERE name = '{name}'")

    def blocked_by(self, lock_pid: int) -> list:
        """pids of paygated backends waiting on a lock held by backend `lock_pid`."""
        out = self.stack.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'paygated' "
            f"AND {lock_pid} = ANY(pg_blocking_pids(pid)) ORDER BY pid")
        return [int(p) for p in out.split()] if out else []

    def waiting_backends(self) -> int:
        """paygated backends with a lock request not granted (pg_locks)."""
        return int(self.stack.psql(
            "SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.application_name = 'paygated'"))

    def backend_alive(self, pid: int) -> bool:
        return self.stack.psql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "1"

    def payments_of_sender(self, sender: str) -> list:
        out = self.stack.psql(f"SELECT id FROM payments WHERE sender_id = '{sender}' ORDER BY id")
        return out.split() if out else []

    def restart_daemon(self) -> None:
        """Starts d1 again with the class's configuration; waits until nginx serves payments."""
        self.stack.start_daemon("d1", **self.daemon_config)
        self.wait_until_token_accepted(self.stack, self.token)

    def shutdown_line(self, event: str) -> dict:
        """The current daemon incarnation's `event` line ({} if none yet)."""
        lines = self.stack.daemons["d1"].events(event, whole=False)
        return lines[-1] if lines else {}


class SigtermDrainsTest(LifecycleCase):
    """SIGTERM finishes in-flight work: a create blocked on a row lock when the signal comes gets
    its 200 once the lock goes, the row is committed, and the daemon exits 0."""

    clients = ("drain",)
    daemon_workers = 2
    # Generous: the test itself decides how long the create waits; nothing here may time out.
    nginx = {"paygate_timeout": "60s"}
    daemon_config = {"shutdown_timeout_ms": "60000"}

    def test_sigterm_while_a_create_waits_on_a_row_lock(self):
        sender = f"drain-{new_uuid()[:8]}"
        body = create_body(sender=sender, amount="17.25")
        # The create's INSERT checks its foreign key to clients (FOR KEY SHARE on the client's
        # row): our FOR UPDATE of that row makes it wait.
        lock = HeldRowLock(self.stack, "clients", f"id = {self.client_id('drain')}", "lifecycle-drain")
        self.addCleanup(lock.release)
        create = Call(lambda: self.api("POST", "create", body, timeout=120))
        blocked = wait_until(lambda: self.blocked_by(lock.pid), 60,
                             "the create's backend to wait on our row lock")
        self.assertEqual(len(blocked), 1, blocked)

        # SIGTERM now; kill_daemon waits for the exit, which must not come before the lock goes.
        term = Call(lambda: self.stack.kill_daemon("d1", signal.SIGTERM, timeout=120))
        begin = wait_until(lambda: self.shutdown_line("shutdown_begin"), 60, "the shutdown_begin event")
        self.assertEqual(begin["signal"], "SIGTERM")
        self.assertEqual(begin["in_flight"], 1)
        # The signal is in, the request is still held: the daemon runs, the backend still waits,
        # the client has no answer.
        self.assertTrue(self.stack.daemons["d1"].running(), "paygated exited with work in flight")
        self.assertEqual(self.blocked_by(lock.pid), blocked)
        self.assertTrue(create.is_alive(), f"the create was answered while blocked: {create.result}")
        self.assertEqual(self.shutdown_line("shutdown_done"), {})

        lock.release()
        st, hdrs, raw = create.outcome()
        self.assertEqual(st, 200, raw)
        tid = self.assertJson(hdrs, raw)["transaction_id"]
        self.assertTrue(UUID_RE.match(tid), tid)
        self.assertEqual(term.outcome(), 0, "paygated exit status after SIGTERM")
        self.assertTrue(self.shutdown_line("shutdown_done"))
        self.assertEqual(self.shutdown_line("shutdown_timeout"), {})

        # Committed: the row, its create event and the key's recorded outcome.
        self.assertEqual(self.payments_of_sender(sender), [tid])
        self.assertEqual(self.stack.psql(
            f"SELECT amount_minor || ' ' || status FROM payments WHERE id = '{tid}'"), "1725 created")
        self.assertEqual(self.stack.psql(
            f"SELECT string_agg(action, ',') FROM payment_events WHERE payment_id = '{tid}'"), "create")
        # A new daemon serves it, and the same request is a replay of the committed outcome.
        self.restart_daemon()
        self.assertEqual(self.status_of(tid), "created")
        again = self.create(body)
        self.assertEqual((again[0], again[2]), (200, raw))
        self.assertEqual(again[1].get("Idempotent-Replayed"), "true")
        self.assertEqual(self.payments_of_sender(sender), [tid])


class ShutdownTimeoutTest(LifecycleCase):
    """SIGTERM with work outliving `shutdown_timeout_ms`: `shutdown_timeout`, exit status 1; the
    client gets 504 from nginx, and the create's transaction, orphaned in PostgreSQL, commits
    nothing once it can go on."""

    clients = ("stuck",)
    daemon_workers = 2
    nginx = {"paygate_timeout": "5s"}
    daemon_config = {"shutdown_timeout_ms": "1000"}

    def test_sigterm_gives_up_after_shutdown_timeout(self):
        self.stack.allow_log(r"event=shutdown_timeout in_flight=1 timeout_ms=1000",
                             "the test holds a row lock past shutdown_timeout_ms", "daemon")
        sender = f"stuck-{new_uuid()[:8]}"
        body = create_body(sender=sender, amount="3.10")
        lock = HeldRowLock(self.stack, "clients", f"id = {self.client_id('stuck')}", "lifecycle-stuck")
        self.addCleanup(lock.release)
        create = Call(lambda: self.api("POST", "create", body, timeout=120))
        blocked = wait_until(lambda: self.blocked_by(lock.pid), 60,
                             "the create's backend to wait on our row lock")
        self.assertEqual(len(blocked), 1, blocked)

        # The lock stays: the daemon gives up after 1 s. kill_daemon excuses the exit it asked for.
        rc = self.stack.kill_daemon("d1", signal.SIGTERM, timeout=60)
        self.assertEqual(rc, 1, "paygated exit status after shutdown_timeout")
        self.assertEqual(self.shutdown_line("shutdown_begin").get("in_flight"), 1)
        self.assertTrue(self.shutdown_line("shutdown_timeout"))
        self.assertEqual(self.shutdown_line("shutdown_done"), {})
        self.assertIn(self.stack.daemons["d1"].proc.pid, self.stack.daemons["d1"].excused_pids)

        self.assertJsonError(create.outcome(), 504, "gateway_timeout")

        # The dead daemon's backend still waits (PostgreSQL notices the closed socket only when
        # it talks to it). Let it go on: its INSERT runs, then its session ends without COMMIT.
        self.assertEqual(self.payments_of_sender(sender), [])
        lock.release()
        for pid in blocked:
            wait_until(lambda: not self.backend_alive(pid), 60,
                       f"the dead daemon's backend {pid} to end")
        self.assertEqual(self.payments_of_sender(sender), [], "an unanswered create was committed")

        # Nothing recorded for the key either: after a restart the same request executes anew.
        self.restart_daemon()
        again = self.create(body)
        self.assertEqual(again[0], 200, again[2])
        self.assertIsNone(again[1].get("Idempotent-Replayed"))
        tid = self.assertJson(again[1], again[2])["transaction_id"]
        self.assertEqual(self.payments_of_sender(sender), [tid])


class RaceDecidedByDatabaseTest(LifecycleCase):
    """accept, edit and cancel of one payment, all three queued on the payment's row lock (held
    by our psql session until pg_locks shows the three daemon backends waiting), then let go:
    PostgreSQL's lock queue decides. Exactly one of accept/cancel wins, the other gets 400
    invalid_state; the edit is applied before the winner or refused after it; payment_events,
    tasks and the stored amount agree with the answers."""

    clients = ("racer",)
    daemon_workers = 4   # three requests wait at once; a fourth worker keeps serving the rest
    nginx = {"paygate_timeout": "60s"}

    ORIGINAL = ("10.00", 1000)

    def race(self, n: int, order=None) -> dict:
        """One round. order=None: the three requests start together (the database picks the
        order); otherwise they are queued one by one in `order` (each waits before the next
        is sent), which fixes PostgreSQL's lock queue."""
        pid = self.create_payment(amount=self.ORIGINAL[0], currency="USD")
        edit_amount = f"{31 + n}.00"
        tokens = {a: new_uuid() for a in ("accept", "edit", "cancel")}
        bodies = {
            "accept": {"idempotency_token": tokens["accept"], "accept_info": {"round": n}},
            "edit": {"idempotency_token": tokens["edit"],
                     "money_info": {"method_id": "card-race", "currency": "USD", "amount": edit_amount}},
            "cancel": {"idempotency_token": tokens["cancel"], "reason": "user_request"},
        }
        send = {a: (lambda a=a: self.api("POST", f"{pid}/{a}", bodies[a], timeout=120))
                for a in bodies}
        lock = HeldRowLock(self.stack, "payments", f"id = '{pid}'", f"lifecycle-race-{n}")
        try:
            self.assertEqual(self.waiting_backends(), 0)
            calls = {}
            if order is None:
                barrier = threading.Barrier(3)

                def together(a):
                    barrier.wait(timeout=30)
                    return send[a]()
                calls = {a: Call(lambda a=a: together(a)) for a in bodies}
            else:
                for k, a in enumerate(order, 1):
                    calls[a] = Call(send[a])
                    wait_until(lambda: self.waiting_backends() >= k, 60,
                               f"{k} daemon backends waiting on payment {pid}")
            wait_until(lambda: self.waiting_backends() == 3, 60,
                       f"accept, edit and cancel all waiting on payment {pid} (pg_locks)")
            self.assertTrue(self.blocked_by(lock.pid), "no daemon backend waits on our lock")
            self.assertFalse([a for a, c in calls.items() if not c.is_alive()],
                             "answered while the row was locked")
        finally:
            lock.release()
        answers = {a: c.outcome() for a, c in calls.items()}
        self.check_round(pid, answers, tokens, edit_amount, order)
        return answers

    def check_round(self, pid, answers, tokens, edit_amount, order) -> None:
        what = f"payment {pid}, order {order or 'free'}: " + ", ".join(
            f"{a} {r[0]} {r[2][:160]!r}" for a, r in answers.items())
        for a, (st, hdrs, raw) in answers.items():
            self.assertIn(st, (200, 400), what)
            if st == 400:
                self.assertJsonError(answers[a], 400, "invalid_state")
        won = [a for a in ("accept", "cancel") if answers[a][0] == 200]
        self.assertEqual(len(won), 1, f"not exactly one winner among accept/cancel: {what}")
        winner = won[0]
        loser = "cancel" if winner == "accept" else "accept"
        final = {"accept": "bank_processing", "cancel": "cancelled"}[winner]
        self.assertEqual(self.assertJson(answers[winner][1], answers[winner][2])["payment_status"],
                         final, what)
        self.assertIn(f" is {final}: {loser} is not allowed",
                      self.assertJson(answers[loser][1], answers[loser][2])["message"], what)
        edited = answers["edit"][0] == 200
        if edited:
            self.assertEqual(self.assertJson(answers["edit"][1], answers["edit"][2])["payment_status"],
                             "created", what)
        else:   # refused after the winner: it saw the winner's status
            self.assertIn(f" is {final}: edit is not allowed",
                          self.assertJson(answers["edit"][1], answers["edit"][2])["message"], what)

        # The history: the create, then one event per 200 (its own token), none for a 400.
        rows = self.stack.psql(
            f"SELECT action || ' ' || coalesce(idempotency_token::text, '-') || ' ' || to_status "
            f"FROM payment_events WHERE payment_id = '{pid}' ORDER BY id").splitlines()
        events = [r.split(" ") for r in rows]
        self.assertEqual(events[0][0], "create", rows)
        expected = {a for a, r in answers.items() if r[0] == 200}
        self.assertEqual([e[0] for e in events[1:] if e[0] not in expected], [],
                         f"events of refused requests: {rows} ({what})")
        self.assertEqual(sorted(e[0] for e in events[1:]), sorted(expected), f"{rows} ({what})")
        for action, token, to_status in events[1:]:
            self.assertEqual(token, tokens[action], rows)
        position = {e[0]: i for i, e in enumerate(events)}
        self.assertEqual(events[position[winner]][2], final, rows)
        if edited:
            self.assertLess(position["edit"], position[winner], f"edit applied after the winner: {rows}")

        # The stored amount: the last edit before the winner's event, else the original.
        amount_minor = int(edit_amount.replace(".", "")) if edited else self.ORIGINAL[1]
        stored = self.stack.psql(f"SELECT status || ' ' || amount_minor FROM payments WHERE id = '{pid}'")
        self.assertEqual(stored, f"{final} {amount_minor}", f"{rows} ({what})")
        p, raw = self.retrieve_ok(pid)
        self.assertEqual(p["status"], final)
        shown = edit_amount if edited else self.ORIGINAL[0]
        self.assertIn(f'"amount":{shown}'.encode(), raw.replace(b" ", b""))
        self.assertEqual(self.stack.psql(
            f"SELECT count(*) FROM tasks WHERE payment_id = '{pid}' AND kind = '{CHARGE_TASK}'"),
            "1" if winner == "accept" else "0", what)

        # Queued in a known order, the head of the queue gets the row first (our lock was rolled
        # back, the row is unchanged): an accept or cancel there wins and the edit is refused; an
        # edit there is applied. After an edit the other two follow the row's update chain to its
        # new version, where the queue order no longer holds: either may win.
        if order is not None:
            if order[0] == "edit":
                self.assertTrue(edited, what)
            else:
                self.assertEqual((winner, edited), (order[0], False), what)

    def test_accept_edit_cancel_in_every_queue_order(self):
        orders = [("accept", "edit", "cancel"), ("accept", "cancel", "edit"),
                  ("edit", "accept", "cancel"), ("edit", "cancel", "accept"),
                  ("cancel", "accept", "edit"), ("cancel", "edit", "accept")]
        for n, order in enumerate(orders):
            with self.subTest(order=order):
                self.race(n, order)

    def test_accept_edit_cancel_released_together(self):
        for n in range(5):   # which one wins varies; each round checks the invariants
            with self.subTest(round=n):
                self.race(100 + n)


if __name__ == "__main__":
    unittest.main()
