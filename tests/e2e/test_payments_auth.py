"""Client authentication and ownership (docs/api.md "Authentication", "Ownership"): tokens from
`paygatectl token create`, refused when missing, unknown or revoked (within a second on every
nginx worker), and a client never sees or changes another client's payment."""

import subprocess
import time
import unittest

from e2e_base import (PAYMENT_API, TOKEN_RE, UNKNOWN_PAYMENT, PaymentStackTestCase, create_body,
                      new_uuid)

# The contract: a revocation reaches every nginx worker within 1 s; we allow 1.5 s.
REVOCATION_DEADLINE = 1.5


class TokenAuthTest(PaymentStackTestCase):
    clients = ("alice", "bob")

    def routes(self, pid: str):
        """(label, method, path, body) for all six payment routes."""
        return [
            ("create", "POST", "create", create_body()),
            ("retrieve", "GET", f"{pid}/retrieve", None),
            ("status", "GET", f"{pid}/retrieve/status", None),
            ("edit", "POST", f"{pid}/edit",
             {"idempotency_token": new_uuid(),
              "money_info": {"method_id": "m", "currency": "USD", "amount": "1.00"}}),
            ("cancel", "POST", f"{pid}/cancel", {"idempotency_token": new_uuid(), "reason": "other"}),
            ("accept", "POST", f"{pid}/accept", {"idempotency_token": new_uuid(), "accept_info": {}}),
        ]

    def assertRefusedEverywhere(self, pid: str, *, token, header="x_auth_token", why="",
                                owner="default"):
        """Every route answers 403 acces_error with `token`; nothing changes (read with the
        `owner` token)."""
        before = self.snapshot(pid, token=owner)
        count = self.payment_count()
        for label, method, path, body in self.routes(pid):
            with self.subTest(why=why, route=label):
                self.assertJsonError(self.api(method, path, body, token=token, header=header),
                                     403, "acces_error")
        self.assertEqual(self.payment_count(), count, f"{why}: a payment was created")
        self.assertUnchanged(pid, before, why, token=owner)

    # -- paygatectl ---------------------------------------------------------------------------

    def test_token_create_prints_exactly_the_token(self):
        res = self.stack.ctl("token", "create", "--client", "erin")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertRegex(res.stdout, r"\Apgt_[0-9a-f]{64}\n\Z")
        other = self.stack.create_token("erin")
        self.assertRegex(other, TOKEN_RE)
        self.assertNotEqual(other, res.stdout.strip())

    def test_tokens_are_not_stored_or_listed_in_clear(self):
        token = self.stack.create_token("frank")
        listing = self.stack.ctl("token", "list")
        self.assertNotIn(token, listing.stdout + listing.stderr)
        self.assertNotIn(token[4:], listing.stdout + listing.stderr)
        dump = subprocess.run([_pg_bin("pg_dump"), "-h",
                               "127.0.0.1", "-p", str(self.stack.pg.port), "-U", "paygate",
                               "-d", "paygate", "--data-only"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertNotIn(token[4:], dump.stdout, "the token is stored in clear in the database")

    def test_tokens_never_logged(self):
        """No token text in nginx's logs, the daemon's log or PostgreSQL's log."""
        token = self.stack.create_token("grace")
        self.wait_until_token_accepted(self.stack, token)
        pid = self.create_payment(token=token)
        self.assertEqual(self.accept(pid, token=token)[0], 200)
        self.assertJsonError(self.retrieve(pid, token=token + "0"), 403, "acces_error")
        self.stack.revoke_token(token=token)
        self.assertJsonError(self.cancel(pid, token=self.tokens["bob"]), 403, "acces_error")
        files = [self.stack.pg.logfile]
        files += [d.logfile for d in self.stack.daemons.values()]
        for ngx in self.stack.nginxes.values():
            files += sorted((ngx.prefix / "logs").glob("*"))
        secrets = [t[4:] for t in (token, *self.tokens.values())]
        for f in files:
            if not f.is_file():
                continue
            text = f.read_text(errors="replace")
            for secret in secrets:
                self.assertNotIn(secret, text, f"a token is in {f}")

    # -- refused tokens -----------------------------------------------------------------------

    def test_missing_token_is_403_on_every_route(self):
        pid = self.create_payment()
        self.assertRefusedEverywhere(pid, token=None, why="no token")

    def test_unknown_tokens_are_403(self):
        pid = self.create_payment()
        real = self.token
        flipped = real[:-1] + ("0" if real[-1] != "0" else "1")
        for label, token in (("well-formed unknown", "pgt_" + "0" * 64),
                             ("one character changed", flipped),
                             ("prefix of a real token", real[:-1]),
                             ("real token plus a character", real + "0"),
                             ("upper-cased real token", real.upper()),
                             ("garbage", "hello"),
                             ("empty", "")):
            self.assertRefusedEverywhere(pid, token=token, why=label)
            self.assertRefusedEverywhere(pid, token=token, header="X-Auth-Token", why=label)

    def test_header_spellings(self):
        for header in ("x_auth_token", "X-Auth-Token", "x-auth-token", "X_AUTH_TOKEN"):
            with self.subTest(header=header):
                st, hdrs, raw = self.api("POST", "create", create_body(), header=header)
                self.assertEqual(st, 200, raw)
                # the token in that header named the client: the payment is alice's, not bob's
                pid = self.assertJson(hdrs, raw)["transaction_id"]
                self.assertEqual(self.status_of(pid, token=self.tokens["alice"]), "created")
                self.assertJsonError(self.retrieve(pid, token=self.tokens["bob"]), 403, "acces_error")

    def test_two_token_headers_are_refused(self):
        # Which one would be meant? Neither: even two valid tokens get 403, and nothing is created.
        alice, bob = self.tokens["alice"], self.tokens["bob"]
        before = self.payment_count()
        for second in (bob, alice, "pgt_" + "0" * 64):
            with self.subTest(second=second[:8]):
                doc = self.assertJsonError(self.api("POST", "create", create_body(), token=alice,
                                                    headers={"X-Auth-Token": second}), 403, "acces_error")
                self.assertIn("exactly one", doc["message"])
        self.assertEqual(self.payment_count(), before)

    # -- ownership ----------------------------------------------------------------------------

    def test_other_clients_payment_is_403(self):
        alice, bob = self.tokens["alice"], self.tokens["bob"]
        pid = self.create_payment(token=alice)
        before = self.snapshot(pid)
        for label, method, path, body in self.routes(pid)[1:]:
            with self.subTest(route=label):
                doc = self.assertJsonError(self.api(method, path, body, token=bob), 403,
                                           "acces_error")
                self.assertNotIn("alice", doc["message"])
                self.assertUnchanged(pid, before, f"(bob's {label})")
        # bob's own payments are his; alice cannot touch them either
        bob_pid = self.create_payment(token=bob)
        self.assertJsonError(self.retrieve(bob_pid, token=alice), 403, "acces_error")
        self.assertJsonError(self.cancel(bob_pid, token=alice), 403, "acces_error")
        self.assertEqual(self.status_of(bob_pid, token=bob), "created")
        # and each still works for its owner
        self.assertEqual(self.accept(pid, token=alice)[0], 200)
        self.assertEqual(self.cancel(bob_pid, token=bob)[0], 200)

    # -- revocation ---------------------------------------------------------------------------

    def assertRefusedAfterRevocation(self, revoked_at: float, token: str, requests: int = 12):
        """From REVOCATION_DEADLINE after the revoke returned, every request (fresh connections,
        so both nginx workers get some) is refused."""
        delay = revoked_at + REVOCATION_DEADLINE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        path = f"{PAYMENT_API}/{UNKNOWN_PAYMENT}/retrieve/status"
        answers = [self.api("GET", path, token=token)[0] for _ in range(requests)]
        self.assertEqual(answers, [403] * requests,
                         f"revoked token still accepted {REVOCATION_DEADLINE}s after the revoke")
        self.assertJsonError(self.create(token=token), 403, "acces_error")

    def test_revoked_token_is_refused_within_a_second(self):
        token = self.stack.create_token("carol")
        self.wait_until_token_accepted(self.stack, token)
        pid = self.create_payment(token=token)
        _, before = self.retrieve_ok(pid, token=token)
        self.stack.revoke_token(token=token)
        revoked_at = time.monotonic()
        self.assertRefusedAfterRevocation(revoked_at, token)
        # others are not affected
        self.assertEqual(self.create(token=self.tokens["alice"])[0], 200)
        # a new token of the same client sees the client's payments, unchanged
        fresh = self.stack.create_token("carol")
        self.wait_until_token_accepted(self.stack, fresh)
        _, after = self.retrieve_ok(pid, token=fresh)
        self.assertEqual(after, before)
        # the revoked token can do nothing with it
        self.assertRefusedEverywhere(pid, token=token, owner=fresh, why="revoked token")
        self.assertRefusedEverywhere(pid, token=token, header="X-Auth-Token", owner=fresh,
                                     why="revoked token")

    def test_revoke_every_token_of_a_client(self):
        t1 = self.stack.create_token("dave")
        t2 = self.stack.create_token("dave")
        for t in (t1, t2):
            self.wait_until_token_accepted(self.stack, t)
        self.stack.revoke_token(client="dave")
        revoked_at = time.monotonic()
        self.assertRefusedAfterRevocation(revoked_at, t1)
        self.assertRefusedAfterRevocation(revoked_at, t2)
        for client in ("alice", "bob"):
            with self.subTest(client=client):
                self.assertEqual(self.create(token=self.tokens[client])[0], 200)


def _pg_bin(name: str) -> str:
    from stack import PG_BIN
    return str(PG_BIN / name)


if __name__ == "__main__":
    unittest.main()
