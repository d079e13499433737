-- pgbench script (scripts/bench-flash-sale.sh, part `floor`): the rows a flash
-- sale's paid checkouts write, :n orders at a time, with none of the work of
-- asking for them: no reads, no pricing, no HTTP, values made by the database
-- itself (generate_series), prepared statements. Run on a copy of a flash-sale
-- shop, so the tables, indexes, constraints and foreign keys are the shop's own.
-- Variables: n (orders per batch), V and L (the flash variant and its location),
-- carts (rows of floor_carts; each of the two clients closes carts of its own half).
-- Keys are `<batch>-<n>`: each batch finds its rows by a range on the key, which
-- needs a collation that sorts '-' before '.' (C, C.UTF-8); the bench script counts
-- the paid orders afterwards.
\set b random(100000000, 999999999)
\set half :carts / 2
\set c 1 + :client_id * :half + random(0, :half - :n)
\set e :c + :n - 1
-- The idempotency claims.
INSERT INTO idempotency_keys (scope, idem_key, request_hash, state, locked_until, created_at, expires_at)
  SELECT 'floor', CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), 'hash', 'running', '2026-11-24T00:00:00Z', '2026-11-24T00:00:00Z', '2026-11-25T00:00:00Z'
  FROM generate_series(1, :n) g;
-- Placing: close the carts, lock and take the stock, write the orders and everything with them.
BEGIN;
UPDATE carts SET status = CASE status WHEN 'open' THEN 'checked_out' ELSE 'open' END, updated_at = '2026-11-24T00:00:01Z'
  WHERE id IN (SELECT id FROM floor_carts WHERE n BETWEEN :c AND :e);
SELECT variant_id, location_id, on_hand - reserved FROM stock_levels WHERE variant_id = :V FOR UPDATE;
UPDATE stock_levels SET reserved = reserved + :n WHERE variant_id = :V AND location_id = :L AND on_hand - reserved >= :n;
INSERT INTO orders (id, number, customer_id, cart_id, email, status, currency, tax_mode, subtotal, shipping_total, discount_total,
    tax_total, grand_total, shipping_option_id, shipping_address, billing_address, access_token_hash, reserved_until, created_at, updated_at)
  SELECT 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), 'N' || CAST(:b AS text) || '-' || g, NULL, 'cart-' || g,
    'buyer-' || CAST(:b AS text) || '-' || g || '@example.com', 'pending_payment', 'EUR', 'exclusive', 1999, 500, 0, 0, 2499, NULL,
    repeat('a', 127), repeat('a', 127), md5(g::text), '2026-11-24T00:15:00Z', '2026-11-24T00:00:01Z', '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
INSERT INTO order_lines (id, order_id, variant_id, sku, title, options, quantity, unit_price, line_total, discount, tax)
  SELECT 'l' || CAST(:b AS text) || '-' || g, 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), :V, 'FLASH-1', 'Flash product', '{}', 1, 1999, 1999, 0, 0
  FROM generate_series(1, :n) g;
INSERT INTO payments (id, order_id, provider, status, amount, currency, created_at, updated_at)
  SELECT 'p' || CAST(:b AS text) || '-' || g, 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), 'test', 'started', 2499, 'EUR',
    '2026-11-24T00:00:01Z', '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
INSERT INTO reservations (id, order_id, variant_id, location_id, quantity, status, expires_at, created_at)
  SELECT 'r' || CAST(:b AS text) || '-' || g, 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), :V, :L, 1, 'held',
    '2026-11-24T00:15:00Z', '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
INSERT INTO stock_movements (id, variant_id, location_id, kind, delta_on_hand, delta_reserved, reason, order_id, actor_type, actor_id, created_at)
  SELECT 'm' || CAST(:b AS text) || '-' || g, :V, :L, 'reserve', 0, 1, 'checkout', 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'),
    'customer', NULL, '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
INSERT INTO order_events (id, order_id, from_status, to_status, actor_type, actor_id, reason, created_at)
  SELECT 'e' || CAST(:b AS text) || '-' || g, 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), NULL, 'pending_payment', 'customer', NULL,
    'checkout', '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
  SELECT 'j' || CAST(:b AS text) || '-' || g, 'order.placed', repeat('p', 77), 'queued', 0, 5, '2026-11-24T00:00:01Z', '2026-11-24T00:00:01Z',
    '2026-11-24T00:00:01Z'
  FROM generate_series(1, :n) g;
UPDATE idempotency_keys SET order_id = 'o' || idem_key
  WHERE scope = 'floor' AND idem_key >= CAST(:b AS text) || '-' AND idem_key < CAST(:b AS text) || '.';
COMMIT;
-- Paying: every order of the batch paid, as the paid transition writes it.
BEGIN;
SELECT id, status FROM orders WHERE id >= 'o' || CAST(:b AS text) || '-' AND id < 'o' || CAST(:b AS text) || '.' ORDER BY id FOR UPDATE;
UPDATE payments SET status = 'succeeded', provider_ref = 'ref', updated_at = '2026-11-24T00:00:02Z'
  WHERE order_id >= 'o' || CAST(:b AS text) || '-' AND order_id < 'o' || CAST(:b AS text) || '.';
UPDATE orders SET status = 'paid', updated_at = '2026-11-24T00:00:02Z'
  WHERE status = 'pending_payment' AND id >= 'o' || CAST(:b AS text) || '-' AND id < 'o' || CAST(:b AS text) || '.';
UPDATE reservations SET status = 'sold'
  WHERE status = 'held' AND order_id >= 'o' || CAST(:b AS text) || '-' AND order_id < 'o' || CAST(:b AS text) || '.';
INSERT INTO order_events (id, order_id, from_status, to_status, actor_type, actor_id, reason, created_at)
  SELECT 'f' || CAST(:b AS text) || '-' || g, 'o' || CAST(:b AS text) || '-' || lpad(g::text, 4, '0'), 'pending_payment', 'paid', 'system', NULL,
    'payment succeeded', '2026-11-24T00:00:02Z'
  FROM generate_series(1, :n) g;
INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at)
  SELECT 'k' || CAST(:b AS text) || '-' || g, 'order.paid', repeat('p', 60), 'queued', 0, 5, '2026-11-24T00:00:02Z', '2026-11-24T00:00:02Z',
    '2026-11-24T00:00:02Z'
  FROM generate_series(1, :n) g;
-- The stored answer: a checkout's answer is ~1.3 KB.
UPDATE idempotency_keys SET state = 'done', response_status = 201, response_body = repeat('x', 1283)
  WHERE scope = 'floor' AND idem_key >= CAST(:b AS text) || '-' AND idem_key < CAST(:b AS text) || '.' AND state = 'running';
COMMIT;
