-- The sealed private key of an order being finalized, saved before the CA is
-- asked to finalize: a worker that takes over a finalized order downloads its
-- certificate instead of placing a second order.
ALTER TABLE certificates ADD COLUMN pending_key_sealed BLOB;
