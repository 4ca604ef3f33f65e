//! Where notices go: an SMTP relay or a webhook URL, and the checks that
//! catch a bad channel when it is configured rather than when it is used.

use std::fmt;
use std::str::FromStr;

use lettre::message::Mailbox;
use zeroize::Zeroizing;

/// A destination for notices.
#[derive(Debug, Clone)]
pub enum Channel {
    Email(EmailChannel),
    Webhook(WebhookChannel),
}

/// Mail through an SMTP relay.
#[derive(Clone)]
pub struct EmailChannel {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
    /// Sender, `user@example.com` or `Name <user@example.com>`.
    pub from: String,
    pub to: Vec<String>,
    /// Extra trusted root (PEM) for a private SMTP CA; the platform's roots
    /// are trusted too.
    pub root_ca_pem: Option<String>,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EmailChannel")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("root_ca_pem", &self.root_ca_pem.is_some())
            .finish()
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; fails when the server does
    /// not offer it (usually port 587).
    StartTls,
    /// TLS from the first byte, SMTPS (usually port 465).
    Tls,
    /// No encryption (a relay on loopback or a private network).
    Plain,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::Plain => "plain",
        }
    }
}

impl fmt::Display for SmtpSecurity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for SmtpSecurity {
    type Err = ValidationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "plain" => Ok(SmtpSecurity::Plain),
            other => Err(ValidationError::new(
                "security",
                format!("{other:?} is not one of starttls, tls, plain"),
            )),
        }
    }
}

/// An HTTP POST per notice.
#[derive(Clone)]
pub struct WebhookChannel {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Key of the `X-Certfleet-Signature` HMAC; no signature without one.
    pub secret: Option<Zeroizing<String>>,
    pub format: WebhookFormat,
    /// Extra trusted root (PEM) for a private CA; the platform's roots are
    /// trusted too.
    pub root_ca_pem: Option<String>,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("WebhookChannel")
            .field("url", &crate::webhook::redact_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("format", &self.format)
            .field("root_ca_pem", &self.root_ca_pem.is_some())
            .finish()
    }
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// The certfleet event object (see [`deliver`](crate::deliver)).
    Json,
    /// `{"text": …}`, what a Slack incoming webhook accepts.
    Slack,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
        }
    }
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for WebhookFormat {
    type Err = ValidationError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "json" => Ok(WebhookFormat::Json),
            "slack" => Ok(WebhookFormat::Slack),
            other => Err(ValidationError::new(
                "format",
                format!("{other:?} is not one of json, slack"),
            )),
        }
    }
}

/// A channel setting that cannot work; names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks a channel without contacting it.
pub fn validate(channel: &Channel) -> Result<(), ValidationError> {
    match channel {
        Channel::Email(email) => validate_email(email),
        Channel::Webhook(webhook) => validate_webhook(webhook),
    }
}

fn validate_email(channel: &EmailChannel) -> Result<(), ValidationError> {
    let host = channel.host.as_str();
    if host.is_empty() {
        return Err(ValidationError::new("host", "is empty"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/:@".contains(c))
    {
        return Err(ValidationError::new(
            "host",
            format!("{host:?} is not a host name or IP address"),
        ));
    }
    if channel.port == 0 {
        return Err(ValidationError::new("port", "0 is not a usable port"));
    }
    parse_mailbox("from", &channel.from)?;
    if channel.to.is_empty() {
        return Err(ValidationError::new("to", "has no recipient"));
    }
    for (index, recipient) in channel.to.iter().enumerate() {
        parse_mailbox(&format!("to[{index}]"), recipient)?;
    }
    match (&channel.username, &channel.password) {
        (Some(username), _) if username.is_empty() => {
            return Err(ValidationError::new("username", "is empty"));
        }
        (Some(_), None) => {
            return Err(ValidationError::new(
                "password",
                "is missing for the username",
            ));
        }
        (None, Some(_)) => {
            return Err(ValidationError::new(
                "username",
                "is missing for the password",
            ));
        }
        _ => {}
    }
    if channel.password.is_some() && channel.security == SmtpSecurity::Plain {
        return Err(ValidationError::new(
            "security",
            "plain would send the password unencrypted; use starttls or tls",
        ));
    }
    if let Some(pem) = &channel.root_ca_pem {
        crate::tls::parse_roots(pem)?;
    }
    Ok(())
}

pub(crate) fn parse_mailbox(field: &str, value: &str) -> Result<Mailbox, ValidationError> {
    value.parse::<Mailbox>().map_err(|error| {
        ValidationError::new(
            field,
            format!("{value:?} is not an email address ({error})"),
        )
    })
}

fn validate_webhook(channel: &WebhookChannel) -> Result<(), ValidationError> {
    parse_webhook_url(&channel.url)?;
    if let Some(secret) = &channel.secret
        && secret.is_empty()
    {
        return Err(ValidationError::new(
            "secret",
            "is empty; leave it unset to send unsigned",
        ));
    }
    if let Some(pem) = &channel.root_ca_pem {
        crate::tls::parse_roots(pem)?;
    }
    Ok(())
}

pub(crate) fn parse_webhook_url(url: &str) -> Result<http::Uri, ValidationError> {
    let shown = crate::webhook::redact_url(url);
    let uri: http::Uri = url.parse().map_err(|error| {
        ValidationError::new("url", format!("{shown:?} is not a URL ({error})"))
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(ValidationError::new(
                "url",
                format!("{shown:?}: scheme {other:?} is not http or https"),
            ));
        }
        None => {
            return Err(ValidationError::new(
                "url",
                format!("{shown:?} has no scheme; use http:// or https://"),
            ));
        }
    }
    match uri.authority() {
        Some(authority) if !authority.host().is_empty() && !authority.as_str().contains('@') => {}
        Some(_) => {
            return Err(ValidationError::new(
                "url",
                format!("{shown:?}: user information or an empty host is not supported"),
            ));
        }
        None => {
            return Err(ValidationError::new(
                "url",
                format!("{shown:?} has no host"),
            ));
        }
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> EmailChannel {
        EmailChannel {
            host: "smtp.example.com".to_owned(),
            port: 587,
            security: SmtpSecurity::StartTls,
            username: Some("certfleet".to_owned()),
            password: Some(Zeroizing::new("hunter2".to_owned())),
            from: "Certfleet <certfleet@example.com>".to_owned(),
            to: vec!["ops@example.com".to_owned()],
            root_ca_pem: None,
        }
    }

    fn webhook(url: &str) -> Channel {
        Channel::Webhook(WebhookChannel {
            url: url.to_owned(),
            secret: None,
            format: WebhookFormat::Json,
            root_ca_pem: None,
        })
    }

    fn field_of(channel: EmailChannel) -> String {
        validate(&Channel::Email(channel))
            .expect_err("channel is invalid")
            .field
    }

    #[test]
    fn good_channels_pass() {
        validate(&Channel::Email(email())).expect("valid email channel");
        validate(&webhook("https://hooks.example.com/certfleet")).expect("valid https");
        validate(&webhook("http://127.0.0.1:8080/hook?x=1")).expect("valid http");
    }

    #[test]
    fn email_errors_name_field_and_value() {
        let error = validate(&Channel::Email(EmailChannel {
            to: vec!["ops@example.com".to_owned(), "not an address".to_owned()],
            ..email()
        }))
        .expect_err("bad recipient");
        assert_eq!(error.field, "to[1]");
        assert!(error.to_string().contains("\"not an address\""), "{error}");

        assert_eq!(
            field_of(EmailChannel {
                to: Vec::new(),
                ..email()
            }),
            "to"
        );
        assert_eq!(field_of(EmailChannel { port: 0, ..email() }), "port");
        assert_eq!(
            field_of(EmailChannel {
                host: String::new(),
                ..email()
            }),
            "host"
        );
        assert_eq!(
            field_of(EmailChannel {
                from: "@".to_owned(),
                ..email()
            }),
            "from"
        );
        assert_eq!(
            field_of(EmailChannel {
                password: None,
                ..email()
            }),
            "password"
        );
        assert_eq!(
            field_of(EmailChannel {
                security: SmtpSecurity::Plain,
                ..email()
            }),
            "security"
        );
        assert_eq!(
            field_of(EmailChannel {
                root_ca_pem: Some("garbage".to_owned()),
                ..email()
            }),
            "root_ca_pem"
        );
    }

    #[test]
    fn webhook_url_must_be_http_or_https() {
        let error = validate(&webhook("ftp://example.com/x")).expect_err("ftp");
        assert_eq!(error.field, "url");
        assert!(error.message.contains("\"ftp\""), "{error}");
        assert!(validate(&webhook("example.com/hook")).is_err());
        assert!(validate(&webhook("https://user:pw@example.com/")).is_err());
        assert!(validate(&webhook("")).is_err());
    }

    #[test]
    fn enums_round_trip_and_name_bad_values() {
        for security in [
            SmtpSecurity::StartTls,
            SmtpSecurity::Tls,
            SmtpSecurity::Plain,
        ] {
            assert_eq!(security.to_string().parse::<SmtpSecurity>(), Ok(security));
        }
        for format in [WebhookFormat::Json, WebhookFormat::Slack] {
            assert_eq!(format.to_string().parse::<WebhookFormat>(), Ok(format));
        }
        let error = "ssl".parse::<SmtpSecurity>().expect_err("unknown");
        assert!(error.to_string().contains("\"ssl\""), "{error}");
        assert!("xml".parse::<WebhookFormat>().is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", email());
        assert!(!shown.contains("hunter2"), "{shown}");
        let hook = WebhookChannel {
            url: "https://hooks.slack.com/services/T000/B000/XXXXSECRET".to_owned(),
            secret: Some(Zeroizing::new("s3cret".to_owned())),
            format: WebhookFormat::Slack,
            root_ca_pem: None,
        };
        let shown = format!("{hook:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("XXXXSECRET"),
            "{shown}"
        );
    }
}
