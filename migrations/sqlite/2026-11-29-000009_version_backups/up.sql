-- The copy of each version in the archive (S3 or a folder): when it was
-- written (backup_location is already there), and for a copy not written yet
-- the last failure, how many attempts failed and when the next one is due.
ALTER TABLE certificate_versions ADD COLUMN backup_at BIGINT;
ALTER TABLE certificate_versions ADD COLUMN backup_error TEXT;
ALTER TABLE certificate_versions ADD COLUMN backup_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certificate_versions ADD COLUMN backup_next_at BIGINT;
-- The versions whose copy is still to be written, for the backup pass.
CREATE INDEX certificate_versions_backup_due ON certificate_versions (backup_next_at)
    WHERE backup_location IS NULL;
