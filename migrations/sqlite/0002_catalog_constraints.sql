-- Two variants of one product never share an option selection, even when they
-- are added concurrently (the selection JSON is written with sorted keys).
CREATE UNIQUE INDEX variants_options_key ON variants (product_id, options);

-- SQLite already compares titles bytewise (BINARY), like PostgreSQL's "C"; the
-- index from 0001 stays as it is.
