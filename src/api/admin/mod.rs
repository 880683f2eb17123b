//! The admin API under `/admin/`, mounted only when `ADMIN_TOKEN` is set (otherwise every
//! `/admin/...` path is a plain 404). Every request needs `Authorization: Bearer
//! <ADMIN_TOKEN>`; responses that carry a secret are sent with `Cache-Control: no-store`.
//! Each handler parses, calls [`crate::users::UserService`], and answers.

mod wire;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::extract::ClientIp;
use crate::domain::Username;
use crate::http::{
    AppJson, AppPath, AppQuery, AuthRefusal, ErrorBody, InvalidRequest, JsonReply, LOGGED_PATH_CHARS, json_response,
};
use crate::telemetry::printable;
use crate::users::{Enrollment, UserSource, qr_svg};
pub use wire::{
    AdminAuthenticator, AdminAuthenticatorEnrollment, AdminAuthenticatorList, AdminEnrollment, AdminUser,
    AdminUserPage, AuthenticatorId, ContactUpdate, CreateAuthenticator, CreateUser, DEFAULT_PAGE, MAX_PAGE, Page,
    RecoveryCodeSet, RecoveryCodesLeft, ResyncRequest, TelegramLinkReply,
};

fn username(raw: &str) -> Result<Username, ApiError> {
    Username::parse(raw).map_err(|e| InvalidRequest::new(e).into())
}

/// The one-time view of a new secret: the user, the secret, its URI and QR code.
fn enrollment_response(status: StatusCode, enrollment: &Enrollment) -> Result<Response, ApiError> {
    let body = AdminEnrollment::new(enrollment, qr_svg(&enrollment.otpauth_uri)?);
    Ok(no_store(json_response(status, &body)))
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Enrolls a user with a fresh 160-bit secret: 201 with the secret, otpauth URI and QR code,
/// shown once.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = CreateUser, security(("admin_token" = [])),
    responses(
        (status = 201, body = AdminEnrollment, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "user_exists, or defined_in_env", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<CreateUser>,
) -> Result<Response, ApiError> {
    let enrolled = state.users.add(body.validate()?, UserSource::Admin).await?;
    let name = &enrolled.user.record.profile.username;
    tracing::info!(event = "admin", action = "create_user", username = %name, client_ip = %ip);
    enrollment_response(StatusCode::CREATED, &enrolled)
}

/// Users by name, a page at a time; `next` is the `after` of the next page.
#[utoipa::path(get, path = "/admin/users", tag = "admin", params(Page), security(("admin_token" = [])),
    responses((status = 200, body = AdminUserPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    AppQuery(page): AppQuery<Page>,
) -> Result<JsonReply<AdminUserPage>, ApiError> {
    let (limit, after) = page.validate()?;
    let page = state.users.page(after.as_ref(), limit).await?;
    Ok(JsonReply(AdminUserPage::from(&page)))
}

/// One user, never the secret.
#[utoipa::path(get, path = "/admin/users/{username}", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses((status = 200, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show_user(
    State(state): State<AppState>,
    AppPath(name): AppPath<String>,
) -> Result<JsonReply<AdminUser>, ApiError> {
    let user = state.users.find(&username(&name)?).await?;
    Ok(JsonReply(AdminUser::from(&user)))
}

/// Changes contact details: a field that is absent is kept, `null` clears it.
#[utoipa::path(patch, path = "/admin/users/{username}", tag = "admin", request_body = ContactUpdate,
    security(("admin_token" = [])), params(("username" = Username, Path)),
    responses(
        (status = 200, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "defined_in_env", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
    ))]
pub async fn update_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
    AppJson(body): AppJson<ContactUpdate>,
) -> Result<JsonReply<AdminUser>, ApiError> {
    let name = username(&name)?;
    state.users.find(&name).await?; // an unknown user is 404 whatever the body holds
    let user = state.users.update_contact(&name, body.validate()?).await?;
    tracing::info!(event = "admin", action = "update_user", username = %name, client_ip = %ip);
    Ok(JsonReply(AdminUser::from(&user)))
}

/// Issues a new secret, shown once, as a pending authenticator: the old one keeps working
/// until a code of the new one is accepted, which retires it.
#[utoipa::path(post, path = "/admin/users/{username}/rotate", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses(
        (status = 200, body = AdminEnrollment, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env", body = ErrorBody),
    ))]
pub async fn rotate_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<Response, ApiError> {
    let name = username(&name)?;
    let rotated = state.users.rotate(&name).await?;
    tracing::info!(event = "admin", action = "rotate_secret", username = %name, client_ip = %ip);
    enrollment_response(StatusCode::OK, &rotated)
}

/// Clears failed attempts and any lockout.
#[utoipa::path(post, path = "/admin/users/{username}/unlock", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses((status = 200, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlock_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<JsonReply<AdminUser>, ApiError> {
    let name = username(&name)?;
    let user = state.users.unlock(&name).await?;
    tracing::info!(event = "admin", action = "unlock", username = %name, client_ip = %ip);
    Ok(JsonReply(AdminUser::from(&user)))
}

/// Removes a user.
#[utoipa::path(delete, path = "/admin/users/{username}", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses(
        (status = 204, description = "removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env", body = ErrorBody),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = username(&name)?;
    state.users.remove(&name).await?;
    tracing::info!(event = "admin", action = "delete_user", username = %name, client_ip = %ip);
    Ok(StatusCode::NO_CONTENT)
}

/// An authenticator id from a path: 1 to 64 lower-case letters and digits.
fn authenticator_id(raw: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(raw.to_string())
    } else {
        Err(InvalidRequest::new("authenticator id: 1 to 64 lower-case letters and digits").into())
    }
}

/// The user's authenticators, oldest first; never a secret.
#[utoipa::path(get, path = "/admin/users/{username}/authenticators", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses((status = 200, body = AdminAuthenticatorList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody)))]
pub async fn list_authenticators(
    State(state): State<AppState>,
    AppPath(name): AppPath<String>,
) -> Result<JsonReply<AdminAuthenticatorList>, ApiError> {
    let list = state.users.authenticators(&username(&name)?).await?;
    Ok(JsonReply(AdminAuthenticatorList { authenticators: list.iter().map(AdminAuthenticator::from).collect() }))
}

/// Adds an authenticator with a fresh 160-bit secret, shown once. It is `pending` until its
/// first code is accepted by `/verify`, and removed if that does not happen within
/// `ENROLL_CONFIRM_SECONDS`.
#[utoipa::path(post, path = "/admin/users/{username}/authenticators", tag = "admin",
    request_body = CreateAuthenticator, security(("admin_token" = [])), params(("username" = Username, Path)),
    responses(
        (status = 201, body = AdminAuthenticatorEnrollment, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn create_authenticator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
    AppJson(body): AppJson<CreateAuthenticator>,
) -> Result<Response, ApiError> {
    let name = username(&name)?;
    state.users.find(&name).await?; // an unknown user is 404 whatever the body holds
    let enrolled = state.users.add_authenticator(&name, body.validate()?).await?;
    let id = &enrolled.authenticator.id;
    tracing::info!(event = "admin", action = "add_authenticator", username = %name, authenticator = %id, client_ip = %ip);
    let body = AdminAuthenticatorEnrollment::new(&enrolled, qr_svg(&enrolled.otpauth_uri)?);
    Ok(no_store(json_response(StatusCode::CREATED, &body)))
}

/// Removes an authenticator: its codes stop working at once.
#[utoipa::path(delete, path = "/admin/users/{username}/authenticators/{id}", tag = "admin",
    security(("admin_token" = [])), params(("username" = Username, Path), ("id" = AuthenticatorId, Path)),
    responses(
        (status = 204, description = "removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "unknown_user or unknown_authenticator", body = ErrorBody),
        (status = 409, description = "defined_in_env", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn delete_authenticator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath((name, id)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (name, id) = (username(&name)?, authenticator_id(&id)?);
    state.users.remove_authenticator(&name, &id).await?;
    tracing::info!(event = "admin", action = "remove_authenticator", username = %name, authenticator = %id, client_ip = %ip);
    Ok(StatusCode::NO_CONTENT)
}

/// Resynchronises an authenticator from two consecutive codes: an HOTP token pressed too
/// often (searched `HOTP_RESYNC_WINDOW` counters ahead), or a TOTP app whose clock is far
/// off (searched as many steps each side; its learned drift becomes their offset).
#[utoipa::path(post, path = "/admin/users/{username}/authenticators/{id}/resync", tag = "admin",
    request_body = ResyncRequest, security(("admin_token" = [])),
    params(("username" = Username, Path), ("id" = AuthenticatorId, Path)),
    responses(
        (status = 200, body = AdminAuthenticator), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "unknown_user or unknown_authenticator", body = ErrorBody),
        (status = 413, description = "body over 16 KiB", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "resync_failed: the codes are not consecutive codes within the window", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn resync_authenticator(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath((name, id)): AppPath<(String, String)>,
    AppJson(body): AppJson<ResyncRequest>,
) -> Result<JsonReply<AdminAuthenticator>, ApiError> {
    let (name, id) = (username(&name)?, authenticator_id(&id)?);
    let codes = body.validate()?;
    let synced = state.users.resync(&name, &id, &codes).await?;
    tracing::info!(event = "admin", action = "resync_authenticator", username = %name, authenticator = %id, client_ip = %ip);
    Ok(JsonReply(AdminAuthenticator::from(&synced)))
}

/// Generates 10 new recovery codes, shown once, replacing any earlier ones. Each works
/// once, in `/verify`'s `token`.
#[utoipa::path(post, path = "/admin/users/{username}/recovery-codes", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses(
        (status = 201, body = RecoveryCodeSet, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn create_recovery_codes(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<Response, ApiError> {
    let name = username(&name)?;
    let codes = state.users.new_recovery_codes(&name).await?;
    tracing::info!(event = "admin", action = "new_recovery_codes", username = %name, client_ip = %ip);
    let body = RecoveryCodeSet { codes: codes.iter().map(|c| c.display()).collect() };
    Ok(no_store(json_response(StatusCode::CREATED, &body)))
}

/// How many of the user's recovery codes are unused.
#[utoipa::path(get, path = "/admin/users/{username}/recovery-codes", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses((status = 200, body = RecoveryCodesLeft), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody)))]
pub async fn recovery_codes_left(
    State(state): State<AppState>,
    AppPath(name): AppPath<String>,
) -> Result<JsonReply<RecoveryCodesLeft>, ApiError> {
    let remaining = state.users.recovery_codes_remaining(&username(&name)?).await?;
    Ok(JsonReply(RecoveryCodesLeft { remaining }))
}

/// A link for the user's Telegram chat: opened in Telegram, it offers Start, which links
/// the chat to the user (the bot replies there). It works once, for 10 minutes; a new one
/// replaces the last.
#[utoipa::path(post, path = "/admin/users/{username}/telegram-link", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses(
        (status = 201, body = TelegramLinkReply, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "defined_in_env: the user's Telegram chat is set in `.env`", body = ErrorBody),
        (status = 502, description = "delivery_failed: the notification service or Telegram did not answer", body = ErrorBody),
        (status = 503, description = "channel_not_configured (no TELEGRAM_TOKEN), telegram_linking_off (TELEGRAM_UPDATES=off), or database_unavailable", body = ErrorBody),
    ))]
pub async fn create_telegram_link(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(name): AppPath<String>,
) -> Result<Response, ApiError> {
    let name = username(&name)?;
    let link = state.users.telegram_link(&name).await?;
    tracing::info!(event = "admin", action = "telegram_link", username = %name, client_ip = %ip);
    let body = TelegramLinkReply { expires_in: link.expires_in, url: link.url };
    Ok(no_store(json_response(StatusCode::CREATED, &body)))
}

/// The enrollment QR code of the user's newest authenticator, while it is fresh: until its
/// first accepted code, for at most 10 minutes after it was issued; 410 afterwards.
#[utoipa::path(get, path = "/admin/users/{username}/qr.png", tag = "admin", security(("admin_token" = [])),
    params(("username" = Username, Path)),
    responses(
        (status = 200, description = "PNG image", content_type = "image/png",
            headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "qr_expired", body = ErrorBody),
    ))]
pub async fn qr_png(State(state): State<AppState>, AppPath(name): AppPath<String>) -> Result<Response, ApiError> {
    let png = state.users.enrollment_qr_png(&username(&name)?).await?;
    Ok(no_store(([(header::CONTENT_TYPE, "image/png")], png).into_response()))
}

async fn require_admin_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = super::extract::client_ip(request.extensions(), request.headers(), &state.settings.trusted_proxies);
    let tokens = state.settings.admin_token.as_slice();
    match state.auth_failures.check(ip, request.headers(), tokens) {
        Ok(()) if !tokens.is_empty() => next.run(request).await,
        outcome => {
            let refusal = outcome.err().unwrap_or(AuthRefusal::Unauthorized);
            tracing::warn!(event = "admin_unauthorized", client_ip = %ip, refusal = ?refusal,
                path = %printable(request.uri().path(), LOGGED_PATH_CHARS), "admin request without ADMIN_TOKEN");
            ApiError::from(refusal).into_response()
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
        .routes(routes!(list_authenticators, create_authenticator))
        .routes(routes!(delete_authenticator))
        .routes(routes!(resync_authenticator))
        .routes(routes!(create_recovery_codes, recovery_codes_left))
        .routes(routes!(create_telegram_link))
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin_token))
}
