//! Job and event messages and their outbox encoding. Events are protobuf
//! (`certfleet.v1.CertificateEvent`); jobs are small JSON documents.

use certfleet_proto::v1::{CertificateEvent, EventType};
use certfleet_store::{OutboxMessage, new_id};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::BusError;

const JOB_ISSUE: &str = "job.issue";
const JOB_REVOKE: &str = "job.revoke";
const EVENT_PREFIX: &str = "event.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Obtain (or renew) the certificate: whatever its status asks for.
    Issue,
    /// Revoke the current version with this RFC 5280 reason name.
    Revoke { reason: String },
}

/// Work for an issuer. Handlers are idempotent: a job may arrive twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub organization_id: String,
    pub certificate_id: String,
    #[serde(flatten)]
    pub kind: JobKind,
}

impl Job {
    pub fn issue(organization_id: &str, certificate_id: &str) -> Job {
        Job {
            organization_id: organization_id.to_owned(),
            certificate_id: certificate_id.to_owned(),
            kind: JobKind::Issue,
        }
    }

    pub fn revoke(organization_id: &str, certificate_id: &str, reason: &str) -> Job {
        Job {
            organization_id: organization_id.to_owned(),
            certificate_id: certificate_id.to_owned(),
            kind: JobKind::Revoke {
                reason: reason.to_owned(),
            },
        }
    }

    pub fn topic(&self) -> &'static str {
        match self.kind {
            JobKind::Issue => JOB_ISSUE,
            JobKind::Revoke { .. } => JOB_REVOKE,
        }
    }

    /// The outbox row that carries this job.
    pub fn to_outbox(&self, now_ms: i64) -> OutboxMessage {
        OutboxMessage {
            id: new_id(),
            topic: self.topic().to_owned(),
            organization_id: Some(self.organization_id.clone()),
            // Serializing a struct of strings cannot fail.
            payload: serde_json::to_vec(self).unwrap_or_default(),
            created_at: now_ms,
            traceparent: crate::current_traceparent(),
        }
    }

    /// A job from an outbox row, `None` when the row is an event.
    pub fn from_outbox(message: &OutboxMessage) -> Result<Option<Job>, BusError> {
        if !message.topic.starts_with("job.") {
            return Ok(None);
        }
        serde_json::from_slice(&message.payload)
            .map(Some)
            .map_err(|error| BusError::Decode {
                topic: message.topic.clone(),
                reason: error.to_string(),
            })
    }
}

/// Builds lifecycle events; never takes key material.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    event: CertificateEvent,
}

impl EventBuilder {
    pub fn new(
        event_type: EventType,
        organization_id: &str,
        certificate_id: &str,
        names: Vec<String>,
        now_ms: i64,
    ) -> EventBuilder {
        EventBuilder {
            event: CertificateEvent {
                id: new_id(),
                r#type: event_type as i32,
                time: now_ms,
                organization_id: organization_id.to_owned(),
                certificate_id: certificate_id.to_owned(),
                names,
                ..CertificateEvent::default()
            },
        }
    }

    /// The version, its serial, and its expiry in Unix seconds (as events carry it).
    pub fn version(mut self, version: u32, serial: &str, not_after_seconds: i64) -> EventBuilder {
        self.event.version = version;
        self.event.serial = serial.to_owned();
        self.event.not_after = not_after_seconds;
        self
    }

    pub fn error(mut self, error: &str) -> EventBuilder {
        self.event.error = error.to_owned();
        self
    }

    pub fn reason(mut self, reason: &str) -> EventBuilder {
        self.event.reason = reason.to_owned();
        self
    }

    pub fn build(self) -> CertificateEvent {
        self.event
    }

    pub fn to_outbox(self) -> OutboxMessage {
        event_message(&self.event)
    }
}

/// The topic of an event type: `event.certificate.issued` and so on.
fn event_topic(event_type: EventType) -> String {
    let name = match event_type {
        EventType::Unspecified => "unspecified",
        EventType::Requested => "requested",
        EventType::Issued => "issued",
        EventType::Renewed => "renewed",
        EventType::Failed => "failed",
        EventType::Expiring => "expiring",
        EventType::Revoked => "revoked",
        EventType::Deleted => "deleted",
        EventType::Installed => "installed",
        EventType::InstallFailed => "install_failed",
    };
    format!("{EVENT_PREFIX}certificate.{name}")
}

/// The outbox row that carries an event.
pub fn event_message(event: &CertificateEvent) -> OutboxMessage {
    OutboxMessage {
        id: new_id(),
        topic: event_topic(event.r#type()),
        organization_id: Some(event.organization_id.clone()),
        payload: event.encode_to_vec(),
        created_at: event.time,
        traceparent: crate::current_traceparent(),
    }
}

/// The event in an outbox row, `None` when the row is a job.
pub fn decode_event(message: &OutboxMessage) -> Result<Option<CertificateEvent>, BusError> {
    if !message.topic.starts_with(EVENT_PREFIX) {
        return Ok(None);
    }
    CertificateEvent::decode(message.payload.as_slice())
        .map(Some)
        .map_err(|error| BusError::Decode {
            topic: message.topic.clone(),
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_the_outbox() {
        let job = Job::revoke("org", "cert", "key-compromise");
        let message = job.to_outbox(1);
        assert_eq!(message.topic, "job.revoke");
        assert_eq!(Job::from_outbox(&message).ok().flatten(), Some(job));
        assert!(decode_event(&message).ok().flatten().is_none());
    }

    #[test]
    fn events_round_trip_through_the_outbox() {
        let message = EventBuilder::new(EventType::Issued, "org", "cert", vec!["a.test".into()], 5)
            .version(1, "0A", 10)
            .to_outbox();
        assert_eq!(message.topic, "event.certificate.issued");
        let event = decode_event(&message).ok().flatten();
        assert_eq!(event.map(|event| event.serial), Some("0A".to_owned()));
        assert!(Job::from_outbox(&message).ok().flatten().is_none());
    }
}
