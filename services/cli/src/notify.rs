//! `certfleet notify`: where the token's organization is told about its
//! certificates (7, 3 and 1 days before expiry, and when a renewal fails):
//! email through an SMTP relay, or a webhook (signed JSON or a Slack
//! incoming webhook). Secret settings go to the server once and are never
//! shown again.

use std::path::PathBuf;
use std::process::ExitCode;

use certfleet_proto::v1::{
    CreateNotificationChannelRequest, DeleteNotificationChannelRequest,
    ListNotificationChannelsRequest, ListNotificationsRequest, Notification, NotificationChannel,
    TestNotificationChannelRequest,
};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::args::{ClientArgs, Output};
use crate::client::{self, status_error};
use crate::dns::{collect_settings, parse_setting, parse_setting_file, sorted};
use crate::output::{table, timestamp};

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add a channel that gets the organization's notifications
    ///
    /// Each certificate.expiring event (7, 3 and 1 days before the current
    /// version expires, while no newer one exists) and each certificate.failed
    /// event reaches every channel that wants it once, retried with backoff
    /// while the server or URL fails. The settings are checked now; a wrong
    /// one is refused with its name. Needs a write token.
    ///
    /// email: host, port (default by security: 587, 465, 25), security
    /// (starttls [default], tls, plain), username, password (secret), from,
    /// to (comma-separated), root_ca (PEM of a private CA; use --set-file).
    ///
    /// webhook: url, secret (secret; signs each request, see
    /// docs/OPERATIONS.md), format (json [default] or slack), root_ca.
    ///
    /// Examples:
    ///   certfleet notify add ops-mail --kind email --set host=smtp.example.com \
    ///       --set from=certfleet@example.com --set to=ops@example.com \
    ///       --set username=certfleet --set-file password=./smtp.password
    ///   certfleet notify add ops-hook --kind webhook \
    ///       --set url=https://hooks.example.com/certfleet --set-file secret=./hook.secret
    ///   certfleet notify add chat --kind webhook --set format=slack \
    ///       --set-file url=./slack-webhook-url --events failed
    #[command(verbatim_doc_comment)]
    Add {
        /// Name of the channel in this organization: 1 to 63 lower-case
        /// letters, digits and '-'.
        name: String,
        #[arg(long)]
        kind: ChannelKind,
        /// One setting as KEY=VALUE; repeat for more. Give secrets with --set-file.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
        set: Vec<(String, String)>,
        /// One setting as KEY=PATH, read from the file (a trailing newline is dropped).
        #[arg(long = "set-file", value_name = "KEY=PATH", value_parser = parse_setting_file)]
        set_file: Vec<(String, PathBuf)>,
        /// Which events: expiring, failed (comma-separated; default both).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// List the organization's channels.
    List,
    /// Send a test message through a channel now, and say whether it arrived
    /// at the server. Exits 1 with the server's answer when it did not.
    Test {
        /// Name or id.
        name: String,
    },
    /// What was sent to the channels, what waits for a retry, and what was
    /// given up (with the server's last answer), newest first.
    History {
        /// Only the notifications of this certificate.
        #[arg(long = "cert", value_name = "ID")]
        certificate: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Delete a channel; notifications it was still owed are dropped.
    Delete {
        /// Name or id.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelKind {
    Email,
    Webhook,
}

impl ChannelKind {
    fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

pub(crate) async fn run(args: &ClientArgs, command: NotifyCommand) -> anyhow::Result<ExitCode> {
    match command {
        NotifyCommand::Add {
            name,
            kind,
            set,
            set_file,
            events,
        } => {
            let request = CreateNotificationChannelRequest {
                name,
                kind: kind.as_str().to_owned(),
                settings: collect_settings(set, set_file)?,
                events,
            };
            let created = client::notifications(args)
                .await?
                .create_notification_channel(request)
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!("{}", channel_json(&created)),
                Output::Table => println!("{}", channel_details(&created)),
            }
        }
        NotifyCommand::List => {
            let list = client::notifications(args)
                .await?
                .list_notification_channels(ListNotificationChannelsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    Value::Array(list.channels.iter().map(channel_json).collect())
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> = list
                        .channels
                        .iter()
                        .map(|channel| {
                            vec![
                                channel.id.clone(),
                                channel.name.clone(),
                                channel.kind.clone(),
                                channel.events.join(","),
                                destination(channel),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["ID", "NAME", "KIND", "EVENTS", "TO"], &rows));
                }
            }
        }
        NotifyCommand::Test { name } => {
            let report = client::notifications(args)
                .await?
                .test_notification_channel(TestNotificationChannelRequest { id: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    json!({ "channel": name, "sent": true, "elapsed_ms": report.elapsed_ms })
                ),
                Output::Table => println!(
                    "test message sent through {name} in {} ms",
                    report.elapsed_ms
                ),
            }
        }
        NotifyCommand::History { certificate, limit } => {
            let history = client::notifications(args)
                .await?
                .list_notifications(ListNotificationsRequest {
                    certificate_id: certificate.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    Value::Array(
                        history
                            .notifications
                            .iter()
                            .map(notification_json)
                            .collect()
                    )
                ),
                Output::Table => {
                    let rows: Vec<Vec<String>> =
                        history.notifications.iter().map(notification_row).collect();
                    println!(
                        "{}",
                        table(
                            &[
                                "CREATED", "EVENT", "REASON", "NAMES", "CHANNEL", "STATUS",
                                "TRIES", "DETAIL"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
        NotifyCommand::Delete { name } => {
            client::notifications(args)
                .await?
                .delete_notification_channel(DeleteNotificationChannelRequest { id: name.clone() })
                .await
                .map_err(status_error)?;
            match args.output {
                Output::Json => println!("{}", json!({ "deleted": name })),
                Output::Table => println!("deleted {name}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a channel sends: its recipients or URL (host only: a webhook URL's
/// path may hold a token).
fn destination(channel: &NotificationChannel) -> String {
    match channel.kind.as_str() {
        "email" => channel.settings.get("to").cloned().unwrap_or_default(),
        _ => channel
            .settings
            .get("url")
            .map(|url| url.split('/').take(3).collect::<Vec<_>>().join("/"))
            .unwrap_or_default(),
    }
}

fn channel_json(channel: &NotificationChannel) -> Value {
    json!({
        "id": channel.id,
        "organization_id": channel.organization_id,
        "name": channel.name,
        "kind": channel.kind,
        "events": channel.events,
        "settings": sorted(&channel.settings),
        "secret_settings": channel.secret_settings,
        "created_at": timestamp(channel.created_at),
    })
}

fn channel_details(channel: &NotificationChannel) -> String {
    let mut lines = vec![
        format!("id:        {}", channel.id),
        format!("name:      {}", channel.name),
        format!("kind:      {}", channel.kind),
        format!("events:    {}", channel.events.join(", ")),
        format!("created:   {}", timestamp(channel.created_at)),
        "settings:".to_owned(),
    ];
    for (key, value) in sorted(&channel.settings) {
        let shown = if key == "root_ca" { "(PEM)" } else { value };
        lines.push(format!("  {key} = {shown}"));
    }
    for key in &channel.secret_settings {
        lines.push(format!("  {key} = (secret, set; never shown)"));
    }
    lines.join("\n")
}

fn notification_json(notification: &Notification) -> Value {
    json!({
        "event_id": notification.event_id,
        "event_type": notification.event_type,
        "reason": notification.reason,
        "certificate_id": notification.certificate_id,
        "names": notification.names,
        "channel_id": notification.channel_id,
        "channel": notification.channel,
        "status": notification.status,
        "attempts": notification.attempts,
        "next_attempt_at": timestamp(notification.next_attempt_at),
        "last_error": notification.last_error,
        "created_at": timestamp(notification.created_at),
        "sent_at": timestamp(notification.sent_at),
    })
}

/// One line: when, what, to which channel, and how it went (sent when; the
/// next try; or why it was given up).
fn notification_row(notification: &Notification) -> Vec<String> {
    let detail = match notification.status.as_str() {
        "sent" => format!("sent {}", timestamp(notification.sent_at)),
        "pending" if notification.attempts > 0 => format!(
            "next try {}: {}",
            timestamp(notification.next_attempt_at),
            notification.last_error
        ),
        "pending" => "due now".to_owned(),
        _ => notification.last_error.clone(),
    };
    vec![
        timestamp(notification.created_at),
        notification
            .event_type
            .strip_prefix("certificate.")
            .unwrap_or(&notification.event_type)
            .to_owned(),
        notification.reason.clone(),
        notification.names.join(","),
        notification.channel.clone(),
        notification.status.clone(),
        notification.attempts.to_string(),
        detail,
    ]
}
