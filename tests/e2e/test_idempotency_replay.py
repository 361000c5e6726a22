"""Idempotent replays (docs/idempotency.md): the same key and request answer the original status
and body byte for byte with `Idempotent-Replayed: true` and never execute twice; a different
request with the key is 422; concurrent duplicates are 409 until the first one finishes; 2xx and
4xx outcomes are kept. Each test runs twice: with the nginx replay zone (replays answered by nginx,
the daemon never sees them) and without it (replays answered by paygated from PostgreSQL)."""

import json
import threading
import time
import unittest

from e2e_base import (IdempotencyTestCase, RawNumber, create_body, new_uuid, unique_id, wait_until,
                      REPLAYED_HEADER)

CONCURRENT_REQUESTS = 200
CONCURRENT_THREADS = 50


class ReplayTests:
    """The behaviour common to both classes below (a mixin: not collected by itself)."""

    # -- 1. identical bytes + header, every route ---------------------------------------------

    def test_create_replay_is_identical_and_executes_once(self):
        sender = unique_id()
        body = create_body(sender=sender)
        first = self.post("create", body)
        raw = self.assertExecuted(first)
        pid = json.loads(raw)["transaction_id"]
        self.assertSeenByDaemon(first, idempotency="stored")
        for _ in range(3):
            again = self.post("create", body)
            self.assertReplayOf(again, first)
            self.assertReplaySource(again)
        self.assertEqual(self.payments_of_sender(sender), [pid])
        # the same token is another key for another client: executes
        other = self.post("create", body, token=self.tokens["bob"])
        self.assertExecuted(other)
        self.assertNotEqual(json.loads(other[2])["transaction_id"], pid)
        self.assertEqual(len(self.payments_of_sender(sender)), 2)

    def test_edit_cancel_accept_replays(self):
        pid = self.create_payment(sender=unique_id())
        edit = {"idempotency_token": new_uuid(),
                "money_info": {"method_id": "card-9", "currency": "EUR", "amount": "7.25"}}
        first = self.post(f"{pid}/edit", edit)
        self.assertExecuted(first)
        before = self.snapshot(pid)
        again = self.post(f"{pid}/edit", edit)
        self.assertReplayOf(again, first)
        self.assertReplaySource(again)
        self.assertUnchanged(pid, before, "(edit replay)")
        self.assertEqual(self.count("payment_events", pid, "AND action = 'edit'"), 1)

        accept = {"idempotency_token": new_uuid(), "accept_info": {"note": "replay test"}}
        first = self.post(f"{pid}/accept", accept)
        self.assertExecuted(first)
        before = self.snapshot(pid)
        for _ in range(2):
            again = self.post(f"{pid}/accept", accept)
            self.assertReplayOf(again, first)
            self.assertReplaySource(again)
        self.assertUnchanged(pid, before, "(accept replay)")
        self.assertEqual(self.count("tasks", pid, "AND kind = 'sky_technologies_integration_process_payment'"), 1)
        self.assertEqual(self.count("payment_events", pid, "AND action = 'accept'"), 1)

        pid2 = self.create_payment(sender=unique_id())
        cancel = {"idempotency_token": new_uuid(), "reason": "user_request"}
        first = self.post(f"{pid2}/cancel", cancel)
        self.assertExecuted(first)
        before = self.snapshot(pid2)
        again = self.post(f"{pid2}/cancel", cancel)
        self.assertReplayOf(again, first)
        self.assertReplaySource(again)
        self.assertUnchanged(pid2, before, "(cancel replay)")
        self.assertEqual(self.count("payment_events", pid2, "AND action = 'cancel'"), 1)
        # the same token on another payment is another key: executed (pid is bank_processing), not
        # a replay of pid2's cancel
        refused = self.post(f"{pid}/cancel", cancel)
        self.assertExecuted(refused, 400)
        doc = self.assertJsonError(refused, 400, "invalid_state")
        self.assertEqual(doc["message"], f"payment {pid} is bank_processing: cancel is not allowed")

    # -- 2. changed body -> 422; same request in another form -> replay ----------------------

    def test_changed_body_is_422_and_nothing_changes(self):
        sender = unique_id()
        body = create_body(sender=sender, amount="12.50")
        first = self.post("create", body)
        self.assertExecuted(first)
        pid = json.loads(first[2])["transaction_id"]
        changed = dict(body, money_info=dict(body["money_info"], amount="12.51"))
        for _ in range(2):
            self.assertJsonError(self.post("create", changed), 422, "idempotency_key_reused")
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertReplayOf(self.post("create", body), first)   # the key still replays

        edit = {"idempotency_token": new_uuid(),
                "money_info": {"method_id": "card-1", "currency": "USD", "amount": "3.00"}}
        first_edit = self.post(f"{pid}/edit", edit)
        self.assertExecuted(first_edit)
        before = self.snapshot(pid)
        for changed in ({**edit, "money_info": {**edit["money_info"], "amount": "4.00"}},
                        {**edit, "money_info": {**edit["money_info"], "currency": "EUR"}},
                        {"idempotency_token": edit["idempotency_token"], "reason": "other"}):
            r = self.post(f"{pid}/edit", changed)
            self.assertJsonError(r, 422, "idempotency_key_reused")
            self.assertIsNone(r[1].get(REPLAYED_HEADER))
        self.assertUnchanged(pid, before, "(422 edit)")
        self.assertEqual(self.count("payment_events", pid, "AND action = 'edit'"), 1)

        accept = {"idempotency_token": new_uuid(), "accept_info": {"k": 1}}
        self.assertExecuted(self.post(f"{pid}/accept", accept))
        before = self.snapshot(pid)
        self.assertJsonError(self.post(f"{pid}/accept", {**accept, "accept_info": {"k": 2}}),
                             422, "idempotency_key_reused")
        self.assertUnchanged(pid, before, "(422 accept)")
        self.assertEqual(self.count("tasks", pid, "AND kind = 'sky_technologies_integration_process_payment'"), 1)

    def test_same_request_in_another_form_is_a_replay(self):
        sender = unique_id()
        token = new_uuid()
        original = ('{"idempotency_token": "%s", "money_info": {"method_id": "card-7781", '
                    '"currency": "USD", "amount": 1.50}, "recipcient": {"recipcient_id": '
                    '"merchant-42"}, "sender": {"sender_id": "%s"}}' % (token, sender))
        first = self.post("create", original)
        self.assertExecuted(first)
        pid = json.loads(first[2])["transaction_id"]
        forms = {
            "reordered keys": '{"sender":{"sender_id":"%s"},"recipcient":{"recipcient_id":"merchant-42"},'
                              '"money_info":{"amount":1.50,"currency":"USD","method_id":"card-7781"},'
                              '"idempotency_token":"%s"}' % (sender, token),
            "whitespace": ' {\n\t"idempotency_token" :  "%s" ,\r\n "money_info":{ "method_id":"card-7781",'
                          '"currency":"USD","amount":1.50 },"recipcient":{"recipcient_id":"merchant-42"},'
                          '"sender":{"sender_id":"%s"}  }\n' % (token, sender),
            "1.5 for 1.50": original.replace("1.50", "1.5"),
            "15e-1 for 1.50": original.replace("1.50", "15e-1"),
            "upper-case token": original.replace(token, token.upper()),
            "string escapes": original.replace('"merchant-42"', '"merchant\\u002d42"')
                                      .replace('"currency"', '"\\u0063urrency"'),
        }
        for what, text in forms.items():
            with self.subTest(what):
                self.assertNotEqual(text, original)
                again = self.post("create", text)
                self.assertReplayOf(again, first)
                self.assertReplaySource(again)
        self.assertEqual(self.payments_of_sender(sender), [pid])
        # a value that differs is another request: the string "1.50" is not the number 1.50
        self.assertJsonError(self.post("create", original.replace("1.50", '"1.50"')), 422,
                             "idempotency_key_reused")
        self.assertEqual(self.payments_of_sender(sender), [pid])

    # -- 7. a 4xx outcome is kept -------------------------------------------------------------

    def test_refusal_is_kept_and_replayed(self):
        pid = self.create_payment(sender=unique_id())
        self.assertExecuted(self.accept(pid))
        second = {"idempotency_token": new_uuid(), "accept_info": {}}
        refused = self.post(f"{pid}/accept", second)
        self.assertJsonError(refused, 400, "invalid_state")
        self.assertIsNone(refused[1].get(REPLAYED_HEADER))
        before = self.snapshot(pid)
        again = self.post(f"{pid}/accept", second)
        self.assertReplayOf(again, refused)
        self.assertReplaySource(again)
        self.assertUnchanged(pid, before, "(replayed refusal)")
        self.assertEqual(self.count("tasks", pid, "AND kind = 'sky_technologies_integration_process_payment'"), 1)
        # 404 of an unknown payment is an outcome too
        unknown = new_uuid()
        body = {"idempotency_token": new_uuid(), "reason": "other"}
        nf = self.post(f"{unknown}/cancel", body)
        self.assertJsonError(nf, 404, "not_found")
        self.assertReplayOf(self.post(f"{unknown}/cancel", body), nf)

    # -- 3. concurrent identical creates ------------------------------------------------------

    def test_concurrent_identical_creates_make_one_payment(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        results = self.run_many([lambda: self.post("create", body)] * CONCURRENT_REQUESTS,
                                threads=CONCURRENT_THREADS)
        ok = [r for r in results if r[0] == 200]
        busy = [r for r in results if r[0] == 409]
        other = [(r[0], r[2][:200]) for r in results if r[0] not in (200, 409)]
        self.assertEqual(other, [], "answers other than 200 and 409")
        self.assertTrue(ok, "no 200 at all")
        for r in busy:
            self.assertJsonError(r, 409, "idempotency_in_progress")
        executed = [r for r in ok if r[1].get(REPLAYED_HEADER) is None]
        self.assertEqual(len(executed), 1, f"{len(executed)} executed answers")
        bodies = {r[2] for r in ok}
        self.assertEqual(len(bodies), 1, bodies)
        for r in ok:
            if r is not executed[0]:
                self.assertReplayOf(r, executed[0])
        retried = self.run_many([lambda: self.post_until_settled("create", body)] * len(busy),
                                threads=CONCURRENT_THREADS) if busy else []
        for r in retried:
            self.assertReplayOf(r, executed[0])
        pid = json.loads(executed[0][2])["transaction_id"]
        self.assertEqual(self.payments_of_sender(sender), [pid])
        self.assertEqual(self.count("payment_events", pid), 1)


class ZoneReplayTest(ReplayTests, IdempotencyTestCase):
    """paygate_idempotency_zone configured: replays are answered by nginx from shared memory."""
    zone = True

    # -- 6. nginx -s reload under light load keeps the zone -----------------------------------

    def test_reload_under_load_loses_no_keys(self):
        sender = unique_id()
        keys = []                       # (body bytes, first answer)
        problems = []
        lock = threading.Lock()
        stop = threading.Event()

        # New workers share the token table the old ones had (its zone survives the reload), so a
        # reload costs no 503: every answer below must be the real one.
        def post_counting(body):
            return self.post("create", body)

        def create_and_replay():
            body = self.encode(create_body(sender=sender))
            first = post_counting(body)
            if first[0] != 200 or first[1].get(REPLAYED_HEADER):
                return f"create: {first[0]} {first[2][:200]!r}"
            with lock:
                keys.append((body, first))
            again = post_counting(body)
            if again[0] != 200 or again[2] != first[2] or again[1].get(REPLAYED_HEADER) != "true":
                return f"replay: {again[0]} {again[2][:200]!r} {dict(again[1])}"
            return None

        def load():
            while not stop.is_set():
                try:
                    err = create_and_replay()
                except Exception as e:
                    err = repr(e)
                if err:
                    problems.append(err)
                time.sleep(0.01)

        def keys_beyond(n):   # progress of the load thread (or a problem, which ends the wait)
            return lambda: problems or len(keys) >= n

        for _ in range(10):
            self.assertIsNone(create_and_replay())
        before_load = len(keys)
        thread = threading.Thread(target=load)
        thread.start()
        try:
            wait_until(keys_beyond(before_load + 3), 30, "keys created by the load before the reload")
            at_reload = len(keys)
            old = self.stack.nginx_worker_pids()
            new = self.stack.reload_nginx()
            self.assertFalse(set(old) & set(new))
            after_reload = len(keys)
            wait_until(keys_beyond(after_reload + 3), 30, "keys created after the reload")
        finally:
            stop.set()
            thread.join(timeout=60)
        self.assertEqual(problems, [])
        # keys from every phase: before the load, by the load before the reload, after it (new workers)
        self.assertEqual(before_load, 10)
        self.assertGreater(at_reload, before_load, "the load made no key before the reload")
        self.assertGreater(len(keys), after_reload, "the load made no key after the reload")
        self.wait_until_token_accepted_on(self.stack, self.token)
        replays = []
        for body, first in keys:
            again = self.post("create", body)
            self.assertReplayOf(again, first)
            replays.append(again)
        time.sleep(0.2)
        reached = [r[1]["X-Request-Id"] for r in replays if self.daemon_lines(r[1]["X-Request-Id"])]
        self.assertEqual(reached, [], f"{len(reached)} of {len(replays)} replays after the reload "
                                      f"reached the daemon: the zone lost keys")
        self.assertEqual(len(self.payments_of_sender(sender)), len(keys))


class NoZoneReplayTest(ReplayTests, IdempotencyTestCase):
    """No zone: every replay goes to paygated, which answers from PostgreSQL."""
    zone = False


if __name__ == "__main__":
    unittest.main()
