-- 0001_init: paygate's first migration; conventions every later migration follows.
--
-- Applied by `paygatectl migrate`, which runs each sql/NNNN_name.sql file in version order, in
-- its own transaction together with its row in schema_migrations (the migrator creates that
-- table). So:
--   * never edit a file once it has been applied anywhere: add a new NNNN_name.sql instead
--     (an applied file whose checksum changed makes `paygatectl migrate` fail);
--   * no BEGIN/COMMIT in a file, nor statements that cannot run in a transaction block
--     (e.g. CREATE INDEX CONCURRENTLY);
--   * objects live in the default schema (the connection's search_path), unqualified.
-- Data conventions: money is exact, integer minor units with the currency's exponent stored as
-- numeric (ETH's 18 decimals overflow bigint), never float; timestamps are timestamptz; the
-- daemon owns all writes.

-- Keeps `updated_at` columns honest: tables that have one attach
--   CREATE TRIGGER <table>_updated_at BEFORE UPDATE ON <table>
--     FOR EACH ROW EXECUTE FUNCTION paygate_set_updated_at();
CREATE FUNCTION paygate_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
