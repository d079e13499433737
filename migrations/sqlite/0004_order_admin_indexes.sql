-- Staff order lists: newest first, optionally by status or customer e-mail.
CREATE INDEX orders_status_id_idx ON orders (status, id);
CREATE INDEX orders_email_id_idx ON orders (email, id);
