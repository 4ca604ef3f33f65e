-- Why a certificate renews when it does (the ARI window or the lifetime rule),
-- why work waits (a rate-limit budget, the CA's rateLimited answer), and when
-- the CA's renewal information (RFC 9773) is fetched again.
ALTER TABLE certificates ADD COLUMN renew_reason TEXT;
ALTER TABLE certificates ADD COLUMN waiting_reason TEXT;
ALTER TABLE certificates ADD COLUMN ari_next_at BIGINT;
CREATE INDEX certificates_ari_due ON certificates (ari_next_at)
    WHERE ari_next_at IS NOT NULL AND deleted_at IS NULL;
-- The configured name of the CA that issued a version.
ALTER TABLE certificate_versions ADD COLUMN issuer TEXT;
-- Rate-limit accounting per CA directory (DESIGN section 6): one row per
-- counted event. kind is new-order (scope: organization, i.e. the account),
-- registered-domain (scope: the registered domain), exact-set (scope: the
-- sorted names) or failed-authorization (scope: organization and name).
CREATE TABLE rate_limit_events (
    id TEXT PRIMARY KEY,
    directory_url TEXT NOT NULL,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX rate_limit_events_window ON rate_limit_events (directory_url, kind, scope, at);
CREATE INDEX rate_limit_events_certificate ON rate_limit_events (certificate_id, at);
-- Events older than every window are pruned by time.
CREATE INDEX rate_limit_events_at ON rate_limit_events (at);
-- One row per CA directory, updated first in every budget check: the row lock
-- makes checks of one CA take turns across all issuer replicas.
CREATE TABLE rate_limit_locks (
    directory_url TEXT PRIMARY KEY,
    touched_at BIGINT NOT NULL
);
-- Since when the HTTP-01 self-check of a certificate has failed for every
-- name (the row goes when one passes): after 7 days the certificate stops
-- renewing, an orphan whose names point elsewhere now.
CREATE TABLE self_check_streaks (
    certificate_id TEXT PRIMARY KEY,
    failing_since BIGINT NOT NULL
);
