"""GET /metrics (docs/operations.md#metrics): the Prometheus exposition scraped through real nginx
passes Debian's `promtool check metrics`, and its values move by exactly what the test did: requests
by route and status, the round trip to the daemon, auth refusals, replay hits and conflicts, a
provider call and its callback, the daemon's queue and workers. The Grafana dashboard in
packaging/grafana/ names only metrics a real scrape has."""

import json
import re
import signal
import subprocess
import threading
import unittest
from pathlib import Path

from e2e_base import REPLAY_ZONE, SOURCE_DIR, PaymentStackTestCase, StackTestCase, create_body, new_uuid, wait_until

PROMTOOL = "/usr/bin/promtool"
DASHBOARD = SOURCE_DIR / "packaging" / "grafana" / "paygate.json"
UNKNOWN_PAYMENT = "00000000-0000-4000-8000-000000000000"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict:
    """{(name, frozenset of (label, value)): value} of every sample line."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class Scraping:
    def scrape(self) -> tuple[str, dict]:
        st, hdrs, raw = self.stack.http("GET", "/metrics")
        self.assertEqual(st, 200, raw[:300])
        self.assertTrue(hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4"), dict(hdrs))
        text = raw.decode()
        return text, parse(text)

    def assertGrew(self, before: dict, after: dict, by: float, name: str, **labels):
        grew = value(after, name, **labels) - value(before, name, **labels)
        self.assertEqual(grew, by, f"{name}{labels} grew by {grew}, expected {by}")

    def assertPromtoolPasses(self, text: str):
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, f"promtool: {check.stdout.decode()}{check.stderr.decode()}\n{text}")
        self.assertEqual(check.stdout.decode() + check.stderr.decode(), "", "promtool lint findings")


class MetricsTest(Scraping, PaymentStackTestCase):
    with_sandbox = True
    sandbox_options = {"processing_seconds": 1}
    nginx = dict(REPLAY_ZONE)

    def test_exposition_passes_promtool(self):
        self.api("GET", f"{UNKNOWN_PAYMENT}/retrieve/status")
        text, samples = self.scrape()
        self.assertPromtoolPasses(text)
        # every daemon answered, and its families carry its label
        endpoint = self.stack.endpoint("d1")
        self.assertEqual(value(samples, "paygate_daemon_up", daemon=endpoint), 1)
        self.assertEqual(value(samples, "paygate_daemon_workers", daemon=endpoint), self.daemon_workers)
        self.assertEqual(value(samples, "paygate_daemon_db_pool_connections", daemon=endpoint), self.daemon_workers)
        self.assertEqual(value(samples, "paygate_daemon_queue_depth", daemon=endpoint), 0)
        for line in text.splitlines():
            if line.startswith("paygate_daemon_") and not line.startswith(("paygate_daemon_up", "paygate_daemon_round_trip")):
                self.assertIn(f'daemon="{endpoint}"', line)

    def test_requests_and_round_trips_counted_by_route_and_status(self):
        _, before = self.scrape()
        for _ in range(3):
            st, _, _ = self.api("GET", f"{UNKNOWN_PAYMENT}/retrieve/status")
            self.assertEqual(st, 404)
        st, _, _ = self.stack.http("GET", "/no/such/route")
        self.assertEqual(st, 404)
        st, _, _ = self.stack.http("GET", "/health")
        self.assertEqual(st, 200)
        _, after = self.scrape()
        self.assertGrew(before, after, 3, "paygate_requests_total", route="payment.status", status="404")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="none", status="404")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="health", status="200")
        self.assertGrew(before, after, 3, "paygate_daemon_round_trip_seconds_count", route="payment.status")
        self.assertGrew(before, after, 3, "paygate_daemon_round_trip_seconds_bucket", route="payment.status", le="+Inf")
        self.assertGreater(value(after, "paygate_daemon_round_trip_seconds_sum", route="payment.status"),
                           value(before, "paygate_daemon_round_trip_seconds_sum", route="payment.status"))
        # a scrape itself is not a paygate request, and nothing waits once all is answered
        self.assertEqual(value(after, "paygate_requests_in_flight"), 0)
        # the daemon's workers did the work
        self.assertGreater(value(after, "paygate_daemon_worker_busy_seconds_total"),
                           value(before, "paygate_daemon_worker_busy_seconds_total"))

    def test_refused_tokens_raise_auth_refusals_by_kind(self):
        _, before = self.scrape()
        path = f"{UNKNOWN_PAYMENT}/retrieve/status"
        self.assertEqual(self.api("GET", path, token="pgt_" + "0" * 64)[0], 403)
        self.assertEqual(self.api("GET", path, token="pgt_" + "1" * 64)[0], 403)
        self.assertEqual(self.api("GET", path, token=None)[0], 403)
        _, after = self.scrape()
        self.assertGrew(before, after, 2, "paygate_auth_refusals_total", kind="token_invalid")
        self.assertGrew(before, after, 1, "paygate_auth_refusals_total", kind="token_missing")
        self.assertGrew(before, after, 0, "paygate_auth_refusals_total", kind="token_ambiguous")
        self.assertGrew(before, after, 3, "paygate_requests_total", route="payment.status", status="403")
        # partners' callbacks refused at the edge: by their own kinds
        hdrs = {"Content-Type": "application/json"}
        st, _, _ = self.stack.http("POST", "/callbacks/sky-technologies/v1/on_payment_completed", body=b"{}", headers=hdrs)
        self.assertEqual(st, 401)
        st, _, _ = self.stack.http("POST", "/callbacks/mserver/notify", body=b"{}", headers=hdrs)
        self.assertEqual(st, 401)
        _, after = self.scrape()
        self.assertGrew(before, after, 1, "paygate_auth_refusals_total", kind="capability")
        self.assertGrew(before, after, 1, "paygate_auth_refusals_total", kind="app_token")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="callback.mserver", status="401")
        # refused at the edge: the daemon never saw them
        self.assertGrew(before, after, 0, "paygate_daemon_round_trip_seconds_count", route="payment.status")

    def test_replays_and_conflicts_counted(self):
        body = create_body(sender=new_uuid())
        first = self.create(body)
        self.assertEqual(first[0], 200, first[2])
        _, before = self.scrape()
        again = self.create(body)
        self.assertEqual((again[0], again[2]), (first[0], first[2]))
        self.assertEqual(again[1].get("Idempotent-Replayed"), "true")
        other = dict(body, money_info=dict(body["money_info"], amount="99.00"))
        self.assertEqual(self.create(other)[0], 422)
        _, after = self.scrape()
        self.assertGrew(before, after, 1, "paygate_replay_hits_total", route="payment.create")
        self.assertGrew(before, after, 1, "paygate_replay_conflicts_total", route="payment.create")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="payment.create", status="200")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="payment.create", status="422")
        # answered by nginx from its zone: no round trip to the daemon
        self.assertGrew(before, after, 0, "paygate_daemon_round_trip_seconds_count", route="payment.create")

    def test_provider_call_and_callback_show_up_and_the_dashboard_names_real_metrics(self):
        _, before = self.scrape()
        pid = self.create_payment(sender=new_uuid())
        st, _, raw = self.accept(pid)
        self.assertEqual(st, 200, raw)

        def completed():
            st, _, raw = self.api("GET", f"{pid}/retrieve/status")
            return st == 200 and json.loads(raw)["payment_status"] == "completed"
        wait_until(completed, 30, f"payment {pid} completed", interval=0.1)
        # the sandbox calls back once the charge completes; the callback's task reads the status
        wait_until(lambda: value(self.scrape()[1], "paygate_daemon_callbacks_total", partner="sky-technologies",
                                 result="accepted") > value(before, "paygate_daemon_callbacks_total",
                                                            partner="sky-technologies", result="accepted"),
                   30, "the sandbox's callback counted", interval=0.2)
        text, after = self.scrape()
        self.assertGrew(before, after, 1, "paygate_daemon_provider_call_seconds_count", provider="sky-technologies",
                        call="charge", outcome="completed")
        self.assertGrew(before, after, 1, "paygate_requests_total", route="callback.sky_technologies", status="200")
        self.assertEqual(value(after, "paygate_daemon_unknown_outcomes_open", provider="sky-technologies"), 0)
        self.assertGreaterEqual(value(after, "paygate_daemon_state_sample_age_seconds"), 0)
        self.assertEqual(value(after, "paygate_daemon_tasks", state="dead"), 0)

        # The dashboard, checked against this scrape (which has every family by now).
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = []

        def collect(node):
            if isinstance(node, dict):
                if isinstance(node.get("expr"), str):
                    exprs.append(node["expr"])
                for v in node.values():
                    collect(v)
            elif isinstance(node, list):
                for v in node:
                    collect(v)
        collect(dashboard)
        self.assertGreater(len(exprs), 10, "the dashboard has its panels' queries")
        names = {n for e in exprs for n in re.findall(r"\b(paygate_[a-z0-9_]+)", e)}
        scraped = {n for (n, _) in after}
        self.assertEqual(sorted(names - scraped), [], "dashboard queries name metrics the scrape does not have")
        # and each query is PromQL Prometheus accepts (Grafana's variables given values)
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"paygate:dashboard_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
            for i, e in enumerate(exprs)]}]}
        rules_file = Path(self.stack.root) / "dashboard-rules.yml"
        rules_file.write_text(json.dumps(rules))
        check = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())
        families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        undrawn = {f for f in families if not any(n == f or n.startswith(f + "_") for n in names)}
        self.assertEqual(sorted(undrawn), [], "families the dashboard does not show")

    def test_metrics_location_answers_get_only(self):
        st, hdrs, raw = self.stack.http("POST", "/metrics", body=b"{}", headers={"Content-Type": "application/json"})
        self.assertEqual(st, 405, raw)
        self.assertEqual(hdrs.get("Allow"), "GET, HEAD")
        self.assertEqual(json.loads(raw)["code"], "method_not_allowed")
        st, _, raw = self.stack.http("HEAD", "/metrics")
        self.assertEqual((st, raw), (200, b""))


class MetricsDaemonDownTest(Scraping, StackTestCase):
    """A daemon that does not answer shows paygate_daemon_up 0; nginx's own metrics still come,
    and what nginx answered for it (503 no_daemon) is counted by cause."""

    def test_daemon_down_is_up_0_and_503_counted(self):
        self.wait_for_status("/health", 200)
        _, before = self.scrape()
        self.stack.kill_daemon("d1")
        self.wait_for_status("/health", 503)
        text, after = self.scrape()
        self.assertEqual(value(after, "paygate_daemon_up", daemon=self.stack.endpoint("d1")), 0)
        self.assertNotIn("paygate_daemon_queue_depth", text)
        grew = value(after, "paygate_unavailable_total", status="503", cause="no_daemon") - \
            value(before, "paygate_unavailable_total", status="503", cause="no_daemon")
        self.assertGreaterEqual(grew, 1)
        self.assertGrew(before, after, grew, "paygate_requests_total", route="health", status="503")
        self.assertPromtoolPasses(text)


class MetricsFrozenDaemonTest(Scraping, StackTestCase):
    """A daemon that is connected but silent (SIGSTOP): a scrape still answers, after its capped
    wait, with that daemon down, and counts the request waiting for it as in flight."""

    nginx = {"paygate_timeout": "20s"}

    def test_frozen_daemon_is_down_and_its_request_in_flight(self):
        self.wait_for_steady("/health", 200, consecutive=3)
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        answer = []
        waiting = threading.Thread(target=lambda: answer.append(self.get("/health", timeout=60)))
        waiting.start()
        try:
            seen = []

            def one_in_flight():
                seen[:] = [self.scrape()[1]]
                return value(seen[0], "paygate_requests_in_flight") == 1
            wait_until(one_in_flight, 30, "the held request in flight", interval=0.1)
            self.assertEqual(value(seen[0], "paygate_daemon_up", daemon=self.stack.endpoint("d1")), 0)
        finally:
            self.stack.kill_daemon("d1", signal.SIGCONT)
            waiting.join(60)
        self.assertEqual(answer[0][0], 200, answer)
        _, after = self.scrape()
        self.assertEqual(value(after, "paygate_requests_in_flight"), 0)
        self.assertEqual(value(after, "paygate_daemon_up", daemon=self.stack.endpoint("d1")), 1)


class MetricsReloadTest(Scraping, StackTestCase):
    """The zone outlives `nginx -s reload`: the new workers count on from the old workers' counts."""

    def test_reload_keeps_the_counters(self):
        self.wait_for_steady("/health", 200, consecutive=3)
        _, before = self.scrape()
        self.assertGreaterEqual(value(before, "paygate_requests_total", route="health", status="200"), 3)
        self.stack.reload_nginx()
        self.assertEqual(self.get("/health")[0], 200)
        _, after = self.scrape()
        self.assertGrew(before, after, 1, "paygate_requests_total", route="health", status="200")
        self.assertGrew(before, after, 1, "paygate_daemon_round_trip_seconds_count", route="health")
        self.assertEqual(value(after, "paygate_requests_in_flight"), 0)


class MetricsConfigurationTest(StackTestCase):
    """paygate_metrics_zone and paygate_metrics are checked when nginx reads its configuration."""

    start_nginx_in_setup = False

    def test_zone_size_and_location_checked(self):
        rc, out = self.stack.check_nginx_conf(paygate_metrics_zone="2m")
        self.assertEqual(rc, 0, out)
        for size in ("8k", "lots"):
            with self.subTest(size):
                rc, out = self.stack.check_nginx_conf(paygate_metrics_zone=size)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(f'paygate_metrics_zone "{size}": expected a size of at least', out)
        rc, out = self.stack.check_nginx_conf(
            server_extra="location /api/ { paygate_pass; location = /api/metrics { paygate_metrics; } }")
        self.assertNotEqual(rc, 0, out)
        self.assertIn('"paygate_metrics" needs a location of its own, without "paygate_pass"', out)


if __name__ == "__main__":
    unittest.main()
