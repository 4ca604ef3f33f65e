DROP INDEX certificate_versions_backup_due;
ALTER TABLE certificate_versions DROP COLUMN backup_next_at;
ALTER TABLE certificate_versions DROP COLUMN backup_attempts;
ALTER TABLE certificate_versions DROP COLUMN backup_error;
ALTER TABLE certificate_versions DROP COLUMN backup_at;
