//! The notifier: turns each `expiring` and `failed` event into one
//! notification per channel of the organization that wants it (recorded in
//! `notifications_sent`, so a redelivered event or a restart never sends
//! twice), and delivers what is due, retrying failures with backoff.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::Clock;
use certfleet_proto::v1::{CertificateEvent, EventType};
use certfleet_store::{NotificationRow, Store, StoreError};
use certfleet_vault::Vault;
use futures_util::future::join_all;
use prost::Message as _;
use tokio::sync::watch;

use crate::settings::{ChannelSettings, stored_events};
use crate::{Notice, NoticeKind, deliver};

/// How the notifier paces itself.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Notifications claimed (and sent concurrently) at once.
    pub batch: i64,
    /// How long a claim holds before another notifier may take the row.
    pub claim: Duration,
    /// One delivery's limit.
    pub timeout: Duration,
    /// The first retry's pause; each further one is four times longer, up
    /// to an hour.
    pub retry_base: Duration,
    /// Attempts before a notification is given up.
    pub max_attempts: i32,
    /// How often due notifications are looked for.
    pub poll: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            batch: 32,
            claim: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(30),
            max_attempts: 24,
            poll: Duration::from_secs(1),
        }
    }
}

/// Why the notifier could not do its part; the event or row is tried again.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event's notice kind, when it is one the notifier sends.
pub fn notice_kind(event: &CertificateEvent) -> Option<NoticeKind> {
    match EventType::try_from(event.r#type).ok()? {
        EventType::Expiring => Some(NoticeKind::Expiring),
        EventType::Failed => Some(NoticeKind::Failed),
        _ => None,
    }
}

/// A delivery that did not happen: the error and whether to retry.
type Failure = (String, bool);

/// What the notifications of one claimed batch are sent with, by channel id
/// and by organization id.
struct Batch {
    channels: HashMap<String, Result<ChannelSettings, Failure>>,
    slugs: HashMap<String, Result<String, Failure>>,
}

/// The notice of an event, for an organization named `slug`.
fn notice_of(event: &CertificateEvent, slug: &str) -> Option<Notice> {
    Some(Notice {
        event_id: event.id.clone(),
        kind: notice_kind(event)?,
        organization: slug.to_owned(),
        certificate_id: event.certificate_id.clone(),
        names: event.names.clone(),
        serial: event.serial.clone(),
        // Events carry Unix seconds.
        not_after: (event.not_after > 0).then_some(event.not_after),
        reason: event.reason.clone(),
        error: event.error.clone(),
        time: event.time,
    })
}

/// The pause before retry number `attempt` (1 = the first retry).
fn retry_pause(base: Duration, attempt: i32) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(8);
    base.saturating_mul(4_u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600).max(base))
}

#[derive(Clone)]
pub struct Notifier {
    store: Store,
    vault: Vault,
    clock: Arc<dyn Clock>,
    config: NotifierConfig,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    pub fn new(store: Store, vault: Vault, clock: Arc<dyn Clock>, config: NotifierConfig) -> Self {
        Notifier {
            store,
            vault,
            clock,
            config,
        }
    }

    /// Queues the event for every channel of its organization that wants
    /// it; how many notifications were queued (0 for a redelivered event).
    pub async fn accept(&self, event: &CertificateEvent) -> Result<usize, NotifierError> {
        let Some(kind) = notice_kind(event) else {
            return Ok(0);
        };
        let channels = self
            .store
            .list_notification_channels(&event.organization_id)
            .await?;
        let wanted: Vec<String> = channels
            .iter()
            .filter(|channel| {
                stored_events(&channel.settings).is_none_or(|events| events.contains(&kind))
            })
            .map(|channel| channel.id.clone())
            .collect();
        let queued = self
            .store
            .enqueue_notifications(
                &event.id,
                &event.organization_id,
                &event.certificate_id,
                &event.encode_to_vec(),
                &wanted,
                self.clock.now_ms(),
            )
            .await?;
        if queued > 0 {
            tracing::info!(event_id = %event.id, kind = %kind, organization_id = %event.organization_id, certificate_id = %event.certificate_id, queued, "notifications queued");
        }
        Ok(queued)
    }

    /// Sends what is due; how many notifications were handled.
    pub async fn deliver_due(&self) -> Result<usize, NotifierError> {
        let claim_ms = i64::try_from(self.config.claim.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .store
            .claim_due_notifications(self.clock.now_ms(), claim_ms, self.config.batch)
            .await?;
        let handled = rows.len();
        let batch = self.resolve(&rows).await;
        let results = join_all(rows.into_iter().map(|row| self.deliver_one(&batch, row))).await;
        for result in results {
            result?;
        }
        Ok(handled)
    }

    /// Each channel and organization of a batch read (and its secrets
    /// opened) once, however many of its notifications the batch holds.
    async fn resolve(&self, rows: &[NotificationRow]) -> Batch {
        let channel_ids: BTreeSet<(&str, &str)> = rows
            .iter()
            .map(|row| (row.organization_id.as_str(), row.channel_id.as_str()))
            .collect();
        let organization_ids: BTreeSet<&str> = rows
            .iter()
            .map(|row| row.organization_id.as_str())
            .collect();
        let channels = join_all(
            channel_ids
                .into_iter()
                .map(|(organization_id, id)| async move {
                    (
                        id.to_owned(),
                        self.channel_settings(organization_id, id).await,
                    )
                }),
        );
        let slugs = join_all(
            organization_ids
                .into_iter()
                .map(|id| async move { (id.to_owned(), self.organization_slug(id).await) }),
        );
        let (channels, slugs) = tokio::join!(channels, slugs);
        Batch {
            channels: channels.into_iter().collect(),
            slugs: slugs.into_iter().collect(),
        }
    }

    async fn deliver_one(&self, batch: &Batch, row: NotificationRow) -> Result<(), NotifierError> {
        let outcome = self.attempt(batch, &row).await;
        let now = self.clock.now_ms();
        let attempts = row.attempts + 1;
        match outcome {
            Ok(()) => {
                tracing::info!(event_id = %row.event_id, channel_id = %row.channel_id, certificate_id = %row.certificate_id, attempts, "notification sent");
                self.store
                    .finish_notification_attempt(&row.event_id, &row.channel_id, Ok(()), now)
                    .await?;
            }
            Err((error, retryable)) => {
                let retry_at = (retryable && attempts < self.config.max_attempts).then(|| {
                    let pause = retry_pause(self.config.retry_base, attempts);
                    now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
                });
                if retry_at.is_some() {
                    tracing::warn!(event_id = %row.event_id, channel_id = %row.channel_id, attempts, %error, "notification not sent; will retry");
                } else {
                    tracing::error!(event_id = %row.event_id, channel_id = %row.channel_id, attempts, %error, "notification given up");
                }
                self.store
                    .finish_notification_attempt(
                        &row.event_id,
                        &row.channel_id,
                        Err((&error, retry_at)),
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// One delivery; on failure the error and whether to retry.
    async fn attempt(&self, batch: &Batch, row: &NotificationRow) -> Result<(), Failure> {
        let settings = batch.channels[&row.channel_id]
            .as_ref()
            .map_err(Clone::clone)?;
        let event = CertificateEvent::decode(row.event.as_slice())
            .map_err(|error| (format!("undecodable event: {error}"), false))?;
        let slug = batch.slugs[&row.organization_id]
            .as_ref()
            .map_err(Clone::clone)?;
        let notice = notice_of(&event, slug)
            .ok_or_else(|| ("not an event that is notified".to_owned(), false))?;
        deliver(&settings.channel, &notice, self.config.timeout)
            .await
            .map_err(|error| (error.message, error.retryable))
    }

    /// A channel as it is sent to: its row read and its secrets opened.
    async fn channel_settings(
        &self,
        organization_id: &str,
        channel_id: &str,
    ) -> Result<ChannelSettings, Failure> {
        let channel = self
            .store
            .get_notification_channel_any(organization_id, channel_id)
            .await
            .map_err(|error| (format!("reading the channel: {error}"), true))?;
        let Some(channel) = channel.filter(|channel| channel.deleted_at.is_none()) else {
            return Err(("channel deleted".to_owned(), false));
        };
        ChannelSettings::open(&self.vault, &channel)
            .await
            .map_err(|error| {
                let retryable = error.retryable();
                (error.to_string(), retryable)
            })
    }

    /// The organization's slug, its id when the organization is gone.
    async fn organization_slug(&self, organization_id: &str) -> Result<String, Failure> {
        let organization = self
            .store
            .find_organization(organization_id)
            .await
            .map_err(|error| (format!("reading the organization: {error}"), true))?;
        Ok(organization.map_or_else(|| organization_id.to_owned(), |found| found.slug))
    }

    /// Delivers due notifications every `poll` until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(%error, "cannot deliver notifications now");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_fourfold_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(retry_pause(base, 1), Duration::from_secs(30));
        assert_eq!(retry_pause(base, 2), Duration::from_secs(120));
        assert_eq!(retry_pause(base, 3), Duration::from_secs(480));
        assert_eq!(retry_pause(base, 5), Duration::from_secs(3600));
        assert_eq!(retry_pause(base, 30), Duration::from_secs(3600));
    }
}
