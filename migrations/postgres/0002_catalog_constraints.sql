-- Two variants of one product never share an option selection, even when they
-- are added concurrently (the selection JSON is written with sorted keys).
CREATE UNIQUE INDEX variants_options_key ON variants (product_id, options);

-- Titles sort by code point, as on SQLite, so keyset pages match everywhere.
DROP INDEX products_status_title_idx;
CREATE INDEX products_status_title_idx ON products (status, title COLLATE "C", id);
