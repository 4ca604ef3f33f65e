//! Calls only proxy agents make: reporting what they installed (checked
//! against the version's fingerprint) and reading the HTTP-01 challenges
//! they answer from a webroot.

use certfleet_bus::EventBuilder;
use certfleet_core::InputError;
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::EventType;
use certfleet_store::{AuditEntry, Effects, InstallationRow};

use super::{Caller, CertificateApi};
use crate::ApiError;
use crate::convert::seconds;

/// Proxy targets an agent may report.
const TARGETS: [&str; 3] = ["nginx", "traefik", "caddy"];
/// How far back an open challenge is still served (older rows are left over
/// from an attempt that was killed).
const OPEN_CHALLENGE_WINDOW_MS: i64 = 3_600_000;
const MAX_CHALLENGES: i64 = 1000;
/// Agent names, hosts and errors are cut to this many characters.
const MAX_TEXT: usize = 1000;

impl CertificateApi {
    pub(super) async fn report_installation(
        &self,
        caller: &Caller,
        request: pb::ReportInstallationRequest,
    ) -> Result<pb::Installation, ApiError> {
        check_label("agent", &request.agent)?;
        check_label("host", &request.host)?;
        if !TARGETS.contains(&request.target.as_str()) {
            return Err(InputError::new(
                "target",
                &request.target,
                "must be nginx, traefik or caddy",
            )
            .into());
        }
        let organization_id = caller.organization_id.as_str();
        let certificate = self.find(organization_id, &request.certificate_id).await?;
        let versions = self
            .state
            .store
            .list_versions(organization_id, &certificate.id)
            .await
            .map_err(|error| ApiError::store("list versions", error))?;
        let Some(version) = versions
            .iter()
            .find(|version| u32::try_from(version.version).ok() == Some(request.version))
        else {
            return Err(InputError::new(
                "version",
                request.version.to_string(),
                format!("certificate {} has no such version", certificate.id),
            )
            .into());
        };
        let served = request
            .served_fingerprint_sha256
            .trim()
            .to_ascii_lowercase();
        let matched = !served.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                served.as_bytes(),
                version.fingerprint_sha256.as_bytes(),
            ));
        // Without a check (`--no-verify`) an install counts as done but not
        // verified; with one, only the version's own leaf counts.
        let checked = !served.is_empty();
        let ok = request.installed && request.error.is_empty() && (!checked || matched);
        let error = if ok {
            None
        } else if !request.error.is_empty() {
            Some(cut(&request.error))
        } else if !request.installed {
            Some("the agent did not install the certificate".to_owned())
        } else {
            Some(format!(
                "the proxy serves another certificate (serial {}), not version {} (serial {})",
                cut(&request.served_serial),
                version.version,
                version.serial
            ))
        };
        let now = self.state.clock.now_ms();
        let row = InstallationRow {
            certificate_id: certificate.id.clone(),
            agent: request.agent.clone(),
            organization_id: organization_id.to_owned(),
            host: request.host.clone(),
            target: request.target.clone(),
            version: version.version,
            serial: if request.served_serial.is_empty() {
                version.serial.clone()
            } else {
                cut(&request.served_serial).to_ascii_uppercase()
            },
            ok,
            error: error.clone(),
            verified_at: (ok && checked).then_some(now),
            updated_at: now,
        };
        let kind = if ok {
            EventType::Installed
        } else {
            EventType::InstallFailed
        };
        let mut event = EventBuilder::new(
            kind,
            organization_id,
            &certificate.id,
            certificate.name_list(),
            now,
        )
        .version(request.version, &version.serial, version.not_after / 1000)
        .reason(&format!(
            "{} on {} ({}){}",
            request.target,
            request.host,
            request.agent,
            if checked { "" } else { ", not checked" }
        ));
        if let Some(error) = &error {
            event = event.error(error);
        }
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            if ok {
                "certificate.installed"
            } else {
                "certificate.install_failed"
            },
            Some(&certificate.id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!(
            "agent {} host {} target {} version {}",
            request.agent, request.host, request.target, request.version
        );
        let effects = Effects {
            outbox: vec![event.to_outbox()],
            audit: vec![audit],
        };
        self.state
            .store
            .record_installation(row.clone(), effects)
            .await
            .map_err(|error| ApiError::store("record installation", error))?;
        self.state.relay.wake();
        tracing::info!(
            organization_id,
            certificate_id = %certificate.id,
            agent = %request.agent,
            target = %request.target,
            version = request.version,
            ok,
            error = error.as_deref().unwrap_or(""),
            "installation reported"
        );
        Ok(installation_to_proto(&row))
    }

    pub(super) async fn http_challenges(&self) -> Result<pb::ListHttpChallengesResponse, ApiError> {
        let since = self
            .state
            .clock
            .now_ms()
            .saturating_sub(OPEN_CHALLENGE_WINDOW_MS);
        let rows = self
            .state
            .store
            .open_http01_challenges(since, MAX_CHALLENGES)
            .await
            .map_err(|error| ApiError::store("list open challenges", error))?;
        Ok(pb::ListHttpChallengesResponse {
            challenges: rows
                .into_iter()
                .map(|(name, token, key_authorization)| pb::HttpChallenge {
                    name,
                    token,
                    key_authorization,
                })
                .collect(),
        })
    }
}

/// An agent's name or host: 1 to 253 printable characters without spaces.
fn check_label(field: &str, value: &str) -> Result<(), InputError> {
    if value.is_empty() || value.len() > 253 {
        return Err(InputError::new(field, value, "must be 1 to 253 characters"));
    }
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(InputError::new(
            field,
            value,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

pub(crate) fn installation_to_proto(row: &InstallationRow) -> pb::Installation {
    pb::Installation {
        agent: row.agent.clone(),
        host: row.host.clone(),
        target: row.target.clone(),
        version: u32::try_from(row.version).unwrap_or(0),
        serial: row.serial.clone(),
        ok: row.ok,
        error: row.error.clone().unwrap_or_default(),
        verified_at: row.verified_at.map_or(0, seconds),
        updated_at: seconds(row.updated_at),
    }
}
