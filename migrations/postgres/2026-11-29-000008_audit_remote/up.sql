-- The caller's IP address for entries written by the API; NULL for the
-- scheduler, the workers and entries written before this column existed.
ALTER TABLE audit_log ADD COLUMN remote_addr TEXT;
-- Newest-first listing across all organizations (ListAuditEntries without an
-- organization filter); the per-organization listing uses audit_log_org_created.
CREATE INDEX audit_log_created ON audit_log (created_at, id);
