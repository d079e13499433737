-- The durable job queue, which is also the transactional outbox: a business
-- change enqueues its follow-up work in its own transaction. Workers claim jobs
-- with a lease (`locked_until`); a job whose worker died is claimed again when
-- the lease runs out, so handlers must be idempotent.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'done', 'dead')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       TEXT NOT NULL,
    locked_until TEXT,
    locked_by    TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE INDEX jobs_due_idx ON jobs (status, run_at);
CREATE INDEX jobs_kind_idx ON jobs (kind, id);

-- Events written before the queue existed become jobs.
INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
SELECT id, topic, payload, 'queued', 0, 8, created_at, created_at, created_at FROM outbox WHERE processed_at IS NULL;
DROP TABLE outbox;
