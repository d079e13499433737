-- A paid reservation is `sold` until a settle job takes it off on-hand stock,
-- many sales of a variant in one update (see store::inventory::settle_reservations).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE reservations_next (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    variant_id  TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity    BIGINT NOT NULL CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    status      TEXT NOT NULL CONSTRAINT reservations_status_check CHECK (status IN ('held', 'sold', 'committed', 'released')),
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO reservations_next SELECT id, order_id, variant_id, location_id, quantity, status, expires_at, created_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_next RENAME TO reservations;
CREATE INDEX reservations_order_idx ON reservations (order_id);
CREATE INDEX reservations_sold_idx ON reservations (variant_id) WHERE status = 'sold';
