-- A paid reservation is `sold` until a settle job takes it off on-hand stock,
-- many sales of a variant in one update (see store::inventory::settle_reservations).
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('held', 'sold', 'committed', 'released'));
CREATE INDEX reservations_sold_idx ON reservations (variant_id) WHERE status = 'sold';
