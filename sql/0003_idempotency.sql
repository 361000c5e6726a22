-- 0003_idempotency: the authoritative record of idempotency keys (docs/idempotency.md).
--
-- One row per key whose request finished with an outcome worth keeping (2xx, and 4xx other than
-- 403): written by paygated in the same transaction as the payment change it answers, so a row
-- exists exactly when that change is committed. A key being worked on has no row: while its
-- request runs it is marked by a transaction-scoped advisory lock on hashtextextended(scope, 0),
-- which PostgreSQL releases with the transaction (commit, rollback, or the death of the session).
--
-- scope is the SHA-256 (lower-case hex) of (client, route, payment id, idempotency_token) and the
-- primary key: two requests with one key can never both record an outcome, whichever nginx node
-- or daemon served them. request_hash is the SHA-256 of the canonical request body (less the
-- token): same key with another hash is a different request (422). response_body is the reply
-- body exactly as first sent (text: the daemon's replies are UTF-8 JSON).
--
-- Rows live until expires_at (idempotency_retention_s after they were written); rows past it are
-- ignored (a new request with the key replaces them) and deleted by the daemons' janitor in
-- batches, oldest first by the index below.

CREATE TABLE idempotency_keys (
    scope            text PRIMARY KEY CHECK (scope ~ '^[0-9a-f]{64}$'),
    client_id        bigint NOT NULL REFERENCES clients (id),
    route            text NOT NULL,
    request_hash     text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    response_status  integer NOT NULL CHECK (response_status BETWEEN 200 AND 499),
    response_body    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
