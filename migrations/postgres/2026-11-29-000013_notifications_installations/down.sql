DROP INDEX acme_challenges_http_open;
DROP TABLE installations;
DROP TABLE notifications_sent;
DROP TABLE notification_channels;
