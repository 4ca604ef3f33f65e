//! NotificationService: where an organization is told about expiring and
//! failing certificates. Secret settings (SMTP password, webhook signing
//! secret) are sealed and never returned; responses carry only their names.
//! Every store call is scoped by the caller's organization.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use certfleet_core::{InputError, Role};
use certfleet_notify::{
    ChannelSettings, Notice, NoticeKind, OpenError, deliver, event_name, seal_secrets,
};
use certfleet_proto::v1 as pb;
use certfleet_proto::v1::notification_service_server::NotificationService;
use certfleet_store::{AuditEntry, Effects, NotificationChannelRow, new_id};
use tonic::{Request, Response, Status};

use crate::auth::{Authenticator, OrgCaller as Caller};
use crate::convert::{check_name, seconds};
use crate::{ApiError, ApiState};

/// How long `TestNotificationChannel` waits for the server.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The gRPC implementation of `certfleet.v1.NotificationService`.
#[derive(Clone)]
pub struct NotificationApi {
    state: ApiState,
    auth: Authenticator,
}

impl std::fmt::Debug for NotificationApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationApi").finish_non_exhaustive()
    }
}

fn not_found(id_or_name: &str) -> ApiError {
    ApiError::NotFound(format!("notification channel {id_or_name:?} not found"))
}

impl NotificationApi {
    pub(crate) fn new(state: ApiState, auth: Authenticator) -> Self {
        NotificationApi { state, auth }
    }

    async fn caller<T>(&self, request: &Request<T>, needed: Role) -> Result<Caller, ApiError> {
        self.auth
            .organization_caller(request, needed, "notification channel calls")
            .await
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateNotificationChannelRequest,
    ) -> Result<pb::NotificationChannel, ApiError> {
        check_name(&request.name)?;
        let values: BTreeMap<String, String> = request.settings.into_iter().collect();
        let parsed = ChannelSettings::parse(&request.kind, values, &request.events)?;
        let (plain, secret) = parsed.split();
        let organization_id = caller.organization_id.as_str();
        let id = new_id();
        let settings = serde_json::to_string(&plain)
            .map_err(|error| ApiError::Internal(format!("channel settings: {error}")))?;
        let secret_names: Vec<String> = secret.keys().cloned().collect();
        let secrets_sealed = seal_secrets(&self.state.vault, organization_id, &id, &secret)
            .await
            .map_err(|error| ApiError::vault("seal channel secrets", error))?;
        drop(secret);
        let now = self.state.clock.now_ms();
        let row = NotificationChannelRow {
            id: id.clone(),
            organization_id: organization_id.to_owned(),
            name: request.name,
            kind: parsed.kind().to_owned(),
            settings,
            secrets_sealed,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "notification_channel.created",
            Some(&id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!("name {} kind {}", row.name, row.kind);
        let created = self
            .state
            .store
            .create_notification_channel(
                row,
                Effects {
                    outbox: Vec::new(),
                    audit: vec![audit],
                },
            )
            .await
            .map_err(|error| ApiError::store("create notification channel", error))?;
        tracing::info!(organization_id, channel_id = %created.id, name = %created.name, kind = %created.kind, "notification channel created");
        channel_to_proto(&created, secret_names)
    }

    async fn find(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<NotificationChannelRow, ApiError> {
        self.state
            .store
            .find_notification_channel(&caller.organization_id, id_or_name)
            .await
            .map_err(|error| ApiError::store("find notification channel", error))?
            .ok_or_else(|| not_found(id_or_name))
    }

    async fn list(
        &self,
        caller: &Caller,
    ) -> Result<pb::ListNotificationChannelsResponse, ApiError> {
        let rows = self
            .state
            .store
            .list_notification_channels(&caller.organization_id)
            .await
            .map_err(|error| ApiError::store("list notification channels", error))?;
        let mut channels = Vec::with_capacity(rows.len());
        for row in &rows {
            let names = if row.secrets_sealed.is_some() {
                match row.kind.as_str() {
                    "email" => vec!["password".to_owned()],
                    _ => vec!["secret".to_owned()],
                }
            } else {
                Vec::new()
            };
            channels.push(channel_to_proto(row, names)?);
        }
        Ok(pb::ListNotificationChannelsResponse { channels })
    }

    async fn delete(&self, caller: &Caller, id_or_name: &str) -> Result<(), ApiError> {
        let row = self.find(caller, id_or_name).await?;
        let organization_id = caller.organization_id.as_str();
        let now = self.state.clock.now_ms();
        let mut audit = AuditEntry::new(
            Some(organization_id),
            &caller.token_id,
            "notification_channel.deleted",
            Some(&row.id),
            now,
        )
        .from_remote(caller.remote_addr.as_deref());
        audit.details = format!("name {}", row.name);
        let missing = format!("notification channel {id_or_name:?} not found");
        self.state
            .store
            .delete_notification_channel(
                organization_id,
                &row.id,
                now,
                Effects {
                    outbox: Vec::new(),
                    audit: vec![audit],
                },
            )
            .await
            .map_err(|error| {
                ApiError::from_store("delete notification channel", &missing, error)
            })?;
        tracing::info!(organization_id, channel_id = %row.id, name = %row.name, "notification channel deleted");
        Ok(())
    }

    /// Sends a test message through the channel now.
    async fn test(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<pb::TestNotificationChannelResponse, ApiError> {
        let row = self.find(caller, id_or_name).await?;
        let settings = ChannelSettings::open(&self.state.vault, &row)
            .await
            .map_err(|error| match error {
                OpenError::Vault(error) => ApiError::vault("open channel secrets", error),
                OpenError::Settings(error) => ApiError::FailedPrecondition(format!(
                    "the channel {:?} cannot be used: {error}; delete it and add it again",
                    row.name
                )),
            })?;
        let slug = self
            .state
            .store
            .find_organization(&caller.organization_id)
            .await
            .map_err(|error| ApiError::store("find organization", error))?
            .map(|organization| organization.slug)
            .unwrap_or_default();
        let now = self.state.clock.now_ms();
        let notice = Notice {
            event_id: new_id(),
            kind: NoticeKind::Test,
            organization: slug,
            certificate_id: String::new(),
            names: Vec::new(),
            serial: String::new(),
            not_after: None,
            reason: format!("channel {} test", row.name),
            error: String::new(),
            time: now,
        };
        let started = Instant::now();
        deliver(&settings.channel, &notice, TEST_TIMEOUT)
            .await
            .map_err(|error| {
                ApiError::FailedPrecondition(format!(
                    "the test message did not get through: {}",
                    error.message
                ))
            })?;
        tracing::info!(organization_id = %caller.organization_id, channel_id = %row.id, "notification channel test sent");
        Ok(pb::TestNotificationChannelResponse {
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

impl NotificationApi {
    async fn history(
        &self,
        caller: &Caller,
        request: &pb::ListNotificationsRequest,
    ) -> Result<pb::ListNotificationsResponse, ApiError> {
        let limit = match request.limit {
            0 => 50,
            limit @ 1..=500 => limit,
            other => {
                return Err(InputError::new("limit", other.to_string(), "must be 1 to 500").into());
            }
        };
        let certificate = Some(request.certificate_id.trim()).filter(|id| !id.is_empty());
        let rows = self
            .state
            .store
            .list_notifications(&caller.organization_id, certificate, i64::from(limit))
            .await
            .map_err(|error| ApiError::store("list notifications", error))?;
        let mut channel_names: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        let mut notifications = Vec::with_capacity(rows.len());
        for row in rows {
            if !channel_names.contains_key(&row.channel_id) {
                let name = self
                    .state
                    .store
                    .get_notification_channel_any(&caller.organization_id, &row.channel_id)
                    .await
                    .map_err(|error| ApiError::store("find notification channel", error))?
                    .map(|channel| channel.name)
                    .unwrap_or_default();
                channel_names.insert(row.channel_id.clone(), name);
            }
            let event = <pb::CertificateEvent as prost::Message>::decode(row.event.as_slice())
                .unwrap_or_default();
            let event_type = certfleet_notify::notice_kind(&event)
                .map(|kind| kind.as_str().to_owned())
                .unwrap_or_default();
            notifications.push(pb::Notification {
                event_id: row.event_id,
                event_type,
                reason: event.reason,
                certificate_id: row.certificate_id,
                names: event.names,
                channel: channel_names
                    .get(&row.channel_id)
                    .cloned()
                    .unwrap_or_default(),
                channel_id: row.channel_id,
                status: row.status,
                attempts: u32::try_from(row.attempts).unwrap_or(0),
                next_attempt_at: row.next_attempt_at.map_or(0, seconds),
                last_error: row.last_error.unwrap_or_default(),
                created_at: seconds(row.created_at),
                sent_at: row.sent_at.map_or(0, seconds),
            });
        }
        Ok(pb::ListNotificationsResponse { notifications })
    }
}

fn channel_to_proto(
    row: &NotificationChannelRow,
    secret_settings: Vec<String>,
) -> Result<pb::NotificationChannel, ApiError> {
    let mut settings: BTreeMap<String, String> = serde_json::from_str(&row.settings)
        .map_err(|error| ApiError::Internal(format!("channel {} settings: {error}", row.id)))?;
    let events = settings
        .remove("events")
        .map(|events| {
            events
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| {
            [NoticeKind::Expiring, NoticeKind::Failed]
                .into_iter()
                .map(|kind| event_name(kind).to_owned())
                .collect()
        });
    Ok(pb::NotificationChannel {
        id: row.id.clone(),
        organization_id: row.organization_id.clone(),
        name: row.name.clone(),
        kind: row.kind.clone(),
        settings: settings.into_iter().collect(),
        secret_settings,
        events,
        created_at: seconds(row.created_at),
    })
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn create_notification_channel(
        &self,
        request: Request<pb::CreateNotificationChannelRequest>,
    ) -> Result<Response<pb::NotificationChannel>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        Ok(Response::new(
            self.create(&caller, request.into_inner()).await?,
        ))
    }

    async fn list_notification_channels(
        &self,
        request: Request<pb::ListNotificationChannelsRequest>,
    ) -> Result<Response<pb::ListNotificationChannelsResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        Ok(Response::new(self.list(&caller).await?))
    }

    async fn delete_notification_channel(
        &self,
        request: Request<pb::DeleteNotificationChannelRequest>,
    ) -> Result<Response<pb::DeleteNotificationChannelResponse>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        self.delete(&caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteNotificationChannelResponse {}))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        Ok(Response::new(
            self.history(&caller, request.get_ref()).await?,
        ))
    }

    async fn test_notification_channel(
        &self,
        request: Request<pb::TestNotificationChannelRequest>,
    ) -> Result<Response<pb::TestNotificationChannelResponse>, Status> {
        let caller = self.caller(&request, Role::Write).await?;
        Ok(Response::new(
            self.test(&caller, &request.get_ref().id).await?,
        ))
    }
}
