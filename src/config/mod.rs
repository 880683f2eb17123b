//! Configuration: read once at start-up from `.env` and the process environment, validated
//! as a whole, and handed to the rest of the program as a typed [`Settings`].
//!
//! Precedence: process environment > `.env` file (in the working directory, or the file
//! named by `MFA_ENV_FILE`) > built-in default. Every error names its variable and never
//! quotes the value of a secret. Every variable is declared once, in [`vars`].
//!
//! - `env`: the raw variables ([`EnvMap`]), from `dotenv` and the process;
//! - `parse`: reading one variable; `validate`: all of them, into [`Settings`]
//!   (`settings`), with every error at once (`error`);
//! - `env_users`: users defined by `<NAME>_SECRET`;
//! - `report`: what `mfa check-config` prints;
//! - `notify`, `http_limits`, `rate_limit`, `template`: the parts with their own grammar;
//! - `alerts`: `SECURITY_ALERTS` and the security alerts' templates.

pub mod alerts;
pub mod dotenv;
mod env;
mod env_users;
mod error;
pub mod http_limits;
pub mod notify;
mod parse;
#[cfg(test)]
mod proptests;
pub mod rate_limit;
mod report;
mod settings;
mod spelling;
pub mod template;
mod validate;
pub mod vars;

pub use alerts::{AlertKind, AlertSettings, AlertTemplate};
pub use env::{EnvMap, Source};
pub use error::{ConfigError, ConfigErrors};
pub use http_limits::HttpLimits;
pub use notify::{EmailSettings, NotificationSettings, SmtpSecurity, StartupCheck, TelegramSettings, TelegramUpdates};
pub(crate) use parse::{Reader, number_in, parse_bind, parse_token, seconds};
pub use rate_limit::RateLimit;
pub use report::ReportRow;
pub use settings::{DatabaseConfig, EnvUser, LogFormat, MAX_CODE_TTL_SECONDS, Sensitive, Settings, mask_url_password};
pub use template::MessageTemplate;

/// The settings of these variables alone (as `.env` lines), for the tests of every part of
/// the configuration.
#[cfg(test)]
pub(crate) fn settings_of(pairs: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
    Settings::from_env(&EnvMap::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), []))
}
