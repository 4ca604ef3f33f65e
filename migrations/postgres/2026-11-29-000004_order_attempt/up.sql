-- When an attempt started placing an ACME order whose URL is not saved yet.
-- Set right before the newOrder request and cleared when the URL is saved: if
-- it is still set when the next attempt starts, the previous one may have left
-- an order at the CA that the database never heard of, and the next attempt
-- looks for it in the account's orders list (where the CA offers one) before
-- placing another.
ALTER TABLE certificates ADD COLUMN order_attempt_at BIGINT;
