ALTER TABLE certificates DROP COLUMN pending_key_sealed;
