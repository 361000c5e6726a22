"""Several daemons on several endpoints: the module spreads requests over all of them."""

import signal
import unittest

from e2e_base import StackTestCase, wait_until


class TwoDaemonsTest(StackTestCase):
    daemons = ("d1", "d2")

    def _ping_ids(self, n):
        ids = []
        for _ in range(n):
            status, headers, body = self.get("/ping")
            self.assertEqual(status, 200, body)
            ids.append(headers["X-Request-Id"])
        return ids

    def _served_by(self, rid):
        return [d.name for d in self.stack.daemons.values()
                if any(rid in ln for ln in d.request_lines())]

    def test_requests_spread_over_both_daemons(self):
        ids = self._ping_ids(40)

        def all_logged():  # log lines may trail the reply a little
            return all(self._served_by(rid) for rid in ids)
        wait_until(all_logged, 10, "every request in a daemon log")
        served = {"d1": 0, "d2": 0}
        for rid in ids:
            by = self._served_by(rid)
            self.assertEqual(len(by), 1, f"{rid} served by {by}")
            served[by[0]] += 1
        self.assertGreater(served["d1"], 0, served)
        self.assertGreater(served["d2"], 0, served)

    def test_one_daemon_killed_the_other_serves(self):
        self._ping_ids(4)
        self.stack.kill_daemon("d2", signal.SIGKILL)
        # after the peer is gone every request must reach d1 (none waits for the dead one)
        self.wait_for_status("/ping", 200, timeout=10)
        for _ in range(20):
            status, _, body = self.get("/ping", timeout=15)
            self.assertEqual(status, 200, body)
        self.stack.start_daemon("d2")
        before = len(self.stack.daemons["d2"].request_lines())

        def d2_serves():
            self.assertEqual(self.get("/ping")[0], 200)
            return len(self.stack.daemons["d2"].request_lines()) > before
        wait_until(d2_serves, 15, "restarted d2 to get requests again", interval=0.05)


if __name__ == "__main__":
    unittest.main()
