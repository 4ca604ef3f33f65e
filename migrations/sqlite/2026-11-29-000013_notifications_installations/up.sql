-- An organization's notification channels (email over SMTP, webhooks).
-- Plain settings as a JSON object; secret settings (SMTP password, webhook
-- signing secret) as a JSON object sealed by the vault.
CREATE TABLE notification_channels (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    settings TEXT NOT NULL,
    secrets_sealed BLOB,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX notification_channels_active_name ON notification_channels (organization_id, name)
    WHERE deleted_at IS NULL;

-- One row per event and channel: the notifier's durable work list and the
-- record of what was sent. The primary key makes each notification happen
-- once, whatever the bus redelivers; the event is kept (protobuf, never key
-- material) so a retry needs nothing else.
CREATE TABLE notifications_sent (
    event_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    event BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    claimed_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    PRIMARY KEY (event_id, channel_id)
);
CREATE INDEX notifications_sent_due ON notifications_sent (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notifications_sent_certificate ON notifications_sent (certificate_id);

-- What each proxy agent last reported for a certificate: the version it
-- installed, whether the served certificate matched, and when.
CREATE TABLE installations (
    certificate_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    host TEXT NOT NULL,
    target TEXT NOT NULL,
    version INTEGER NOT NULL,
    serial TEXT NOT NULL,
    ok BOOLEAN NOT NULL,
    error TEXT,
    verified_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (certificate_id, agent)
);

-- HTTP-01 challenges waiting to be answered, for agents that write them into
-- a webroot: only the few open rows are read.
CREATE INDEX acme_challenges_http_open ON acme_challenges (updated_at)
    WHERE challenge_type = 'http-01' AND status IN ('pending', 'processing');
