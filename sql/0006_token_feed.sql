-- 0006_token_feed: every change to api_tokens notifies the daemons' token feeds (channel
-- paygate_tokens), so a revocation reaches nginx in milliseconds instead of at the next poll.
--
-- One notification per statement, not per row: a bulk insert of a million tokens is one
-- notification. The payload is empty: the feed reads what changed by version (rows above the
-- version it holds, see api_tokens_bump_version in 0002). NOTIFY is delivered at commit, and not
-- at all when the transaction rolls back. The feeds also look every 250 ms without a
-- notification, so a lost one (a connection that broke) costs latency, never a missed change.
-- See docs/daemon.md, "How nginx learns about tokens".

CREATE FUNCTION api_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('paygate_tokens', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_notify AFTER INSERT OR UPDATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_notify();
