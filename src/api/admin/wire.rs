//! The admin API's request and response bodies, and how each request body is checked.

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::http::InvalidRequest;
use crate::otp::{Algorithm, parse_digits};
use crate::users::{ContactChange, Enrollment, NewUser, UserPage, UserSummary};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// A user as the admin API shows it: never the secret.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    #[schema(value_type = Algorithm)]
    pub algorithm: &'static str,
    pub created_at: u64,
    pub digits: u8,
    #[schema(schema_with = crate::openapi::optional_email_schema)]
    pub email: Option<String>,
    /// Failures that still count toward the next lock; they fade with time, not with a right code.
    pub failed_attempts: u32,
    pub locked: bool,
    /// When the current lock ends (Unix seconds); `null` when not locked.
    pub locked_until: Option<u64>,
    pub period: u64,
    /// How the user was created: `env` (defined in .env, managed there), `cli` (`mfa user add` or
    /// `import`) or `admin` (this API)
    #[schema(example = "cli")]
    pub source: &'static str,
    #[schema(value_type = Option<TelegramChat>)]
    pub telegram_id: Option<String>,
    pub updated_at: u64,
    #[schema(value_type = Username)]
    pub username: String,
}

impl From<&UserSummary> for AdminUser {
    fn from(user: &UserSummary) -> Self {
        let (record, p) = (&user.record, &user.record.profile);
        Self {
            algorithm: p.params.algorithm.as_str(),
            created_at: record.created_at,
            digits: p.params.digits,
            email: p.email.clone(),
            failed_attempts: user.failed_attempts,
            locked: user.locked_for.is_some(),
            locked_until: user.locked_for.and(record.lock.locked_until),
            period: p.params.period,
            source: p.source.as_str(),
            telegram_id: p.telegram_id.clone(),
            updated_at: record.updated_at,
            username: p.username.to_string(),
        }
    }
}

/// A user, as `AdminUser`, with its new secret, shown once (`Cache-Control: no-store`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminEnrollment {
    #[serde(flatten)]
    pub user: AdminUser,
    /// The secret in base32, for typing into an app that cannot scan.
    pub secret: String,
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri` as an SVG document.
    pub qr_svg: String,
    /// Where the PNG of the same QR code can be fetched while the secret is fresh.
    pub qr_png_url: String,
}

impl AdminEnrollment {
    pub fn new(e: &Enrollment, qr_svg: String) -> Self {
        let user = AdminUser::from(&e.user);
        let qr_png_url = format!("/admin/users/{}/qr.png", user.username);
        Self { user, secret: e.secret.to_base32(), otpauth_uri: e.otpauth_uri.clone(), qr_svg, qr_png_url }
    }
}

/// A page of users; `next` is the `after` of the next page, `null` on the last.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserPage {
    #[schema(value_type = Option<Username>)]
    pub next: Option<String>,
    pub users: Vec<AdminUser>,
}

impl From<&UserPage> for AdminUserPage {
    fn from(page: &UserPage) -> Self {
        Self {
            users: page.users.iter().map(AdminUser::from).collect(),
            next: page.next.as_ref().map(Username::to_string),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    #[schema(value_type = Username)]
    pub username: String,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::optional_email_schema)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<TelegramChat>)]
    pub telegram_id: Option<String>,
    /// `SHA1`, `SHA256` or `SHA512`; `OTP_ALGORITHM` when absent.
    #[serde(default)]
    #[schema(value_type = Option<Algorithm>)]
    pub algorithm: Option<String>,
    /// 6 to 8; `OTP_DIGITS` when absent.
    #[serde(default)]
    #[schema(value_type = Option<u8>, minimum = 6, maximum = 8)]
    pub digits: Option<serde_json::Number>,
}

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
        Ok(NewUser { username, email, telegram, algorithm, digits })
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

/// Deserializes a field that is present (even as `null`) to `Some`, so that an absent field
/// (`None`, by `#[serde(default)]`) can be told from a `null` one (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Fields to change; absent: kept, `null`: cleared. Any other field, or a field given twice,
/// is refused (400): the body's meaning must not depend on which duplicate a parser keeps.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUpdate {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::optional_email_schema)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TelegramChat>)]
    pub telegram_id: Option<Option<String>>,
}

impl ContactUpdate {
    /// The change asked for, or why the body is refused: the email first, then the chat.
    /// `update_user` checks its body with this, and so do the property tests and the fuzzer
    /// (`crate::input_checks`).
    pub(crate) fn validate(self) -> Result<ContactChange, InvalidRequest> {
        let email = self.email.map(|e| e.as_deref().map(EmailAddress::parse).transpose());
        let email = email.transpose().map_err(InvalidRequest::new)?;
        let telegram = self.telegram_id.map(|t| t.as_deref().map(TelegramChat::parse).transpose());
        let telegram = telegram.transpose().map_err(InvalidRequest::new)?;
        Ok(ContactChange { email, telegram })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 500, default 50
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` of the previous page: a user name
    #[param(value_type = Option<Username>)]
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
