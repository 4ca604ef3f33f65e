DROP INDEX certificate_versions_not_after;
DROP TABLE expiry_warnings;
