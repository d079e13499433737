-- Customers, stock, carts, shipping and tax, orders, payments, idempotency and
-- the outbox. The same portable column types as 0001.

CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL CONSTRAINT customers_email_key UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE addresses (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    line1       TEXT NOT NULL,
    line2       TEXT NOT NULL DEFAULT '',
    city        TEXT NOT NULL,
    region      TEXT NOT NULL DEFAULT '',
    postal_code TEXT NOT NULL,
    country     TEXT NOT NULL,
    phone       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
CREATE INDEX addresses_customer_idx ON addresses (customer_id, id);

-- Warehouses. Stock is reserved from the lowest `priority` that has enough.
CREATE TABLE stock_locations (
    id         TEXT PRIMARY KEY,
    code       TEXT NOT NULL CONSTRAINT stock_locations_code_key UNIQUE,
    name       TEXT NOT NULL,
    priority   BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
INSERT INTO stock_locations (id, code, name, priority, created_at)
VALUES ('00000000-0000-7000-8000-000000000001', 'main', 'Main warehouse', 0, '2026-01-01T00:00:00.000000Z');

-- The last line of defence: whatever the application does, the database never
-- holds more reserved than on hand, nor negative stock.
CREATE TABLE stock_levels (
    variant_id  TEXT NOT NULL REFERENCES variants (id),
    location_id TEXT NOT NULL REFERENCES stock_locations (id),
    on_hand     BIGINT NOT NULL DEFAULT 0,
    reserved    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (variant_id, location_id),
    CONSTRAINT stock_levels_reserved_check CHECK (reserved >= 0 AND reserved <= on_hand)
);

ALTER TABLE variants ADD COLUMN low_stock_threshold BIGINT;

-- Append-only: every change of on_hand or reserved, with why. Summing the
-- deltas per (variant, location) must give the levels (`reconcile-stock`).
CREATE TABLE stock_movements (
    id             TEXT PRIMARY KEY,
    variant_id     TEXT NOT NULL,
    location_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    delta_on_hand  BIGINT NOT NULL,
    delta_reserved BIGINT NOT NULL,
    reason         TEXT NOT NULL DEFAULT '',
    order_id       TEXT,
    actor_type     TEXT NOT NULL,
    actor_id       TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX stock_movements_variant_idx ON stock_movements (variant_id, location_id, id);

CREATE TABLE carts (
    id          TEXT PRIMARY KEY,
    customer_id TEXT REFERENCES customers (id),
    token_hash  TEXT,
    currency    TEXT NOT NULL,
    status      TEXT NOT NULL CONSTRAINT carts_status_check CHECK (status IN ('open', 'checked_out', 'merged')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX carts_customer_idx ON carts (customer_id, status);

CREATE TABLE cart_items (
    id         TEXT PRIMARY KEY,
    cart_id    TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    variant_id TEXT NOT NULL REFERENCES variants (id),
    quantity   BIGINT NOT NULL CONSTRAINT cart_items_quantity_check CHECK (quantity > 0),
    created_at TEXT NOT NULL,
    CONSTRAINT cart_items_variant_key UNIQUE (cart_id, variant_id)
);

CREATE TABLE shipping_options (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    countries  TEXT NOT NULL DEFAULT '[]',
    rate       TEXT NOT NULL,
    free_over  BIGINT,
    active     BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);

CREATE TABLE tax_rates (
    id         TEXT PRIMARY KEY,
    country    TEXT NOT NULL,
    region     TEXT NOT NULL DEFAULT '',
    rate_bp    BIGINT NOT NULL CONSTRAINT tax_rates_rate_check CHECK (rate_bp >= 0 AND rate_bp <= 10000),
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT tax_rates_place_key UNIQUE (country, region)
);

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    number             TEXT NOT NULL CONSTRAINT orders_number_key UNIQUE,
    customer_id        TEXT REFERENCES customers (id),
    cart_id            TEXT NOT NULL,
    email              TEXT NOT NULL,
    status             TEXT NOT NULL,
    currency           TEXT NOT NULL,
    tax_mode           TEXT NOT NULL,
    subtotal           BIGINT NOT NULL,
    shipping_total     BIGINT NOT NULL,
    tax_total          BIGINT NOT NULL,
    grand_total        BIGINT NOT NULL,
    shipping_option_id TEXT,
    shipping_address   TEXT NOT NULL,
    billing_address    TEXT NOT NULL,
    access_token_hash  TEXT NOT NULL,
    reserved_until     TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id, id);
-- A cart reopened after a failed payment can be checked out again: several orders per cart.
CREATE INDEX orders_cart_idx ON orders (cart_id);
CREATE INDEX orders_expiry_idx ON orders (status, reserved_until);

CREATE TABLE order_lines (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    variant_id TEXT NOT NULL,
    sku        TEXT NOT NULL,
    title      TEXT NOT NULL,
    options    TEXT NOT NULL DEFAULT '{}',
    quantity   BIGINT NOT NULL,
    unit_price BIGINT NOT NULL,
    line_total BIGINT NOT NULL,
    tax        BIGINT NOT NULL
);
CREATE INDEX order_lines_order_idx ON order_lines (order_id);

-- Every status change of an order: from, to, who, why, when.
CREATE TABLE order_events (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    reason      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

CREATE TABLE reservations (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    variant_id  TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity    BIGINT NOT NULL CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    status      TEXT NOT NULL CONSTRAINT reservations_status_check CHECK (status IN ('held', 'committed', 'released')),
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX reservations_order_idx ON reservations (order_id);

CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    provider     TEXT NOT NULL,
    provider_ref TEXT,
    status       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT payments_order_key UNIQUE (order_id)
);

-- Each provider event is stored once, in the transaction that applies it.
CREATE TABLE webhook_inbox (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- `Idempotency-Key` records: claimed before the work, answered after it.
CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    state           TEXT NOT NULL CONSTRAINT idempotency_keys_state_check CHECK (state IN ('running', 'done')),
    order_id        TEXT,
    response_status BIGINT,
    response_body   TEXT,
    locked_until    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Events written in the transaction of the change they announce, for workers.
CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    processed_at TEXT
);
CREATE INDEX outbox_pending_idx ON outbox (processed_at, id);
