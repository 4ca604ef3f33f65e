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
