"""The Debian packages, built from this tree and run as installed (label `package`).

Builds libnginx-mod-http-paygate and paygated with scripts/package.sh (dpkg-buildpackage, then
lintian, which fails the build on any error), extracts both into a scratch root with
`dpkg-deb -x`, checks what the packages declare (nginx ABI dependency, conffile, load_module
snippet, unit hardening), and then runs the *installed* paygatectl, paygated and module end to
end through scripts/stack.py against a private PostgreSQL: migrations from
/usr/share/paygate/sql, /health 200, a token made by the installed paygatectl, one payment.

PAYGATE_PACKAGE_DIR: where the packages are built (ctest: <build>/package); PAYGATE_PACKAGE_DEBS:
a directory of already built .deb files to test instead of building (not used by ctest).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("PAYGATE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
sys.path.insert(0, str(SOURCE_DIR / "scripts"))

from stack import Stack, wait_for_token_sync  # noqa: E402

MODULE_SO = "usr/lib/nginx/modules/ngx_http_paygate_module.so"
MODULE_CONF = "usr/share/nginx/modules-available/mod-http-paygate.conf"


def run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
                             f"{res.stdout}{res.stderr}")
    return res.stdout


def deb_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field]).strip()


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        prebuilt = os.environ.get("PAYGATE_PACKAGE_DEBS")
        if prebuilt:
            cls.out = Path(prebuilt)
        else:
            cls.out = Path(os.environ.get("PAYGATE_PACKAGE_DIR")
                           or tempfile.mkdtemp(prefix="paygate-package-"))
            subprocess.run(["bash", str(SOURCE_DIR / "scripts" / "package.sh"), str(cls.out)],
                           check=True)   # fails on any lintian error
            lintian = (cls.out / "lintian.log").read_text()
            if re.search(r"^E: ", lintian, re.M):
                raise AssertionError(f"lintian errors:\n{lintian}")
        debs = {}
        for deb in cls.out.glob("*.deb"):
            debs[deb_field(deb, "Package")] = deb
        cls.module_deb = debs.get("libnginx-mod-http-paygate")
        cls.daemon_deb = debs.get("paygated")
        if cls.module_deb is None or cls.daemon_deb is None:
            raise AssertionError(f"expected both packages in {cls.out}, found {sorted(debs)}")
        # "Installed": both packages extracted into one scratch root.
        cls.root = Path(tempfile.mkdtemp(prefix="paygate-pkgroot-"))
        os.chmod(cls.root, 0o755)   # nginx workers (nobody when we are root) load the module from it
        for deb in (cls.module_deb, cls.daemon_deb):
            run(["dpkg-deb", "-x", str(deb), str(cls.root)])

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "root", None) and os.environ.get("PAYGATE_KEEP") != "1":
            shutil.rmtree(cls.root, ignore_errors=True)

    # -- what the packages declare --------------------------------------------------------------

    def test_module_package(self):
        # The ABI the nginx on this machine provides (Debian: Provides: nginx-abi-1.22.1-7) must be
        # exactly the one the module depends on: the headers it was built with are nginx-dev's.
        provides = run(["dpkg-query", "-W", "-f=${Provides}", "nginx"])
        abi = re.findall(r"nginx-abi-[\w.~+-]+", provides)
        self.assertEqual(len(abi), 1, f"nginx provides {provides!r}")
        depends = [d.strip() for d in deb_field(self.module_deb, "Depends").split(",")]
        self.assertIn(abi[0], depends)

        self.assertTrue((self.root / MODULE_SO).is_file(), f"{MODULE_SO} missing from the package")
        self.assertEqual((self.root / MODULE_CONF).read_text(),
                         "load_module modules/ngx_http_paygate_module.so;\n")
        # The server-level snippet for nginx's own errors, a conffile beside Debian's snippets.
        self.assertEqual((self.root / "etc/nginx/snippets/paygate-json-errors.conf").read_text(),
                         (SOURCE_DIR / "conf/paygate-json-errors.conf").read_text())
        conffiles = run(["dpkg-deb", "--info", str(self.module_deb), "conffiles"]).split()
        self.assertEqual(conffiles, ["/etc/nginx/snippets/paygate-json-errors.conf"])
        # Debian's nginx resolves modules/ (relative to its prefix /usr/share/nginx) to
        # /usr/lib/nginx/modules, where the package puts the module.
        self.assertEqual(os.path.realpath("/usr/share/nginx/modules"), "/usr/lib/nginx/modules")
        # The release build: no sanitizer runtime in what we ship.
        for binary in (MODULE_SO, "usr/sbin/paygated", "usr/bin/paygatectl"):
            self.assertNotIn("libasan", run(["readelf", "-d", str(self.root / binary)]), binary)

    def test_daemon_package(self):
        conffiles = run(["dpkg-deb", "--info", str(self.daemon_deb), "conffiles"]).split()
        self.assertEqual(conffiles, ["/etc/paygate/paygated.conf"])
        for path in ("usr/sbin/paygated", "usr/bin/paygatectl"):
            self.assertTrue(os.access(self.root / path, os.X_OK), path)
        shipped = sorted(p.name for p in (self.root / "usr/share/paygate/sql").iterdir())
        self.assertEqual(shipped, sorted(p.name for p in (SOURCE_DIR / "sql").glob("*.sql")))
        # The shipped configuration is valid as it is (the installed daemon checks it), once
        # the key files postinst makes exist (here under the scratch root).
        keys = self.root / "etc/paygate/keys"
        keys.mkdir(parents=True, exist_ok=True)
        ctl = str(self.root / "usr/bin/paygatectl")
        for name in ("paygated", "nginx"):
            if not (keys / f"{name}.key").exists():
                run([ctl, "keys", "generate", "--out", str(keys), "--name", name])
        (keys / "allowed-modules").write_text((keys / "nginx.pub").read_text())
        conf = (self.root / "etc/paygate/paygated.conf").read_text()
        self.assertIn("curve_secret_key = /etc/paygate/keys/paygated.key", conf)
        rooted = self.root / "etc/paygate/paygated.rooted.conf"
        rooted.write_text(conf.replace("/etc/paygate/keys/", f"{keys}/"))
        out = run([str(self.root / "usr/sbin/paygated"), "-t", "-c", str(rooted)])
        self.assertIn("is ok", out)
        postinst = run(["dpkg-deb", "--info", str(self.daemon_deb), "postinst"])
        self.assertIn("adduser --system", postinst)
        self.assertIn("paygatectl keys generate --out \"$keys\" --name paygated", postinst)
        prerm = run(["dpkg-deb", "--info", str(self.daemon_deb), "prerm"])
        self.assertIn("deb-systemd-invoke stop paygated.service", prerm)
        for page in ("usr/share/man/man8/paygated.8.gz", "usr/share/man/man1/paygatectl.1.gz"):
            self.assertTrue((self.root / page).is_file(), page)

    def test_unit_hardening(self):
        unit = (self.root / "lib/systemd/system/paygated.service").read_text()
        for line in ("User=paygate", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                     "ProtectHome=yes", "RuntimeDirectory=paygate", "StateDirectory=paygate",
                     "ExecStart=/usr/sbin/paygated -c /etc/paygate/paygated.conf"):
            self.assertIn(line + "\n", unit)
        # Only the state and socket directories are writable: no ReadWritePaths= widening it.
        self.assertNotIn("ReadWritePaths=", unit)
        # systemd's own reading of the unit: no line it cannot parse, and its exposure score
        # (0-10, shown as 1.x for this unit) under 2.0.
        res = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={self.root}",
                              "--threshold=20", "paygated.service"], capture_output=True, text=True)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertNotRegex(res.stderr, r"ignoring|Unknown|Failed", res.stderr)

    # -- the installed programs, end to end -----------------------------------------------------

    def test_installed_stack_serves_a_payment(self):
        with Stack(install_root=self.root) as s:
            s.start_postgres()
            s.migrate()   # the installed paygatectl, the installed migrations
            applied = s.psql("SELECT count(*) FROM schema_migrations")
            self.assertEqual(int(applied), len(list((self.root / "usr/share/paygate/sql").iterdir())))
            d = s.start_daemon("d1")
            s.start_nginx(worker_processes=1)

            # What runs is what the packages installed, not a build tree.
            self.assertEqual(os.readlink(f"/proc/{d.pid}/exe"), str(self.root / "usr/sbin/paygated"))
            worker = s.nginx_worker_pids()[0]
            maps = Path(f"/proc/{worker}/maps").read_text()
            self.assertIn(str(self.root / MODULE_SO), maps)

            status, _, body = s.http("GET", "/health")
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["status"], "healthy")

            token = s.create_token("package-test")   # the installed paygatectl
            wait_for_token_sync(s, token)
            payment = {"idempotency_token": str(uuid.uuid4()),
                       "money_info": {"method_id": "card-7781", "currency": "USD", "amount": "12.50"},
                       "recipcient": {"recipcient_id": "merchant-42"},
                       "sender": {"sender_id": "user-1001"}}
            status, _, body = s.http("POST", "/api/v1/payment/create", json.dumps(payment),
                                     {"x_auth_token": token, "Content-Type": "application/json"})
            self.assertEqual(status, 200, body)
            tx = json.loads(body)["transaction_id"]
            self.assertEqual(s.psql(f"SELECT status || ' ' || amount_minor FROM payments WHERE id = '{tx}'"),
                             "created 1250")
            status, _, body = s.http("GET", f"/api/v1/payment/{tx}/retrieve/status",
                                     headers={"x_auth_token": token})
            self.assertEqual((status, json.loads(body)), (200, {"payment_status": "created"}))


if __name__ == "__main__":
    unittest.main()
