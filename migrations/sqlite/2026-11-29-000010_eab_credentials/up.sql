-- External Account Binding credentials of an organization at one CA directory:
-- the key id in the clear, the HMAC key sealed by the vault under the context
-- (organization, "eab-hmac", directory URL). A surrogate id lets the key
-- rotation walk this table in id order like the other sealed columns.
CREATE TABLE eab_credentials (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    directory_url TEXT NOT NULL,
    key_id TEXT NOT NULL,
    hmac_sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (organization_id, directory_url)
);
