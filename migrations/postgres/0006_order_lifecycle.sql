-- After payment: shipments, refunds, returns; de-duplicated jobs; outgoing webhooks.

-- Money given back so far (succeeded refunds); the status says whether it is all of it.
ALTER TABLE orders ADD COLUMN refunded_total BIGINT NOT NULL DEFAULT 0;
-- Units shipped / returned so far per line; changed only under the order's lock,
-- by conditional updates that keep them within the line's quantity.
ALTER TABLE order_lines ADD COLUMN shipped_quantity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD COLUMN returned_quantity BIGINT NOT NULL DEFAULT 0;

CREATE TABLE shipments (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    carrier         TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    tracking_url    TEXT,
    status          TEXT NOT NULL CONSTRAINT shipments_status_check CHECK (status IN ('shipped', 'delivered')),
    actor_type      TEXT NOT NULL,
    actor_id        TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX shipments_order_idx ON shipments (order_id, id);

CREATE TABLE shipment_lines (
    shipment_id   TEXT NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    order_line_id TEXT NOT NULL REFERENCES order_lines (id),
    quantity      BIGINT NOT NULL CONSTRAINT shipment_lines_quantity_check CHECK (quantity > 0),
    PRIMARY KEY (shipment_id, order_line_id)
);

-- A refund is written `pending` before the provider is called (so concurrent
-- refunds count it against what is left), then settles `succeeded` or `failed`.
CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount       BIGINT NOT NULL CONSTRAINT refunds_amount_check CHECK (amount > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CONSTRAINT refunds_status_check CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason       TEXT NOT NULL DEFAULT '',
    provider     TEXT NOT NULL,
    provider_ref TEXT,
    failure      TEXT,
    idem_key     TEXT,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT refunds_idem_key UNIQUE (order_id, idem_key)
);
CREATE INDEX refunds_order_idx ON refunds (order_id, id);
CREATE INDEX refunds_provider_ref_idx ON refunds (provider, provider_ref);

CREATE TABLE returns (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CONSTRAINT returns_status_check CHECK (status IN ('requested', 'received')),
    reason      TEXT NOT NULL DEFAULT '',
    lines       TEXT NOT NULL,
    restocked   BIGINT,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    created_at  TEXT NOT NULL,
    received_at TEXT
);
CREATE INDEX returns_order_idx ON returns (order_id, id);

-- A job enqueued twice under one key exists once (scheduled housekeeping from
-- several instances, fan-out of one event to its subscribers).
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX jobs_dedupe_key ON jobs (dedupe_key);

-- The shop's own systems subscribe to order events; each delivery is a signed POST.
CREATE TABLE webhook_subscriptions (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret      TEXT NOT NULL,
    active      BIGINT NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
