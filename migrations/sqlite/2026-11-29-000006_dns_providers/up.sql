-- DNS providers of an organization (DNS-01). Plain settings as a JSON object;
-- secret settings (TSIG secret, API keys) as a JSON object sealed by the vault,
-- and their names (comma-separated) in the clear, so that showing a provider
-- needs no decryption.
CREATE TABLE dns_providers (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    settings TEXT NOT NULL,
    secret_names TEXT NOT NULL DEFAULT '',
    secrets_sealed BLOB,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX dns_providers_active_name ON dns_providers (organization_id, name)
    WHERE deleted_at IS NULL;

-- Where a DNS-01 value was written, and when it was removed again: a record
-- with no clean-up time is removed by the next attempt on the certificate.
ALTER TABLE acme_challenges ADD COLUMN dns_zone TEXT;
ALTER TABLE acme_challenges ADD COLUMN dns_cleaned_at BIGINT;
-- Challenge rows are never deleted, so the scans for values still in DNS (the
-- scheduler's every pass, the issuer's every DNS-01 attempt) read only the
-- few rows that are left, through these partial indexes.
CREATE INDEX acme_challenges_dns_left_by_time ON acme_challenges (updated_at)
    WHERE challenge_type = 'dns-01' AND dns_record_name IS NOT NULL AND dns_cleaned_at IS NULL;
CREATE INDEX acme_challenges_dns_left_by_certificate ON acme_challenges (certificate_id)
    WHERE challenge_type = 'dns-01' AND dns_record_name IS NOT NULL AND dns_cleaned_at IS NULL;
