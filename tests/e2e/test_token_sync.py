"""The token list in every nginx worker (issue P11, docs/directives.md "Client authentication").

Each worker refreshes its list of live token hashes from the daemon every 500 ms, so a revocation
reaches every worker within a second; a worker whose list is older than 3 s answers 503 on the
payment routes rather than trust a list that may miss a revocation.

The bounds asserted are the documented ones, measured from the completion of `paygatectl token
revoke` (after its commit) in two ways:
- precise: every request sent from 1 s after the revoke on is refused (403) by every worker
  (which worker answered comes from an access log written with `$pid`), and the other tokens
  still pass;
- per worker: nginx's info line "paygate: token list version N, M live tokens (was K)". Its
  timestamp has one-second resolution (a line stamped S was written in [S, S + 1)), so we assert
  S <= revoke completion + 1 s: a kept promise always passes, a worker later than 2 s always
  fails, between 1 and 2 s only the precise check can tell.
The staleness limit (3 s) is checked the same way: from 3.5 s after the daemon stopped, every
worker answers 503 and logs that its list is stale.
"""

import hashlib
import json
import re
import signal
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e_base import PAYMENT_API, UNKNOWN_PAYMENT, StackError, StackTestCase, wait_until

# docs/directives.md: "a paygatectl token revoke reaches every worker within a second" (500 ms
# sync interval) and "A worker whose list is older than 3 s ... answers 503".
REVOCATION_BOUND = 1.0
STALENESS_LIMIT = 3.0
# After a daemon is frozen, a reply it wrote just before may still be read by a worker (a few
# ms, more on a busy machine): requests are sent only from this long after the limit.
STALENESS_MARGIN = 0.5

# ipc/include/paygate/ipc.hpp kMaxFrameBytes: the largest frame either side accepts.
MAX_FRAME_BYTES = 16 * 1024 * 1024

WORKERS = 4
STATUS_PATH = f"{PAYMENT_API}/{UNKNOWN_PAYMENT}/retrieve/status"   # 404 once the token passes

# Every answer of the server lands in logs/pid.log: which worker ($pid), status, request id, time.
PID_LOG_FORMAT = "log_format paygate_pid '$pid $status $request_id $msec';"
PID_LOG = "logs/pid.log"

VERSION_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[info\] (\d+)#\d+: paygate: token list "
                          r"version (\d+), (\d+) live tokens \(was (\d+)\)$", re.M)
BAD_FRAME_LINE = re.compile(r"\[error\] (\d+)#\d+: paygate: bad reply frame from daemon: (.*)$", re.M)
REFUSED_LINE = re.compile(r"\] (\d+)#\d+: \*\d+ paygate: 403, unknown or revoked token, "
                          r"request_id=([0-9a-f]+)")
STALE_LINE = re.compile(r"\[warn\] (\d+)#\d+: \*\d+ paygate: 503, token list not loaded or stale, "
                        r"request_id=([0-9a-f]+)")
NO_DAEMON_LINE = re.compile(r"\[warn\] (\d+)#\d+: \*\d+ paygate: 503, no daemon connected or send "
                            r"queue full, request_id=([0-9a-f]+)")


def scale_token(seed: str, i: int) -> str:
    """Token number i of a bulk-inserted list: the same text SQL computes in insert_tokens()."""
    return "pgt_" + hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()


class TokenSyncTestCase(StackTestCase):
    """A stack with WORKERS nginx workers and an access log naming the worker of each answer."""

    nginx = {"worker_processes": WORKERS, "http_extra": f"    {PID_LOG_FORMAT}",
             "server_extra": f"        access_log {PID_LOG} paygate_pid;"}

    def setUp(self) -> None:
        super().setUp()
        self.workers = self.stack.nginx_worker_pids()
        self.assertEqual(len(self.workers), WORKERS, self.workers)

    # -- logs -----------------------------------------------------------------------------------

    @property
    def ngx(self):
        return self.stack.nginxes["nginx"]

    def error_log(self, offset: int = 0) -> str:
        with open(self.ngx.error_log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def error_log_size(self) -> int:
        return self.ngx.error_log.stat().st_size

    def answered_by(self) -> dict:
        """request_id -> (worker pid, status) of every answer so far."""
        path = Path(self.ngx.prefix) / PID_LOG
        out = {}
        try:
            text = path.read_text()
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 4:
                out[parts[2]] = (int(parts[0]), int(parts[1]))
        return out

    def max_version(self) -> int:
        return int(self.stack.psql("SELECT coalesce(max(version), 0) FROM api_tokens"))

    def live_tokens(self) -> int:
        return int(self.stack.psql("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL"))

    def scan_versions(self, version: int, offset: int, seen: dict) -> bool:
        """Adds to `seen` each worker's first line (after byte `offset` of error.log) logging a
        token list version >= `version`: {pid: (log timestamp as epoch s, version, live tokens,
        time.time() when this test first saw the line)}. True once every worker has one. Fails
        at once when the module rejects a reply frame."""
        text = self.error_log(offset)
        bad = BAD_FRAME_LINE.findall(text)
        if bad:
            self.fail(f"token sync failing: {len(bad)} bad reply frames ({bad[0][1]!r}); "
                      f"synced so far: {sorted(seen)} of {self.workers}")
        for m in VERSION_LINE.finditer(text):
            pid, v = int(m.group(2)), int(m.group(3))
            if pid in self.workers and v >= version and pid not in seen:
                stamp = time.mktime(time.strptime(m.group(1), "%Y/%m/%d %H:%M:%S"))
                seen[pid] = (stamp, v, int(m.group(4)), time.time())
        return set(seen) >= set(self.workers)

    def wait_for_version(self, version: int, offset: int, timeout: float, seen: dict = None) -> dict:
        """Waits until every worker logged a token list version >= `version` (scan_versions)."""
        seen = {} if seen is None else seen
        try:
            wait_until(lambda: self.scan_versions(version, offset, seen), timeout,
                       f"every worker to log token list version >= {version}", interval=0.02)
        except StackError as e:
            self.fail(f"{e}: only {sorted(seen)} of {self.workers} did; "
                      f"log tail:\n{self.error_log(offset)[-3000:]}")
        return seen

    # -- requests -------------------------------------------------------------------------------

    def status_request(self, token: str):
        """GET status of an unknown payment with `token`, on a fresh connection:
        (status, request id, parsed JSON body)."""
        st, headers, body = self.stack.http("GET", STATUS_PATH, headers={"x_auth_token": token},
                                            timeout=15)
        rid = headers.get("X-Request-Id")
        self.assertTrue(rid, f"no X-Request-Id: {st} {body[:200]!r}")
        ctype = headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("application/json"), f"{st} {ctype!r} {body[:200]!r}")
        return st, rid, json.loads(body)

    def on_every_worker(self, tokens: list, timeout: float = 30.0, concurrency: int = 8,
                        per_worker: int = 1) -> dict:
        """Sends rounds of `concurrency` parallel requests (fresh connections, cycling through
        `tokens`) until every worker answered each token at least `per_worker` times.
        Returns {token: [(pid, status, request id, body), ...]} of every answer sent."""
        answers = {t: [] for t in tokens}
        sent = []   # (token, rid, status, body)
        start = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            while True:
                batch = [tokens[i % len(tokens)] for i in range(concurrency)]
                for token, (st, rid, body) in zip(batch, pool.map(self.status_request, batch)):
                    sent.append((token, rid, st, body))
                by_rid = self.answered_by()
                missing = [rid for _, rid, _, _ in sent if rid not in by_rid]
                if missing:   # the access log is written after the answer: a moment
                    wait_until(lambda: all(r in self.answered_by() for r in missing), 10,
                               "access log lines of the answers")
                    by_rid = self.answered_by()
                for t in tokens:
                    answers[t] = [(by_rid[rid][0], st, rid, body) for tok, rid, st, body in sent if tok == t]
                covered = all(sum(1 for pid, *_ in answers[t] if pid == w) >= per_worker
                              for t in tokens for w in self.workers)
                if covered:
                    return answers
                if time.monotonic() - start > timeout:
                    spread = {w: sum(1 for _, rid, _, _ in sent if by_rid[rid][0] == w) for w in self.workers}
                    self.fail(f"{len(sent)} requests in {timeout}s did not reach every worker: {spread}")

    def assertEveryAnswer(self, answers: list, status: int, code: str = None, message: str = None,
                          why: str = ""):
        bad = [(pid, st, body.get("code"), body.get("message")) for pid, st, _, body in answers
               if st != status or (code is not None and body.get("code") != code)
               or (message is not None and body.get("message") != message)]
        if bad:
            self.fail(f"{why}: expected {status} {code or ''} from every worker, got {len(bad)} of "
                      f"{len(answers)} otherwise (worker, status, code, message), e.g. {bad[:4]}")

    def wait_until_accepted_everywhere(self, tokens: list, timeout: float = 30.0) -> None:
        """Until each token gets 404 (it passed the token check) from every worker, then once
        more on every worker with nothing but 404."""
        deadline = time.monotonic() + timeout
        for t in tokens:
            while True:
                answers = self.on_every_worker([t], timeout=max(1.0, deadline - time.monotonic()))
                last = {}
                for pid, st, _, _ in answers[t]:
                    last[pid] = st
                if all(last.get(w) == 404 for w in self.workers):
                    break
                if time.monotonic() > deadline:
                    self.fail(f"token not accepted by every worker within {timeout}s: {last}")
        answers = self.on_every_worker(tokens)
        for t in tokens:
            self.assertEveryAnswer(answers[t], 404, "not_found", why="an accepted token")

    # -- the revocation bound -------------------------------------------------------------------

    def revoke_and_check_bound(self, token: str, others: list) -> dict:
        """Revokes `token`; asserts that from the bound on every worker refuses it (while `others`
        still pass) and that every worker logged the new version within the bound (second
        resolution, see the module docstring). Returns the figures (also in failure messages)."""
        offset = self.error_log_size()
        before = self.max_version()
        t_start = time.time()
        self.stack.revoke_token(token=token)
        t_done, m_done = time.time(), time.monotonic()
        version = self.max_version()
        self.assertGreater(version, before)
        # The precise check first, at the bound: nothing waits for the workers before it. Until
        # then the log is watched, for the figures (first seen: an upper bound, ms resolution).
        seen = {}
        while time.monotonic() < m_done + REVOCATION_BOUND:
            self.scan_versions(version, offset, seen)
            time.sleep(min(0.02, max(0.0, m_done + REVOCATION_BOUND - time.monotonic())))
        answers = self.on_every_worker([token] + others, per_worker=2)
        checked = time.monotonic() - m_done
        self.wait_for_version(version, offset, timeout=30, seen=seen)
        figures = {pid: {"log_stamp_minus_done_s": round(stamp - t_done, 3),
                         "first_seen_after_done_s": round(seen_at - t_done, 3)}
                   for pid, (stamp, _, _, seen_at) in seen.items()}
        figures["revoke_command_s"] = round(t_done - t_start, 3)
        figures["requests_sent_s"] = f"{REVOCATION_BOUND}..{checked:.2f}"
        self.assertEveryAnswer(answers[token], 403, "acces_error", "invalid or revoked x_auth_token",
                               why=f"revoked token, from {REVOCATION_BOUND}s after the revoke ({figures})")
        for t in others:
            self.assertEveryAnswer(answers[t], 404, "not_found", why="a token that was not revoked")
        late = {pid: f for pid, f in figures.items()
                if isinstance(f, dict) and f["log_stamp_minus_done_s"] > REVOCATION_BOUND}
        if late:
            self.fail(f"workers logged version {version} later than {REVOCATION_BOUND}s "
                      f"(+1 s of log resolution) after the revoke: {figures}")
        refused = {rid: int(pid) for pid, rid in REFUSED_LINE.findall(self.error_log(offset))}
        for pid, _, rid, _ in answers[token]:
            self.assertEqual(refused.get(rid), pid, f"no 403 info line of worker {pid} for {rid}")
        figures["refused_per_worker"] = {w: sum(1 for pid, *_ in answers[token] if pid == w)
                                         for w in self.workers}
        return figures


class RevocationTest(TokenSyncTestCase):

    def test_revocation_reaches_every_worker_within_a_second(self):
        token = self.stack.create_token("carol")
        other = self.stack.create_token("carol")
        self.wait_for_version(self.max_version(), 0, timeout=30)
        self.wait_until_accepted_everywhere([token, other])
        figures = self.revoke_and_check_bound(token, [other])
        print(f"\nrevocation, {WORKERS} workers: {figures}", flush=True)
        # the other token of the same client is still served everywhere, and a new one too
        fresh = self.stack.create_token("carol")
        self.wait_until_accepted_everywhere([fresh, other])


class StaleListTest(TokenSyncTestCase):
    nginx = dict(TokenSyncTestCase.nginx, paygate_timeout="1s")

    def setUp(self) -> None:
        super().setUp()
        self.token = self.stack.create_token("dora")
        self.wait_for_version(self.max_version(), 0, timeout=30)
        self.wait_until_accepted_everywhere([self.token])

    def assertStale503Everywhere(self, offset: int, since: float) -> None:
        """From STALENESS_LIMIT (+ margin) after `since` (monotonic), every worker answers a
        valid token with 503 service_unavailable, and logs why: its list is stale."""
        delay = since + STALENESS_LIMIT + STALENESS_MARGIN - time.monotonic()
        if delay > 0:
            time.sleep(delay)   # the documented limit itself
        answers = self.on_every_worker([self.token])[self.token]
        self.assertEveryAnswer(answers, 503, "service_unavailable", "payment core unavailable, retry later",
                               why=f"a list older than {STALENESS_LIMIT}s")
        stale = {rid: int(pid) for pid, rid in STALE_LINE.findall(self.error_log(offset))}
        for pid, _, rid, _ in answers:
            self.assertEqual(stale.get(rid), pid,
                             f"worker {pid} did not log 'token list not loaded or stale' for {rid}")

    def assertRecovers(self) -> float:
        t0 = time.monotonic()
        self.wait_until_accepted_everywhere([self.token], timeout=30)
        return time.monotonic() - t0

    def test_frozen_daemon_stale_list_is_503_then_recovers(self):
        """SIGSTOP: the connection stays up, syncs go unanswered."""
        offset = self.error_log_size()
        self.stack.kill_daemon("d1", signal.SIGSTOP)
        stopped = time.monotonic()
        self.assertStale503Everywhere(offset, stopped)
        self.stack.kill_daemon("d1", signal.SIGCONT)
        recovered = self.assertRecovers()
        print(f"\nfrozen daemon: 503 on every worker from {STALENESS_LIMIT + STALENESS_MARGIN}s, "
              f"served again {recovered:.2f}s after SIGCONT", flush=True)

    def test_killed_daemon_list_is_trusted_until_it_is_stale(self):
        """SIGKILL: no sync can be sent. Until the limit the list is trusted (the request passes
        the token check and finds no daemon); after it, the list is refused."""
        offset = self.error_log_size()
        self.stack.kill_daemon("d1", signal.SIGKILL)
        killed = time.monotonic()
        # Young list: the last sync was at most 0.5 s before the kill, so until kill + 2 s every
        # list is younger than the limit; the request passes the check and finds no daemon (503
        # at once), or, sent before the worker's socket noticed the closed connection, times out
        # (504 after paygate_timeout 1s): then again.
        while True:
            st, rid, body = self.status_request(self.token)
            self.assertLess(time.monotonic() - killed, STALENESS_LIMIT - 1.0,
                            "no answer to test a young list with")
            if st != 504:
                break
        self.assertEqual((st, body.get("code")), (503, "service_unavailable"), body)
        wait_until(lambda: rid in self.answered_by(), 10, "the access log line")
        young = {r: int(p) for p, r in NO_DAEMON_LINE.findall(self.error_log(offset))}
        self.assertIn(rid, young, "a list younger than the limit must be trusted: expected "
                                  "'no daemon connected', not a token refusal")
        self.assertStale503Everywhere(offset, killed)
        self.stack.start_daemon("d1")
        recovered = self.assertRecovers()
        print(f"\nkilled daemon: young list trusted, 503 stale on every worker from "
              f"{STALENESS_LIMIT + STALENESS_MARGIN}s, served again {recovered:.2f}s after the "
              f"restart", flush=True)


class ListScaleTest(TokenSyncTestCase):
    """A large list synced in full by every worker, sampled tokens accepted, and a revocation
    within the same bound as with a handful of tokens."""

    SCALE = 200_000
    CONTROL = 1_000   # the same checks at a size today's full-list sync handles in a Debug build
    # When the stack stops, the Debug daemon may still be building two 200,000-token lists (several
    # seconds each on a busy machine): give its SIGTERM drain more than the harness's 5 s.
    daemon_config = {"shutdown_timeout_ms": "30000"}

    def insert_tokens(self, client: str, count: int, seed: str) -> None:
        """`count` live tokens for `client` in one statement, as paygatectl stores them: the
        SHA-256 (hex) of the token text and its first 8 characters. Token i's text is
        scale_token(seed, i)."""
        cid = self.stack.psql(f"INSERT INTO clients (name) VALUES ('{client}') RETURNING id").split()[0]
        self.stack.psql(
            "INSERT INTO api_tokens (client_id, token_sha256, token_prefix)"
            f" SELECT {int(cid)}, encode(sha256(convert_to(tok, 'UTF8')), 'hex'), left(tok, 8)"
            f" FROM (SELECT 'pgt_' || encode(sha256(convert_to('{seed}-' || i, 'UTF8')), 'hex') AS tok"
            f"       FROM generate_series(1, {int(count)}) AS i) AS s")

    def full_list_bytes(self, version: int) -> int:
        """Size of the daemon's full-list reply body today: {"version":V,"tokens":[...]} with one
        {"sha256":"<64 hex>","client_id":"<id>"} (92 bytes + the id) per live token."""
        n, id_chars = self.stack.psql("SELECT count(*), coalesce(sum(length(client_id::text)), 0)"
                                      " FROM api_tokens WHERE revoked_at IS NULL").split("|")
        n, id_chars = int(n), int(id_chars)
        return len(f'{{"version":{version},"tokens":[') + 92 * n + id_chars + max(n - 1, 0) + 2

    def check_list_of(self, count: int, sync_bound: float) -> dict:
        seed = f"scale{count}"
        offset = self.error_log_size()
        t0 = time.monotonic()
        self.insert_tokens("bulk", count, seed)
        inserted = time.monotonic()
        version, live = self.max_version(), self.live_tokens()
        self.assertEqual(live, count)
        size = (f"full list reply body {self.full_list_bytes(version)} bytes, "
                f"ipc::kMaxFrameBytes {MAX_FRAME_BYTES}")
        try:
            figures = self._check_synced_list(seed, count, version, offset, sync_bound)
        except AssertionError as e:
            raise AssertionError(f"{e}\n[{count} live tokens: {size}]") from None
        figures.update(insert_s=round(inserted - t0, 2), list=size,
                       every_worker_synced_s=round(figures.pop("synced_at") - inserted, 2))
        return figures

    def _check_synced_list(self, seed: str, count: int, version: int, offset: int,
                           sync_bound: float) -> dict:
        seen = self.wait_for_version(version, offset, timeout=sync_bound)
        synced = time.monotonic()
        for pid, (_, v, n, _) in seen.items():
            self.assertEqual((v, n), (version, count), f"worker {pid}")
        sample = [scale_token(seed, i) for i in (1, count // 2, count)]
        answers = self.on_every_worker(sample)
        for i, t in zip((1, count // 2, count), sample):
            self.assertEveryAnswer(answers[t], 404, "not_found", why=f"bulk token #{i}")
        figures = self.revoke_and_check_bound(sample[1], [sample[0], sample[2]])
        return {"synced_at": synced, "revocation": figures}

    def test_control_list_of_1000_tokens(self):
        figures = self.check_list_of(self.CONTROL, sync_bound=30)
        print(f"\n{self.CONTROL} tokens: {figures}", flush=True)

    # P8 (incremental token sync): today every change makes the daemon send each worker the whole
    # list as one reply. 200,000 entries of {"sha256":"<64 hex>","client_id":"1"} are a body of
    # 18,800,029 bytes, over ipc::kMaxFrameBytes (16,777,216: about 178,000 tokens fit). The worker
    # rejects every reply ("bad reply frame from daemon: frame larger than the limit", an [error]
    # per sync), its list goes stale after 3 s and every payment request gets 503 (fail closed).
    # Smaller lists miss the 1 s bound too (4 workers, 2 cores, the whole list per worker per
    # change): Debug/ASan 5,000 tokens ~1 s, 20,000 ~3.5 s with stale-list 503s meanwhile,
    # 100,000 ~30 s (a reply slower than the module's 2 s sync timeout is thrown away and asked
    # again); Release 100,000 ~0.8 s, 150,000 ~1.0 s.
    @unittest.expectedFailure
    def test_list_of_200000_tokens(self):
        self.stack.allow_log(r"paygate: bad reply frame from daemon: frame larger than the limit",
                             "P8: the full token list outgrows one ipc frame (kMaxFrameBytes)", "nginx")
        figures = self.check_list_of(self.SCALE, sync_bound=60)
        print(f"\n{self.SCALE} tokens: {figures}", flush=True)


if __name__ == "__main__":
    unittest.main()
