-- One row per message Mercato means to send, keyed by what it is about
-- (`order_confirmed:<order id>`), so a message is sent at most once however
-- often its job runs. `locked_until` keeps two workers from sending the same
-- message at once; `message_id` is the Message-ID every attempt uses.
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    dedupe_key   TEXT NOT NULL CONSTRAINT notifications_dedupe_key UNIQUE,
    template     TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    status       TEXT NOT NULL CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sent', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    locked_until TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    sent_at      TEXT
);

-- Password reset tokens, stored as SHA-256 hashes; single use, short-lived.
CREATE TABLE password_reset_tokens (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL CONSTRAINT password_reset_tokens_hash_key UNIQUE,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX password_reset_tokens_customer_idx ON password_reset_tokens (customer_id, created_at);

-- A password reset ends every session of the customer.
CREATE INDEX refresh_tokens_subject_idx ON refresh_tokens (subject_id);
