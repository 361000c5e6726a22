-- 0008_zooticket: the ZooTicket merchant API (seed 002, docs/partners/zooticket.md): payment
-- sessions of merchants authenticated by a Bearer JWT at the edge, over the core payments table
-- (same state machine, same tasks). Table names carry the zooticket_ prefix: other partner
-- surfaces keep their own.

-- A merchant (the JWT's merchant claim) owns its payments through a clients row of its own, named
-- "zt.<merchant>", made on its first session: the core's ownership checks stay the same.
CREATE TABLE zooticket_merchants (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,48}$'),
    client_id   bigint NOT NULL UNIQUE REFERENCES clients (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per payment session. payment_id is this surface's id ("ZT_" and 10 random digits, the
-- seed's first example); the money, the status and the history live in payments/payment_events.
-- session_id is the merchant's idempotency key: one payment per (merchant, session_id), and the
-- body's SHA-256 tells a repeat from a reuse with another body.
-- The customer's email and phone are stored only sealed (AES-256-GCM, customer_key_id names the
-- key of paygated's customer_data_key that sealed them) and erased by DELETE.
CREATE TABLE zooticket_payments (
    payment_id         text PRIMARY KEY CHECK (payment_id ~ '^ZT_[0-9]{10}$'),
    core_payment_id    uuid NOT NULL UNIQUE REFERENCES payments (id),
    merchant           text NOT NULL REFERENCES zooticket_merchants (name),
    session_id         text NOT NULL CHECK (char_length(session_id) BETWEEN 1 AND 128),
    request_sha256     text NOT NULL CHECK (request_sha256 ~ '^[0-9a-f]{64}$'),
    order_id           text NOT NULL CHECK (char_length(order_id) BETWEEN 1 AND 128),
    description        text NOT NULL,
    items              jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array'),
    payment_methods    jsonb NOT NULL CHECK (jsonb_typeof(payment_methods) = 'array'),
    confirmation       jsonb NOT NULL CHECK (jsonb_typeof(confirmation) = 'object'),
    metadata           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    customer_sealed    bytea,
    customer_key_id    text,
    paid_method        text,
    -- The hosted page's capability token (confirmation_url): its SHA-256 finds the session, the
    -- token itself is kept only sealed (a repeated POST answers the same URL).
    page_token_sha256  text NOT NULL UNIQUE CHECK (page_token_sha256 ~ '^[0-9a-f]{64}$'),
    page_token_sealed  bytea NOT NULL,
    expires_at         timestamptz NOT NULL,
    deleted_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant, session_id),
    CHECK ((customer_sealed IS NULL) = (customer_key_id IS NULL))
);

CREATE TRIGGER zooticket_payments_updated_at BEFORE UPDATE ON zooticket_payments
    FOR EACH ROW EXECUTE FUNCTION paygate_set_updated_at();
