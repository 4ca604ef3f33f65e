ALTER TABLE certificates DROP COLUMN order_attempt_at;
