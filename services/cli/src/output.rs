//! Table and JSON renderings of API messages.

use certfleet_proto::v1::{
    Certificate, CertificateStatus, CertificateVersion, ChallengeType, Installation, KeyType,
    Organization,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Unix seconds as RFC 3339, empty for 0.
pub(crate) fn timestamp(seconds: i64) -> String {
    if seconds == 0 {
        return String::new();
    }
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

pub(crate) fn status_name(status: i32) -> &'static str {
    match CertificateStatus::try_from(status).unwrap_or(CertificateStatus::Unspecified) {
        CertificateStatus::Unspecified => "unknown",
        CertificateStatus::Pending => "pending",
        CertificateStatus::Issuing => "issuing",
        CertificateStatus::Valid => "valid",
        CertificateStatus::Renewing => "renewing",
        CertificateStatus::Expired => "expired",
        CertificateStatus::Revoked => "revoked",
        CertificateStatus::Failed => "failed",
    }
}

fn key_type_name(key_type: i32) -> &'static str {
    match KeyType::try_from(key_type).unwrap_or(KeyType::Unspecified) {
        KeyType::Unspecified | KeyType::EcdsaP256 => "ecdsa-p256",
        KeyType::EcdsaP384 => "ecdsa-p384",
        KeyType::Rsa2048 => "rsa-2048",
        KeyType::Rsa3072 => "rsa-3072",
        KeyType::Rsa4096 => "rsa-4096",
    }
}

fn challenge_name(challenge_type: i32) -> &'static str {
    match ChallengeType::try_from(challenge_type).unwrap_or(ChallengeType::Unspecified) {
        ChallengeType::Unspecified | ChallengeType::Http01 => "http-01",
        ChallengeType::Dns01 => "dns-01",
    }
}

/// Where the version's archive copy is, or why it is not written yet.
fn backup_state(version: &CertificateVersion) -> String {
    if !version.backup_location.is_empty() {
        return format!(
            "{} (written {})",
            version.backup_location,
            timestamp(version.backup_at)
        );
    }
    if version.backup_attempts == 0 {
        return "not written yet (or no archive is configured)".to_owned();
    }
    format!(
        "not written: {} ({} failed attempts; next {})",
        version.backup_error,
        version.backup_attempts,
        timestamp(version.backup_next_at)
    )
}

fn version_json(version: &CertificateVersion) -> Value {
    json!({
        "id": version.id,
        "version": version.version,
        "serial": version.serial,
        "fingerprint_sha256": version.fingerprint_sha256,
        "not_before": timestamp(version.not_before),
        "not_after": timestamp(version.not_after),
        "order_url": version.order_url,
        "revoked_at": timestamp(version.revoked_at),
        "backup_location": version.backup_location,
        "backup_at": timestamp(version.backup_at),
        "backup_error": version.backup_error,
        "backup_attempts": version.backup_attempts,
        "backup_next_at": timestamp(version.backup_next_at),
        "issuer": version.issuer,
        "ari_window_start": timestamp(version.ari_window_start),
        "ari_window_end": timestamp(version.ari_window_end),
    })
}

pub(crate) fn certificate_json(certificate: &Certificate) -> Value {
    json!({
        "id": certificate.id,
        "organization_id": certificate.organization_id,
        "primary_name": certificate.primary_name,
        "names": certificate.names,
        "key_type": key_type_name(certificate.key_type),
        "challenge_type": challenge_name(certificate.challenge_type),
        "dns_provider_id": certificate.dns_provider_id,
        "status": status_name(certificate.status),
        "auto_renew": certificate.auto_renew,
        "renew_at": timestamp(certificate.renew_at),
        "renew_reason": certificate.renew_reason,
        "waiting_reason": certificate.waiting_reason,
        "profile": certificate.profile,
        "next_attempt_at": timestamp(certificate.next_attempt_at),
        "attempts": certificate.attempts,
        "last_error": certificate.last_error,
        "current": certificate.current.as_ref().map(version_json),
        "installations": certificate.installations.iter().map(|installation| json!({
            "agent": installation.agent,
            "host": installation.host,
            "target": installation.target,
            "version": installation.version,
            "serial": installation.serial,
            "ok": installation.ok,
            "error": installation.error,
            "verified_at": timestamp(installation.verified_at),
            "updated_at": timestamp(installation.updated_at),
        })).collect::<Vec<_>>(),
        "created_at": timestamp(certificate.created_at),
        "updated_at": timestamp(certificate.updated_at),
    })
}

pub(crate) fn organization_json(organization: &Organization) -> Value {
    json!({
        "id": organization.id,
        "slug": organization.slug,
        "name": organization.name,
        "contact_email": organization.contact_email,
        "created_at": timestamp(organization.created_at),
    })
}

/// One agent's report: where, which version, and whether the proxy serves it.
fn installation_line(installation: &Installation) -> String {
    let place = format!(
        "{} on {} ({}), version {}",
        installation.target, installation.host, installation.agent, installation.version
    );
    if installation.ok && installation.verified_at == 0 {
        format!(
            "{place}: installed {}, not checked",
            timestamp(installation.updated_at)
        )
    } else if installation.ok {
        format!(
            "{place}: serving serial {}, verified {}",
            installation.serial,
            timestamp(installation.verified_at)
        )
    } else {
        format!(
            "{place}: FAILED at {}: {}",
            timestamp(installation.updated_at),
            installation.error
        )
    }
}

/// Key/value lines describing one certificate.
pub(crate) fn certificate_details(certificate: &Certificate) -> String {
    let mut lines = vec![
        format!("id:          {}", certificate.id),
        format!("names:       {}", certificate.names.join(", ")),
        format!("status:      {}", status_name(certificate.status)),
        format!("key type:    {}", key_type_name(certificate.key_type)),
        format!("auto renew:  {}", certificate.auto_renew),
    ];
    if !certificate.dns_provider_id.is_empty() {
        lines.push(format!(
            "challenge:   dns-01 via DNS provider {}",
            certificate.dns_provider_id
        ));
    }
    if let Some(version) = &certificate.current {
        lines.push(format!("version:     {}", version.version));
        lines.push(format!("serial:      {}", version.serial));
        lines.push(format!("not before:  {}", timestamp(version.not_before)));
        lines.push(format!("expires:     {}", timestamp(version.not_after)));
        lines.push(format!("sha256:      {}", version.fingerprint_sha256));
        if !version.issuer.is_empty() {
            lines.push(format!("issued by:   {}", version.issuer));
        }
        if version.ari_window_start != 0 {
            lines.push(format!(
                "ari window:  {} to {}",
                timestamp(version.ari_window_start),
                timestamp(version.ari_window_end)
            ));
        }
        if version.revoked_at != 0 {
            lines.push(format!("revoked at:  {}", timestamp(version.revoked_at)));
        }
        lines.push(format!("backup:      {}", backup_state(version)));
    }
    if certificate.renew_at != 0 && certificate.auto_renew {
        lines.push(format!("renews at:   {}", timestamp(certificate.renew_at)));
        if !certificate.renew_reason.is_empty() {
            lines.push(format!("renews why:  {}", certificate.renew_reason));
        }
    }
    if !certificate.waiting_reason.is_empty() {
        lines.push(format!("waiting:     {}", certificate.waiting_reason));
        lines.push(format!(
            "next try:    {}",
            timestamp(certificate.next_attempt_at)
        ));
    }
    if certificate.attempts != 0 {
        lines.push(format!("attempts:    {}", certificate.attempts));
    }
    // A new certificate carries a next attempt too (the scheduler's safety net
    // for a lost job); it only means something once an attempt failed.
    if certificate.next_attempt_at != 0
        && certificate.attempts != 0
        && certificate.waiting_reason.is_empty()
    {
        lines.push(format!(
            "next try:    {}",
            timestamp(certificate.next_attempt_at)
        ));
    }
    if !certificate.last_error.is_empty() {
        lines.push(format!("last error:  {}", certificate.last_error));
    }
    for installation in &certificate.installations {
        lines.push(format!("installed:   {}", installation_line(installation)));
    }
    lines.join("\n")
}

/// A plain table with a header row and columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                format!(
                    "{cell:<width$}",
                    width = widths.get(index).copied().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut lines = vec![render(header.to_vec())];
    for row in rows {
        lines.push(render(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

pub(crate) fn certificate_row(certificate: &Certificate) -> Vec<String> {
    let (serial, expires) = certificate
        .current
        .as_ref()
        .map(|version| (version.serial.clone(), timestamp(version.not_after)))
        .unwrap_or_default();
    vec![
        certificate.id.clone(),
        status_name(certificate.status).to_owned(),
        certificate.names.join(","),
        expires,
        serial,
    ]
}
