//! The admin API under `/admin/`, mounted only when `ADMIN_TOKEN` is set (otherwise every
//! `/admin/...` path is a plain 404). Every request needs `Authorization: Bearer
//! <ADMIN_TOKEN>`; responses that carry a secret are sent with `Cache-Control: no-store`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::ClientIp;
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::http::{
    AppJson, AppPath, AppQuery, InvalidRequest, has_bearer, json_error, json_error_retry_after, unauthorized,
};
use crate::openapi::{DetailedError, ErrorBody, RetryLater};
use crate::otp::OtpParams;
use crate::otp::{Algorithm, parse_digits};
use crate::store::UserRecord;
use crate::users::{self, EnrollError, Enrollment, NewEnrollment};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// Failures of the admin API, mapped to statuses in one place.
pub enum AdminError {
    Invalid(InvalidRequest),
    Enroll(EnrollError),
    QrExpired,
}

impl From<InvalidRequest> for AdminError {
    fn from(e: InvalidRequest) -> Self {
        Self::Invalid(e)
    }
}

impl From<EnrollError> for AdminError {
    fn from(e: EnrollError) -> Self {
        Self::Enroll(e)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(e) => e.into_response(),
            Self::QrExpired => json_error(
                StatusCode::GONE,
                json!({"error": "qr_expired", "detail": "the QR code is only served until the first verification, \
                       for 10 minutes after the secret was issued; rotate the secret for a new one"}),
            ),
            Self::Enroll(e) => {
                let detail = e.to_string();
                match e {
                    EnrollError::NotFound(_) => json_error(StatusCode::NOT_FOUND, json!({"error": "unknown_user"})),
                    EnrollError::Exists(_) => {
                        json_error(StatusCode::CONFLICT, json!({"error": "user_exists", "detail": detail}))
                    }
                    EnrollError::DefinedInEnv { .. } => {
                        json_error(StatusCode::CONFLICT, json!({"error": "defined_in_env", "detail": detail}))
                    }
                    EnrollError::Store(store) if store.is_unavailable() => {
                        tracing::error!(error = %detail, "database unavailable");
                        json_error_retry_after(
                            StatusCode::SERVICE_UNAVAILABLE,
                            json!({"error": "database_unavailable", "retry_after": 5}),
                            5,
                        )
                    }
                    EnrollError::Conflict { .. } | EnrollError::Store(_) | EnrollError::Other(_) => {
                        tracing::error!(error = %detail, "admin request failed");
                        json_error(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal_error"}))
                    }
                }
            }
        }
    }
}

/// `SHA1`, `SHA256` or `SHA512` exactly: an API has no need for `OTP_ALGORITHM`'s leniency,
/// and its schema can then say precisely what is accepted.
fn exact_algorithm(raw: &str) -> Result<Algorithm, InvalidRequest> {
    match raw {
        "SHA1" | "SHA256" | "SHA512" => Algorithm::parse(raw).map_err(InvalidRequest::new),
        other => Err(InvalidRequest::new(format!("unknown algorithm '{other}': use SHA1, SHA256 or SHA512"))),
    }
}

/// A JSON number that is a whole number, as text: JSON Schema's `integer` includes `6.0`.
fn whole_number(n: &serde_json::Number) -> Option<String> {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Some(i.to_string()),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{f:.0}")),
        _ => None,
    }
}

fn username(raw: &str) -> Result<Username, AdminError> {
    Username::parse(raw).map_err(|e| AdminError::Invalid(InvalidRequest::new(e)))
}

/// A user as the admin API shows it: never the secret.
fn user_json(user: &UserRecord, state: &AppState) -> Value {
    let p = &user.profile;
    let now = state.service.clock.now();
    let locked_for = state.service.policy.lockout.locked_for(user.lock, now);
    json!({
        "username": p.username.as_str(),
        "email": p.email,
        "telegram_id": p.telegram_id,
        "algorithm": p.params.algorithm.as_str(),
        "digits": p.params.digits,
        "period": p.params.period,
        "source": p.source.as_str(),
        "failed_attempts": user.lock.failed_attempts,
        "locked": locked_for.is_some(),
        "locked_until": locked_for.and(user.lock.locked_until),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The one-time view of a new secret: the user, the secret, its URI and QR code.
async fn enrollment_response(state: &AppState, status: StatusCode, e: Enrollment) -> Result<Response, AdminError> {
    let user = state.service.store.user(&e.username).await.map_err(EnrollError::from)?;
    let mut body = user.as_ref().map_or_else(|| json!({}), |u| user_json(u, state));
    body["secret"] = json!(e.secret.to_base32());
    body["otpauth_uri"] = json!(e.otpauth_uri);
    body["qr_svg"] = json!(users::qr_svg(&e.otpauth_uri)?);
    body["qr_png_url"] = json!(format!("/admin/users/{}/qr.png", e.username));
    Ok(no_store((status, Json(body)).into_response()))
}

/// A user as the admin API shows it (never the secret).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON that `user_json` builds
pub struct AdminUser {
    username: String,
    email: Option<String>,
    telegram_id: Option<String>,
    #[schema(example = "SHA1")]
    algorithm: String,
    digits: u8,
    period: u64,
    /// `env` (defined in .env) or `cli` (CLI or admin API)
    source: String,
    failed_attempts: u32,
    locked: bool,
    locked_until: Option<u64>,
    created_at: u64,
    updated_at: u64,
}

/// An [`AdminUser`] plus its new secret, shown once (`Cache-Control: no-store`).
#[derive(serde::Serialize, utoipa::ToSchema)] // Serialize only for `flatten`: documents `enrollment_response`
#[allow(dead_code)]
pub struct AdminEnrollment {
    #[serde(flatten)]
    user: AdminUser,
    /// base32
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
    qr_png_url: String,
}

/// `{"users": [...], "next": "NAME" | null}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UserPage {
    users: Vec<AdminUser>,
    next: Option<String>,
}

/// Deserializes a field that is present (even as `null`) to `Some`, so that an absent field
/// (`None`, by `#[serde(default)]`) can be told from a `null` one (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A contact change: `None` keeps the field, `Some(None)` clears it.
pub type ContactChange = (Option<Option<EmailAddress>>, Option<Option<TelegramChat>>);

/// Fields to change; absent: kept, `null`: cleared. Any other field, or a field given twice,
/// is refused (400): the body's meaning must not depend on which duplicate a parser keeps.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUpdate {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::optional_email_schema)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^(?:-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$")]
    pub telegram_id: Option<Option<String>>,
}

impl ContactUpdate {
    /// The change asked for, or why the body is refused: the email first, then the chat.
    /// `update_user` checks its body with this (after [`Self::or_current`]), and so do the
    /// property tests and the fuzzer (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<ContactChange, InvalidRequest> {
        let email = self.email.map(|e| e.as_deref().map(EmailAddress::parse).transpose());
        let email = email.transpose().map_err(InvalidRequest::new)?;
        let telegram = self.telegram_id.map(|t| t.as_deref().map(TelegramChat::parse).transpose());
        let telegram = telegram.transpose().map_err(InvalidRequest::new)?;
        Ok((email, telegram))
    }

    /// The absent fields filled in with the user's current values, which are then validated
    /// again like new ones.
    fn or_current(self, current: &UserRecord) -> Self {
        let p = &current.profile;
        Self {
            email: Some(self.email.unwrap_or_else(|| p.email.clone())),
            telegram_id: Some(self.telegram_id.unwrap_or_else(|| p.telegram_id.clone())),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$", example = "carol")]
    pub username: String,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_email_schema)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^(?:-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$", example = "123456789")]
    pub telegram_id: Option<String>,
    /// `SHA1`, `SHA256` or `SHA512`; `OTP_ALGORITHM` when absent.
    #[serde(default)]
    #[schema(value_type = Option<AlgorithmName>)]
    pub algorithm: Option<String>,
    /// 6 to 8; `OTP_DIGITS` when absent.
    #[serde(default)]
    #[schema(value_type = Option<u8>, minimum = 6, maximum = 8)]
    pub digits: Option<serde_json::Number>,
}

/// A [`CreateUser`] body, validated: name, contacts, algorithm and digits (`None`: the
/// `OTP_*` default).
pub type NewUser = (Username, Option<EmailAddress>, Option<TelegramChat>, Option<Algorithm>, Option<u8>);

impl CreateUser {
    /// The user to enroll, or why the body is refused, checking the fields in this order.
    /// `create_user` checks its body with this, and so do the property tests and the fuzzer
    /// (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<NewUser, InvalidRequest> {
        let username = Username::parse(&self.username).map_err(InvalidRequest::new)?;
        let email = self.email.as_deref().map(EmailAddress::parse).transpose().map_err(InvalidRequest::new)?;
        let telegram = self.telegram_id.as_deref().map(TelegramChat::parse).transpose().map_err(InvalidRequest::new)?;
        let algorithm = self.algorithm.as_deref().map(exact_algorithm).transpose()?;
        let digits = self
            .digits
            .map(|d| whole_number(&d).map_or_else(|| Err(format!("'{d}' is not 6, 7 or 8")), |d| parse_digits(&d)))
            .transpose()
            .map_err(|e| InvalidRequest::new(format!("digits: {e}")))?;
        Ok((username, email, telegram, algorithm, digits))
    }
}

/// The HMAC algorithms, spelled exactly so over the API (`OTP_ALGORITHM` is more lenient).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum AlgorithmName {
    SHA1,
    SHA256,
    SHA512,
}

/// Enrolls a user with a fresh 160-bit secret: 201 with the secret, otpauth URI and QR code,
/// shown once.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = CreateUser, security(("admin_token" = [])),
    responses(
        (status = 201, body = AdminEnrollment, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 409, description = "user_exists, or defined_in_env", body = DetailedError),
        (status = 413, description = "body over 16 KiB", body = DetailedError),
        (status = 415, description = "not application/json", body = DetailedError),
        (status = 503, description = "database_unavailable", body = RetryLater),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<CreateUser>,
) -> Result<Response, AdminError> {
    let (username, email, telegram, algorithm, digits) = body.validate()?;
    let defaults = state.settings.otp;
    let params = OtpParams {
        algorithm: algorithm.unwrap_or(defaults.algorithm),
        digits: digits.unwrap_or(defaults.digits),
        period: defaults.period,
    };
    let new = NewEnrollment { username, email, telegram, params };
    let service = &state.service;
    let enrolled = users::add(service.store.as_ref(), &service.keys, &state.settings, new, service.clock.now()).await?;
    tracing::info!(event = "admin", action = "create_user", username = %enrolled.username, client_ip = %ip);
    enrollment_response(&state, StatusCode::CREATED, enrolled).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 500, default 50
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` of the previous page: a user name
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")]
    pub after: Option<String>,
}

impl Page {
    /// The page size and the name to start after, or why the query is refused. `list_users`
    /// checks its query with this, and so do the property tests and the fuzzer
    /// (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<(u32, Option<Username>), InvalidRequest> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(InvalidRequest::new(format!("limit must be from 1 to {MAX_PAGE}")));
        }
        let after = self.after.as_deref().map(Username::parse).transpose().map_err(InvalidRequest::new)?;
        Ok((limit, after))
    }
}

/// Users by name, a page at a time; `next` is the `after` of the next page.
#[utoipa::path(get, path = "/admin/users", tag = "admin", params(Page), security(("admin_token" = [])),
    responses((status = 200, body = UserPage), (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater)))]
pub async fn list_users(
    State(state): State<AppState>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Value>, AdminError> {
    let (limit, after) = page.validate()?;
    let users = state.service.store.users_page(after.as_ref(), limit).await.map_err(EnrollError::from)?;
    let next = (users.len() == limit as usize).then(|| users.last().map(|u| u.profile.username.to_string())).flatten();
    let users: Vec<Value> = users.iter().map(|u| user_json(u, &state)).collect();
    Ok(Json(json!({"users": users, "next": next})))
}

async fn find(state: &AppState, name: &str) -> Result<UserRecord, AdminError> {
    let name = username(name)?;
    let user = state.service.store.user(&name).await.map_err(EnrollError::from)?;
    user.ok_or(AdminError::Enroll(EnrollError::NotFound(name)))
}

/// One user, never the secret.
#[utoipa::path(get, path = "/admin/users/{username}", tag = "admin", security(("admin_token" = [])),
    params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses((status = 200, body = AdminUser), (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater), (status = 404, body = ErrorBody)))]
pub async fn show_user(
    State(state): State<AppState>,
    AppPath(name): AppPath<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(user_json(&find(&state, &name).await?, &state)))
}

/// Changes contact details: a field that is absent is kept, `null` clears it.
#[utoipa::path(patch, path = "/admin/users/{username}", tag = "admin", request_body = ContactUpdate,
    security(("admin_token" = [])), params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses(
        (status = 200, body = AdminUser), (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater),
        (status = 404, body = ErrorBody), (status = 409, description = "defined_in_env", body = DetailedError),
        (status = 413, description = "body over 16 KiB", body = DetailedError),
        (status = 415, description = "not application/json", body = DetailedError),
    ))]
pub async fn update_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
    AppJson(body): AppJson<ContactUpdate>,
) -> Result<Json<Value>, AdminError> {
    let current = find(&state, &name).await?;
    // Both fields are present after `or_current`, so each is `Some`: the value to store.
    let (email, telegram) = body.or_current(&current).validate()?;
    let (email, telegram) = (email.flatten(), telegram.flatten());
    let service = &state.service;
    let name = current.profile.username;
    let user = users::update_contact(
        service.store.as_ref(),
        &state.settings,
        &name,
        email.as_ref(),
        telegram.as_ref(),
        service.clock.now(),
    )
    .await?;
    tracing::info!(event = "admin", action = "update_user", username = %name, client_ip = %ip);
    Ok(Json(user_json(&user, &state)))
}

/// Issues a new secret, shown once; the old one stops working at once.
#[utoipa::path(post, path = "/admin/users/{username}/rotate", tag = "admin", security(("admin_token" = [])),
    params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses(
        (status = 200, body = AdminEnrollment, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env", body = DetailedError),
    ))]
pub async fn rotate_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<Response, AdminError> {
    let name = username(&name)?;
    let service = &state.service;
    let rotated =
        users::rotate(service.store.as_ref(), &service.keys, &state.settings, &name, service.clock.now()).await?;
    tracing::info!(event = "admin", action = "rotate_secret", username = %name, client_ip = %ip);
    enrollment_response(&state, StatusCode::OK, rotated).await
}

/// Clears failed attempts and any lockout.
#[utoipa::path(post, path = "/admin/users/{username}/unlock", tag = "admin", security(("admin_token" = [])),
    params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses((status = 200, body = AdminUser), (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater), (status = 404, body = ErrorBody)))]
pub async fn unlock_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<Json<Value>, AdminError> {
    let name = username(&name)?;
    users::unlock(state.service.store.as_ref(), &name).await?;
    tracing::info!(event = "admin", action = "unlock", username = %name, client_ip = %ip);
    Ok(Json(user_json(&find(&state, name.as_str()).await?, &state)))
}

/// Removes a user.
#[utoipa::path(delete, path = "/admin/users/{username}", tag = "admin", security(("admin_token" = [])),
    params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses(
        (status = 204, description = "removed"), (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env", body = DetailedError),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<StatusCode, AdminError> {
    let name = username(&name)?;
    users::remove(state.service.store.as_ref(), &state.settings, &name).await?;
    tracing::info!(event = "admin", action = "delete_user", username = %name, client_ip = %ip);
    Ok(StatusCode::NO_CONTENT)
}

/// The enrollment QR code, while the secret is fresh: until the first verification, for at
/// most 10 minutes after it was issued; 410 afterwards.
#[utoipa::path(get, path = "/admin/users/{username}/qr.png", tag = "admin", security(("admin_token" = [])),
    params(("username" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")),
    responses(
        (status = 200, description = "PNG image", content_type = "image/png",
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = DetailedError), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = RetryLater), (status = 404, body = ErrorBody),
        (status = 410, description = "qr_expired", body = DetailedError),
    ))]
pub async fn qr_png(State(state): State<AppState>, AppPath(name): AppPath<String>) -> Result<Response, AdminError> {
    let user = find(&state, &name).await?;
    let now = state.service.clock.now();
    let uri =
        users::fresh_enrollment_uri(&state.service.keys, &state.settings, &user, now)?.ok_or(AdminError::QrExpired)?;
    let png = users::qr_png(&uri)?;
    Ok(no_store(([(header::CONTENT_TYPE, "image/png")], png).into_response()))
}

async fn require_admin_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match &state.settings.admin_token {
        Some(token) if has_bearer(request.headers(), std::slice::from_ref(token)) => next.run(request).await,
        _ => {
            tracing::warn!(event = "admin_unauthorized", path = %request.uri().path(), "admin request without ADMIN_TOKEN");
            unauthorized()
        }
    }
}

/// The admin routes, guarded by `ADMIN_TOKEN`.
pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(show_user, update_user, delete_user))
        .routes(routes!(rotate_user))
        .routes(routes!(unlock_user))
        .routes(routes!(qr_png))
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin_token))
}
