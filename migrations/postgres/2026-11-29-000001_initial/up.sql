-- certfleet initial schema. Identifiers are UUID text, times are Unix milliseconds
-- (BIGINT), so that one diesel schema and one set of queries serve PostgreSQL and SQLite.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    organization_id TEXT REFERENCES organizations (id),
    role TEXT NOT NULL,
    secret_sha256 BYTEA NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    directory_url TEXT NOT NULL,
    account_url TEXT NOT NULL,
    contact TEXT NOT NULL,
    credentials_sealed BYTEA NOT NULL,
    eab_key_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (organization_id, directory_url)
);

CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    primary_name TEXT NOT NULL,
    names TEXT NOT NULL,
    names_key TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    key_type TEXT NOT NULL,
    challenge_type TEXT NOT NULL,
    dns_provider_id TEXT,
    directory_url TEXT NOT NULL,
    profile TEXT,
    status TEXT NOT NULL,
    auto_renew BOOLEAN NOT NULL,
    renew_before_ms BIGINT,
    renew_at BIGINT,
    next_attempt_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    current_version_id TEXT,
    -- expiry of the current version, copied here for listing and expiry scans
    not_after BIGINT,
    pending_order_url TEXT,
    pending_reason TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One active certificate per name set per organization: a second request for the
-- same names is answered with the existing one, even when two race.
CREATE UNIQUE INDEX certificates_active_names ON certificates (organization_id, names_key)
    WHERE deleted_at IS NULL AND status <> 'revoked';
CREATE INDEX certificates_org_created ON certificates (organization_id, created_at, id);
CREATE INDEX certificates_due_renewal ON certificates (renew_at)
    WHERE deleted_at IS NULL AND auto_renew AND status IN ('valid', 'expired');
CREATE INDEX certificates_expiry ON certificates (not_after)
    WHERE deleted_at IS NULL AND status = 'valid';
CREATE INDEX certificates_due_attempt ON certificates (next_attempt_at)
    WHERE deleted_at IS NULL AND next_attempt_at IS NOT NULL;

CREATE TABLE certificate_versions (
    id TEXT PRIMARY KEY,
    certificate_id TEXT NOT NULL REFERENCES certificates (id),
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    version INTEGER NOT NULL,
    serial TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    leaf_pem TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    key_sealed BYTEA NOT NULL,
    key_type TEXT NOT NULL,
    order_url TEXT NOT NULL,
    ari_start BIGINT,
    ari_end BIGINT,
    revoked_at BIGINT,
    revocation_reason TEXT,
    backup_location TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (certificate_id, version)
);

CREATE TABLE acme_challenges (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    certificate_id TEXT NOT NULL REFERENCES certificates (id),
    order_url TEXT NOT NULL,
    authorization_url TEXT NOT NULL,
    name TEXT NOT NULL,
    challenge_type TEXT NOT NULL,
    token TEXT NOT NULL,
    key_authorization TEXT NOT NULL,
    dns_record_name TEXT,
    dns_record_value TEXT,
    status TEXT NOT NULL,
    validated_at BIGINT,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (authorization_url, challenge_type)
);
CREATE INDEX acme_challenges_token ON acme_challenges (token);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    organization_id TEXT,
    payload BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    organization_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_id TEXT,
    details TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_org_created ON audit_log (organization_id, created_at);
