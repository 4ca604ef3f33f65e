DROP TABLE eab_credentials;
