-- 0004_provider_engine: the state machine enforced by PostgreSQL, exact captured/refunded totals,
-- provider operations (our references at the provider, unknown outcomes included), durable
-- leased tasks, and the inbox of provider callbacks. See docs/tasks.md and docs/callbacks.md.

-- ---------------------------------------------------------------------------------------------
-- The payment state machine, in the database
-- ---------------------------------------------------------------------------------------------

-- Every status change a payment may make. The daemon's rules (payment_rules.cpp) decide what an
-- action does; this table makes sure no code path, present or future, and no hand-written SQL
-- can make any other change (completed back to created, say).
CREATE TABLE payment_transitions (
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);

INSERT INTO payment_transitions (from_status, to_status) VALUES
    ('created',         'bank_processing'),   -- accept: the charge is queued
    ('created',         'cancelled'),         -- cancel before accept
    ('bank_processing', 'completed'),         -- the provider reports the charge done
    ('bank_processing', 'declined'),          -- the provider declined it
    ('completed',       'reversed');          -- everything captured went back

CREATE FUNCTION payments_enforce_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'created' THEN
            RAISE EXCEPTION 'a payment starts as created, not %', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
            SELECT 1 FROM payment_transitions
             WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'payment % cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    -- The amount is the client's to edit only while the payment is created.
    IF NEW.amount_minor IS DISTINCT FROM OLD.amount_minor AND OLD.status <> 'created' THEN
        RAISE EXCEPTION 'payment % is %: its amount is fixed', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.client_id IS DISTINCT FROM OLD.client_id OR NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'payment % cannot change owner or id', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER payments_transition BEFORE INSERT OR UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_enforce_transition();

-- Totals in minor units: captured by the provider (first charge and extra charges), and refunded
-- (reserved when a refund or reversal is asked, so concurrent refunds can never together exceed
-- what was captured; given back if the provider declines the reversal).
ALTER TABLE payments
    ADD COLUMN provider        text CHECK (provider ~ '^[a-z0-9-]{1,32}$'),
    ADD COLUMN decline_reason  text CHECK (char_length(decline_reason) <= 128),
    ADD COLUMN captured_minor  numeric(40, 0) NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    ADD COLUMN refunded_minor  numeric(40, 0) NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    ADD CONSTRAINT payments_refund_within_capture CHECK (refunded_minor <= captured_minor);

-- History is evidence: rows are added, never changed or removed.
CREATE FUNCTION paygate_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER payment_events_append_only BEFORE UPDATE OR DELETE ON payment_events
    FOR EACH ROW EXECUTE FUNCTION paygate_refuse_change();
CREATE TRIGGER payment_events_no_truncate BEFORE TRUNCATE ON payment_events
    FOR EACH STATEMENT EXECUTE FUNCTION paygate_refuse_change();

-- ---------------------------------------------------------------------------------------------
-- Provider operations: one row per money movement we ask of a provider
-- ---------------------------------------------------------------------------------------------

-- id is our reference, sent as the provider's request_id and carried by the callback URL. It is
-- committed before the first call, so a crash or a timeout never loses what we asked.
-- state:
--   new         never sent (or the provider refused it without executing it)
--   sending     a call is under way; found after a crash it means "outcome unknown"
--   unknown     the call timed out or its connection died: resolved only by a status check
--   processing  the provider accepted it and has not finished
--   completed / declined   final, as the provider reported it
CREATE TABLE provider_operations (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id         uuid NOT NULL REFERENCES payments (id),
    provider           text NOT NULL CHECK (provider ~ '^[a-z0-9-]{1,32}$'),
    kind               text NOT NULL CHECK (kind IN ('charge', 'extra_charge', 'reversal')),
    amount_minor       numeric(40, 0) NOT NULL CHECK (amount_minor > 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3,5}$'),
    original_id        uuid REFERENCES provider_operations (id),   -- the charge a reversal returns
    state              text NOT NULL DEFAULT 'new'
                       CHECK (state IN ('new', 'sending', 'unknown', 'processing', 'completed', 'declined')),
    decline_reason     text CHECK (char_length(decline_reason) <= 128),
    calls              integer NOT NULL DEFAULT 0,    -- charge/reversal requests sent
    status_checks      integer NOT NULL DEFAULT 0,
    last_error         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    CHECK ((kind = 'reversal') = (original_id IS NOT NULL))
);

CREATE INDEX provider_operations_payment_idx ON provider_operations (payment_id, created_at);
CREATE INDEX provider_operations_open_idx ON provider_operations (state)
    WHERE state IN ('sending', 'unknown', 'processing');

CREATE TRIGGER provider_operations_updated_at BEFORE UPDATE ON provider_operations
    FOR EACH ROW EXECUTE FUNCTION paygate_set_updated_at();

-- A final operation stays final.
CREATE FUNCTION provider_operations_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('completed', 'declined') AND NEW.state IS DISTINCT FROM OLD.state THEN
        RAISE EXCEPTION 'provider operation % is %: it cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER provider_operations_final BEFORE UPDATE ON provider_operations
    FOR EACH ROW EXECUTE FUNCTION provider_operations_final();

-- ---------------------------------------------------------------------------------------------
-- Durable tasks (the seed's "stq")
-- ---------------------------------------------------------------------------------------------

-- A task is taken with FOR UPDATE SKIP LOCKED under a lease (lease_owner until lease_expires_at):
-- any number of daemons share the table, and a crashed daemon's task is taken again once its
-- lease runs out. operation_key names the work ("<kind>:<operation id>"): one task per piece of
-- work, several per payment over its life. docs/tasks.md has the life cycle.
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_payment_id_key;
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks
    ADD COLUMN operation_key     text,
    ADD COLUMN payload           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    ADD COLUMN lease_owner       text,
    ADD COLUMN lease_expires_at  timestamptz,
    ADD COLUMN reschedules       integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error        text,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN finished_at       timestamptz;

-- Rows queued by 0002's accept/cancel: give each its provider operation and its new kind.
INSERT INTO provider_operations (payment_id, provider, kind, amount_minor, currency)
SELECT p.id, 'sky-technologies', 'charge', p.amount_minor, p.currency
  FROM tasks t JOIN payments p ON p.id = t.payment_id
 WHERE t.kind = 'charge';
UPDATE tasks t
   SET kind = 'sky_technologies_integration_process_payment',
       payload = jsonb_build_object('operation_id', o.id)
  FROM provider_operations o
 WHERE t.kind = 'charge' AND o.payment_id = t.payment_id AND o.kind = 'charge';
UPDATE payments SET provider = 'sky-technologies'
 WHERE id IN (SELECT payment_id FROM provider_operations);
-- A reversal asked before this migration cannot name its charge (none was ever sent): an
-- operator sees it as cancelled with its reason.
UPDATE tasks SET state = 'cancelled', kind = 'sky_technologies_integration_process_payment_reversal',
       payload = jsonb_build_object('error', 'queued before 0004: no charge to reverse')
 WHERE kind = 'reversal';
UPDATE tasks SET operation_key = kind || ':' || coalesce(payload ->> 'operation_id', payment_id::text);

ALTER TABLE tasks
    ALTER COLUMN operation_key SET NOT NULL,
    ADD CONSTRAINT tasks_operation_key_key UNIQUE (operation_key),
    ADD CONSTRAINT tasks_kind_check CHECK (kind ~ '^[a-z][a-z0-9_]{0,95}$'),
    ADD CONSTRAINT tasks_state_check CHECK (state IN ('pending', 'running', 'done', 'dead', 'cancelled')),
    ADD CONSTRAINT tasks_lease_check CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    ADD CONSTRAINT tasks_attempts_check CHECK (attempts >= 0);

DROP INDEX tasks_pending_run_at_idx;
-- What a runner looks at: pending work that is due, and running work whose lease ran out.
CREATE INDEX tasks_due_idx ON tasks (run_at) WHERE state = 'pending';
CREATE INDEX tasks_lease_idx ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_state_kind_idx ON tasks (state, kind);

CREATE TRIGGER tasks_updated_at BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION paygate_set_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Inbox of provider callbacks
-- ---------------------------------------------------------------------------------------------

-- Every verified callback, stored raw before it is answered 2xx. A callback delivered again
-- (same webhook-id, or the same request_id of the same provider) is answered 2xx and changes
-- nothing. A callback is a hint: it queues a status check, never moves a payment itself.
CREATE TABLE callback_inbox (
    id            bigserial PRIMARY KEY,
    provider      text NOT NULL CHECK (provider ~ '^[a-z0-9-]{1,32}$'),
    webhook_id    text NOT NULL CHECK (char_length(webhook_id) BETWEEN 1 AND 128),
    request_id    uuid NOT NULL,
    operation_id  uuid REFERENCES provider_operations (id),
    body          text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, webhook_id),
    UNIQUE (provider, request_id)
);
