//! The notification service's variables: the seed's `EMAIL_*` and `TELEGRAM_TOKEN`, and ours.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::no_control;
use super::vars;
use super::{Reader, Sensitive, number_in, parse_bind, parse_token, seconds};
use crate::domain::EmailAddress;
use crate::telemetry::printable;

/// Where the MFA server finds the notification service when `NOTIFICATION_URL` is unset
/// and the service does not run in the same process: its default `NOTIFY_BIND`.
pub const DEFAULT_NOTIFICATION_URL: &str = "http://127.0.0.1:6001";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// No encryption: only for a relay on a trusted network.
    None,
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub sender: EmailAddress,
    /// The display name of `EMAIL_SENDER` (`Acme Login <login@acme.example>`), if it has one.
    pub sender_name: Option<String>,
    /// `EMAIL_HELO_NAME`, or the sender's domain.
    pub helo_name: String,
    /// The SMTP login: `EMAIL_USERNAME`, or the sender address as in the seed.
    pub username: String,
    /// No password: no AUTH.
    pub password: Option<Sensitive>,
    pub server: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub max_retries: u32,
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub token: Sensitive,
    pub api_url: String,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Longest `retry_after` from Telegram that is waited out; longer ones fail at once.
    pub retry_after_max: Duration,
    /// How the bot's messages (chats linking themselves) are received.
    pub updates: TelegramUpdates,
}

/// `TELEGRAM_UPDATES`: how the notification service receives the bot's messages.
#[derive(Debug, Clone)]
pub enum TelegramUpdates {
    /// Long polling `getUpdates` (after removing any webhook, which would refuse it).
    Poll,
    /// Telegram posts them to `url`, which the operator's proxy forwards to this service at
    /// `path`; every post must carry `secret` (random at each start when not set).
    Webhook { url: String, path: String, secret: Option<Sensitive> },
    /// Another program reads the bot's messages: chats cannot link themselves here.
    Off,
}

/// Telegram's rule for a webhook's secret token.
fn webhook_secret(raw: &str) -> Result<Sensitive, String> {
    let secret = raw.trim();
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if (1..=256).contains(&secret.len()) && secret.chars().all(allowed) {
        Ok(Sensitive::new(secret.to_string()))
    } else {
        Err("must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)".into())
    }
}

/// `TELEGRAM_WEBHOOK_URL`: an http(s) URL with a path of its own, which the service serves.
fn webhook_url(raw: &str) -> Result<(String, String), String> {
    let url = http_url(raw)?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("'{}' is not a URL: {e}", printable(&url, 100)))?;
    let path = parsed.path().to_string();
    // The service's own routes (src/notify/api.rs) cannot be the webhook's too.
    const TAKEN: [&str; 6] =
        ["/send", "/healthcheck", "/metrics", "/openapi.json", "/telegram/bot", "/telegram/starts"];
    if TAKEN.contains(&path.as_str()) {
        return Err(format!("its path {path} is one of the notification service's own routes; use /telegram/webhook"));
    }
    if path.len() < 2 || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "'{}' needs a path of its own (such as /telegram/webhook) and no query: the service serves it there",
            printable(&url, 100)
        ));
    }
    Ok((url, path))
}

fn telegram_updates(r: &mut Reader) -> Option<TelegramUpdates> {
    let url = r.optional(&vars::TELEGRAM_WEBHOOK_URL, webhook_url);
    let secret = r.optional(&vars::TELEGRAM_WEBHOOK_SECRET_TOKEN, webhook_secret);
    let set = r.env.get(vars::TELEGRAM_WEBHOOK_URL.name).is_some();
    let mode = r.optional(&vars::TELEGRAM_UPDATES, |raw| match raw.trim().to_ascii_lowercase().as_str() {
        m @ ("poll" | "webhook" | "off") => Ok(m.to_string()),
        other => Err(format!("'{other}' is not poll, webhook or off")),
    });
    let explicit = r.env.get(vars::TELEGRAM_UPDATES.name).is_some();
    let mode = match mode {
        Some(mode) => mode,
        None if explicit => return None,
        None if set => "webhook".to_string(),
        None => "poll".to_string(),
    };
    match (mode.as_str(), url) {
        ("webhook", Some((url, path))) => Some(TelegramUpdates::Webhook { url, path, secret }),
        ("webhook", None) => {
            if !set {
                r.fail(vars::TELEGRAM_UPDATES.name, "is webhook, which needs TELEGRAM_WEBHOOK_URL");
            }
            None
        }
        ("poll", _) if set => {
            r.fail(vars::TELEGRAM_WEBHOOK_URL.name, "is set with TELEGRAM_UPDATES=poll: polling removes the webhook");
            None
        }
        ("off", _) => Some(TelegramUpdates::Off),
        _ => Some(TelegramUpdates::Poll),
    }
}

#[derive(Debug, Clone)]
pub struct NotificationSettings {
    pub bind: SocketAddr,
    pub api_token: Option<Sensitive>,
    /// `NOTIFICATION_URL` when set explicitly: the MFA server then always uses it.
    pub url: Option<String>,
    pub email: Option<EmailSettings>,
    pub telegram: Option<TelegramSettings>,
    /// First retry delay; each next one doubles, with jitter.
    pub retry_base: Duration,
    /// `NOTIFY_STARTUP_CHECK`: what a failed check of a channel at start-up does.
    pub startup_check: StartupCheck,
    /// `NOTIFY_CHECK_SECONDS`: how often the channels are checked again (`None`: never).
    pub check_every: Option<Duration>,
}

/// What the notification service does when a channel fails its check at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupCheck {
    /// Do not check at start-up (nor later).
    Off,
    /// Log it, show it in `/healthcheck`, and start.
    Warn,
    /// Refuse to start.
    Require,
}

impl NotificationSettings {
    /// Whether any channel has credentials, so codes should go through the service.
    pub fn any_channel(&self) -> bool {
        self.email.is_some() || self.telegram.is_some()
    }

    pub fn url_or_default(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_NOTIFICATION_URL)
    }
}

fn http_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        Err("has a space or a control character, which no URL has".into())
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_string())
    } else {
        Err(format!("'{url}' is not an http:// or https:// URL"))
    }
}

pub(super) fn read(r: &mut Reader) -> Option<NotificationSettings> {
    let env = r.env;
    let bind = r.parse(&vars::NOTIFY_BIND, parse_bind);
    let api_token = r.optional(&vars::NOTIFY_API_TOKEN, parse_token);
    if let Some(addr) = bind
        && !addr.ip().is_loopback()
        && env.get(vars::NOTIFY_API_TOKEN.name).is_none()
    {
        r.fail(
            vars::NOTIFY_BIND.name,
            format!(
                "{addr} is reachable from other machines but NOTIFY_API_TOKEN is not set: /send would be an open \
                 relay for spam; set NOTIFY_API_TOKEN or bind to 127.0.0.1"
            ),
        );
    }
    let url = r.optional(&vars::NOTIFICATION_URL, http_url);
    let retry_base = r.parse(&vars::NOTIFY_RETRY_BASE_MS, number_in(1..=60_000u64)).map(Duration::from_millis);
    let startup_check = r.parse(&vars::NOTIFY_STARTUP_CHECK, |raw| match raw.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(StartupCheck::Off),
        "warn" => Ok(StartupCheck::Warn),
        "require" => Ok(StartupCheck::Require),
        other => Err(format!("'{other}' is not off, warn or require")),
    });
    let check_every =
        r.parse(&vars::NOTIFY_CHECK_SECONDS, number_in(0..=86_400u64)).map(|s| (s > 0).then(|| Duration::from_secs(s)));

    let email = match env.get(vars::EMAIL_SMTP_SERVER.name) {
        None => {
            r.optional(&vars::EMAIL_SENDER, sender_mailbox);
            None
        }
        Some(_) => {
            let sender = match env.get(vars::EMAIL_SENDER.name) {
                Some(_) => r.optional(&vars::EMAIL_SENDER, sender_mailbox),
                None => {
                    r.fail(vars::EMAIL_SENDER.name, "is required when EMAIL_SMTP_SERVER is set");
                    None
                }
            };
            let port = r.optional(&vars::EMAIL_SMTP_PORT, number_in(1..=65_535u16));
            let security =
                r.optional(&vars::EMAIL_SMTP_SECURITY, |raw| match raw.trim().to_ascii_lowercase().as_str() {
                    "tls" | "ssl" | "smtps" => Ok(SmtpSecurity::Tls),
                    "starttls" => Ok(SmtpSecurity::StartTls),
                    "none" | "plain" => Ok(SmtpSecurity::None),
                    other => Err(format!("'{other}' is not tls, starttls or none")),
                });
            // The seed gave only a port: 465 is SMTPS, 587 submission with STARTTLS.
            let (security, port) = match (security, port) {
                (Some(s), Some(p)) => (s, p),
                (Some(SmtpSecurity::Tls), None) => (SmtpSecurity::Tls, 465),
                (Some(SmtpSecurity::StartTls), None) => (SmtpSecurity::StartTls, 587),
                (Some(SmtpSecurity::None), None) => (SmtpSecurity::None, 25),
                (None, Some(465)) => (SmtpSecurity::Tls, 465),
                (None, Some(587)) | (None, None) => (SmtpSecurity::StartTls, 587),
                (None, Some(p)) => (SmtpSecurity::None, p),
            };
            let ca_file = r.optional(&vars::EMAIL_SMTP_CA_FILE, |raw| {
                let path = PathBuf::from(raw.trim());
                if path.is_file() { Ok(path) } else { Err(format!("{} is not a readable file", path.display())) }
            });
            let timeout = r.parse(&vars::EMAIL_TIMEOUT_SECONDS, seconds(0.0, 300.0));
            let max_retries = r.parse(&vars::EMAIL_MAX_RETRIES, number_in(0..=10u32));
            let server = r.parse(&vars::EMAIL_SMTP_SERVER, |raw| {
                let host = raw.trim();
                if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/') {
                    Err(format!("'{}' is not a host name or address", printable(host, 64)))
                } else {
                    Ok(host.to_string())
                }
            });
            let password = env.get(vars::EMAIL_PASSWORD.name).map(|p| Sensitive::new(p.to_string()));
            let explicit = env.get(vars::EMAIL_SMTP_SECURITY.name).is_some();
            if password.is_some() && security == SmtpSecurity::None {
                if explicit {
                    r.warn(format!(
                        "EMAIL_SMTP_SECURITY=none with EMAIL_PASSWORD: the SMTP password travels in clear to \
                         {}:{port}; use tls or starttls unless that network is trusted",
                        server.as_deref().unwrap_or("")
                    ));
                } else {
                    r.fail(
                        vars::EMAIL_SMTP_SECURITY.name,
                        format!(
                            "port {port} is plain SMTP and EMAIL_PASSWORD is set: the password would travel in \
                             clear; use port 465 or 587 (or EMAIL_SMTP_SECURITY=tls or starttls), or set \
                             EMAIL_SMTP_SECURITY=none to send it in clear on a trusted network"
                        ),
                    );
                }
            }
            let username = r.optional(&vars::EMAIL_USERNAME, no_control(false));
            let helo_name = r.optional(&vars::EMAIL_HELO_NAME, helo_name);
            match (sender, timeout, max_retries, server) {
                (Some((sender_name, sender)), Some(timeout), Some(max_retries), Some(server)) => Some(EmailSettings {
                    username: username.unwrap_or_else(|| sender.as_str().to_string()),
                    helo_name: helo_name.unwrap_or_else(|| sender.domain().to_string()),
                    sender_name,
                    sender,
                    password,
                    server,
                    port,
                    security,
                    ca_file,
                    timeout,
                    max_retries,
                }),
                _ => None,
            }
        }
    };

    let telegram = match env.get(vars::TELEGRAM_TOKEN.name) {
        None => None,
        Some(token) => {
            let api_url = r.parse(&vars::TELEGRAM_API_URL, http_url);
            let timeout = r.parse(&vars::TELEGRAM_TIMEOUT_SECONDS, seconds(0.0, 300.0));
            let max_retries = r.parse(&vars::TELEGRAM_MAX_RETRIES, number_in(0..=10u32));
            let retry_after_max = r.parse(&vars::TELEGRAM_RETRY_AFTER_MAX, seconds(0.0, 300.0));
            let updates = telegram_updates(r);
            match (api_url, timeout, max_retries, retry_after_max, updates) {
                (Some(api_url), Some(timeout), Some(max_retries), Some(retry_after_max), Some(updates)) => {
                    Some(TelegramSettings {
                        token: Sensitive::new(token.trim().to_string()),
                        api_url,
                        timeout,
                        max_retries,
                        retry_after_max,
                        updates,
                    })
                }
                _ => None,
            }
        }
    };

    let startup_check = startup_check?;
    let check_every = check_every?.filter(|_| startup_check != StartupCheck::Off);
    Some(NotificationSettings {
        bind: bind?,
        api_token,
        url,
        email,
        telegram,
        retry_base: retry_base?,
        startup_check,
        check_every,
    })
}

/// `EMAIL_SENDER`: an address, or a display name and an address in angle brackets.
fn sender_mailbox(raw: &str) -> Result<(Option<String>, EmailAddress), String> {
    let raw = raw.trim();
    let Some((name, rest)) = raw.split_once('<') else { return Ok((None, EmailAddress::parse(raw)?)) };
    let address = rest.strip_suffix('>').ok_or("a display name's address must end with '>'")?;
    let name = name.trim().trim_matches('"').trim();
    if name.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err("the display name must be one line, without quotes or backslashes".into());
    }
    Ok(((!name.is_empty()).then(|| name.to_string()), EmailAddress::parse(address.trim())?))
}

/// `EMAIL_HELO_NAME`: a host name of letter-digit-hyphen labels, or an address literal.
fn helo_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    if literal || (name.len() <= 253 && name.split('.').all(label)) {
        Ok(name.to_string())
    } else {
        Err(format!("'{}' is not a host name (letters, digits, hyphens and dots) or an [address]", printable(name, 64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::settings_of as settings;

    fn email(pairs: &[(&str, &str)]) -> EmailSettings {
        let mut all = vec![("EMAIL_SMTP_SERVER", "smtp.example.com"), ("EMAIL_SENDER", "a@example.com")];
        all.extend_from_slice(pairs);
        settings(&all).unwrap().notification.email.unwrap()
    }

    #[test]
    fn the_sender_may_carry_a_display_name_and_the_greeting_defaults_to_its_domain() {
        let plain = email(&[]);
        assert_eq!(
            (plain.sender_name, plain.helo_name.as_str(), plain.username.as_str()),
            (None, "example.com", "a@example.com")
        );
        let named = email(&[("EMAIL_SENDER", "Acme Login <login@acme.example>")]);
        assert_eq!(named.sender_name.as_deref(), Some("Acme Login"));
        assert_eq!((named.sender.as_str(), named.username.as_str()), ("login@acme.example", "login@acme.example"));
        assert_eq!(named.helo_name, "acme.example");
        let quoted = email(&[("EMAIL_SENDER", "\"Acme, Inc.\" <login@acme.example>")]);
        assert_eq!(quoted.sender_name.as_deref(), Some("Acme, Inc."));
        assert_eq!(email(&[("EMAIL_HELO_NAME", "mx1.acme.example")]).helo_name, "mx1.acme.example");
        assert_eq!(email(&[("EMAIL_HELO_NAME", "[192.0.2.7]")]).helo_name, "[192.0.2.7]");
        let server = ("EMAIL_SMTP_SERVER", "smtp.example.com");
        for (var, bad) in [
            ("EMAIL_SENDER", "Acme <login@acme.example"),
            ("EMAIL_SENDER", "Acme <not-an-address>"),
            ("EMAIL_HELO_NAME", "bad name"),
            ("EMAIL_HELO_NAME", "-x.example"),
            ("EMAIL_HELO_NAME", "[not-an-ip]"),
        ] {
            let sender = if var == "EMAIL_SENDER" { bad } else { "a@example.com" };
            let mut vars = vec![server, ("EMAIL_SENDER", sender)];
            if var != "EMAIL_SENDER" {
                vars.push((var, bad));
            }
            let err = settings(&vars).unwrap_err().to_string();
            assert!(err.contains(var), "{var}={bad}: {err}");
        }
    }

    fn updates(pairs: &[(&str, &str)]) -> Result<TelegramUpdates, String> {
        let mut all = vec![("TELEGRAM_TOKEN", "1:abc")];
        all.extend_from_slice(pairs);
        settings(&all).map(|s| s.notification.telegram.unwrap().updates).map_err(|e| e.to_string())
    }

    #[test]
    fn updates_are_polled_unless_a_webhook_url_is_given_or_they_are_off() {
        assert!(matches!(updates(&[]), Ok(TelegramUpdates::Poll)));
        assert!(matches!(updates(&[("TELEGRAM_UPDATES", "OFF")]), Ok(TelegramUpdates::Off)));
        let hook = updates(&[("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/hooks/tg/")]);
        let Ok(TelegramUpdates::Webhook { url, path, secret }) = hook else { panic!("{hook:?}") };
        assert_eq!(
            (url.as_str(), path.as_str(), secret.is_none()),
            ("https://bot.example.com/hooks/tg", "/hooks/tg", true)
        );
        let with_secret =
            updates(&[("TELEGRAM_WEBHOOK_URL", "https://b.example/h"), ("TELEGRAM_WEBHOOK_SECRET_TOKEN", "a-Z_9")]);
        assert!(matches!(with_secret, Ok(TelegramUpdates::Webhook { secret: Some(_), .. })), "{with_secret:?}");
        for (pairs, words) in [
            (vec![("TELEGRAM_WEBHOOK_URL", "https://bot.example.com")], "a path of its own"),
            (vec![("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/send")], "own routes"),
            (vec![("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/h?x=1")], "no query"),
            (vec![("TELEGRAM_WEBHOOK_URL", "ftp://bot.example.com/h")], "not an http"),
            (vec![("TELEGRAM_UPDATES", "webhook")], "needs TELEGRAM_WEBHOOK_URL"),
            (vec![("TELEGRAM_UPDATES", "push")], "not poll, webhook or off"),
            (
                vec![("TELEGRAM_UPDATES", "poll"), ("TELEGRAM_WEBHOOK_URL", "https://b.example/h")],
                "removes the webhook",
            ),
            (
                vec![("TELEGRAM_WEBHOOK_URL", "https://b.example/h"), ("TELEGRAM_WEBHOOK_SECRET_TOKEN", "no spaces")],
                "Telegram's rule",
            ),
            (
                vec![
                    ("TELEGRAM_WEBHOOK_URL", "https://b.example/h"),
                    ("TELEGRAM_WEBHOOK_SECRET_TOKEN", &"x".repeat(257)),
                ],
                "1 to 256",
            ),
        ] {
            let error = updates(&pairs).expect_err(words);
            assert!(error.contains(words), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn security_follows_the_port_unless_named() {
        assert_eq!((email(&[("EMAIL_SMTP_PORT", "465")]).security), SmtpSecurity::Tls);
        assert_eq!((email(&[("EMAIL_SMTP_PORT", "587")]).security), SmtpSecurity::StartTls);
        assert_eq!((email(&[("EMAIL_SMTP_PORT", "2525")]).security), SmtpSecurity::None);
        let e = email(&[]);
        assert_eq!((e.port, e.security), (587, SmtpSecurity::StartTls));
        let e = email(&[("EMAIL_SMTP_SECURITY", "tls")]);
        assert_eq!((e.port, e.security), (465, SmtpSecurity::Tls));
        let e = email(&[("EMAIL_SMTP_PORT", "2465"), ("EMAIL_SMTP_SECURITY", "tls")]);
        assert_eq!((e.port, e.security), (2465, SmtpSecurity::Tls));
        assert_eq!(email(&[("EMAIL_USERNAME", "relay")]).username, "relay");
        assert!(email(&[]).password.is_none());
    }

    #[test]
    fn channels_are_off_without_their_credentials() {
        let s = settings(&[]).unwrap();
        assert!(!s.notification.any_channel());
        assert!(settings(&[("TELEGRAM_TOKEN", "1:abc")]).unwrap().notification.any_channel());
    }

    #[test]
    fn an_open_relay_is_refused() {
        let err = settings(&[("NOTIFY_BIND", "0.0.0.0:6001")]).unwrap_err();
        assert_eq!(err.0[0].var, "NOTIFY_BIND");
        assert!(err.0[0].reason.contains("NOTIFY_API_TOKEN"));
        assert!(settings(&[("NOTIFY_BIND", "0.0.0.0:6001"), ("NOTIFY_API_TOKEN", "notify-token-0123456789")]).is_ok());
    }

    #[test]
    fn bad_notification_values_name_their_variable() {
        let err = settings(&[
            ("EMAIL_SMTP_SERVER", "smtp.example.com"),
            ("EMAIL_SMTP_SECURITY", "maybe"),
            ("EMAIL_TIMEOUT_SECONDS", "0"),
            ("TELEGRAM_TOKEN", "1:abc"),
            ("TELEGRAM_API_URL", "ftp://x"),
            ("NOTIFICATION_URL", "localhost:6001"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.0.iter().map(|e| e.var.as_str()).collect();
        for var in
            ["EMAIL_SENDER", "EMAIL_SMTP_SECURITY", "EMAIL_TIMEOUT_SECONDS", "TELEGRAM_API_URL", "NOTIFICATION_URL"]
        {
            assert!(vars.contains(&var), "{var} missing from {vars:?}");
        }
    }
}
