-- 0009_metrics: what paygated's state sampler reads for /metrics, indexed so that a sample costs
-- the open and dead tasks only, never the table's history (done and cancelled rows pile up).
-- Each daemon reads every 5 s: SELECT kind, state, count(*) FROM tasks WHERE state IN
-- ('pending', 'running', 'dead') GROUP BY kind, state. Provider operations not final already have
-- provider_operations_open_idx (0004). See docs/operations.md, "Metrics".

CREATE INDEX tasks_open_kind_state_idx ON tasks (kind, state) WHERE state IN ('pending', 'running', 'dead');
