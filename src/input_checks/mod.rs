//! Raw outside input in, parsed value or clear error out: the entry points that the property
//! tests (here, in `proptests`, and next to each parser) and the cargo-fuzz targets
//! (`fuzz/`) drive. Compiled only for `cfg(test)` and `cfg(fuzzing)` (cargo-fuzz sets it),
//! never into the shipped binary.
//!
//! Nothing here repeats a handler's checks. A JSON body goes through `read_json_object`,
//! what the services' `AppJson` extractor does once the content type and size have passed,
//! then through the very function its handler calls to validate it: `VerifyBody::validate`,
//! `RequestOtpBody::validate`, `CreateUser::validate`, `ContactUpdate::validate`,
//! `CreateAuthenticator::validate`, `ResyncRequest::validate`, and `SendRequest::validate`
//! for `/send`. The admin list query goes through axum's `Query`,
//! as `AppQuery` does, then `Page::validate`. A change to a handler's validation is thus
//! what the properties and the fuzzer test, with no copy to keep in step.

#[cfg(test)]
mod proptests;

use axum::extract::Query;

use crate::api::admin::{ContactUpdate, CreateAuthenticator, CreateUser, Page, ResyncRequest};
use crate::api::routes::{RequestOtpBody, VerifyBody};
use crate::config::{ConfigErrors, EnvMap, Settings};
use crate::domain::{Channel, Token, Username};
use crate::http::{InvalidRequest, read_json_object as json};
use crate::notify::Delivery;
use crate::notify::wire::SendRequest;
pub use crate::users::{ContactChange, NewAuthenticator, NewUser, ResyncCodes};

/// `POST /verify`, as `api::routes::verify` reads it.
pub fn verify_body(bytes: &[u8]) -> Result<(Username, Token), InvalidRequest> {
    json::<VerifyBody>(bytes)?.validate()
}

/// `POST /request-otp`, as `api::routes::request_otp` reads it.
pub fn request_otp_body(bytes: &[u8]) -> Result<(Username, Option<Channel>), InvalidRequest> {
    json::<RequestOtpBody>(bytes)?.validate()
}

/// `POST /admin/users`, as `api::admin::create_user` reads it.
pub fn create_user_body(bytes: &[u8]) -> Result<NewUser, InvalidRequest> {
    json::<CreateUser>(bytes)?.validate()
}

/// `PATCH /admin/users/{name}`, as `api::admin::update_user` reads it (before it fills
/// the absent fields with the user's current values).
pub fn update_user_body(bytes: &[u8]) -> Result<ContactChange, InvalidRequest> {
    json::<ContactUpdate>(bytes)?.validate()
}

/// `POST /admin/users/{name}/authenticators`, as `api::admin::create_authenticator` reads it.
pub fn create_authenticator_body(bytes: &[u8]) -> Result<NewAuthenticator, InvalidRequest> {
    json::<CreateAuthenticator>(bytes)?.validate()
}

/// `POST /admin/users/{name}/authenticators/{id}/resync`, as `api::admin::resync_authenticator`
/// reads it.
pub fn resync_body(bytes: &[u8]) -> Result<ResyncCodes, InvalidRequest> {
    json::<ResyncRequest>(bytes)?.validate()
}

/// The query of `GET /admin/users`, as `api::admin::list_users` reads it: page size and
/// the name to start after. An error is the 400's detail.
pub fn list_users_query(query: &str) -> Result<(u32, Option<Username>), String> {
    let uri: axum::http::Uri = format!("/admin/users?{query}").parse().map_err(|e| format!("not a URI: {e}"))?;
    let Query(page) = Query::<Page>::try_from_uri(&uri).map_err(|e| e.body_text())?;
    page.validate().map_err(|e| e.detail)
}

/// `POST /send` of the notification service, through its own `validate`.
pub fn send_body(bytes: &[u8]) -> Result<Delivery, InvalidRequest> {
    json::<SendRequest>(bytes)?.validate("MFA notification")
}

/// A `.env` file's text as start-up reads it: the dotenv grammar, then the whole `Settings`
/// reader. `environment` plays the process environment (it wins, and answers `${NAME}`).
pub fn config(text: &str, environment: &[(String, String)]) -> (EnvMap, Result<Settings, ConfigErrors>) {
    let env = EnvMap::from_dotenv_text(text, environment.to_vec());
    let settings = Settings::from_env(&env);
    (env, settings)
}

/// What every rejection of a request body must be: a 4xx status and a detail that says why.
pub fn is_clear_rejection(e: &InvalidRequest) -> bool {
    e.status.is_client_error() && !e.detail.trim().is_empty() && !e.detail.starts_with("BUG:")
}
