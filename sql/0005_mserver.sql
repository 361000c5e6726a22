-- 0005_mserver: what the mserver wallet (seed 003) needs beyond 0004. See docs/providers/mserver.md.

-- mserver's own payment id (its answer to "prepare") and the full cost it quoted with its
-- commission (`total`, in minor units): kept per operation, so a status check or a notification
-- can name the wallet's payment and an operator sees what the payer was charged in total.
ALTER TABLE provider_operations
    ADD COLUMN provider_ref          text CHECK (char_length(provider_ref) BETWEEN 1 AND 64),
    ADD COLUMN provider_total_minor  numeric(40, 0) CHECK (provider_total_minor > 0);
CREATE UNIQUE INDEX provider_operations_ref_idx ON provider_operations (provider, provider_ref)
    WHERE provider_ref IS NOT NULL;

-- mserver's `redo`: a payment undone (reversed) is made successful again.
INSERT INTO payment_transitions (from_status, to_status) VALUES ('reversed', 'completed');

-- Notifications: mserver sends several about one payment (complete, then undo, then redo), so
-- the one-per-request_id rule of sky-technologies callbacks stays theirs only, and an mserver
-- notification is unique on (payment id, type, created_at). A notification about a payment we
-- do not know is kept too (request_id, operation_id NULL).
ALTER TABLE callback_inbox DROP CONSTRAINT callback_inbox_provider_request_id_key;
CREATE UNIQUE INDEX callback_inbox_sky_request_idx ON callback_inbox (provider, request_id)
    WHERE provider = 'sky-technologies';
ALTER TABLE callback_inbox
    ALTER COLUMN request_id DROP NOT NULL,
    ADD COLUMN provider_payment_id  text CHECK (char_length(provider_payment_id) BETWEEN 1 AND 64),
    ADD COLUMN notification_type    text CHECK (char_length(notification_type) BETWEEN 1 AND 32),
    ADD COLUMN event_created_at     text CHECK (char_length(event_created_at) BETWEEN 1 AND 64),
    ADD COLUMN resolved_at          timestamptz,
    ADD COLUMN resolution           text;
CREATE UNIQUE INDEX callback_inbox_notification_idx
    ON callback_inbox (provider, provider_payment_id, notification_type, event_created_at)
    WHERE provider_payment_id IS NOT NULL;

-- The task that re-reads the payment named by a notification exists also when the notification
-- names a payment we do not know (yet): it has no payment of ours to point at.
ALTER TABLE tasks ALTER COLUMN payment_id DROP NOT NULL;
