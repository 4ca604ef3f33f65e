DROP INDEX acme_challenges_dns_left_by_certificate;
DROP INDEX acme_challenges_dns_left_by_time;
ALTER TABLE acme_challenges DROP COLUMN dns_cleaned_at;
ALTER TABLE acme_challenges DROP COLUMN dns_zone;
DROP TABLE dns_providers;
