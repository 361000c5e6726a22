"""The replay zone's LRU: a full zone evicts its least recently used keys, and an evicted key is
still answered correctly, by paygated from PostgreSQL (the zone only accelerates)."""

import unittest

from e2e_base import IdempotencyTestCase, create_body


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


if __name__ == "__main__":
    unittest.main()
