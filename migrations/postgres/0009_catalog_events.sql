-- The catalog's change log: one row per product whose searchable or cached
-- state changed (a NULL product: something every catalog read may show, such as
-- a category name). Every instance tails it by `seq` to keep its search index and
-- its caches current. Writers take one advisory lock just before they append
-- (store::catalog_events), so rows become visible in `seq` order and a reader
-- that has seen `seq` = n has seen everything before it.
CREATE TABLE catalog_events (
    seq        BIGSERIAL PRIMARY KEY,
    product_id TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX catalog_events_at_idx ON catalog_events (at);

-- Whether any variant of the product has stock somewhere, kept by every
-- transaction that may move a variant's stock across zero (store::catalog_events),
-- so that only real changes of "in stock" are logged.
ALTER TABLE products ADD COLUMN in_stock BIGINT NOT NULL DEFAULT 0;
UPDATE products SET in_stock = 1 WHERE id IN (
    SELECT v.product_id FROM variants v JOIN stock_levels s ON s.variant_id = v.id
    WHERE s.on_hand - s.reserved > 0);
