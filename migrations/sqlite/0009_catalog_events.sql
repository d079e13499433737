-- The catalog's change log (see the PostgreSQL migration). SQLite has one
-- writer at a time, so rows become visible in `seq` order by themselves.
CREATE TABLE catalog_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX catalog_events_at_idx ON catalog_events (at);
