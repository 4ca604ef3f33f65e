DROP TABLE self_check_streaks;
DROP TABLE rate_limit_locks;
DROP TABLE rate_limit_events;
ALTER TABLE certificate_versions DROP COLUMN issuer;
DROP INDEX certificates_ari_due;
ALTER TABLE certificates DROP COLUMN ari_next_at;
ALTER TABLE certificates DROP COLUMN waiting_reason;
ALTER TABLE certificates DROP COLUMN renew_reason;
