"""PostgreSQL goes away and comes back: /health says unhealthy (503), then healthy again."""

import unittest

from e2e_base import StackTestCase
from stack import wait_until


class PostgresDownTest(StackTestCase):

    def test_postgres_stopped_then_started(self):
        self.assertEqual(self.get("/health")[0], 200)
        workers = self.stack.nginx_worker_pids()

        self.stack.stop_postgres()
        status, headers, body = self.get("/health")
        self.assertEqual(status, 503, body)
        doc = self.assertJson(headers, body)
        self.assertEqual(doc.get("status"), "unhealthy", doc)
        self.assertRequestId(headers)
        # routes that do not touch the database keep working
        status, _, body = self.get("/ping")
        self.assertEqual(status, 200, body)

        self.stack.start_postgres()  # same data directory, same port
        status, headers, body = self.wait_for_status("/health", 200, timeout=15)
        self.assertEqual(self.assertJson(headers, body).get("status"), "healthy")
        # every daemon worker (each has its own database connection) is back, not just one
        self.wait_for_steady("/health", 200, timeout=15)
        self.assertEqual(self.stack.nginx_worker_pids(), workers)


class DaemonStartsWithoutPostgresTest(StackTestCase):
    """paygated starts and answers ping while PostgreSQL is down; health follows the database."""
    with_postgres = False

    def test_daemon_up_before_postgres(self):
        status, _, body = self.get("/ping")
        self.assertEqual(status, 200, body)
        status, headers, body = self.get("/health")
        self.assertEqual(status, 503, body)
        self.assertEqual(self.assertJson(headers, body).get("status"), "unhealthy")
        # Between the start and the migrations the schema is missing: a token sync or health check
        # landing there is an error the daemon rightly logs.
        self.stack.allow_log(r'event=db_error .*sqlstate=42P01 error="relation \\"api_tokens\\" does not exist"',
                             "PostgreSQL starts before its migrations", "daemon")
        self.stack.start_postgres()
        self.stack.migrate()
        self.wait_for_steady("/health", 200, timeout=15)


class JanitorLosesPostgresTest(StackTestCase):
    """PostgreSQL goes away while the janitor holds a session for a purge (P8 #13).

    The test-only fault `janitor-stall` holds the janitor's first purge 2 s between opening its
    session and its first statement; the test stops PostgreSQL inside that window. The janitor
    must fail that purge cleanly (and purge again later), never touch a freed connection: the
    sanitizers at teardown catch a use after free, and the daemon must stay up."""
    daemons = ()
    start_nginx_in_setup = False

    def test_postgres_stopped_mid_purge(self):
        d = self.stack.start_daemon("d1", env={"PAYGATED_TEST_FAULT": "janitor-stall"},
                                    idempotency_purge_interval_s=1)
        self.stack.allow_log(r"event=test_fault_armed|event=test_fault_janitor_stall", "the fault is armed", "daemon")
        wait_until(lambda: d.events("test_fault_janitor_stall"), 10, "the janitor's stall")
        self.stack.stop_postgres()
        # the stall ends, the purge finds its connection gone and gives up that round
        wait_until(lambda: [e for e in d.events(worker="janitor") if str(e.get("reason", "")).startswith("connection closed")]
                   or d.events("db_unavailable", worker="janitor"), 10, "the janitor's failed purge")
        self.assertTrue(d.running(), "paygated died when the janitor lost its connection")
        self.stack.start_postgres()
        # later rounds purge again over a fresh connection
        wait_until(lambda: len(d.events("db_connected", worker="janitor")) >= 2, 20,
                   "the janitor reconnected")
        self.assertTrue(d.running())


if __name__ == "__main__":
    unittest.main()
