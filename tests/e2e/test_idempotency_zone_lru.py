"""The replay zone's bounds. Its LRU: a full zone evicts its least recently used keys, and an
evicted key is still answered correctly, by paygated from PostgreSQL (the zone only accelerates).
Its expiry: an entry never outlives the record PostgreSQL replays, whether it was filled by the
executed answer or by a replay of a record near its end."""

import json
import signal
import time
import unittest

from e2e_base import IdempotencyTestCase, REPLAY_ZONE, create_body, unique_id, wait_until


class ZoneEvictionTest(IdempotencyTestCase):
    zone = True
    keys = 200   # far more than the smallest zone (8 pages) holds

    @classmethod
    def nginx_directives(cls) -> dict:
        return {**cls.nginx, "paygate_idempotency_zone": "paygate_replay:32k"}

    def test_full_zone_evicts_least_recently_used(self):
        created = []
        for i in range(self.keys):
            body = self.encode(create_body(sender=f"lru-{i}"))
            first = self.post("create", body)
            self.assertExecuted(first)
            created.append((body, first))
            if i == 0:
                # Used again early: it becomes the most recently used key for a while, but a
                # zone this small turns over long before the loop ends.
                early = self.post("create", body)
                self.assertReplayOf(early, first)
                self.assertNotSeenByDaemon(early)

        newest_body, newest = created[-1]
        replay = self.post("create", newest_body)
        self.assertReplayOf(replay, newest)
        self.assertNotSeenByDaemon(replay)           # still in the zone

        oldest_body, oldest = created[0]
        replay = self.post("create", oldest_body)
        self.assertReplayOf(replay, oldest)          # evicted: PostgreSQL answers, same bytes
        self.assertSeenByDaemon(replay, idempotency="replayed")

        again = self.post("create", oldest_body)     # and the daemon's answer refilled the zone
        self.assertReplayOf(again, oldest)
        self.assertNotSeenByDaemon(again)


class ZoneExpiryTest(IdempotencyTestCase):
    """d1 records outcomes for RETENTION_S seconds (and does not purge while the test runs); both
    nginx (`nginx`, `edge2`, each its own zone with the default 24 h ttl) forward to d1."""

    RETENTION_S = 3

    @classmethod
    def extend_stack(cls, stack) -> None:
        assert stack.kill_daemon("d1", signal.SIGTERM) == 0
        stack.start_daemon("d1", idempotency_retention_s=cls.RETENTION_S, idempotency_purge_interval_s=86400)
        stack.start_nginx(name="edge2", daemons=["d1"], **REPLAY_ZONE)

    def row_expired(self, scope: str) -> bool:
        return self.stack.psql(f"SELECT expires_at <= now() FROM idempotency_keys WHERE scope = '{scope}'") == "t"

    def test_entries_never_outlive_the_record(self):
        sender = unique_id()
        body = self.encode(create_body(sender=sender))
        first = self.post("create", body)
        self.assertExecuted(first)
        self.assertSeenByDaemon(first, idempotency="stored")
        pid1 = json.loads(first[2])["transaction_id"]
        scope = self.stack.psql(f"SELECT scope FROM idempotency_keys WHERE response_body LIKE '%{pid1}%'")
        self.assertTrue(scope)

        replay = self.post("create", body)                    # from nginx's zone
        self.assertReplayOf(replay, first)
        self.assertNotSeenByDaemon(replay)

        # edge2 first sees the key when the record has about half its life left: its zone is
        # filled from d1's replay of the row (with the time the row has left, not a fresh ttl)
        time.sleep(self.RETENTION_S / 2)
        self.assertFalse(self.row_expired(scope), "the record expired before the test's replays")
        other = self.post("create", body, nginx="edge2")
        self.assertReplayOf(other, first)
        self.assertSeenByDaemon(other, idempotency="replayed")
        again = self.post("create", body, nginx="edge2")
        self.assertReplayOf(again, first)
        self.assertNotSeenByDaemon(again)

        # once PostgreSQL no longer replays the row, neither zone may: the request executes again
        wait_until(lambda: self.row_expired(scope), 30, "the record to expire")
        second = self.post("create", body)
        self.assertExecuted(second)
        self.assertSeenByDaemon(second, idempotency="stored")
        pid2 = json.loads(second[2])["transaction_id"]
        self.assertNotEqual(pid2, pid1)
        self.assertEqual(sorted(self.payments_of_sender(sender)), sorted([pid1, pid2]))
        # edge2's entry ended with the old row too: it replays the new record (from d1)
        latest = self.post("create", body, nginx="edge2")
        self.assertReplayOf(latest, second)
        self.assertSeenByDaemon(latest, idempotency="replayed")


if __name__ == "__main__":
    unittest.main()
