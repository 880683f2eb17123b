//! Reading one variable: the [`Reader`] that collects every error while the variables are
//! read, and the parsers of the values several variables share (addresses, durations,
//! numbers, tokens, the database URL, proxies).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::env::EnvMap;
use super::error::ConfigError;
use super::settings::{DatabaseConfig, Sensitive};
use super::vars::Var;

/// Collects errors while every variable is read.
pub(crate) struct Reader<'a> {
    pub(crate) env: &'a EnvMap,
    pub(crate) errors: Vec<ConfigError>,
    /// Things worth an operator's attention that do not stop start-up.
    pub(crate) warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    /// The variable's value, or its default ("" without one).
    pub(crate) fn value(&self, var: &Var) -> &'a str {
        self.env.get(var.name).or(var.default).unwrap_or("")
    }
}

impl Reader<'_> {
    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    pub(crate) fn fail(&mut self, var: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError { var: var.into(), reason: reason.into() });
    }

    /// Parses a variable, or its default (the table's; an empty value when it has none).
    /// On error records it and returns `None`.
    pub(crate) fn parse<T>(&mut self, var: &Var, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.env.get(var.name).or(var.default).unwrap_or("");
        self.checked(var.name, raw, parse)
    }

    /// Parses a variable when it is set.
    pub(crate) fn optional<T>(&mut self, var: &Var, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        self.optional_named(var.name, parse)
    }

    /// As [`Self::optional`], for a variable named at run time (a user's `<NAME>_EMAIL`).
    pub(crate) fn optional_named<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.env.get(name)?;
        self.checked(name, raw, parse)
    }

    fn checked<T>(&mut self, name: &str, raw: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match parse(raw) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(name, reason);
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
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
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

/// `raw`, trimmed, when it holds no control character (`newlines`: except line breaks and
/// tabs): what ends up in a message header, a URI or a log line must not carry one.
pub(crate) fn no_control(newlines: bool) -> impl Fn(&str) -> Result<String, String> {
    move |raw: &str| {
        let allowed = |c: char| !c.is_control() || (newlines && matches!(c, '\n' | '\r' | '\t'));
        if raw.chars().all(allowed) {
            Ok(raw.trim().to_string())
        } else {
            Err("has a control character (a header, URI or log line would break)".into())
        }
    }
}

/// The hosts a request's `Host` may name besides IP addresses and `localhost` (see
/// `crate::http::observe`), lower-cased, without ports.
pub(crate) fn parse_hosts(raw: &str) -> Result<Vec<String>, String> {
    raw.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|host| {
            let host = host.trim().to_ascii_lowercase();
            let ok = host.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            if ok {
                Ok(host)
            } else if host.contains(char::is_control) {
                Err("has a control character, which no host name has".into())
            } else {
                Err(format!("'{host}' is not a host name (no port, no scheme)"))
            }
        })
        .collect()
}

/// `true`/`false` (also `yes`/`no`, `1`/`0`, `on`/`off`).
pub(crate) fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        other => Err(format!("'{other}' is not true or false")),
    }
}

/// The shortest bearer token accepted: 16 printable characters are over 100 bits when
/// random, and a one-character key was found in 432 requests.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A bearer token (`MFA_API_KEYS`, `ADMIN_TOKEN`, `NOTIFY_API_TOKEN`): trimmed, since the
/// server's HTTP parser drops blanks around a header value, printable ASCII, the only
/// characters an `Authorization` header can carry (otherwise a configured token could
/// never match: a trailing tab, say), and at least [`MIN_TOKEN_CHARS`] long. The error
/// never quotes the token.
pub(crate) fn parse_token(raw: &str) -> Result<Sensitive, String> {
    let token = raw.trim();
    if !token.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err("has a character that is not printable ASCII, so no HTTP header can carry it \
                    (e.g. `openssl rand -hex 32`)"
            .into());
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(format!("must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"));
    }
    Ok(Sensitive::new(token.to_string()))
}

pub(crate) fn parse_database(raw: &str) -> Result<DatabaseConfig, String> {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        return Ok(DatabaseConfig::Postgres {
            url: Sensitive::new(raw.to_string()),
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

pub(crate) fn parse_proxies(raw: &str) -> Result<Vec<IpAddr>, String> {
    raw.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("'{s}' is not an IP address")))
        .collect()
}
