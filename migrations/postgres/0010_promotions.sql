-- Promotions. The rules are JSON (domain::promotions::rules); what queries
-- filter on and the usage counter sit in columns beside them. The counters are
-- taken under the row's lock at checkout (store::placement), and the CHECK is
-- the last line of defence: whatever the application does, no promotion is used
-- past its limit and no single-use code twice.
CREATE TABLE promotions (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    automatic          BIGINT NOT NULL,
    active             BIGINT NOT NULL,
    rules              TEXT NOT NULL,
    starts_at          TEXT,
    ends_at            TEXT,
    usage_limit        BIGINT,
    per_customer_limit BIGINT,
    uses               BIGINT NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CONSTRAINT promotions_uses_check CHECK (uses >= 0 AND (usage_limit IS NULL OR uses <= usage_limit))
);
CREATE INDEX promotions_automatic_idx ON promotions (automatic, active);

-- Codes are stored normalized (upper case), so lookups ignore case.
CREATE TABLE promotion_codes (
    code         TEXT PRIMARY KEY,
    promotion_id TEXT NOT NULL REFERENCES promotions (id) ON DELETE CASCADE,
    single_use   BIGINT NOT NULL,
    uses         BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    CONSTRAINT promotion_codes_uses_check CHECK (uses >= 0 AND (single_use = 0 OR uses <= 1))
);
CREATE INDEX promotion_codes_promotion_idx ON promotion_codes (promotion_id, code);

-- Codes a shopper applied to a cart.
CREATE TABLE cart_promotions (
    cart_id  TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    code     TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (cart_id, code)
);

-- Each promotion an order used, with its amount: what the order shows, what
-- counts against per-customer limits while `released_at` is NULL, and the
-- redemptions report.
CREATE TABLE order_discounts (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    promotion_id TEXT NOT NULL REFERENCES promotions (id),
    code         TEXT,
    name         TEXT NOT NULL,
    target       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    customer_key TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    released_at  TEXT
);
CREATE INDEX order_discounts_order_idx ON order_discounts (order_id);
CREATE INDEX order_discounts_promotion_idx ON order_discounts (promotion_id, created_at, id);
CREATE INDEX order_discounts_customer_idx ON order_discounts (promotion_id, customer_key);

ALTER TABLE orders ADD COLUMN discount_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD COLUMN discount BIGINT NOT NULL DEFAULT 0;
