-- The W3C trace context of the call or job that wrote the row, published in
-- the message's traceparent header.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
