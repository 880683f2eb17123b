//! The settings types: what the rest of the program reads, typed and validated.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::{AlertSettings, HttpLimits, MessageTemplate, NotificationSettings, RateLimit};
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::lockout::LockoutPolicy;
use crate::otp::{OtpParams, SecretBytes};

/// OWASP ASVS 2.7.2: out-of-band codes expire after at most 10 minutes.
pub const MAX_CODE_TTL_SECONDS: u64 = 600;

/// A secret string: prints as `********`, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where users and security state are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    Sqlite {
        path: PathBuf,
    },
    /// The URL may hold a password: it is only printed through [`mask_url_password`].
    Postgres {
        url: Sensitive,
        max_connections: u32,
        /// `DATABASE_TIMEOUT_SECONDS`: how long a request waits for a connection before it
        /// answers 503 (the pool keeps reconnecting meanwhile).
        acquire_timeout: Duration,
    },
}

/// A user defined by `<NAME>_SECRET` (with `<NAME>_EMAIL`, `<NAME>_TELEGRAM_ID`).
#[derive(Debug, Clone)]
pub struct EnvUser {
    pub username: Username,
    /// The variable that defined it, e.g. `DAIR_SECRET`.
    pub var: String,
    pub secret: SecretBytes,
    pub email: Option<EmailAddress>,
    pub telegram: Option<TelegramChat>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    /// `SECRET_KEY` or `FLASK_SECRET_KEY`; without it a key file in `data_dir` is used.
    pub secret_key: Option<Sensitive>,
    pub rate_limits: Vec<RateLimit>,
    pub trusted_proxies: Vec<IpAddr>,
    /// `ALLOWED_HOSTS`: names a request's `Host` may carry besides IP addresses and
    /// `localhost`, on both services.
    pub allowed_hosts: Vec<String>,
    /// `MFA_API_KEYS`: bearer tokens the MFA endpoints accept; empty means open.
    pub api_keys: Vec<Sensitive>,
    /// `ADMIN_TOKEN`: enables the admin API; unset, `/admin/` does not exist.
    pub admin_token: Option<Sensitive>,
    pub otp: OtpParams,
    pub valid_window: u16,
    pub issuer: String,
    /// `ENROLL_CONFIRM_SECONDS`: how long a new authenticator waits for its first code.
    pub enroll_confirm_seconds: u64,
    /// `HOTP_LOOKAHEAD`: counters accepted past the expected one.
    pub hotp_lookahead: u32,
    /// `HOTP_RESYNC_WINDOW`: how far a resynchronisation searches.
    pub resync_window: u32,
    pub lockout: LockoutPolicy,
    pub resend_seconds: u64,
    pub code_ttl_seconds: u64,
    /// `OTP_SENDS_PER_HOUR`.
    pub sends_per_hour: u32,
    /// `OTP_SEND_WAIT_MS`: how long `/request-otp` waits for the first attempts.
    pub send_wait: std::time::Duration,
    /// `OTP_DELIVERY=first` with its `OTP_FAILOVER_SECONDS`; `None`: every channel at once.
    pub failover_after: Option<u64>,
    pub message_template: MessageTemplate,
    pub log_format: LogFormat,
    pub users: Vec<EnvUser>,
    pub notification: NotificationSettings,
    /// Header and body read timeouts and the connection cap, for both services.
    pub http: HttpLimits,
    /// Things worth an operator's attention that do not stop start-up.
    pub warnings: Vec<String>,
    /// `SECURITY_ALERTS` and the alert templates (`crate::alerts`).
    pub alerts: AlertSettings,
}

impl Settings {
    /// Path of the generated key file used when no `SECRET_KEY` is set.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    /// Path of the development notifier's output.
    pub fn notifications_log(&self) -> PathBuf {
        self.data_dir.join("notifications.log")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:********@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_string(),
    }
}
