-- A relay claims outbox rows before publishing them, so that concurrent relays
-- never publish the same row at once; a claim expires, so the rows of a relay
-- that died are picked up by the others.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT;
