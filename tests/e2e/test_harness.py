"""The harness itself: sanitizer report triage, log checks, daemon exits, PostgreSQL restart."""

import os
import signal
import unittest

from e2e_base import Stack, watch_contract
import stack as stackmod

NGINX_OWN_LEAK = """
=================================================================
==7507==ERROR: LeakSanitizer: detected memory leaks

Indirect leak of 15360 byte(s) in 1 object(s) allocated from:
    #0 0x7f81058b89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x560b2b3a5cfe in ngx_alloc (/usr/sbin/nginx+0x4ccfe)
    #2 0x560b2b3a0af7  (/usr/sbin/nginx+0x47af7)
    #3 0x560b2b3aa61d  (/usr/sbin/nginx+0x5161d)
    #4 0x560b2b3aab2c  (/usr/sbin/nginx+0x51b2c)
    #5 0x560b2b3a9212 in ngx_spawn_process (/usr/sbin/nginx+0x50212)
    #6 0x560b2b3aa397  (/usr/sbin/nginx+0x51397)
    #7 0x560b2b3ab8b8 in ngx_master_process_cycle (/usr/sbin/nginx+0x528b8)
    #8 0x560b2b37e3ad in main (/usr/sbin/nginx+0x253ad)
    #9 0x7f8105045249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
    #10 0x7f8105045304 in __libc_start_main_impl ../csu/libc-start.c:360
    #11 0x560b2b37e430 in _start (/usr/sbin/nginx+0x25430)

SUMMARY: AddressSanitizer: 15360 byte(s) leaked in 1 allocation(s).
"""

OUR_LEAK_THROUGH_NGX_ALLOC = NGINX_OWN_LEAK.replace(
    "    #2 0x560b2b3a0af7  (/usr/sbin/nginx+0x47af7)\n",
    "    #2 0x7f00000010 in init_process /work/main/ngx_module/ngx_http_paygate_module.cpp:42\n")

REQUEST_POOL_LEAK = """
==1==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 1024 byte(s) in 1 object(s) allocated from:
    #0 0x7f81058b89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x560b2b3a5cfe in ngx_alloc (/usr/sbin/nginx+0x4ccfe)
    #2 0x560b2b3a0af7 in ngx_create_pool (/usr/sbin/nginx+0x47af7)
    #3 0x560b2b3aa61d  (/usr/sbin/nginx+0x5161d)
    #4 0x560b2b3aa61d  (/usr/sbin/nginx+0x5161d)
    #5 0x560b2b3aa61d  (/usr/sbin/nginx+0x5161d)
    #6 0x560b2b3aa61d  (/usr/sbin/nginx+0x5161d)
    #7 0x560b2b3a9212 in ngx_spawn_process (/usr/sbin/nginx+0x50212)
"""

LSAN_FATAL = ("==12==LeakSanitizer has encountered a fatal error.\n"
              "==12==HINT: For debugging, try setting environment variable LSAN_OPTIONS=verbosity=1\n")

UBSAN = "/work/main/daemon/src/x.cpp:10:5: runtime error: signed integer overflow\n"
ASAN = "==3==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n"


class ReportTriageTest(unittest.TestCase):

    def test_debian_nginx_startup_leak_is_ignored(self):
        self.assertEqual(stackmod.analyse_sanitizer_report(NGINX_OWN_LEAK), [])

    def test_leak_with_our_frame_is_reported(self):
        self.assertEqual(stackmod.analyse_sanitizer_report(OUR_LEAK_THROUGH_NGX_ALLOC),
                         ["LeakSanitizer: Indirect leak of 15360 byte(s) in 1 object(s) allocated from:"])

    def test_request_time_leak_in_nginx_frames_is_reported(self):
        self.assertEqual(stackmod.analyse_sanitizer_report(REQUEST_POOL_LEAK),
                         ["LeakSanitizer: Direct leak of 1024 byte(s) in 1 object(s) allocated from:"])

    def test_ubsan_and_asan_are_reported(self):
        self.assertEqual(stackmod.analyse_sanitizer_report(UBSAN), ["UBSan report"])
        self.assertEqual(stackmod.analyse_sanitizer_report(ASAN), ["AddressSanitizer: heap-use-after-free"])
        # nginx's own leak beside it stays ignored; the ASan error is still the one reported
        self.assertEqual(stackmod.analyse_sanitizer_report(NGINX_OWN_LEAK + ASAN),
                         ["AddressSanitizer: heap-use-after-free"])

    def test_leak_sanitizer_that_cannot_run_is_reported(self):
        self.assertEqual(stackmod.analyse_sanitizer_report(LSAN_FATAL),
                         ["LeakSanitizer could not run (fatal error): leaks went unchecked"])

    def test_nginx_error_log_patterns(self):
        bad = ["2026/01/01 00:00:00 [alert] 1#1: worker process 5 exited on signal 11",
               "2026/01/01 00:00:00 [emerg] 1#1: unknown directive \"x\"",
               "2026/01/01 00:00:00 [alert] 7#7: *3 open socket #12 left in connection 4"]
        good = ["2026/01/01 00:00:00 [error] 7#7: *1 paygate: daemon unreachable",
                "2026/01/01 00:00:00 [notice] 1#1: worker process 5 exited with code 0"]
        for line in bad:
            self.assertRegex(line, stackmod.NGINX_BAD_LINE)
        for line in good:
            self.assertNotRegex(line, stackmod.NGINX_BAD_LINE)


class HarnessStackTest(unittest.TestCase):

    def setUp(self) -> None:
        watch_contract(self)

    def test_postgres_restart_keeps_data_and_log_check_catches_alerts(self):
        with Stack() as s:
            s.start_postgres()
            s.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
            s.stop_postgres()
            self.assertFalse(s.pg.is_running())
            s.start_postgres()
            self.assertEqual(s.psql("SELECT v FROM t"), "42")
            # a fake nginx error log with an alert must fail check_logs
            fake = stackmod.Nginx("fake", s.root / "fake", 0, 1, {})
            (s.root / "fake" / "logs").mkdir(parents=True)
            fake.error_log.write_text("2026/01/01 00:00:00 [alert] 1#1: something bad\n")
            s.nginxes["fake"] = fake
            problems = s.check_logs(raise_on_problems=False)
            self.assertEqual(len(problems), 1, problems)
            self.assertIn("[alert] 1#1: something bad", problems[0])
            del s.nginxes["fake"]
            self.assertEqual(s.check_logs(raise_on_problems=False), [])
            root = s.root
        self.assertFalse(root.exists(), "temp dir of a passing stack is removed")

    def test_leak_canary_proves_leak_detection_is_on_in_workers(self):
        """The Debug module's test-only canary leaks 24 bytes in each worker's init_process: the
        harness must report it (if LSan were off, or its reports unread, this test fails)."""
        s = Stack()
        try:
            s.start_postgres()
            s.migrate()
            s.start_daemon("d1")
            s.start_nginx(main_extra="env PAYGATE_TEST_LEAK_CANARY=1;", worker_processes=1)
            self.assertIn("test leak canary armed", stackmod._read_text(s.nginxes["nginx"].error_log))
            s.stop()
            problems = s.check_logs(raise_on_problems=False)
            self.assertTrue([p for p in problems if "LeakSanitizer: Direct leak of 24 byte(s)" in p], problems)
            reports = "".join(stackmod._read_text(f) for f in s.san_dir.glob("nginx.asan.*"))
            # allocated by the module: its frame names the canary, or (when the symbolizer gave up,
            # as it can on a loaded machine) at least the module's .so
            self.assertRegex(reports, r"Direct leak of 24 byte\(s\)[^\n]*\n\s+#0 [^\n]*malloc[^\n]*\n"
                                      r"\s+#1 [^\n]*(paygate_test_leak_canary|ngx_http_paygate_module\.so)")
        finally:
            s.cleanup(failed=False)

    def test_port_taken_between_pick_and_bind_is_retried(self):
        """The window between picking a free port and the server's bind: a squatter takes the
        port there (simulated: the pre-check is told the port is free) -> the first start of
        PostgreSQL and of nginx moves to another port, and the stack still passes its checks."""
        import socket
        real = stackmod.port_is_free
        squatters = []
        try:
            with Stack() as s:
                for port in (s.pg.port, s.http_port):
                    sq = socket.socket()
                    sq.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sq.bind(("127.0.0.1", port))
                    sq.listen()
                    squatters.append(sq)
                taken = (s.pg.port, s.http_port)
                stackmod.port_is_free = lambda port: True
                s.start_postgres()
                s.migrate()
                s.start_daemon("d1")
                s.start_nginx()
                stackmod.port_is_free = real
                self.assertNotEqual(s.pg.port, taken[0])
                self.assertNotEqual(s.http_port, taken[1])
                self.assertEqual(s.http("GET", "/health")[0], 200)
        finally:
            stackmod.port_is_free = real
            for sq in squatters:
                sq.close()

    def test_error_lines_fail_unless_declared(self):
        with Stack() as s:
            ngx = stackmod.Nginx("fake", s.root / "fake", 0, 1, {})
            (s.root / "fake" / "logs").mkdir(parents=True)
            ngx.error_log.write_text(
                "2026/01/01 00:00:00 [error] 7#7: *1 paygate: something failed\n"
                "2026/01/01 00:00:00 [crit] 7#7: *2 open() failed\n"
                "2026/01/01 00:00:00 [warn] 7#7: only a warning\n")
            s.nginxes["fake"] = ngx
            problems = s.check_logs(raise_on_problems=False)
            self.assertEqual(len(problems), 1, problems)
            self.assertIn("something failed", problems[0])
            self.assertIn("open() failed", problems[0])
            self.assertNotIn("only a warning", problems[0])
            s.allow_log(r"paygate: something failed", "declared by the test", "nginx")
            problems = s.check_logs(raise_on_problems=False)
            self.assertEqual(len(problems), 1, problems)
            self.assertNotIn("something failed", problems[0])
            s.allow_log(r"open\(\) failed", "declared too", "daemon")   # wrong source: no excuse
            problems = s.check_logs(raise_on_problems=False)
            self.assertEqual(len(problems), 1, problems)
            self.assertIn("open() failed", problems[0])
            s.allow_log(r"open\(\) failed", "declared too", "nginx")
            self.assertEqual(s.check_logs(raise_on_problems=False), [])
            del s.nginxes["fake"]

    def test_daemon_error_line_and_self_exit_fail_the_test(self):
        with Stack() as s:
            s.start_postgres()
            s.migrate()
            d = s.start_daemon("d1")
            with open(d.logfile, "a") as f:
                f.write('{"time":"2026-01-01T00:00:00.000Z","level":"warn","event":"only_a_warning"}\n')
                f.write('{"time":"2026-01-01T00:00:00.000Z","level":"error","event":"handler_exception","what":"x y"}\n')
            problems = s.check_logs(raise_on_problems=False)
            self.assertEqual(len(problems), 1, problems)
            self.assertIn('"event":"handler_exception"', problems[0])
            # a pattern matches the JSON line or its logfmt form (`error event=... what="x y"`)
            s.allow_log(r'event=handler_exception what="x y"', "written by the test", "daemon")
            self.assertEqual(s.check_logs(raise_on_problems=False), [])

            # a kill the test asked for is excused ...
            self.assertEqual(s.kill_daemon("d1", signal.SIGKILL), -9)
            self.assertEqual(s.check_logs(raise_on_problems=False), [])
            # ... a death nobody asked for is not, even after a restart
            d = s.start_daemon("d1")
            aborted = d.proc
            os.kill(aborted.pid, signal.SIGABRT)
            aborted.wait(timeout=30)
            s.start_daemon("d1")
            problems = s.check_logs(raise_on_problems=False)
            self.assertTrue(any("exited by itself with signal 6" in p for p in problems), problems)
            d.excused_pids.add(aborted.pid)   # so this test's own teardown passes


if __name__ == "__main__":
    unittest.main()
