-- pgbench script: one durable payment create, exactly the SQL paygated runs for
-- POST /api/v1/payment/create. It mirrors paygate::daemon::create_payment() (kCreatePaymentSql
-- in daemon/src/store.cpp): keep the two in step. One transaction: the payment row, its "create"
-- history event and its idempotency key, committed together.
--
-- The only variable is :client_id, an existing clients.id (`paygatectl token create --client
-- bench` creates one). It works with every pgbench protocol; paygated sends the statement as an
-- unnamed extended-protocol statement (PQexecParams), which `-M extended` matches most closely
-- (:variables then travel as parameters like the daemon's $n):
--
--   pgbench -n -M extended -f bench/create_payment.sql -c 4 -j 2 -T 10 -D client_id=1 \
--       "host=127.0.0.1 port=54329 dbname=paygate user=paygate"
--
-- Differences: the daemon passes the request's idempotency_token and the actor "client:<id>" as
-- parameters; here the token is gen_random_uuid() and the actor is built from :client_id.
-- Since idempotency (docs/idempotency.md), a create also records its key in the same
-- transaction (paygate::daemon::record_key()): both INSERTs are here, so pgbench writes what the
-- gateway writes. (The gateway's lock and lookup of the key are reads, not INSERTs, and are part
-- of what the benchmark measures.)
\set amount random(1, 100000000)
BEGIN;
WITH payment AS (
    INSERT INTO payments (client_id, status, currency, amount_minor, method_id, recipient_id, sender_id,
                          sender_method_id)
    VALUES (:client_id::bigint, 'created', 'USD'::text, :amount::numeric, 'card-7781'::text,
            'merchant-42'::text, 'user-1001'::text, NULL::text)
    RETURNING id)
INSERT INTO payment_events (payment_id, action, from_status, to_status, actor, idempotency_token)
SELECT id, 'create', NULL, 'created', 'client:' || :client_id::text, gen_random_uuid() FROM payment
RETURNING payment_id;
INSERT INTO idempotency_keys (scope, client_id, route, request_hash, response_status, response_body, expires_at)
VALUES (encode(sha256(gen_random_uuid()::text::bytea), 'hex'), :client_id::bigint, 'payment.create'::text,
        encode(sha256(gen_random_uuid()::text::bytea), 'hex'), 200,
        '{"transaction_id":"' || gen_random_uuid()::text || '"}', now() + interval '1 day')
ON CONFLICT (scope) DO NOTHING;
COMMIT;
