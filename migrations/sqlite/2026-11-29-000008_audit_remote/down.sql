DROP INDEX audit_log_created;
ALTER TABLE audit_log DROP COLUMN remote_addr;
