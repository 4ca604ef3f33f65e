//! Notification channels of an organization, the notifications the notifier
//! owes them (one row per event and channel, so each is sent once), and what
//! proxy agents report about installed certificates.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::{Effects, InstallationRow, NotificationChannelRow, NotificationRow};
use crate::schema::{installations, notification_channels, notifications_sent};
use crate::{Store, StoreError, transaction, with_conn, write_effects};

/// Notification statuses.
pub const NOTIFICATION_PENDING: &str = "pending";
pub const NOTIFICATION_SENT: &str = "sent";
pub const NOTIFICATION_FAILED: &str = "failed";

impl Store {
    /// Records a channel; a name in use is [`StoreError::Conflict`].
    pub async fn create_notification_channel(
        &self,
        row: NotificationChannelRow,
        effects: Effects,
    ) -> Result<NotificationChannelRow, StoreError> {
        let name = row.name.clone();
        let result = transaction!(self, |conn| {
            diesel::insert_into(notification_channels::table)
                .values(&row)
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(row)
        });
        match result {
            Err(StoreError::Query(error)) if StoreError::is_unique_violation(&error) => Err(
                StoreError::Conflict(format!("a notification channel named {name:?}")),
            ),
            other => other,
        }
    }

    /// The organization's channels, by name.
    pub async fn list_notification_channels(
        &self,
        organization_id: &str,
    ) -> Result<Vec<NotificationChannelRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(notification_channels::table
                .filter(notification_channels::organization_id.eq(organization_id))
                .filter(notification_channels::deleted_at.is_null())
                .order(notification_channels::name.asc())
                .select(NotificationChannelRow::as_select())
                .load(conn)
                .await?)
        })
    }

    /// A channel by id or by name; deleted ones are gone.
    pub async fn find_notification_channel(
        &self,
        organization_id: &str,
        id_or_name: &str,
    ) -> Result<Option<NotificationChannelRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(notification_channels::table
                .filter(notification_channels::organization_id.eq(organization_id))
                .filter(notification_channels::deleted_at.is_null())
                .filter(
                    notification_channels::id
                        .eq(id_or_name)
                        .or(notification_channels::name.eq(id_or_name)),
                )
                .select(NotificationChannelRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// A channel of the organization by id, deleted or not (for a
    /// notification claimed before its channel was deleted).
    pub async fn get_notification_channel_any(
        &self,
        organization_id: &str,
        id: &str,
    ) -> Result<Option<NotificationChannelRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(notification_channels::table
                .filter(notification_channels::organization_id.eq(organization_id))
                .filter(notification_channels::id.eq(id))
                .select(NotificationChannelRow::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Deletes a channel; what it still owed is marked failed ("channel
    /// deleted") and never sent.
    pub async fn delete_notification_channel(
        &self,
        organization_id: &str,
        id: &str,
        now_ms: i64,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            let deleted = diesel::update(notification_channels::table)
                .filter(notification_channels::organization_id.eq(organization_id))
                .filter(notification_channels::id.eq(id))
                .filter(notification_channels::deleted_at.is_null())
                .set((
                    notification_channels::deleted_at.eq(Some(now_ms)),
                    notification_channels::updated_at.eq(now_ms),
                ))
                .execute(conn)
                .await?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            diesel::update(notifications_sent::table)
                .filter(notifications_sent::channel_id.eq(id))
                .filter(notifications_sent::status.eq(NOTIFICATION_PENDING))
                .set((
                    notifications_sent::status.eq(NOTIFICATION_FAILED),
                    notifications_sent::next_attempt_at.eq(None::<i64>),
                    notifications_sent::last_error.eq(Some("channel deleted")),
                ))
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// Queues `event` (protobuf) for each channel in `channel_ids`, due now.
    /// An (event, channel) pair queued before, whatever became of it, is left
    /// alone: a redelivered event is never sent twice. How many were queued.
    pub async fn enqueue_notifications(
        &self,
        event_id: &str,
        organization_id: &str,
        certificate_id: &str,
        event: &[u8],
        channel_ids: &[String],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        if channel_ids.is_empty() {
            return Ok(0);
        }
        transaction!(self, |conn| {
            let mut queued = 0;
            for channel_id in channel_ids {
                queued += diesel::insert_into(notifications_sent::table)
                    .values(NotificationRow {
                        event_id: event_id.to_owned(),
                        channel_id: channel_id.clone(),
                        organization_id: organization_id.to_owned(),
                        certificate_id: certificate_id.to_owned(),
                        event: event.to_vec(),
                        status: NOTIFICATION_PENDING.to_owned(),
                        attempts: 0,
                        next_attempt_at: Some(now_ms),
                        claimed_until: None,
                        last_error: None,
                        created_at: now_ms,
                        sent_at: None,
                    })
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            Ok(queued)
        })
    }

    /// Claims up to `limit` pending notifications due by `now_ms` for
    /// `claim_ms` (another notifier skips them meanwhile; a notifier that dies
    /// holding them lets the claim lapse), oldest due first.
    pub async fn claim_due_notifications(
        &self,
        now_ms: i64,
        claim_ms: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let until = now_ms.saturating_add(claim_ms);
        transaction!(self, |conn| {
            let due: Vec<NotificationRow> = notifications_sent::table
                .filter(notifications_sent::status.eq(NOTIFICATION_PENDING))
                .filter(notifications_sent::next_attempt_at.le(now_ms))
                .filter(
                    notifications_sent::claimed_until
                        .is_null()
                        .or(notifications_sent::claimed_until.lt(now_ms)),
                )
                .order(notifications_sent::next_attempt_at.asc())
                .limit(limit)
                .select(NotificationRow::as_select())
                .load(conn)
                .await?;
            let mut claimed = Vec::with_capacity(due.len());
            for mut row in due {
                // Compare-and-set on the claim seen, so two notifiers never
                // both take a row.
                let taken = diesel::update(notifications_sent::table)
                    .filter(notifications_sent::event_id.eq(&row.event_id))
                    .filter(notifications_sent::channel_id.eq(&row.channel_id))
                    .filter(notifications_sent::status.eq(NOTIFICATION_PENDING))
                    .filter(
                        notifications_sent::claimed_until
                            .is_null()
                            .or(notifications_sent::claimed_until.lt(now_ms)),
                    )
                    .set(notifications_sent::claimed_until.eq(Some(until)))
                    .execute(conn)
                    .await?;
                if taken == 1 {
                    row.claimed_until = Some(until);
                    claimed.push(row);
                }
            }
            Ok(claimed)
        })
    }

    /// Records the outcome of one delivery attempt of a claimed notification:
    /// sent, to be retried at `retry_at`, or (no `retry_at`, with an error)
    /// given up.
    pub async fn finish_notification_attempt(
        &self,
        event_id: &str,
        channel_id: &str,
        outcome: Result<(), (&str, Option<i64>)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            let target = notifications_sent::table
                .filter(notifications_sent::event_id.eq(event_id))
                .filter(notifications_sent::channel_id.eq(channel_id))
                .filter(notifications_sent::status.eq(NOTIFICATION_PENDING));
            let attempts = notifications_sent::attempts + 1;
            match outcome {
                Ok(()) => {
                    diesel::update(target)
                        .set((
                            notifications_sent::status.eq(NOTIFICATION_SENT),
                            notifications_sent::attempts.eq(attempts),
                            notifications_sent::sent_at.eq(Some(now_ms)),
                            notifications_sent::next_attempt_at.eq(None::<i64>),
                            notifications_sent::claimed_until.eq(None::<i64>),
                            notifications_sent::last_error.eq(None::<String>),
                        ))
                        .execute(conn)
                        .await?;
                }
                Err((error, retry_at)) => {
                    let status = if retry_at.is_some() {
                        NOTIFICATION_PENDING
                    } else {
                        NOTIFICATION_FAILED
                    };
                    diesel::update(target)
                        .set((
                            notifications_sent::status.eq(status),
                            notifications_sent::attempts.eq(attempts),
                            notifications_sent::next_attempt_at.eq(retry_at),
                            notifications_sent::claimed_until.eq(None::<i64>),
                            notifications_sent::last_error.eq(Some(error)),
                        ))
                        .execute(conn)
                        .await?;
                }
            }
            Ok(())
        })
    }

    /// The notifications of an organization's certificate (or of all its
    /// certificates), newest first.
    pub async fn list_notifications(
        &self,
        organization_id: &str,
        certificate_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = notifications_sent::table
                .filter(notifications_sent::organization_id.eq(organization_id))
                .into_boxed();
            if let Some(certificate_id) = certificate_id {
                query = query.filter(notifications_sent::certificate_id.eq(certificate_id));
            }
            Ok(query
                .order(notifications_sent::created_at.desc())
                .limit(limit)
                .select(NotificationRow::as_select())
                .load(conn)
                .await?)
        })
    }

    /// Records what an agent reports (replacing its previous report for the
    /// certificate), with `effects` (the installed / install_failed event and
    /// the audit entry).
    pub async fn record_installation(
        &self,
        row: InstallationRow,
        effects: Effects,
    ) -> Result<(), StoreError> {
        transaction!(self, |conn| {
            diesel::insert_into(installations::table)
                .values(&row)
                .on_conflict((installations::certificate_id, installations::agent))
                .do_update()
                .set(&row)
                .execute(conn)
                .await?;
            write_effects!(conn, effects);
            Ok(())
        })
    }

    /// What each agent last reported for a certificate, by agent name.
    pub async fn installations(
        &self,
        organization_id: &str,
        certificate_id: &str,
    ) -> Result<Vec<InstallationRow>, StoreError> {
        with_conn!(self, |conn| {
            Ok(installations::table
                .filter(installations::organization_id.eq(organization_id))
                .filter(installations::certificate_id.eq(certificate_id))
                .order(installations::agent.asc())
                .select(InstallationRow::as_select())
                .load(conn)
                .await?)
        })
    }
}
