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
