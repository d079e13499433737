-- Catalog, staff, tokens and the audit log.
-- Portable column types (see src/store/mod.rs): ids are UUIDv7 text, times are
-- fixed-width RFC 3339 UTC text, money is BIGINT minor units.

CREATE TABLE categories (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES categories (id),
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL CONSTRAINT categories_slug_key UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    position    BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX categories_parent_idx ON categories (parent_id);

CREATE TABLE products (
    id           TEXT PRIMARY KEY,
    slug         TEXT NOT NULL CONSTRAINT products_slug_key UNIQUE,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    brand        TEXT,
    status       TEXT NOT NULL CONSTRAINT products_status_check CHECK (status IN ('draft', 'published', 'archived')),
    options      TEXT NOT NULL DEFAULT '[]',
    images       TEXT NOT NULL DEFAULT '[]',
    version      BIGINT NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
-- Storefront lists: published products, newest first (ids are time-ordered UUIDv7).
CREATE INDEX products_status_id_idx ON products (status, id);
CREATE INDEX products_status_title_idx ON products (status, title, id);

CREATE TABLE product_categories (
    product_id  TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    category_id TEXT NOT NULL REFERENCES categories (id),
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category_idx ON product_categories (category_id, product_id);

CREATE TABLE product_attributes (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (product_id, name, value)
);
CREATE INDEX product_attributes_lookup_idx ON product_attributes (name, value, product_id);

CREATE TABLE variants (
    id           TEXT PRIMARY KEY,
    product_id   TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    sku          TEXT NOT NULL CONSTRAINT variants_sku_key UNIQUE,
    options      TEXT NOT NULL DEFAULT '{}',
    barcode      TEXT,
    weight_grams BIGINT CONSTRAINT variants_weight_check CHECK (weight_grams IS NULL OR weight_grams >= 0),
    position     BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX variants_product_idx ON variants (product_id, position);

CREATE TABLE variant_prices (
    variant_id   TEXT NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CONSTRAINT variant_prices_amount_check CHECK (amount_minor >= 0),
    PRIMARY KEY (variant_id, currency)
);

-- "From" prices per product and currency, maintained with every variant price
-- write, so lists filter and sort by price without aggregating variants.
CREATE TABLE product_prices (
    product_id TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    currency   TEXT NOT NULL,
    min_minor  BIGINT NOT NULL,
    max_minor  BIGINT NOT NULL,
    PRIMARY KEY (product_id, currency)
);
CREATE INDEX product_prices_sort_idx ON product_prices (currency, min_minor, product_id);

CREATE TABLE staff (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL CONSTRAINT staff_email_key UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    active        BIGINT NOT NULL DEFAULT 1 CONSTRAINT staff_active_check CHECK (active IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Refresh tokens are stored as SHA-256 hashes; a family is one login session.
-- Presenting a token that was already rotated revokes its whole family.
CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    audience    TEXT NOT NULL,
    subject_id  TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    token_hash  TEXT NOT NULL CONSTRAINT refresh_tokens_hash_key UNIQUE,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    request_id  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id, id);
