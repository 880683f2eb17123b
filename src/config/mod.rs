//! Configuration: read once at start-up from `.env` and the process environment, validated
//! as a whole, and handed to the rest of the program as a typed [`Settings`].
//!
//! Precedence: process environment > `.env` file (in the working directory, or the file
//! named by `MFA_ENV_FILE`) > built-in default. Every error names its variable and never
//! quotes the value of a secret.

pub mod dotenv;
pub mod http_limits;
pub mod notify;
pub mod rate_limit;
pub mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::lockout::{self, LockoutPolicy};
use crate::otp::{Algorithm, parse_digits};
use crate::otp::{OtpParams, SecretBytes};
pub use http_limits::HttpLimits;
pub use notify::{EmailSettings, NotificationSettings, SmtpSecurity, TelegramSettings};
pub use rate_limit::RateLimit;
pub use template::MessageTemplate;

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    DotenvFile,
    Environment,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::DotenvFile => ".env",
            Self::Environment => "environment",
        })
    }
}

/// The raw variables: `.env` entries overlaid by the process environment.
#[derive(Debug, Default, Clone)]
pub struct EnvMap {
    values: BTreeMap<String, (String, Source)>,
    /// Line numbers of `.env` lines that could not be parsed.
    pub bad_dotenv_lines: Vec<usize>,
    /// The `.env` file that was read, if any.
    pub dotenv_path: Option<PathBuf>,
}

impl EnvMap {
    /// Reads `MFA_ENV_FILE` (which must exist) or `./.env` (which may not), then the process
    /// environment on top.
    pub fn load() -> Result<Self, ConfigErrors> {
        let process: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        let explicit = process.iter().find(|(k, _)| k == "MFA_ENV_FILE").map(|(_, v)| PathBuf::from(v));
        let path = explicit.clone().unwrap_or_else(|| PathBuf::from(".env"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
            Err(e) => {
                return Err(ConfigErrors::one("MFA_ENV_FILE", format!("cannot read {}: {e}", path.display())));
            }
        };
        let lookup = |name: &str| std::env::var(name).ok();
        let file = text.as_deref().map(|t| dotenv::parse(t, &lookup)).unwrap_or_default();
        let mut map = Self::from_pairs(file.entries, process);
        map.bad_dotenv_lines = file.bad_lines;
        map.dotenv_path = text.map(|_| path);
        Ok(map)
    }

    /// Builds a map from `.env` entries and environment entries; the latter win.
    pub fn from_pairs(
        dotenv: impl IntoIterator<Item = (String, String)>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut values = BTreeMap::new();
        for (k, v) in dotenv {
            values.insert(k, (v, Source::DotenvFile));
        }
        for (k, v) in environment {
            values.insert(k, (v, Source::Environment));
        }
        Self { values, ..Self::default() }
    }

    /// A variable's value; an empty value counts as unset, as with python-dotenv's `or` idiom.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str()).filter(|v| !v.trim().is_empty())
    }

    pub fn source(&self, key: &str) -> Source {
        match self.values.get(key) {
            Some((v, source)) if !v.trim().is_empty() => *source,
            _ => Source::Default,
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// One bad variable. The reason never contains a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

/// Every problem found in the configuration, so an operator can fix them in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    fn one(var: &str, reason: impl Into<String>) -> Self {
        Self(vec![ConfigError { var: var.into(), reason: reason.into() }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid configuration: {}: {}", one.var, one.reason),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for e in many {
                    write!(f, "\n  {}: {}", e.var, e.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

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
    /// `MFA_API_KEYS`: bearer tokens the MFA endpoints accept; empty means open.
    pub api_keys: Vec<Sensitive>,
    /// `ADMIN_TOKEN`: enables the admin API; unset, `/admin/` does not exist.
    pub admin_token: Option<Sensitive>,
    pub otp: OtpParams,
    pub valid_window: u16,
    pub issuer: String,
    pub lockout: LockoutPolicy,
    pub resend_seconds: u64,
    pub code_ttl_seconds: u64,
    pub message_template: MessageTemplate,
    pub log_format: LogFormat,
    pub users: Vec<EnvUser>,
    pub notification: NotificationSettings,
    /// Header and body read timeouts and the connection cap, for both services.
    pub http: HttpLimits,
    /// Things worth an operator's attention that do not stop start-up.
    pub warnings: Vec<String>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:6000";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_RATE_LIMIT: &str = "120 per minute";
/// The longest lock of the progressive lockout unless `LOCKOUT_MAX_SECONDS` says otherwise.
pub const DEFAULT_LOCKOUT_MAX_SECONDS: u64 = LockoutPolicy::DEFAULT.max_lockout_seconds;
/// Seconds a request waits for a PostgreSQL connection before answering 503: long enough
/// for a busy pool, short enough that clients are told at once when the database is down.
pub const DEFAULT_DATABASE_TIMEOUT: &str = "2";
/// OWASP ASVS 2.7.2: out-of-band codes expire after at most 10 minutes.
pub const MAX_CODE_TTL_SECONDS: u64 = 600;

/// Every variable this program reads, apart from the per-user `<NAME>_*` ones.
pub const KNOWN_VARIABLES: &[&str] = &[
    "MFA_ENV_FILE",
    "MFA_BIND",
    "MFA_DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_TIMEOUT_SECONDS",
    "SECRET_KEY",
    "FLASK_SECRET_KEY",
    "RATE_LIMIT",
    "TRUSTED_PROXIES",
    "MFA_API_KEYS",
    "ADMIN_TOKEN",
    "OTP_DIGITS",
    "OTP_PERIOD",
    "OTP_ALGORITHM",
    "OTP_VALID_WINDOW",
    "OTP_ISSUER",
    "MAX_FAILED_ATTEMPTS",
    "LOCKOUT_SECONDS",
    "LOCKOUT_MAX_SECONDS",
    "OTP_RESEND_SECONDS",
    "OTP_CODE_TTL",
    "LOG_FORMAT",
    "OTP_MESSAGE_TEMPLATE",
    "TELEGRAM_TOKEN",
    "TELEGRAM_API_URL",
    "TELEGRAM_TIMEOUT_SECONDS",
    "TELEGRAM_MAX_RETRIES",
    "TELEGRAM_RETRY_AFTER_MAX",
    "EMAIL_SENDER",
    "EMAIL_PASSWORD",
    "EMAIL_USERNAME",
    "EMAIL_SMTP_SERVER",
    "EMAIL_SMTP_PORT",
    "EMAIL_SMTP_SECURITY",
    "EMAIL_SMTP_CA_FILE",
    "EMAIL_TIMEOUT_SECONDS",
    "EMAIL_MAX_RETRIES",
    "NOTIFY_BIND",
    "NOTIFY_API_TOKEN",
    "NOTIFICATION_URL",
    "NOTIFY_RETRY_BASE_MS",
    "HTTP_HEADER_TIMEOUT_SECONDS",
    "HTTP_BODY_TIMEOUT_SECONDS",
    "HTTP_MAX_CONNECTIONS",
];

/// Collects errors while every variable is read.
pub(crate) struct Reader<'a> {
    pub(crate) env: &'a EnvMap,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    pub(crate) fn fail(&mut self, var: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError { var: var.into(), reason: reason.into() });
    }

    /// Parses a variable, or its default when unset. On error records it and returns `None`.
    pub(crate) fn parse<T>(
        &mut self,
        var: &str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.env.get(var).unwrap_or(default);
        match parse(raw) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(var, reason);
                None
            }
        }
    }

    pub(crate) fn optional<T>(&mut self, var: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.env.get(var)?;
        match parse(raw) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(var, reason);
                None
            }
        }
    }
}

/// A duration in seconds, decimals allowed: above 0, at least `min`, at most `max`.
pub(crate) fn seconds(min: f64, max: f64) -> impl Fn(&str) -> Result<std::time::Duration, String> {
    move |raw: &str| match raw.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s >= min && s <= max => Ok(std::time::Duration::from_secs_f64(s)),
        _ if min > 0.0 => Err(format!("'{}' is not a number of seconds from {min} to {max}", raw.trim())),
        _ => Err(format!("'{}' is not a number of seconds above 0 and at most {max}", raw.trim())),
    }
}

pub(crate) fn number_in<T>(range: std::ops::RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    move |raw: &str| match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("'{}' is not a whole number from {} to {}", raw.trim(), range.start(), range.end())),
    }
}

pub(crate) fn parse_bind(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    let normalized = raw.strip_prefix("localhost:").map(|port| format!("127.0.0.1:{port}"));
    normalized
        .as_deref()
        .unwrap_or(raw)
        .parse()
        .map_err(|_| format!("'{raw}' is not an IP:port address (for example 127.0.0.1:6000; ports are 0-65535)"))
}

/// A bearer token (`MFA_API_KEYS`, `ADMIN_TOKEN`, `NOTIFY_API_TOKEN`): trimmed, since the
/// server's HTTP parser drops blanks around a header value, and printable ASCII, the only
/// characters an `Authorization` header can carry. Otherwise a configured token could
/// never match (the property test `every_accepted_token_can_authenticate` found a
/// `NOTIFY_API_TOKEN` with a trailing tab). The error never quotes the token.
pub(crate) fn parse_token(raw: &str) -> Result<Sensitive, String> {
    let token = raw.trim();
    if token.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        Ok(Sensitive(token.to_string()))
    } else {
        Err("has a character that is not printable ASCII, so no HTTP header can carry it \
             (e.g. `openssl rand -hex 32`)"
            .into())
    }
}

fn parse_database(raw: &str) -> Result<DatabaseConfig, String> {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(DatabaseConfig::Postgres {
            url: Sensitive(raw.to_string()),
            max_connections: 0,
            acquire_timeout: Duration::ZERO,
        });
    }
    let path = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
        .ok_or_else(|| "must be sqlite://PATH or postgres://USER:PASSWORD@HOST/DB".to_string())?;
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path.contains(":memory:") {
        return Err("needs a file path: an in-memory database would lose every user at exit".into());
    }
    Ok(DatabaseConfig::Sqlite { path: PathBuf::from(path) })
}

fn parse_proxies(raw: &str) -> Result<Vec<IpAddr>, String> {
    raw.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("'{s}' is not an IP address")))
        .collect()
}

impl Settings {
    /// Reads and validates everything; returns every error at once.
    pub fn from_env(env: &EnvMap) -> Result<Self, ConfigErrors> {
        let mut r = Reader { env, errors: Vec::new() };
        let mut warnings = Vec::new();

        if !env.bad_dotenv_lines.is_empty() {
            let lines: Vec<String> = env.bad_dotenv_lines.iter().map(ToString::to_string).collect();
            warnings.push(format!(".env: could not parse line(s) {}; they were skipped", lines.join(", ")));
        }

        let bind = r.parse("MFA_BIND", DEFAULT_BIND, parse_bind);
        let data_dir = PathBuf::from(env.get("MFA_DATA_DIR").unwrap_or(DEFAULT_DATA_DIR));
        // The default is a path, not a URL built from one: a data directory named `a?b` or
        // `:memory:x` is a directory, not a query or an in-memory database (found by the
        // property test `the_default_database_lives_in_the_data_directory`).
        let database = match env.get("DATABASE_URL") {
            Some(_) => r.optional("DATABASE_URL", parse_database),
            None => Some(DatabaseConfig::Sqlite { path: data_dir.join("mfa.db") }),
        };
        let pool_size = r.parse("DATABASE_MAX_CONNECTIONS", "10", number_in(1..=1000u32));
        let db_timeout = r.parse("DATABASE_TIMEOUT_SECONDS", DEFAULT_DATABASE_TIMEOUT, seconds(0.0, 60.0));
        let database = database.map(|db| match (db, pool_size, db_timeout) {
            (DatabaseConfig::Postgres { url, .. }, Some(n), Some(timeout)) => {
                DatabaseConfig::Postgres { url, max_connections: n, acquire_timeout: timeout }
            }
            (db, _, _) => db,
        });

        let secret_key = match (env.get("SECRET_KEY"), env.get("FLASK_SECRET_KEY")) {
            (Some(a), Some(b)) if a != b => {
                r.fail("SECRET_KEY", "SECRET_KEY and FLASK_SECRET_KEY are both set and differ; keep one");
                None
            }
            (Some(key), _) | (None, Some(key)) => Some(Sensitive(key.to_string())),
            (None, None) => None,
        };
        if let Some(key) = &secret_key {
            let var = if env.get("SECRET_KEY").is_some() { "SECRET_KEY" } else { "FLASK_SECRET_KEY" };
            if key.expose().len() < 16 || key.expose() == "your-secret-key" {
                warnings.push(format!(
                    "{var} is short or a placeholder; the key that encrypts TOTP secrets is derived from it, \
                     so use 32 or more random characters (e.g. `openssl rand -hex 32`)"
                ));
            }
        }

        let api_keys = r
            .optional("MFA_API_KEYS", |keys| {
                let keys = keys.split(',').filter(|k| !k.trim().is_empty());
                keys.enumerate().map(|(i, k)| parse_token(k).map_err(|e| format!("key {} {e}", i + 1))).collect()
            })
            .unwrap_or_default();
        let admin_token = r.optional("ADMIN_TOKEN", |raw| {
            let token = parse_token(raw)?;
            if token.expose().len() < 16 {
                Err("must be at least 16 characters (e.g. `openssl rand -hex 32`)".into())
            } else {
                Ok(token)
            }
        });
        let rate_limits = r.parse("RATE_LIMIT", DEFAULT_RATE_LIMIT, rate_limit::parse_rate_limits);
        let trusted_proxies = r.parse("TRUSTED_PROXIES", "", parse_proxies);
        let digits = r.parse("OTP_DIGITS", "6", parse_digits);
        let period = r.parse("OTP_PERIOD", "30", number_in(1..=300u64));
        let algorithm = r.parse("OTP_ALGORITHM", "SHA1", Algorithm::parse);
        let valid_window = r.parse("OTP_VALID_WINDOW", "1", number_in(0..=10u16));
        let issuer = r.parse("OTP_ISSUER", "MFA", |s| {
            if s.contains(':') { Err("must not contain ':'".into()) } else { Ok(s.trim().to_string()) }
        });
        let max_failed_attempts = r.parse("MAX_FAILED_ATTEMPTS", "5", number_in(1..=1_000_000u32));
        let lockout_seconds = r.parse("LOCKOUT_SECONDS", "300", number_in(1..=31_536_000u64));
        let max_lockout_seconds = r.optional("LOCKOUT_MAX_SECONDS", number_in(1..=31_536_000u64));
        let lockout = match (max_failed_attempts, lockout_seconds, max_lockout_seconds) {
            (Some(_), Some(base), Some(cap)) if cap < base => {
                r.fail(
                    "LOCKOUT_MAX_SECONDS",
                    format!("{cap} is below LOCKOUT_SECONDS ({base}); set them equal for a flat lockout"),
                );
                None
            }
            (Some(max_failed_attempts), Some(lockout_seconds), cap) => Some(LockoutPolicy {
                max_failed_attempts,
                lockout_seconds,
                max_lockout_seconds: cap.unwrap_or(DEFAULT_LOCKOUT_MAX_SECONDS.max(lockout_seconds)),
            }),
            _ => None,
        };
        let resend_seconds = r.parse("OTP_RESEND_SECONDS", "30", number_in(0..=86_400u64));
        let code_ttl_seconds = r.parse("OTP_CODE_TTL", "300", |raw| {
            number_in(1..=MAX_CODE_TTL_SECONDS)(raw).map_err(|e| format!("{e} (OWASP ASVS: at most 10 minutes)"))
        });
        let log_format = r.parse("LOG_FORMAT", "pretty", |raw| match raw.trim().to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("'{other}' is not 'pretty' or 'json'")),
        });

        let notification = notify::read(&mut r);
        let http = http_limits::read(&mut r);
        let message_template = r.parse("OTP_MESSAGE_TEMPLATE", template::DEFAULT_TEMPLATE, MessageTemplate::parse);

        let users = read_env_users(&mut r, &mut warnings);

        if let (Some(policy), Some(digits), Some(window)) = (lockout, digits, valid_window) {
            let chance = policy.chance_in(lockout::ATTACK_SPAN_SECONDS, digits, window);
            if chance >= lockout::TARGET_CHANCE {
                warnings.push(format!(
                    "MAX_FAILED_ATTEMPTS, LOCKOUT_SECONDS and LOCKOUT_MAX_SECONDS let an attacker guessing for 30 days \
                     break a user's {digits}-digit code with a chance of {}; the defaults keep it below 1 in 1,000",
                    lockout::describe_chance(chance)
                ));
            }
        }

        for key in env.keys() {
            let ours = ["MFA_", "OTP_"].iter().any(|p| key.starts_with(p));
            if ours && !KNOWN_VARIABLES.contains(&key) {
                warnings.push(format!("{key} is not a variable this program knows; check its spelling"));
            }
        }

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        // Every `None` above pushed an error, so with no errors all of these are present.
        let settings = (|| {
            Some(Self {
                bind: bind?,
                data_dir,
                database: database?,
                secret_key,
                rate_limits: rate_limits?,
                trusted_proxies: trusted_proxies?,
                api_keys,
                admin_token,
                otp: OtpParams { algorithm: algorithm?, digits: digits?, period: period? },
                valid_window: valid_window?,
                issuer: issuer?,
                lockout: lockout?,
                resend_seconds: resend_seconds?,
                code_ttl_seconds: code_ttl_seconds?,
                message_template: message_template?,
                log_format: log_format?,
                users,
                notification: notification?,
                http: http?,
                warnings,
            })
        })();
        settings.ok_or_else(|| ConfigErrors::one("configuration", "a value failed to parse"))
    }

    /// Path of the generated key file used when no `SECRET_KEY` is set.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    /// Path of the development notifier's output.
    pub fn notifications_log(&self) -> PathBuf {
        self.data_dir.join("notifications.log")
    }

    /// What `mfa check-config` prints: each setting, its value (secrets masked), its source.
    pub fn report(&self, env: &EnvMap) -> Vec<(String, String, String)> {
        let mut rows = Vec::new();
        let mut row = |var: &str, value: String| rows.push((var.to_string(), value, env.source(var).to_string()));
        row("MFA_BIND", self.bind.to_string());
        row("MFA_DATA_DIR", self.data_dir.display().to_string());
        row("DATABASE_URL", describe_database(&self.database));
        let key_var = if env.get("SECRET_KEY").is_some() { "SECRET_KEY" } else { "FLASK_SECRET_KEY" };
        row(
            key_var,
            match &self.secret_key {
                Some(_) => "******** (set)".into(),
                None => format!("not set: key file {}", self.key_file().display()),
            },
        );
        let limits: Vec<String> = self.rate_limits.iter().map(ToString::to_string).collect();
        row("RATE_LIMIT", if limits.is_empty() { "off".into() } else { limits.join("; ") });
        let proxies: Vec<String> = self.trusted_proxies.iter().map(ToString::to_string).collect();
        row("TRUSTED_PROXIES", if proxies.is_empty() { "none".into() } else { proxies.join(", ") });
        row(
            "ADMIN_TOKEN",
            if self.admin_token.is_some() { "******** (set): /admin/ enabled" } else { "not set: no admin API" }.into(),
        );
        row(
            "MFA_API_KEYS",
            match self.api_keys.len() {
                0 => "not set: /request-otp and /verify are open".into(),
                n => format!("{n} key(s) ********"),
            },
        );
        row("OTP_DIGITS", self.otp.digits.to_string());
        row("OTP_PERIOD", format!("{} s", self.otp.period));
        row("OTP_ALGORITHM", self.otp.algorithm.to_string());
        row("OTP_VALID_WINDOW", format!("{} step(s) each side", self.valid_window));
        row("OTP_ISSUER", self.issuer.clone());
        row("MAX_FAILED_ATTEMPTS", self.lockout.max_failed_attempts.to_string());
        row("LOCKOUT_SECONDS", format!("{} s", self.lockout.lockout_seconds));
        row("LOCKOUT_MAX_SECONDS", format!("{} s", self.lockout.max_lockout_seconds));
        row("OTP_RESEND_SECONDS", format!("{} s", self.resend_seconds));
        row("OTP_CODE_TTL", format!("{} s", self.code_ttl_seconds));
        row("LOG_FORMAT", format!("{:?}", self.log_format).to_lowercase());
        row("OTP_MESSAGE_TEMPLATE", self.message_template.as_str().to_string());
        row("HTTP_HEADER_TIMEOUT_SECONDS", format!("{:?}", self.http.header_timeout));
        row("HTTP_BODY_TIMEOUT_SECONDS", format!("{:?}", self.http.body_timeout));
        row("HTTP_MAX_CONNECTIONS", format!("{} per service", self.http.max_connections));
        let n = &self.notification;
        let masked = |s: Option<&Sensitive>| if s.is_some() { "******** (set)".to_string() } else { "not set".into() };
        row("NOTIFY_BIND", n.bind.to_string());
        row("NOTIFY_API_TOKEN", masked(n.api_token.as_ref()));
        row("NOTIFICATION_URL", n.url_or_default().to_string());
        match &n.email {
            Some(e) => {
                row("EMAIL_SMTP_SERVER", format!("{}:{} ({:?})", e.server, e.port, e.security).to_lowercase());
                row("EMAIL_SENDER", e.sender.as_str().to_string());
                row("EMAIL_USERNAME", e.username.clone());
                row("EMAIL_PASSWORD", masked(e.password.as_ref()));
                row("EMAIL_TIMEOUT_SECONDS", format!("{:?} per attempt, {} retries", e.timeout, e.max_retries));
            }
            None => row("EMAIL_SMTP_SERVER", "not set: email channel off".into()),
        }
        match &n.telegram {
            Some(t) => {
                row("TELEGRAM_TOKEN", masked(Some(&t.token)));
                row("TELEGRAM_API_URL", t.api_url.clone());
            }
            None => row("TELEGRAM_TOKEN", "not set: telegram channel off".into()),
        }
        for user in &self.users {
            let mut contact = Vec::new();
            if let Some(e) = &user.email {
                contact.push(format!("email {}", e.as_str()));
            }
            if let Some(t) = &user.telegram {
                contact.push(format!("telegram {}", t.as_str()));
            }
            let desc = format!(
                "user '{}': secret ******** ({} bits){}",
                user.username,
                user.secret.bits(),
                if contact.is_empty() { String::new() } else { format!(", {}", contact.join(", ")) }
            );
            rows.push((user.var.clone(), desc, env.source(&user.var).to_string()));
        }
        rows
    }
}

fn describe_database(db: &DatabaseConfig) -> String {
    match db {
        DatabaseConfig::Sqlite { path } => format!("sqlite://{}", path.display()),
        DatabaseConfig::Postgres { url, max_connections, acquire_timeout } => format!(
            "{} ({max_connections} connections for requests, {} s wait for one)",
            mask_url_password(url.expose()),
            acquire_timeout.as_secs_f64()
        ),
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

/// Finds `<NAME>_SECRET` variables and their `<NAME>_EMAIL` / `<NAME>_TELEGRAM_ID`.
fn read_env_users(r: &mut Reader, warnings: &mut Vec<String>) -> Vec<EnvUser> {
    let env = r.env;
    let mut users = Vec::new();
    let names: Vec<String> =
        env.keys().filter_map(|k| k.strip_suffix("_SECRET")).filter(|n| !n.is_empty()).map(String::from).collect();
    for name in names {
        let var = format!("{name}_SECRET");
        let Some(raw_secret) = env.get(&var) else {
            continue;
        };
        let username = match Username::parse(&name) {
            Ok(u) => u,
            Err(e) => {
                r.fail(&var, format!("'{name}' does not make a valid username: {e}"));
                continue;
            }
        };
        let secret = match SecretBytes::from_base32(raw_secret) {
            Ok(s) => s,
            Err(e) => {
                r.fail(&var, format!("the secret {e}"));
                continue;
            }
        };
        if secret.is_below_rfc_minimum() {
            warnings.push(format!(
                "user '{username}' ({var}) has a {}-bit secret, below RFC 4226's 128-bit minimum; it is accepted for \
                 compatibility, but re-enroll the user with `mfa user add` (160 bits) when you can",
                secret.bits()
            ));
        }
        let email = r.optional(&format!("{name}_EMAIL"), EmailAddress::parse);
        let telegram = r.optional(&format!("{name}_TELEGRAM_ID"), TelegramChat::parse);
        users.push(EnvUser { username, var, secret, email, telegram });
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        EnvMap::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), [])
    }

    #[test]
    fn defaults_without_any_variable() {
        let s = Settings::from_env(&env(&[])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:6000");
        assert_eq!(s.database, DatabaseConfig::Sqlite { path: PathBuf::from("./data/mfa.db") });
        assert_eq!(s.otp, OtpParams::default());
        assert_eq!(s.valid_window, 1);
        assert_eq!(s.lockout, LockoutPolicy::DEFAULT);
        assert_eq!((s.resend_seconds, s.code_ttl_seconds), (30, 300));
        assert_eq!(s.rate_limits.len(), 1);
        assert!(s.users.is_empty() && s.secret_key.is_none());
    }

    #[test]
    fn the_seed_env_gives_two_users_with_warnings_that_name_them() {
        let file = dotenv::parse(include_str!("../../tests/fixtures/seed.env"), &|_| None);
        let s = Settings::from_env(&EnvMap::from_pairs(file.entries, [])).unwrap();
        let names: Vec<&str> = s.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["bob", "dair"]);
        let dair = &s.users[1];
        assert_eq!(dair.email.as_ref().unwrap().as_str(), "dair@example.com");
        assert_eq!(dair.telegram.as_ref().unwrap().as_str(), "123456789");
        assert_eq!(s.rate_limits[0].to_string(), "200 per day");
        assert_eq!(s.secret_key.as_ref().unwrap().expose(), "your-secret-key");
        let email = s.notification.email.as_ref().unwrap();
        assert_eq!((email.port, email.security), (465, SmtpSecurity::Tls));
        assert_eq!(email.username, "your@email.com");
        assert_eq!(s.notification.telegram.as_ref().unwrap().api_url, "https://api.telegram.org");
        let short: Vec<&String> = s.warnings.iter().filter(|w| w.contains("80-bit")).collect();
        assert_eq!(short.len(), 2);
        assert!(short.iter().all(|w| !w.contains("base32secret3232")));
        assert!(s.warnings.iter().any(|w| w.contains("FLASK_SECRET_KEY is short or a placeholder")));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let map = EnvMap::from_pairs(
            [("OTP_DIGITS".to_string(), "6".to_string())],
            [("OTP_DIGITS".to_string(), "8".to_string())],
        );
        assert_eq!(Settings::from_env(&map).unwrap().otp.digits, 8);
        assert_eq!(map.source("OTP_DIGITS"), Source::Environment);
    }

    #[test]
    fn every_bad_value_is_reported_by_name_without_secret_values() {
        let err = Settings::from_env(&env(&[
            ("RATE_LIMIT", "lots"),
            ("MFA_BIND", "127.0.0.1:70000"),
            ("DAIR_SECRET", "s3cr3t-not-base32!"),
            ("OTP_DIGITS", "12"),
            ("OTP_CODE_TTL", "3600"),
            ("BOB_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
            ("BOB_EMAIL", "bob-at-example"),
        ]))
        .unwrap_err();
        let vars: Vec<&str> = err.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(vars, ["MFA_BIND", "RATE_LIMIT", "OTP_DIGITS", "OTP_CODE_TTL", "BOB_EMAIL", "DAIR_SECRET"]);
        let text = err.to_string();
        assert!(text.contains("RATE_LIMIT: cannot read 'lots'"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn a_single_error_is_one_line() {
        let err = Settings::from_env(&env(&[("RATE_LIMIT", "lots")])).unwrap_err();
        assert_eq!(err.to_string().lines().count(), 1);
        assert!(err.to_string().starts_with("invalid configuration: RATE_LIMIT:"));
    }

    #[test]
    fn secret_key_aliases() {
        let s = Settings::from_env(&env(&[("SECRET_KEY", "k1")])).unwrap();
        assert_eq!(s.secret_key.unwrap().expose(), "k1");
        assert!(Settings::from_env(&env(&[("SECRET_KEY", "a"), ("FLASK_SECRET_KEY", "b")])).is_err());
    }

    #[test]
    fn database_urls() {
        assert!(parse_database("sqlite:///var/lib/mfa/mfa.db").is_ok());
        assert!(parse_database("sqlite:data.db").is_ok());
        assert!(parse_database("sqlite::memory:").is_err());
        assert!(matches!(parse_database("postgres://u:p@h/db"), Ok(DatabaseConfig::Postgres { .. })));
        assert_eq!(mask_url_password("postgres://mfa:s3cret@db:5432/mfa"), "postgres://mfa:********@db:5432/mfa");
        assert_eq!(mask_url_password("postgres://db/mfa"), "postgres://db/mfa");
        assert!(parse_database("mysql://x").is_err());
    }

    #[test]
    fn the_postgres_connection_wait_is_short_by_default_and_configurable() {
        let url = ("DATABASE_URL", "postgres://u:p@h/db");
        let wait = |vars: &[(&str, &str)]| match Settings::from_env(&env(vars)).map(|s| s.database) {
            Ok(DatabaseConfig::Postgres { acquire_timeout, .. }) => Ok(acquire_timeout),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(wait(&[url]), Ok(Duration::from_secs(2)));
        assert_eq!(wait(&[url, ("DATABASE_TIMEOUT_SECONDS", "0.5")]), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "61", "soon"] {
            let err = wait(&[url, ("DATABASE_TIMEOUT_SECONDS", bad)]).unwrap_err();
            assert!(err.contains("DATABASE_TIMEOUT_SECONDS"), "{err}");
        }
    }

    #[test]
    fn report_masks_secrets() {
        let map = env(&[("SECRET_KEY", "supersecretkeyvalue123"), ("DAIR_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]);
        let s = Settings::from_env(&map).unwrap();
        let text = format!("{:?}", s.report(&map));
        assert!(!text.contains("supersecretkeyvalue123") && !text.contains("JBSWY3DP"), "{text}");
        assert!(text.contains("DAIR_SECRET"));
        assert!(!format!("{s:?}").contains("supersecretkeyvalue123"));
    }

    #[test]
    fn unknown_mfa_variables_are_warned_about() {
        let s = Settings::from_env(&env(&[("MFA_BINDD", "x")])).unwrap();
        assert!(s.warnings.iter().any(|w| w.contains("MFA_BINDD")));
    }

    #[test]
    fn the_lockout_cap_follows_a_long_first_lock_and_cannot_be_below_it() {
        let long = Settings::from_env(&env(&[("LOCKOUT_SECONDS", "172800")])).unwrap();
        assert_eq!(long.lockout.max_lockout_seconds, 172_800, "the default cap never shortens the first lock");
        let flat = Settings::from_env(&env(&[("LOCKOUT_MAX_SECONDS", "300")])).unwrap();
        assert_eq!(flat.lockout.lock_seconds(9), 300);

        let err = Settings::from_env(&env(&[("LOCKOUT_SECONDS", "600"), ("LOCKOUT_MAX_SECONDS", "300")])).unwrap_err();

        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].var, "LOCKOUT_MAX_SECONDS");
    }

    #[test]
    fn a_lockout_weaker_than_the_goal_is_warned_about_with_its_figure() {
        let defaults = Settings::from_env(&env(&[])).unwrap();
        assert!(!defaults.warnings.iter().any(|w| w.contains("LOCKOUT")), "{:?}", defaults.warnings);

        let flat = Settings::from_env(&env(&[("LOCKOUT_MAX_SECONDS", "300")])).unwrap();

        let warning = flat.warnings.iter().find(|w| w.contains("LOCKOUT_MAX_SECONDS")).expect("a warning");
        assert!(warning.contains("chance of 1 in 6"), "{warning}");
    }
}
