"""The nginx <-> paygated link is authenticated with CURVE (docs/security.md).

Every stack of the harness runs CURVE already (keys made by `paygatectl keys generate`); these
tests check the refusals: a client with an unknown key (paygate-ipc-send) gets no answer and the
daemon names its key in a warning; a plain client and one holding the wrong daemon key are refused
in the handshake; an nginx with an unlisted key, the wrong daemon key or `paygate_curve off` gets
503 and says why in its error log; nginx and paygated refuse to start half configured.
"""

import json
import os
import re
import subprocess
import unittest

from e2e_base import StackTestCase, wait_until
from stack import free_port

UNKNOWN_PAYMENT = "/api/v1/payment/00000000-0000-4000-8000-000000000000/retrieve/status"
# The module's [error] line when the daemon's ZAP handler refuses its key.
REFUSED_LINE = r"paygate: daemon \S+ refused this worker's CURVE key \(ZAP status 400\)"


class CurveTestCase(StackTestCase):
    daemons = ()
    start_nginx_in_setup = False

    def ipc_send(self, endpoint, route, *args, key=None, wait_ms=1500):
        """paygate-ipc-send as a client of the daemon; key: the name of its key pair (None: plain)."""
        cmd = [str(self.stack.bin_dir / "paygate-ipc-send"), endpoint, route, "--wait-ms", str(wait_ms), *args]
        if key is not None:
            curve = self.stack.make_key_pair(key)
            cmd += ["--curve-key", str(curve / f"{key}.key"), "--server-key", str(curve / "paygated.pub")]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              env=self.stack._san_env("ipc-send"))

    def daemon_lines(self, name, event):
        """The daemon's `event` lines, as JSON text (for substring checks)."""
        return [json.dumps(e) for e in self.stack.daemons[name].events(event)]

    def wait_for_daemon_line(self, name, event, text):
        def found():
            return [ln for ln in self.daemon_lines(name, event) if text in ln]
        return wait_until(found, 10, f"{event} line naming {text!r} in {name}'s log")

    def nginx_lines(self, pattern, name="nginx"):
        ngx = self.stack.nginxes[name]
        with open(ngx.error_log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return [ln for ln in text.splitlines() if re.search(pattern, ln)]

    def assert_unavailable(self, n=10):
        for _ in range(n):
            status, headers, body = self.get("/ping")
            self.assertEqual(status, 503, body)
            self.assertEqual(self.assertJson(headers, body)["code"], "service_unavailable")


class DaemonRefusesUnknownKeysTest(CurveTestCase):

    def test_unknown_key_gets_no_answer_and_is_named_in_the_log(self):
        self.stack.curve_keys()
        tcp = f"tcp://127.0.0.1:{free_port()}"
        ipc = self.stack.endpoint("d1")
        self.stack.start_daemon("d1", listen=[ipc, tcp])
        daemon_key = self.stack.public_key("paygated")
        self.assertTrue([ln for ln in self.daemon_lines("d1", "curve_enabled") if daemon_key in ln])
        self.stack.make_key_pair("stranger")
        stranger = self.stack.public_key("stranger")
        for n, endpoint in enumerate((ipc, tcp)):
            with self.subTest(endpoint=endpoint):
                # The module's key is served (the control: the same tool, the same request)...
                ok = self.ipc_send(endpoint, "auth.tokens", "--param", "since=0", key="nginx")
                self.assertEqual(ok.returncode, 0, ok.stderr)
                self.assertIn("status=200", ok.stdout)
                # ...an unknown key asking for the token table gets nothing and is logged by key.
                rid = f"intruder-{n}"
                bad = self.ipc_send(endpoint, "auth.tokens", "--param", "since=0", "--request-id", rid,
                                    key="stranger")
                self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)
                self.assertIn("no reply within", bad.stderr)
                self.assertEqual(bad.stdout, "")
        lines = self.wait_for_daemon_line("d1", "curve_refused", stranger)
        refused = json.loads(lines[0])
        self.assertEqual(refused["level"], "warn")
        self.assertEqual(refused["reason"], "public key not allowed")
        self.assertTrue(any(e.get("address", "").startswith("127.0.0.1")
                            for e in self.stack.daemons["d1"].events("curve_refused")))
        requests = "\n".join(self.stack.daemons["d1"].request_lines())
        self.assertNotIn("intruder-", requests)   # nothing reached a handler

        # A plain client (no CURVE at all) is refused in the handshake, and that is logged too.
        plain = self.ipc_send(ipc, "ping", "--request-id", "plain-client")
        self.assertEqual(plain.returncode, 1, plain.stdout)
        # (whichever side reads the other's greeting first hangs up: the daemon sees the mismatch
        # or the connection closing in the handshake)
        line = self.wait_for_daemon_line("d1", "link_handshake_failed", "")[0]
        self.assertRegex(line, r"security mechanism mismatch|connection closed during the handshake")
        self.assertNotIn("plain-client", "\n".join(self.stack.daemons["d1"].request_lines()))

        # With the right keys everything works through nginx: the token sync and the API.
        self.stack.start_nginx()
        token = self.stack.create_token("curve-client")

        def synced():
            st, _, _ = self.get(UNKNOWN_PAYMENT, headers={"x_auth_token": token})
            return st == 404
        wait_until(synced, 15, "the token list to reach nginx over CURVE")
        status, _, body = self.get("/ping")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.nginx_lines(r"paygate: .*handshake|refused this worker"), [])


class ModuleWithWrongKeysTest(CurveTestCase):
    daemons = ("d1",)

    def test_module_key_not_in_the_allow_list_gets_503(self):
        rogue = self.stack.make_key_pair("rogue-nginx") / "rogue-nginx.key"
        self.stack.allow_log(REFUSED_LINE, "the test gives nginx a key the daemon does not allow", "nginx")
        self.stack.start_nginx(paygate_curve_secret_key=str(rogue))
        wait_until(lambda: len(self.nginx_lines(REFUSED_LINE)) >= 2, 10, "both workers to log the refusal")
        self.assert_unavailable()
        self.wait_for_daemon_line("d1", "curve_refused", self.stack.public_key("rogue-nginx"))
        self.assertEqual(self.stack.daemons["d1"].request_lines(), [])
        # Fixed configuration, new workers: served again.
        self.stack.stop_nginx()
        self.stack.start_nginx()
        self.assertEqual(self.get("/ping")[0], 200)

    def test_wrong_daemon_public_key_gets_503(self):
        other = self.stack.make_key_pair("other-daemon") / "other-daemon.pub"
        self.stack.start_nginx(paygate_daemon_public_key=str(other))
        wait_until(lambda: self.nginx_lines(r"\[warn\].*paygate: handshake with daemon \S+ failed"), 10,
                   "nginx to warn about the failed handshake")
        self.assert_unavailable()
        self.wait_for_daemon_line("d1", "link_handshake_failed", "cryptographic error")
        self.assertEqual(self.stack.daemons["d1"].request_lines(), [])

    def test_plain_module_is_refused_by_a_curve_daemon(self):
        self.stack.allow_log(r"paygate: handshake with daemon \S+ failed: security mechanism mismatch",
                             "a plain nginx meets a CURVE daemon", "nginx")
        self.stack.start_nginx(paygate_curve="off")
        self.assertTrue(self.nginx_lines(r"\[warn\].*not authenticated \(paygate_curve off\)"))
        self.assert_unavailable()
        line = self.wait_for_daemon_line("d1", "link_handshake_failed", "")[0]
        self.assertRegex(line, r"security mechanism mismatch|connection closed during the handshake")
        self.assertEqual(self.stack.daemons["d1"].request_lines(), [])


class PerDaemonKeysTest(CurveTestCase):

    def test_each_daemon_with_its_own_key_pair(self):
        self.stack.start_daemon("d1")                    # the stack's shared pair
        self.stack.start_daemon("d2", curve_key="d2")    # its own: public_key= on its line
        ngx = self.stack.start_nginx()
        conf = ngx.conf.read_text()
        self.assertRegex(conf, r"paygate_daemon ipc://\S+/d2\.sock public_key=\S+/d2\.pub;")
        self.assertIn(self.stack.public_key("d2"), "\n".join(self.daemon_lines("d2", "curve_enabled")))
        ids = []
        for _ in range(40):
            status, headers, body = self.get("/ping")
            self.assertEqual(status, 200, body)
            ids.append(headers["X-Request-Id"])

        def both_served():
            return all(any(rid in ln for rid in ids for ln in self.stack.daemons[d].request_lines())
                       for d in ("d1", "d2"))
        wait_until(both_served, 10, "requests served by both daemons")


class HalfConfiguredTest(CurveTestCase):
    """nginx -t and paygated -t refuse a link that is neither CURVE with every key nor plain by
    an explicit `off`."""
    with_postgres = False

    def nginx_t(self, **directives):
        """`nginx -t` with exactly these link directives (none of the harness's defaults)."""
        code, output = self.stack.check_nginx_conf(defaults=False, daemons=["d1"], **directives)
        return subprocess.CompletedProcess([], code, "", output)

    def test_nginx_refuses_a_half_configured_link(self):
        curve = self.stack.curve_keys()
        secret, public = str(curve / "nginx.key"), str(curve / "paygated.pub")
        res = self.nginx_t()
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('paygate_daemon needs "paygate_curve_secret_key"', res.stderr)
        res = self.nginx_t(paygate_curve_secret_key=secret)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("no public key of the daemon", res.stderr)
        res = self.nginx_t(paygate_curve="off", paygate_daemon_public_key=public)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('"paygate_curve off" contradicts', res.stderr)
        loose = curve / "loose.key"
        loose.write_text((curve / "nginx.key").read_text())
        os.chmod(loose, 0o644)
        res = self.nginx_t(paygate_curve_secret_key=str(loose), paygate_daemon_public_key=public)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("must not be accessible by group or others (mode 0644", res.stderr)
        res = self.nginx_t(paygate_curve_secret_key=secret, paygate_daemon_public_key=public)
        self.assertEqual(res.returncode, 0, res.stderr)
        res = self.nginx_t(paygate_curve="off")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("not authenticated (paygate_curve off)", res.stderr)

    def test_paygated_refuses_a_half_configured_link(self):
        curve = self.stack.curve_keys()

        def check(**config):
            path = self.stack.daemon_dir / "t.conf"
            path.write_text(self.stack.daemon_config("t", **config))
            return subprocess.run([str(self.stack.paygated), "-t", "-c", str(path)], capture_output=True,
                                  text=True, timeout=30, env=self.stack._san_env("paygated-t"))
        self.assertEqual(check().returncode, 0)
        res = check(curve_secret_key=None)
        self.assertEqual(res.returncode, 2)
        self.assertIn("needs 'curve_secret_key' and 'curve_allowed_keys' (or 'curve = off'", res.stderr)
        res = check(curve="off", curve_allowed_keys=str(curve / "modules.keys"))
        self.assertEqual(res.returncode, 2)
        self.assertIn("contradicts", res.stderr)
        res = check(curve_allowed_keys=str(curve / "missing.keys"))
        self.assertEqual(res.returncode, 2)
        self.assertIn("missing.keys: No such file or directory", res.stderr)
        self.assertEqual(check(curve="off").returncode, 0)


if __name__ == "__main__":
    unittest.main()
