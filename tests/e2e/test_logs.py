"""Logs and rate limits (docs/operations.md#logs, #rate-limits).

paygated writes one JSON object per line and stays quiet while idle (the module's token polls are
debug lines); nginx's `log_format paygate` of conf/nginx.conf carries $request_id, $paygate_route,
$paygate_client and $paygate_replayed; no log of a stack ever shows a secret it made (the harness's
secret grep, pinned here); conf/nginx.conf's limit_req lines answer a burst above the limit with
429 JSON, per client id for authenticated traffic and per address for the rest.
"""

import json
import re
import threading
import time
import unittest

from e2e_base import SOURCE_DIR, PaymentStackTestCase, StackTestCase, create_body, wait_until

PROD_CONF = SOURCE_DIR / "conf" / "nginx.conf"
DEV_TEMPLATE = SOURCE_DIR / "conf" / "nginx.dev.conf.in"
STATUS_PATH = "/api/v1/payment/00000000-0000-4000-8000-000000000000/retrieve/status"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# One line of log_format paygate.
ACCESS_RE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(?P<method>\S+) (?P<uri>\S+) (?P<proto>[^"]+)" (?P<status>\d{3}) \d+ '
                       r'rt=[\d.]+ rid=(?P<rid>[0-9a-f]{32}) route=(?P<route>\S+) client=(?P<client>\S+) '
                       r'replayed=(?P<replayed>\S+) "[^"]*"$')


def log_format_of(text: str) -> str:
    m = re.search(r"^\s*log_format paygate .*?;\s*$", text, re.M | re.S)
    assert m, "no log_format paygate"
    return " ".join(m.group(0).split())


def access_lines(stack, name="nginx") -> list:
    text = (stack.nginxes[name].prefix / "logs" / "access.log").read_text(errors="replace")
    return [m.groupdict() for m in map(ACCESS_RE.match, text.splitlines()) if m]


def rate_limit_conf() -> dict:
    """conf/nginx.conf's rate-limit lines, as start_nginx arguments: the map, zones and settings
    at http level, the limit_req lines at server level (where conf/nginx.conf has them)."""
    text = PROD_CONF.read_text()
    http = [re.search(r"^\s*map \$paygate_client \$paygate_limit_address \{.*?\}", text, re.M | re.S).group(0)]
    http += re.findall(r"^\s*limit_req_(?:zone|status|log_level)\b.*;", text, re.M)
    server = re.findall(r"^\s*limit_req zone=.*;", text, re.M)
    assert len(http) == 5 and len(server) == 2, (http, server)
    return {"http_extra": "\n".join(http), "server_extra": "\n".join(server)}


class DaemonJsonLogTest(PaymentStackTestCase):
    """paygated's log: one JSON object per line, keys with their JSON types, quiet while idle."""

    clients = ("alice",)

    def test_every_line_is_a_json_object(self):
        st, hdrs, body = self.create(sender="user-log-1")
        self.assertEqual(st, 200, body)
        rid = hdrs["X-Request-Id"]
        d1 = self.stack.daemons["d1"]
        lines = [ln for ln in d1.log_text().splitlines() if ln.strip()]
        self.assertTrue(lines)
        for ln in lines:
            doc = json.loads(ln)   # raises on anything that is not JSON
            self.assertIsInstance(doc, dict, ln)
            self.assertEqual(list(doc)[:3], ["time", "level", "event"], ln)
            self.assertRegex(doc["time"], TIME_RE)
            self.assertIn(doc["level"], ("debug", "info", "warn", "error"), ln)
        [event] = wait_until(lambda: d1.requests(request_id=rid), 5, "the create's request line")
        self.assertEqual(event["route"], "payment.create")
        self.assertEqual(event["status"], 200)       # numbers are JSON numbers
        self.assertIsInstance(event["ms"], (int, float))
        self.assertEqual(event["idempotency"], "stored")
        self.assertEqual(event["level"], "info")
        self.assertTrue(d1.events("ready"))

    def test_idle_daemon_writes_nothing(self):
        """The module polls auth.tokens about four times a second: at the default level (info)
        those requests, the token feed's polls and empty janitor rounds write no line."""
        d1 = self.stack.daemons["d1"]
        self.assertEqual(self.get("/ping")[0], 200)
        wait_until(lambda: d1.requests(route="ping"), 5, "the ping's request line")
        before = len(d1.events())
        time.sleep(2.0)   # about eight token polls per nginx worker holding the sync lease
        self.assertEqual(d1.events()[before:], [])
        self.assertEqual(d1.requests(route="auth.tokens"), [], "token polls logged at info")
        # the polls did happen: a revocation still reaches nginx
        other = self.stack.create_token("quiet-check")
        self.wait_until_token_accepted(self.stack, other)
        self.assertEqual(d1.requests(route="auth.tokens"), [])


class AccessLogTest(PaymentStackTestCase):
    """log_format paygate (conf/nginx.conf, used by the dev template): request id, route, client,
    replay source on every line; the query string is never logged."""

    clients = ("alice", "bob")
    nginx = {"paygate_idempotency_zone": "paygate_replay:4m ttl=1h"}

    def test_log_format_is_the_production_one(self):
        self.assertEqual(log_format_of(PROD_CONF.read_text()), log_format_of(DEV_TEMPLATE.read_text()))
        self.assertRegex(PROD_CONF.read_text(), r"(?m)^\s*access_log \S+ paygate;")

    def line_of(self, rid):
        def find():
            return [ln for ln in access_lines(self.stack) if ln["rid"] == rid]
        return wait_until(find, 5, f"the access log line of {rid}")[0]

    def test_route_client_and_replay_in_the_access_log(self):
        alice = self.stack.psql("SELECT id FROM clients WHERE name = 'alice'")
        bob = self.stack.psql("SELECT id FROM clients WHERE name = 'bob'")
        body = create_body(sender="user-access-log")
        first = self.create(body)
        self.assertEqual(first[0], 200, first[2])
        line = self.line_of(first[1]["X-Request-Id"])
        self.assertEqual((line["route"], line["client"], line["replayed"], line["status"]),
                         ("payment.create", alice, "-", "200"))
        # the same create again: nginx's replay zone answers
        again = self.create(body)
        self.assertEqual(again[1].get("Idempotent-Replayed"), "true")
        line = self.line_of(again[1]["X-Request-Id"])
        self.assertEqual((line["route"], line["client"], line["replayed"]), ("payment.create", alice, "zone"))
        # bob's request names bob; a refused token and no token name nobody
        st, hdrs, _ = self.api("GET", STATUS_PATH, token=self.tokens["bob"])
        self.assertEqual(st, 404)
        self.assertEqual(self.line_of(hdrs["X-Request-Id"])["client"], bob)
        for token in ("pgt_not-a-token-at-all", None):
            st, hdrs, _ = self.api("GET", STATUS_PATH, token=token)
            self.assertEqual(st, 403)
            line = self.line_of(hdrs["X-Request-Id"])
            self.assertEqual((line["route"], line["client"], line["status"]), ("payment.status", "-", "403"))
        # a partner's key and a merchant's JWT name their caller; a refused JWT nobody
        key = self.stack.create_partner_key("whitebird")
        orders = "/partners/whitebird/orders"
        wait_until(lambda: self.stack.http("POST", orders, body=b"{}", headers={
            "X-Api-Key": key, "Content-Type": "application/json"})[0] != 401, 10, "the key synced")
        st, hdrs, _ = self.stack.http("POST", orders, body=b"{}",
                                      headers={"X-Api-Key": key, "Content-Type": "application/json"})
        self.assertEqual(st, 400)
        line = self.line_of(hdrs["X-Request-Id"])
        self.assertEqual((line["route"], line["client"]), ("whitebird.order", "partner:whitebird"))
        jwt = self.stack.mint_merchant_jwt()
        for auth, status, client in ((f"Bearer {jwt}", 404, "merchant:zooticket"), ("Bearer x.y.z", 401, "-")):
            st, hdrs, _ = self.stack.http("GET", "/v1/payments/ZT_0000000001", headers={"Authorization": auth})
            self.assertEqual(st, status)
            line = self.line_of(hdrs["X-Request-Id"])
            self.assertEqual((line["route"], line["client"]), ("zooticket.payment.get", client))
        # no route: 404; a query string stays out of the log
        st, hdrs, _ = self.get("/no/such/path?access_token=kept-out-of-the-log")
        self.assertEqual(st, 404)
        line = self.line_of(hdrs["X-Request-Id"])
        self.assertEqual((line["route"], line["uri"]), ("-", "/no/such/path"))
        self.assertNotIn("kept-out-of-the-log", (self.stack.nginxes["nginx"].prefix / "logs" / "access.log").read_text())

    def test_query_credential_is_masked_in_the_error_log(self):
        """nginx puts the request line in every error log line about a request: mserver's
        access_token, when sent in the query, is masked there (the secret grep would fail the
        test otherwise)."""
        value = "0123456789abcdef0123456789abcdef01234567"
        self.stack.register_secret(value, "an access_token sent in a query")
        path = f"/callbacks/mserver/notify?app_id=paygate-dev&access_token={value}&access_token={value}"
        st, hdrs, body = self.stack.http("POST", path, b"{}", {"Content-Type": "application/json"})
        self.assertEqual(st, 401, body)
        rid = hdrs["X-Request-Id"]
        error_log = self.stack.nginxes["nginx"].error_log
        line = wait_until(lambda: [ln for ln in error_log.read_text().splitlines() if rid in ln], 5,
                          "the refusal's error log line")[0]
        self.assertIn("?app_id=paygate-dev&access_token=***&access_token=*** HTTP/1.1", line)


class SecretGrepTest(StackTestCase):
    """The harness fails a test whose stack logged a secret: a client token, a key file's secret,
    anything registered with Stack.register_secret, in any log of the stack."""

    def test_a_token_in_a_log_fails_the_test(self):
        stack = self.stack
        token = stack.create_token("leaky")            # registered by create_token
        PaymentStackTestCase.wait_until_token_accepted(stack, token)
        self.assertEqual(stack.check_logs(raise_on_problems=False), [])
        # an access log that keeps query strings ($request), and a client that puts its token there
        stack.start_nginx(name="leaky",
                          http_extra="    log_format leaky '$request_id \"$request\" $status';",
                          server_extra="        access_log logs/leaky.log leaky;")
        st, _, _ = stack.http("GET", f"/health?x_auth_token={token}", name="leaky")
        self.assertEqual(st, 200)
        access = stack.nginxes["leaky"].prefix / "logs" / "leaky.log"
        wait_until(lambda: token in access.read_text(), 5, "the leaky access log line")
        problems = stack.check_logs(raise_on_problems=False)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn(str(access), problems[0])
        self.assertIn("client token of leaky", problems[0])
        self.assertNotIn(token, problems[0], "the report repeats the secret")
        # a registered secret and a key file's secret are found in any log, the daemon's too
        stack.register_secret("hmac-key-0123456789abcdef", "a test's HMAC key")
        curve_secret = [ln for ln in (stack.curve_keys() / "nginx.key").read_text().splitlines()
                        if ln and not ln.startswith("#")][0]
        with open(stack.daemons["d1"].logfile, "a") as f:
            f.write('{"time":"2026-01-01T00:00:00.000Z","level":"info","event":"leak",'
                    f'"a":"hmac-key-0123456789abcdef","b":{json.dumps(curve_secret)}}}\n')
        problems = stack.check_logs(raise_on_problems=False)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(any("a test's HMAC key" in p for p in problems), problems)
        self.assertTrue(any("keys/curve/nginx.key" in p for p in problems), problems)
        with self.assertRaises(ValueError):
            stack.register_secret("short", "too short to look for")
        # the test made these leaks on purpose: what was written so far is not checked again
        stack.stop_nginx("leaky")
        for f in stack.log_files():
            stack._log_offsets[f] = f.stat().st_size


class RateLimitTest(StackTestCase):
    """conf/nginx.conf's limit_req lines, as shipped: a burst above the limit gets 429 JSON
    (too_many_requests), per address for traffic without a live token and per client id for
    authenticated traffic, which the address limit does not touch."""

    nginx = rate_limit_conf()

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.stack.create_token("alice")
        self.bob = self.stack.create_token("bob")
        PaymentStackTestCase.wait_until_token_accepted(self.stack, self.alice)
        # wait_until_token_accepted's requests were counted for alice: start from a full bucket
        time.sleep(2.5)

    def burst(self, n, path, token=None, threads=4, headers=None):
        """n requests from `threads` threads at once: the statuses and the 429 answers."""
        results, lock = [], threading.Lock()
        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
        if token:
            headers = {"x_auth_token": token}

        def run(count):
            for _ in range(count):
                got = self.stack.http("GET", path, headers=headers)
                with lock:
                    results.append(got)
        workers = [threading.Thread(target=run, args=(c,)) for c in per]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return [r[0] for r in results], [r for r in results if r[0] == 429]

    def assertTooManyRequests(self, answers):
        self.assertTrue(answers, "no request was limited")
        for status, headers, body in answers:
            self.assertEqual(headers.get("Content-Type"), "application/json")
            self.assertTrue(headers.get("X-Request-Id"))
            self.assertEqual(json.loads(body)["code"], "too_many_requests", body)

    def test_traffic_under_the_limit_passes(self):
        statuses, _ = self.burst(20, "/health", threads=1)        # the address burst is 20
        self.assertEqual(statuses, [200] * 20)
        statuses, _ = self.burst(100, STATUS_PATH, self.alice)    # the client burst is 100
        self.assertEqual(set(statuses), {404})

    def test_burst_without_a_live_token_is_limited_per_address(self):
        statuses, limited = self.burst(80, STATUS_PATH, "pgt_refused-token-0000")
        self.assertEqual(set(statuses), {403, 429})
        self.assertGreaterEqual(statuses.count(403), 21)     # burst 20 + the first
        self.assertTooManyRequests(limited)
        # the address is limited now; an authenticated client from it is not
        statuses, _ = self.burst(10, STATUS_PATH, self.bob, threads=1)
        self.assertEqual(statuses, [404] * 10)

    def test_burst_of_one_client_is_limited_for_that_client_only(self):
        statuses, limited = self.burst(400, STATUS_PATH, self.alice, threads=8)
        self.assertEqual(set(statuses), {404, 429})
        self.assertGreaterEqual(statuses.count(404), 101)    # burst 100 + the first
        self.assertTooManyRequests(limited)
        # bob has his own bucket, and alice's traffic did not count against the address
        statuses, _ = self.burst(10, STATUS_PATH, self.bob, threads=1)
        self.assertEqual(statuses, [404] * 10)
        statuses, _ = self.burst(10, "/health", threads=1)
        self.assertEqual(statuses, [200] * 10)

    def test_burst_of_one_merchant_is_limited_for_that_merchant_only(self):
        # A merchant's JWT is a caller of its own ($paygate_client "merchant:<id>"), like a client.
        merchant = {"Authorization": f"Bearer {self.stack.mint_merchant_jwt()}"}
        statuses, limited = self.burst(300, "/v1/payments/ZT_0000000001", threads=8, headers=merchant)
        self.assertEqual(set(statuses), {404, 429})
        self.assertGreaterEqual(statuses.count(404), 101)    # burst 100 + the first
        for status, headers, body in limited:   # nginx's 429, in the merchant API's envelope
            self.assertEqual(json.loads(body), {"success": False, "message": "too many requests, retry later",
                                                "error": {"code": "too_many_requests"}})
        # another merchant, a client and the address each have their own bucket
        other = {"Authorization": f"Bearer {self.stack.mint_merchant_jwt('another-merchant')}"}
        statuses, _ = self.burst(10, "/v1/payments/ZT_0000000001", threads=1, headers=other)
        self.assertEqual(statuses, [404] * 10)
        statuses, _ = self.burst(10, STATUS_PATH, self.bob, threads=1)
        self.assertEqual(statuses, [404] * 10)
        statuses, _ = self.burst(10, "/health", threads=1)
        self.assertEqual(statuses, [200] * 10)


if __name__ == "__main__":
    unittest.main()
