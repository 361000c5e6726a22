"""PostgreSQL goes away and comes back: /health says unhealthy (503), then healthy again."""

import unittest

from e2e_base import StackTestCase


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


if __name__ == "__main__":
    unittest.main()
