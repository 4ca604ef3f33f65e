-- The expiry warnings sent for a certificate version (7, 3 and 1 days
-- before it expires, while no newer version exists): one row per version
-- and threshold, written with the `expiring` event in one transaction, so
-- each warning is sent once. A threshold already passed when a nearer one
-- is sent gets its row without an event.
CREATE TABLE expiry_warnings (
    version_id TEXT NOT NULL,
    threshold_days INTEGER NOT NULL,
    certificate_id TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (version_id, threshold_days)
);
-- Versions about to expire, for the scheduler's warning pass.
CREATE INDEX certificate_versions_not_after ON certificate_versions (not_after);
