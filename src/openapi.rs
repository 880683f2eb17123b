//! The OpenAPI 3.1 documents, generated from the handlers' `#[utoipa::path]` attributes and
//! the routers built with `utoipa_axum` (a route cannot be served without being documented,
//! nor documented without being served). Each service serves its own at `/openapi.json`.
//!
//! The schemas below describe the JSON error bodies; every one has a stable `error` code.

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Server};
use utoipa::{Modify, OpenApi, ToSchema};

/// `crate::domain::EmailAddress` as a pattern: a dot-atom local part, `@`, two or more
/// letter-digit-hyphen labels of at most 63 characters. With [`EMAIL_LOCAL_PATTERN`] (the
/// local part is at most 64 characters) and a length of at most 254, exactly the rule.
pub const EMAIL_PATTERN: &str = concat!(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
);
pub const EMAIL_LOCAL_PATTERN: &str = "^[^@]{1,64}@";

fn email(nullable: bool) -> Schema {
    let kind = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { Type::String.into() };
    let grammar = ObjectBuilder::new()
        .schema_type(kind)
        .max_length(Some(crate::domain::EMAIL_MAX_LEN))
        .pattern(Some(EMAIL_PATTERN))
        .examples(["dair@example.com"]);
    Schema::AllOf(
        AllOfBuilder::new()
            .item(grammar)
            .item(ObjectBuilder::new().schema_type(SchemaType::AnyValue).pattern(Some(EMAIL_LOCAL_PATTERN)))
            .build(),
    )
}

/// An email address (`schema_with` for a required field).
pub fn email_schema() -> Schema {
    email(false)
}

/// An email address or `null` (`schema_with` for an optional field).
pub fn optional_email_schema() -> Schema {
    email(true)
}

/// `{"error": "<code>"}`: `unknown_user`, `not_found`, `unauthorized`, `internal_error`, ...
#[derive(ToSchema)]
pub struct ErrorBody {
    #[schema(example = "unknown_user")]
    pub error: String,
}

/// `{"error": "<code>", "detail": "..."}`: `invalid_request`, `no_delivery_channel`,
/// `delivery_failed`, `user_exists`, `defined_in_env`, `qr_expired`.
#[derive(ToSchema)]
pub struct DetailedError {
    #[schema(example = "invalid_request")]
    pub error: String,
    #[schema(example = "token must be a string of 6 to 8 digits")]
    pub detail: String,
}

/// A 429: `too_many_attempts` (locked out), `resend_too_soon`, `rate_limited`; the same
/// number of seconds is in the `Retry-After` header.
#[derive(ToSchema)]
pub struct RetryLater {
    #[schema(example = "too_many_attempts")]
    pub error: String,
    #[schema(example = 300)]
    pub retry_after: u64,
}

/// `{"valid": true}`
#[derive(ToSchema)]
pub struct Valid {
    #[schema(example = true)]
    pub valid: bool,
}

/// `{"valid": false, "error": "invalid_token"}`: a wrong, expired or already used code.
#[derive(ToSchema)]
pub struct InvalidToken {
    #[schema(example = false)]
    pub valid: bool,
    #[schema(example = "invalid_token")]
    pub error: String,
}

/// `{"error": "delivery_failed", "channel", "detail", "attempts"}` from `/send`.
#[derive(ToSchema)]
pub struct DeliveryFailed {
    #[schema(example = "delivery_failed")]
    pub error: String,
    #[schema(example = "email")]
    pub channel: String,
    #[schema(example = "SMTP server refused the message (550): 5.1.1 No such user here")]
    pub detail: String,
    #[schema(example = 1)]
    pub attempts: u32,
}

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("api_key", "MFA_API_KEYS: required on /request-otp and /verify when set"),
            ("admin_token", "ADMIN_TOKEN: required on /admin/*"),
            ("notify_token", "NOTIFY_API_TOKEN: required on /send when set"),
        ] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MFA server",
        description = "TOTP (RFC 6238) and sent one-time codes: /request-otp, /verify, /healthcheck, \
                       the admin API (only when ADMIN_TOKEN is set) and /metrics."
    ),
    modifiers(&BearerSchemes),
    components(schemas(ErrorBody, DetailedError, RetryLater, Valid, InvalidToken))
)]
pub struct MfaDoc;

#[derive(OpenApi)]
#[openapi(
    info(title = "Notification service", description = "Delivers messages by email (SMTP) and Telegram: /send, /healthcheck, /metrics."),
    modifiers(&BearerSchemes),
    components(schemas(ErrorBody, DetailedError, DeliveryFailed))
)]
pub struct NotifierDoc;

/// Finishes a generated document: version and the server it describes.
pub fn finish(mut doc: Document, server: &str) -> Arc<Document> {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.servers = Some(vec![Server::new(server)]);
    Arc::new(doc)
}

/// The `/openapi.json` response.
pub fn response(doc: &Document) -> Response {
    Json(doc).into_response()
}
