//! A channel as the API takes it (a kind, a map of settings, the events it
//! wants) and as the store keeps it (plain settings as JSON, secret ones
//! sealed apart): parsed and checked once, so a bad channel is refused when
//! it is configured, naming the setting and the value.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::{
    Channel, EmailChannel, NoticeKind, SmtpSecurity, ValidationError, WebhookChannel,
    WebhookFormat, validate,
};

/// The key under which the wanted events are kept with the plain settings.
const EVENTS_KEY: &str = "events";

/// A checked channel and the events it wants.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub channel: Channel,
    pub events: Vec<NoticeKind>,
}

fn invalid(field: &str, value: &str, problem: &str) -> ValidationError {
    ValidationError {
        field: field.to_owned(),
        message: format!("{value:?} {problem}"),
    }
}

/// `expiring` / `failed` (as in `--events`), or the event type names.
fn parse_event(value: &str) -> Result<NoticeKind, ValidationError> {
    match value.trim() {
        "expiring" | "certificate.expiring" => Ok(NoticeKind::Expiring),
        "failed" | "certificate.failed" => Ok(NoticeKind::Failed),
        other => Err(invalid(
            "events",
            other,
            "is not an event; use expiring or failed",
        )),
    }
}

/// The short name of an event kind, as `events` takes it.
pub fn event_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Expiring => "expiring",
        NoticeKind::Failed => "failed",
        NoticeKind::Test => "test",
    }
}

impl ChannelSettings {
    /// `kind` is `email` or `webhook`; `settings` as listed in the API's
    /// documentation; `events` empty means both.
    pub fn parse(
        kind: &str,
        settings: BTreeMap<String, String>,
        events: &[String],
    ) -> Result<ChannelSettings, ValidationError> {
        let wanted = parse_events(events)?;
        let channel = match kind {
            "email" => Channel::Email(email(settings)?),
            "webhook" => Channel::Webhook(webhook(settings)?),
            other => {
                return Err(invalid(
                    "kind",
                    other,
                    "is not a channel kind; use email or webhook",
                ));
            }
        };
        validate(&channel).map_err(in_settings)?;
        Ok(ChannelSettings {
            channel,
            events: wanted,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.channel {
            Channel::Email(_) => "email",
            Channel::Webhook(_) => "webhook",
        }
    }

    pub fn wants(&self, kind: NoticeKind) -> bool {
        self.events.contains(&kind)
    }

    /// The plain settings (with the events) and the secret ones, for storing
    /// apart.
    pub fn split(
        &self,
    ) -> (
        BTreeMap<String, String>,
        BTreeMap<String, Zeroizing<String>>,
    ) {
        let mut plain = BTreeMap::new();
        let mut secret = BTreeMap::new();
        match &self.channel {
            Channel::Email(email) => {
                plain.insert("host".to_owned(), email.host.clone());
                plain.insert("port".to_owned(), email.port.to_string());
                plain.insert("security".to_owned(), email.security.to_string());
                if let Some(username) = &email.username {
                    plain.insert("username".to_owned(), username.clone());
                }
                plain.insert("from".to_owned(), email.from.clone());
                plain.insert("to".to_owned(), email.to.join(","));
                if let Some(root) = &email.root_ca_pem {
                    plain.insert("root_ca".to_owned(), root.clone());
                }
                if let Some(password) = &email.password {
                    secret.insert("password".to_owned(), password.clone());
                }
            }
            Channel::Webhook(webhook) => {
                plain.insert("url".to_owned(), webhook.url.clone());
                plain.insert("format".to_owned(), webhook.format.to_string());
                if let Some(root) = &webhook.root_ca_pem {
                    plain.insert("root_ca".to_owned(), root.clone());
                }
                if let Some(value) = &webhook.secret {
                    secret.insert("secret".to_owned(), value.clone());
                }
            }
        }
        plain.insert(
            EVENTS_KEY.to_owned(),
            self.events
                .iter()
                .map(|kind| event_name(*kind))
                .collect::<Vec<_>>()
                .join(","),
        );
        (plain, secret)
    }

    /// A stored channel: its plain settings (JSON object, with the events)
    /// and its opened secret ones (JSON object), if any.
    pub fn from_stored(
        kind: &str,
        plain_json: &str,
        secrets_json: Option<&[u8]>,
    ) -> Result<ChannelSettings, ValidationError> {
        let mut settings: BTreeMap<String, String> =
            serde_json::from_str(plain_json).map_err(|error| {
                ValidationError::new(
                    "settings",
                    format!(
                        "the stored settings are not a JSON object of strings ({error}); \
                         delete the channel and add it again"
                    ),
                )
            })?;
        if let Some(secrets) = secrets_json {
            let secrets: BTreeMap<String, String> =
                serde_json::from_slice(secrets).map_err(|_| {
                    ValidationError::new(
                        "settings",
                        "the stored secret settings are not a JSON object of strings; \
                         delete the channel and add it again",
                    )
                })?;
            settings.extend(secrets);
        }
        let events: Vec<String> = settings.remove(EVENTS_KEY).into_iter().collect();
        ChannelSettings::parse(kind, settings, &events)
    }
}

/// The wanted events, each item one name or a comma-separated list; none
/// means both kinds.
fn parse_events(events: &[String]) -> Result<Vec<NoticeKind>, ValidationError> {
    let mut wanted = Vec::new();
    for event in events
        .iter()
        .flat_map(|e| e.split(','))
        .filter(|e| !e.trim().is_empty())
    {
        let kind = parse_event(event)?;
        if !wanted.contains(&kind) {
            wanted.push(kind);
        }
    }
    if wanted.is_empty() {
        wanted = vec![NoticeKind::Expiring, NoticeKind::Failed];
    }
    Ok(wanted)
}

/// The events a stored channel wants, read from its plain settings alone
/// (without opening its secrets), as [`ChannelSettings::from_stored`] reads
/// them; `None` when the settings do not read (delivery then reports why).
pub(crate) fn stored_events(plain_json: &str) -> Option<Vec<NoticeKind>> {
    let mut settings: BTreeMap<String, String> = serde_json::from_str(plain_json).ok()?;
    let events: Vec<String> = settings.remove(EVENTS_KEY).into_iter().collect();
    parse_events(&events).ok()
}

/// A channel check's error, its field named as a setting.
fn in_settings(error: ValidationError) -> ValidationError {
    ValidationError {
        field: format!("settings.{}", error.field),
        message: error.message,
    }
}

fn take(settings: &mut BTreeMap<String, String>, name: &str) -> Option<String> {
    settings
        .remove(name)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn required(
    settings: &mut BTreeMap<String, String>,
    name: &str,
) -> Result<String, ValidationError> {
    take(settings, name).ok_or_else(|| ValidationError {
        field: format!("settings.{name}"),
        message: "is required".to_owned(),
    })
}

fn no_others(settings: BTreeMap<String, String>, known: &str) -> Result<(), ValidationError> {
    match settings.into_keys().next() {
        None => Ok(()),
        Some(name) => Err(ValidationError {
            field: format!("settings.{name}"),
            message: format!("is not a setting of this kind; known: {known}"),
        }),
    }
}

fn email(mut settings: BTreeMap<String, String>) -> Result<EmailChannel, ValidationError> {
    let security = match take(&mut settings, "security") {
        Some(value) => value.parse::<SmtpSecurity>().map_err(in_settings)?,
        None => SmtpSecurity::StartTls,
    };
    let port = match take(&mut settings, "port") {
        Some(value) => value
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("settings.port", &value, "is not a port (1-65535)"))?,
        None => match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        },
    };
    let channel = EmailChannel {
        host: required(&mut settings, "host")?,
        port,
        security,
        username: take(&mut settings, "username"),
        password: settings
            .remove("password")
            .filter(|p| !p.is_empty())
            .map(Zeroizing::new),
        from: required(&mut settings, "from")?,
        to: required(&mut settings, "to")?
            .split(',')
            .map(|to| to.trim().to_owned())
            .filter(|to| !to.is_empty())
            .collect(),
        root_ca_pem: take(&mut settings, "root_ca"),
    };
    no_others(
        settings,
        "host, port, security, username, password, from, to, root_ca",
    )?;
    Ok(channel)
}

fn webhook(mut settings: BTreeMap<String, String>) -> Result<WebhookChannel, ValidationError> {
    let format = match take(&mut settings, "format") {
        Some(value) => value.parse::<WebhookFormat>().map_err(in_settings)?,
        None => WebhookFormat::Json,
    };
    let channel = WebhookChannel {
        url: required(&mut settings, "url")?,
        secret: settings
            .remove("secret")
            .filter(|s| !s.is_empty())
            .map(Zeroizing::new),
        format,
        root_ca_pem: take(&mut settings, "root_ca"),
    };
    no_others(settings, "url, secret, format, root_ca")?;
    Ok(channel)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn email_settings_round_trip_with_the_password_apart() {
        let parsed = ChannelSettings::parse(
            "email",
            map(&[
                ("host", "smtp.example.com"),
                ("security", "tls"),
                ("username", "certfleet"),
                ("password", "hunter2"),
                ("from", "certfleet@example.com"),
                ("to", "ops@example.com, oncall@example.com"),
            ]),
            &["expiring".to_owned()],
        )
        .unwrap();
        assert!(parsed.wants(NoticeKind::Expiring));
        assert!(!parsed.wants(NoticeKind::Failed));
        let (plain, secret) = parsed.split();
        assert_eq!(plain["port"], "465");
        assert_eq!(plain["events"], "expiring");
        assert!(!plain.contains_key("password"));
        assert_eq!(secret["password"].as_str(), "hunter2");
        let secrets = serde_json::to_vec(
            &secret
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap();
        let stored = ChannelSettings::from_stored(
            "email",
            &serde_json::to_string(&plain).unwrap(),
            Some(&secrets),
        )
        .unwrap();
        let Channel::Email(email) = stored.channel else {
            panic!("not email")
        };
        assert_eq!(email.to, ["ops@example.com", "oncall@example.com"]);
        assert_eq!(email.password.unwrap().as_str(), "hunter2");
        assert_eq!(stored.events, [NoticeKind::Expiring]);
    }

    #[test]
    fn stored_events_read_as_from_stored_does() {
        let parsed = ChannelSettings::parse(
            "webhook",
            map(&[("url", "https://h/x")]),
            &["failed".to_owned()],
        )
        .unwrap();
        let (plain, _) = parsed.split();
        let plain = serde_json::to_string(&plain).unwrap();
        assert_eq!(stored_events(&plain), Some(vec![NoticeKind::Failed]));
        assert_eq!(
            stored_events(r#"{"url":"https://h/x","events":""}"#),
            Some(vec![NoticeKind::Expiring, NoticeKind::Failed])
        );
        assert_eq!(stored_events("not json"), None);
    }

    #[test]
    fn bad_settings_name_the_field_and_value() {
        let error = ChannelSettings::parse("email", map(&[("host", "h"), ("from", "a@b.c")]), &[])
            .unwrap_err();
        assert_eq!(error.field, "settings.to");
        let error = ChannelSettings::parse(
            "webhook",
            map(&[("url", "https://h/x"), ("colour", "red")]),
            &[],
        )
        .unwrap_err();
        assert_eq!(error.field, "settings.colour");
        let error = ChannelSettings::parse(
            "webhook",
            map(&[("url", "https://h/x")]),
            &["expired".to_owned()],
        )
        .unwrap_err();
        assert_eq!(error.field, "events");
        assert!(error.message.contains("expired"));
        let error = ChannelSettings::parse("pager", BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(error.field, "kind");
        let error = ChannelSettings::parse(
            "email",
            map(&[
                ("host", "h"),
                ("port", "99999"),
                ("from", "a@b.c"),
                ("to", "d@e.f"),
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(error.field, "settings.port");
        assert!(error.message.contains("99999"));
        let error =
            ChannelSettings::parse("webhook", map(&[("url", "ftp://h/x")]), &[]).unwrap_err();
        assert!(error.field.starts_with("settings."), "{error:?}");
    }
}
