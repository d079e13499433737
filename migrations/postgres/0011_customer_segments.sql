-- The segments a customer belongs to (JSON array of names, e.g. ["vip"]), set by
-- staff; promotions may be limited to customers of some segments.
ALTER TABLE customers ADD COLUMN segments TEXT NOT NULL DEFAULT '[]';
