-- The catalog's change log (see the PostgreSQL migration). SQLite has one
-- writer at a time, so rows become visible in `seq` order by themselves.
CREATE TABLE catalog_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX catalog_events_at_idx ON catalog_events (at);

-- Whether any variant of the product has stock somewhere (see the PostgreSQL migration).
ALTER TABLE products ADD COLUMN in_stock BIGINT NOT NULL DEFAULT 0;
UPDATE products SET in_stock = 1 WHERE id IN (
    SELECT v.product_id FROM variants v JOIN stock_levels s ON s.variant_id = v.id
    WHERE s.on_hand - s.reserved > 0);
