"""A transaction never outlives its request (P8 #6): each transaction a request begins runs with
statement_timeout and lock_timeout set to the time the module still waits, so a lock held
elsewhere cannot keep a daemon worker busy after nginx has answered 504."""

import subprocess
import time
import unittest

from e2e_base import PaymentStackTestCase
from stack import DB_NAME, DB_USER, PG_BIN, wait_until


class LockWaitEndsWithTheDeadlineTest(PaymentStackTestCase):
    daemon_workers = 1          # one worker: if it stayed stuck, every other request would wait
    nginx = {"paygate_timeout": "1s"}

    def hold_row_lock(self, pid: str, seconds: int) -> subprocess.Popen:
        """Another session locks the payment's row for `seconds` (as an operator's UPDATE would)."""
        pg = self.stack.pg
        sql = (f"BEGIN; SELECT id FROM payments WHERE id = '{pid}' FOR UPDATE; "
               f"SELECT pg_sleep({seconds}); COMMIT;")
        proc = subprocess.Popen([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", DB_USER,
                                 "-d", DB_NAME, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait, 60)
        wait_until(lambda: self.stack.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'payments' AND l.mode = 'RowShareLock' AND l.granted") != "0",
            10, "the row lock")
        return proc

    def test_lock_wait_is_bounded_by_the_request(self):
        locked = self.create_payment()
        other = self.create_payment()
        before = self.snapshot(locked)
        holder = self.hold_row_lock(locked, 8)

        started = time.monotonic()
        status, _, body = self.cancel(locked)
        self.assertEqual(status, 504, body)

        # The lock is still held; the only worker must be free again at once.
        self.assertLess(time.monotonic() - started, 6, "the lock was released before the check")
        for _ in range(3):
            status, _, body = self.retrieve(other)
            self.assertEqual(status, 200, body)
        self.assertIsNone(holder.poll(), "the lock holder ended early: the test proves nothing")
        self.assertTrue(self.stack.daemons["d1"].events("db_deadline_exceeded"))

        holder.wait(30)
        # the cancel that timed out changed nothing
        self.assertUnchanged(locked, before, "after a cancel that hit the lock timeout")


if __name__ == "__main__":
    unittest.main()
