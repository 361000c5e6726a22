-- 0002_payments: API clients and their tokens, payments with their history, the provider task outbox.
--
-- No personal data anywhere: clients are named by their operator, payments hold opaque ids of the
-- caller's systems. Money is integer minor units (numeric, see 0001). See docs/daemon.md, "Schema".

-- ---------------------------------------------------------------------------------------------
-- Clients and API tokens
-- ---------------------------------------------------------------------------------------------

CREATE TABLE clients (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every insert and every update of an api_tokens row takes a new number from this sequence, so
-- max(version) changes whenever the set of valid tokens may have changed: the nginx module asks
-- paygated (route auth.tokens) for the list only when it did.
CREATE SEQUENCE api_tokens_version;

-- Only the SHA-256 of a token is stored (lower-case hex of the full token text "pgt_<64 hex>");
-- token_prefix is its first 8 characters, for humans telling tokens apart in `paygatectl token list`.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    client_id     bigint NOT NULL REFERENCES clients (id),
    token_sha256  text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    token_prefix  text NOT NULL CHECK (char_length(token_prefix) = 8),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    version       bigint NOT NULL            -- set by api_tokens_bump_version()
);
ALTER SEQUENCE api_tokens_version OWNED BY api_tokens.version;

CREATE INDEX api_tokens_version_idx ON api_tokens (version);                      -- max(version)
CREATE INDEX api_tokens_live_client_idx ON api_tokens (client_id) WHERE revoked_at IS NULL;

-- Versions must become visible in the order they were taken, or a reader could see version N
-- while an older, still uncommitted N-1 appears later and is never noticed ("unchanged"). So
-- every writer takes one transaction-scoped advisory lock (held until its commit) before its
-- number: writers of api_tokens are serialized, which is cheap (tokens change rarely).
-- The key is "pgtokens" as a big-endian int64.
CREATE FUNCTION api_tokens_bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8099570476741127795);
    NEW.version := nextval('api_tokens_version');
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_tokens_version BEFORE INSERT OR UPDATE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION api_tokens_bump_version();

-- A deleted row would change the valid set without raising max(version): revoke instead.
CREATE FUNCTION api_tokens_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'api_tokens rows are never deleted: revoke the token (paygatectl token revoke)';
END;
$$;

CREATE TRIGGER api_tokens_no_delete BEFORE DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION api_tokens_refuse_delete();
CREATE TRIGGER api_tokens_no_truncate BEFORE TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_refuse_delete();

-- ---------------------------------------------------------------------------------------------
-- Payments
-- ---------------------------------------------------------------------------------------------

-- One row per payment, owned by the client that created it. Statuses and transitions: docs/api.md
-- (the rules live in daemon/src/payment_rules.cpp; the CHECKs here are a second line of defence).
CREATE TABLE payments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id           bigint NOT NULL REFERENCES clients (id),
    status              text NOT NULL CHECK (status IN ('created', 'bank_processing', 'completed',
                                                        'declined', 'cancelled', 'reversed')),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    amount_minor        numeric(40, 0) NOT NULL CHECK (amount_minor > 0),
    method_id           text NOT NULL CHECK (method_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    recipient_id        text NOT NULL CHECK (recipient_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    sender_id           text NOT NULL CHECK (sender_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    sender_method_id    text CHECK (sender_method_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    accept_info         jsonb CHECK (accept_info IS NULL OR jsonb_typeof(accept_info) = 'object'),
    cancel_reason       text CHECK (cancel_reason IN ('user_request', 'merchant_request', 'expired',
                                                      'fraud_suspected', 'other')),
    reversal_requested  boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_client_created_idx ON payments (client_id, created_at);

CREATE TRIGGER payments_updated_at BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION paygate_set_updated_at();

-- The history of every payment: one row per transition, including its creation.
-- actor: who asked ("client:12"; later "provider:<name>"). idempotency_token: the request's token
-- (replays are handled by a later migration; deliberately not unique here).
CREATE TABLE payment_events (
    id                 bigserial PRIMARY KEY,
    payment_id         uuid NOT NULL REFERENCES payments (id),
    action             text NOT NULL,
    from_status        text,
    to_status          text NOT NULL,
    actor              text NOT NULL,
    reason             text,
    idempotency_token  uuid,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, id);

-- ---------------------------------------------------------------------------------------------
-- Durable outbox of provider work
-- ---------------------------------------------------------------------------------------------

-- Written in the same transaction as the transition that needs it (accept -> charge, cancel of a
-- completed payment -> reversal); the provider engine picks up pending rows whose run_at is due.
CREATE TABLE tasks (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('charge', 'reversal')),
    payment_id  uuid NOT NULL REFERENCES payments (id),
    state       text NOT NULL DEFAULT 'pending',
    attempts    integer NOT NULL DEFAULT 0,
    run_at      timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, payment_id)
);

CREATE INDEX tasks_pending_run_at_idx ON tasks (run_at) WHERE state = 'pending';
CREATE INDEX tasks_payment_idx ON tasks (payment_id);
