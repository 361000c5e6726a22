-- 0007_whitebird: partner API keys and WhiteBird's orders (seed 004, docs/partners/whitebird.md).
--
-- Partner API keys live in api_tokens beside client tokens, so they reach nginx over the same
-- versioned feed (NOTIFY paygate_tokens, auth.tokens) and a revocation is refused within a second
-- everywhere. `partner` tells them apart: NULL is a client token, a name is that partner's key.
-- The module compares the kind as well as the hash, so neither passes for the other.

ALTER TABLE api_tokens ADD COLUMN partner text CHECK (partner IN ('whitebird'));

-- A partner's payments belong to its own client row, "partner.<name>"; `paygatectl token create`
-- refuses that name, so no client token can reach them.
INSERT INTO clients (name) VALUES ('partner.whitebird') ON CONFLICT (name) DO NOTHING;

-- One row per WhiteBird order. The primary key is what makes an order idempotent across daemons
-- and concurrent retries: the first INSERT wins, every other one finds the row (and waits for the
-- winner's commit when it is still running). request_sha256 is the SHA-256 of the canonical order
-- fields, so a repeat with another body is told apart from a retry.
CREATE TABLE whitebird_operations (
    partner                text NOT NULL CHECK (partner IN ('whitebird')),
    external_operation_id  text NOT NULL CHECK (external_operation_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    external_user_id       text NOT NULL CHECK (external_user_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    payment_method_token   text CHECK (payment_method_token ~ '^[A-Za-z0-9._:-]{1,128}$'),
    type                   text NOT NULL CHECK (type IN ('PAYMENT', 'DISBURSEMENT')),
    currency               text NOT NULL,
    amount_minor           numeric(40, 0) NOT NULL CHECK (amount_minor > 0),
    request_sha256         text NOT NULL CHECK (request_sha256 ~ '^[0-9a-f]{64}$'),
    payment_id             uuid NOT NULL UNIQUE REFERENCES payments (id),
    timeout_at             timestamptz,          -- WhiteBird's timeout notification, first one
    created_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, external_operation_id)
);

-- A timeout for an operation paygate has not seen (its order is late, or never comes): kept, so
-- that the order, should it arrive after all, is answered FAILED and never executed. The order and
-- the timeout of one id take the same transaction-scoped advisory lock, so neither slips past the
-- other.
CREATE TABLE whitebird_timeouts (
    partner                text NOT NULL CHECK (partner IN ('whitebird')),
    external_operation_id  text NOT NULL CHECK (external_operation_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    received_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, external_operation_id)
);
