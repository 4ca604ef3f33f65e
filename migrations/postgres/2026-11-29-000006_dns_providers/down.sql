ALTER TABLE acme_challenges DROP COLUMN dns_cleaned_at;
ALTER TABLE acme_challenges DROP COLUMN dns_zone;
DROP TABLE dns_providers;
