//! The diesel schema shared by both backends. Column types are limited to those
//! that mean the same in PostgreSQL and SQLite (TEXT ids, BIGINT Unix milliseconds).

diesel::table! {
    organizations (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        contact_email -> Text,
        created_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        organization_id -> Nullable<Text>,
        role -> Text,
        secret_sha256 -> Binary,
        description -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    acme_accounts (id) {
        id -> Text,
        organization_id -> Text,
        directory_url -> Text,
        account_url -> Text,
        contact -> Text,
        credentials_sealed -> Binary,
        eab_key_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    certificates (id) {
        id -> Text,
        organization_id -> Text,
        primary_name -> Text,
        names -> Text,
        names_key -> Text,
        wildcard -> Bool,
        key_type -> Text,
        challenge_type -> Text,
        dns_provider_id -> Nullable<Text>,
        directory_url -> Text,
        profile -> Nullable<Text>,
        status -> Text,
        auto_renew -> Bool,
        renew_before_ms -> Nullable<BigInt>,
        renew_at -> Nullable<BigInt>,
        next_attempt_at -> Nullable<BigInt>,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        current_version_id -> Nullable<Text>,
        not_after -> Nullable<BigInt>,
        pending_order_url -> Nullable<Text>,
        pending_reason -> Nullable<Text>,
        pending_key_sealed -> Nullable<Binary>,
        order_attempt_at -> Nullable<BigInt>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        deleted_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        renew_reason -> Nullable<Text>,
        waiting_reason -> Nullable<Text>,
        ari_next_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    certificate_versions (id) {
        id -> Text,
        certificate_id -> Text,
        organization_id -> Text,
        version -> Integer,
        serial -> Text,
        fingerprint_sha256 -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        leaf_pem -> Text,
        chain_pem -> Text,
        key_sealed -> Binary,
        key_type -> Text,
        order_url -> Text,
        ari_start -> Nullable<BigInt>,
        ari_end -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        revocation_reason -> Nullable<Text>,
        backup_location -> Nullable<Text>,
        created_at -> BigInt,
        backup_at -> Nullable<BigInt>,
        backup_error -> Nullable<Text>,
        backup_attempts -> Integer,
        backup_next_at -> Nullable<BigInt>,
        issuer -> Nullable<Text>,
    }
}

diesel::table! {
    acme_challenges (id) {
        id -> Text,
        organization_id -> Text,
        certificate_id -> Text,
        order_url -> Text,
        authorization_url -> Text,
        name -> Text,
        challenge_type -> Text,
        token -> Text,
        key_authorization -> Text,
        dns_record_name -> Nullable<Text>,
        dns_record_value -> Nullable<Text>,
        status -> Text,
        validated_at -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        dns_zone -> Nullable<Text>,
        dns_cleaned_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    dns_providers (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        kind -> Text,
        settings -> Text,
        secret_names -> Text,
        secrets_sealed -> Nullable<Binary>,
        created_at -> BigInt,
        updated_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        topic -> Text,
        organization_id -> Nullable<Text>,
        payload -> Binary,
        created_at -> BigInt,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<BigInt>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        owner -> Text,
        lease_until -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Text,
        organization_id -> Nullable<Text>,
        actor -> Text,
        action -> Text,
        target_id -> Nullable<Text>,
        details -> Text,
        created_at -> BigInt,
        remote_addr -> Nullable<Text>,
    }
}

diesel::table! {
    eab_credentials (id) {
        id -> Text,
        organization_id -> Text,
        directory_url -> Text,
        key_id -> Text,
        hmac_sealed -> Binary,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    rate_limit_events (id) {
        id -> Text,
        directory_url -> Text,
        kind -> Text,
        scope -> Text,
        certificate_id -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    expiry_warnings (version_id, threshold_days) {
        version_id -> Text,
        threshold_days -> Integer,
        certificate_id -> Text,
        sent_at -> BigInt,
    }
}

diesel::table! {
    self_check_streaks (certificate_id) {
        certificate_id -> Text,
        failing_since -> BigInt,
    }
}

diesel::table! {
    rate_limit_locks (directory_url) {
        directory_url -> Text,
        touched_at -> BigInt,
    }
}

diesel::table! {
    notification_channels (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        kind -> Text,
        settings -> Text,
        secrets_sealed -> Nullable<Binary>,
        created_at -> BigInt,
        updated_at -> BigInt,
        deleted_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    notifications_sent (event_id, channel_id) {
        event_id -> Text,
        channel_id -> Text,
        organization_id -> Text,
        certificate_id -> Text,
        event -> Binary,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        claimed_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    installations (certificate_id, agent) {
        certificate_id -> Text,
        agent -> Text,
        organization_id -> Text,
        host -> Text,
        target -> Text,
        version -> Integer,
        serial -> Text,
        ok -> Bool,
        error -> Nullable<Text>,
        verified_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    api_tokens,
    acme_accounts,
    certificates,
    certificate_versions,
    acme_challenges,
    dns_providers,
    eab_credentials,
    outbox,
    leases,
    audit_log,
    expiry_warnings,
    notification_channels,
    notifications_sent,
    installations,
);
