-- When a token stops authenticating (Unix milliseconds); NULL: never.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
