//! The OpenAPI 3.1 documents, generated from the handlers' `#[utoipa::path]` attributes and
//! the routers built with `utoipa_axum` (a route cannot be served without being documented,
//! nor documented without being served). Each service serves its own at `/openapi.json`.
//!
//! The schemas of the domain types the API carries as strings are stated here, from the
//! patterns that live next to their parsers.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder, Server};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::domain::{TELEGRAM_CHAT_PATTERN, TelegramChat, USERNAME_PATTERN, Username};
use crate::http::{ErrorBody, ErrorCode, JsonReply};
use crate::otp::Algorithm;

/// `crate::domain::EmailAddress` as a pattern: at most 64 characters before the `@` (the
/// lookahead), a dot-atom local part, `@`, two or more letter-digit-hyphen labels of at
/// most 63 characters. With a length of at most 254, exactly the rule.
pub const EMAIL_PATTERN: &str = concat!(
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
);

/// One string schema (not a combination of several, which client generators turn into
/// an object model).
fn email(nullable: bool) -> Schema {
    let kind = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { Type::String.into() };
    ObjectBuilder::new()
        .schema_type(kind)
        .description(Some("An email address: at most 254 characters, at most 64 of them before the `@`."))
        .max_length(Some(crate::domain::EMAIL_MAX_LEN))
        .pattern(Some(EMAIL_PATTERN))
        .examples(["dair@example.com"])
        .into()
}

/// `/verify`'s `token`: a one-time code or a recovery code, as one string schema (its
/// pattern is either's).
pub fn token_schema() -> Schema {
    let either = format!("{}|{}", crate::domain::OTP_CODE_PATTERN, crate::domain::RECOVERY_CODE_PATTERN);
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A one-time code of 6 to 8 digits, or a recovery code (12 letters and digits, `xxxx-xxxx-xxxx`); \
             spaces (and a recovery code's dashes and case) are ignored.",
        ))
        .pattern(Some(either))
        .examples(["123456"])
        .into()
}

/// An email address (`schema_with` for a required field).
pub fn email_schema() -> Schema {
    email(false)
}

/// An email address or `null` (`schema_with` for an optional field).
pub fn optional_email_schema() -> Schema {
    email(true)
}

/// A user name: the schema of [`Username`], which every body and path uses.
impl PartialSchema for Username {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 64 characters of `a-z 0-9 . _ - @ +` (case-insensitive), starting with a letter or digit.",
            ))
            .pattern(Some(USERNAME_PATTERN))
            .examples(["dair"])
            .into()
    }
}

impl ToSchema for Username {}

/// A Telegram chat id or `@channel`.
impl PartialSchema for TelegramChat {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A Telegram chat id (negative for groups) or a public `@channel`."))
            .pattern(Some(TELEGRAM_CHAT_PATTERN))
            .examples(["123456789"])
            .into()
    }
}

impl ToSchema for TelegramChat {}

/// The HMAC algorithm, spelled exactly so over the API (`OTP_ALGORITHM` is more lenient).
impl PartialSchema for Algorithm {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512].map(Algorithm::as_str)))
            .examples(["SHA1"])
            .into()
    }
}

impl ToSchema for Algorithm {}

/// The bearer tokens a document's operations may require, by security scheme name.
pub enum Bearer {
    ApiKey,
    AdminToken,
    NotifyToken,
}

impl Bearer {
    fn scheme(&self) -> (&'static str, &'static str) {
        match self {
            Self::ApiKey => ("api_key", "MFA_API_KEYS: required on /request-otp and /verify when set"),
            Self::AdminToken => ("admin_token", "ADMIN_TOKEN: required on /admin/*"),
            Self::NotifyToken => ("notify_token", "NOTIFY_API_TOKEN: required on /send when set"),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MFA server",
        description = "TOTP (RFC 6238), HOTP (RFC 4226), sent one-time codes and recovery codes: \
                       /request-otp, /verify, /healthcheck, the admin API (only when ADMIN_TOKEN is set) \
                       and /metrics."
    ),
    // `AuthenticatorId` is a path parameter's schema: utoipa collects only the bodies'.
    components(schemas(ErrorBody, ErrorCode, crate::api::admin::AuthenticatorId))
)]
pub struct MfaDoc;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Notification service",
        description = "Delivers messages by email (SMTP) and Telegram: /send, /healthcheck, /metrics."
    ),
    components(schemas(ErrorBody, ErrorCode))
)]
pub struct NotifierDoc;

/// Finishes a generated document: version, the server it describes, the bearer schemes its
/// served operations use (only those), and the answer every operation may give before its
/// handler runs.
pub fn finish(mut doc: Document, server: &str, bearers: &[Bearer]) -> Arc<Document> {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.servers = Some(vec![Server::new(server)]);
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, what) in bearers.iter().map(Bearer::scheme) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build();
        components.add_security_scheme(name, SecurityScheme::Http(scheme));
    }
    let misdirected = ResponseBuilder::new()
        .description(
            "invalid_request: the Host header is neither an IP address, localhost, nor a name in ALLOWED_HOSTS",
        )
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            operation.responses.responses.entry("421".into()).or_insert_with(|| misdirected.clone().into());
            for (status, response) in &mut operation.responses.responses {
                // OpenAPI requires a description on every response.
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = default_description(status).into();
                }
            }
        }
    }
    Arc::new(doc)
}

/// What a response with no description of its own means, by status.
fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "created",
        "204" => "done; no body",
        "400" => "invalid_request: the body, query or path is not what this operation takes",
        "401" => "unauthorized: the bearer token is missing or wrong",
        "404" => "unknown_user: no user has this name",
        "409" => "conflict: see `error`",
        "413" => "invalid_request: the body is too large",
        "415" => "invalid_request: the body is not application/json",
        "429" => "too many requests; `Retry-After` says when to ask again",
        "503" => "database_unavailable: try again after `Retry-After` seconds",
        _ => "see `error` and `detail`",
    }
}

/// The `/openapi.json` response.
pub fn response(doc: &Document) -> Response {
    JsonReply(doc).into_response()
}
