//! Raw outside input in, parsed value or clear error out: the entry points that the property
//! tests (`src/proptests/`) and the cargo-fuzz targets (`fuzz/`) drive. Compiled only for
//! `cfg(test)` and `cfg(fuzzing)` (cargo-fuzz sets it), never into the shipped binary.
//!
//! The JSON bodies go through `axum::Json::from_bytes`, the very call behind the services'
//! `AppJson` extractor, then through the validation their handlers do. For `/send` that is
//! the handler's own `validate`; the MFA and admin handlers validate inline, so their steps
//! are repeated here, in the handlers' order, with the same domain parsers.

use axum::Json;
use axum::extract::Query;
use serde_json::{Map, Value};

use crate::config::{ConfigError, ConfigErrors, EnvMap, Settings, dotenv};
use crate::domain::{Algorithm, EmailAddress, OtpCode, TelegramChat, Username, parse_digits};
use crate::http::InvalidRequest;
use crate::notify::server::{NotifyError, SendBody, validate};
use crate::notify::{Channel, Delivery};
use crate::server::admin::{CreateUser, DEFAULT_PAGE, MAX_PAGE, Page};
use crate::server::routes::{RequestOtpBody, VerifyBody};

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, InvalidRequest> {
    Json::<T>::from_bytes(bytes).map(|Json(v)| v).map_err(InvalidRequest::from)
}

fn field<T>(parsed: Result<T, String>) -> Result<T, InvalidRequest> {
    parsed.map_err(InvalidRequest::new)
}

/// `POST /verify`, as `server::routes::verify` reads it.
pub fn verify_body(bytes: &[u8]) -> Result<(Username, OtpCode), InvalidRequest> {
    let body: VerifyBody = json(bytes)?;
    Ok((field(Username::parse(&body.username))?, field(OtpCode::parse(&body.token))?))
}

/// `POST /request-otp`, as `server::routes::request_otp` reads it.
pub fn request_otp_body(bytes: &[u8]) -> Result<(Username, Option<Channel>), InvalidRequest> {
    let body: RequestOtpBody = json(bytes)?;
    let username = field(Username::parse(&body.username))?;
    let only = field(body.channel.as_deref().map(Channel::parse).transpose())?;
    Ok((username, only))
}

/// What `POST /admin/users` enrolls: name, contacts, algorithm and digits (`None`: the default).
pub type NewUser = (Username, Option<EmailAddress>, Option<TelegramChat>, Option<Algorithm>, Option<u8>);

/// `POST /admin/users`, as `server::admin::create_user` reads it.
pub fn create_user_body(bytes: &[u8]) -> Result<NewUser, InvalidRequest> {
    let body: CreateUser = json(bytes)?;
    let username = field(Username::parse(&body.username))?;
    let email = field(body.email.as_deref().map(EmailAddress::parse).transpose())?;
    let telegram = field(body.telegram_id.as_deref().map(TelegramChat::parse).transpose())?;
    let algorithm = field(body.algorithm.as_deref().map(Algorithm::parse).transpose())?;
    let digits = body
        .digits
        .map(|d| parse_digits(&d.to_string()))
        .transpose()
        .map_err(|e| InvalidRequest::new(format!("digits: {e}")))?;
    Ok((username, email, telegram, algorithm, digits))
}

/// A contact change: `None` keeps the field, `Some(None)` clears it.
pub type ContactChange = (Option<Option<EmailAddress>>, Option<Option<TelegramChat>>);

/// `PATCH /admin/users/{name}`, as `server::admin::update_user` reads it.
pub fn update_user_body(bytes: &[u8]) -> Result<ContactChange, InvalidRequest> {
    let body: Map<String, Value> = json(bytes)?;
    if let Some(unknown) = body.keys().find(|k| *k != "email" && *k != "telegram_id") {
        return Err(InvalidRequest::new(format!(
            "unknown field '{unknown}': only email and telegram_id can be changed"
        )));
    }
    fn change<T>(
        body: &Map<String, Value>,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<Option<T>>, InvalidRequest> {
        match body.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(field(parse(s))?))),
            Some(_) => Err(InvalidRequest::new(format!("{key} must be a string or null"))),
        }
    }
    Ok((change(&body, "email", EmailAddress::parse)?, change(&body, "telegram_id", TelegramChat::parse)?))
}

/// The query of `GET /admin/users`, as `server::admin::list_users` reads it: page size and
/// the name to start after. An error is the 400's detail.
pub fn list_users_query(query: &str) -> Result<(u32, Option<Username>), String> {
    let uri: axum::http::Uri = format!("/admin/users?{query}").parse().map_err(|e| format!("not a URI: {e}"))?;
    let Query(page) = Query::<Page>::try_from_uri(&uri).map_err(|e| e.body_text())?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(format!("limit must be from 1 to {MAX_PAGE}"));
    }
    Ok((limit, page.after.as_deref().map(Username::parse).transpose()?))
}

/// `POST /send` of the notification service, through the handler's own `validate`.
pub fn send_body(bytes: &[u8]) -> Result<Delivery, InvalidRequest> {
    let body: SendBody = json(bytes)?;
    validate(body, "MFA notification").map_err(|e| match e {
        NotifyError::Invalid(invalid) => invalid,
        // `validate` only ever rejects with `Invalid`; a delivery error here is a bug.
        NotifyError::Delivery { error, .. } => InvalidRequest::new(format!("BUG: delivery error {}", error.detail)),
    })
}

/// A `.env` file's text as start-up reads it: the dotenv grammar, then the whole `Settings`
/// reader. `environment` plays the process environment (it wins, and answers `${NAME}`).
pub fn config(text: &str, environment: &[(String, String)]) -> (EnvMap, Result<Settings, ConfigErrors>) {
    let lookup = |name: &str| environment.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let file = dotenv::parse(text, &lookup);
    let mut env = EnvMap::from_pairs(file.entries, environment.iter().cloned());
    env.bad_dotenv_lines = file.bad_lines;
    let settings = Settings::from_env(&env);
    (env, settings)
}

/// What every rejection of a request body must be: a 4xx status and a detail that says why.
pub fn is_clear_rejection(e: &InvalidRequest) -> bool {
    e.status.is_client_error() && !e.detail.trim().is_empty() && !e.detail.starts_with("BUG:")
}

/// What every configuration error must be: it names a variable and says what is wrong. The
/// catch-all `configuration` entry (a value failed without saying why) counts as a bug.
pub fn is_clear_config_error(e: &ConfigError) -> bool {
    !e.var.trim().is_empty() && e.var != "configuration" && !e.reason.trim().is_empty()
}
