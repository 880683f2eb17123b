//! The admin API's request and response bodies, and how each request body is checked.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

use crate::domain::{Channel, EmailAddress, OtpCode, TelegramChat, Username};
use crate::http::InvalidRequest;
use crate::otp::{Algorithm, parse_digits};
use crate::users::{
    AuthenticatorRecord, ContactChange, Enrollment, Factor, NewAuthenticator, NewUser, ResyncCodes, UserPage,
    UserSummary,
};

pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 500;

/// A user as the admin API shows it: never the secret.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    #[schema(value_type = Algorithm)]
    pub algorithm: &'static str,
    /// How many authenticators the user has (pending ones included).
    pub authenticators: usize,
    /// The order in which `OTP_DELIVERY=first` tries the user's channels (set with PATCH;
    /// Telegram, then email, by default).
    pub channels: Vec<Channel>,
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
    /// The Telegram chat refused the bot for good (blocked it, or is gone): codes skip it
    /// until `telegram_id` changes.
    pub telegram_blocked: bool,
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
            algorithm: user.params.algorithm.as_str(),
            authenticators: user.authenticators,
            channels: record.channel_order.clone().unwrap_or_else(|| vec![Channel::Telegram, Channel::Email]),
            created_at: record.created_at,
            digits: user.params.digits,
            email: p.email.clone(),
            failed_attempts: user.failed_attempts,
            locked: user.locked_for.is_some(),
            locked_until: user.locked_for.and(record.lock.locked_until),
            period: user.params.period,
            source: p.source.as_str(),
            telegram_blocked: record.telegram_blocked_at.is_some(),
            telegram_id: p.telegram_id.clone(),
            updated_at: record.updated_at,
            username: p.username.to_string(),
        }
    }
}

/// An authenticator as the admin API shows it: never the secret.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminAuthenticator {
    #[schema(value_type = Algorithm)]
    pub algorithm: &'static str,
    /// HOTP: the next counter expected; `null` for TOTP.
    pub counter: Option<u64>,
    pub created_at: u64,
    pub digits: u8,
    /// TOTP: the clock offset learned from its codes, in seconds; `null` for HOTP.
    pub drift_seconds: Option<i64>,
    /// Pending: when it is removed unless a code confirms it; `null` once active.
    pub expires_at: Option<u64>,
    #[schema(example = "3f9a0c51b2de")]
    pub id: String,
    /// `totp` or `hotp`.
    #[schema(example = "totp")]
    pub kind: &'static str,
    /// When a code of it was last accepted; `null` if never.
    pub last_used_at: Option<u64>,
    #[schema(example = "iPhone")]
    pub name: String,
    /// TOTP: seconds per step; `null` for HOTP.
    pub period: Option<u64>,
    /// `pending` until its first code is accepted, then `active`.
    #[schema(example = "active")]
    pub status: &'static str,
}

impl From<&AuthenticatorRecord> for AdminAuthenticator {
    fn from(a: &AuthenticatorRecord) -> Self {
        let (algorithm, digits, period, counter, drift_seconds) = match a.factor {
            Factor::Totp { params, drift_steps, .. } => (
                params.algorithm,
                params.digits,
                Some(params.period),
                None,
                Some(drift_steps.saturating_mul(i64::try_from(params.period).unwrap_or(i64::MAX))),
            ),
            Factor::Hotp { algorithm, digits, counter } => (algorithm, digits, None, Some(counter), None),
        };
        Self {
            algorithm: algorithm.as_str(),
            counter,
            created_at: a.created_at,
            digits,
            drift_seconds,
            expires_at: a.expires_at,
            id: a.id.clone(),
            kind: a.factor.kind(),
            last_used_at: a.last_used_at,
            name: a.name.clone(),
            period,
            status: a.status.as_str(),
        }
    }
}

/// A user's authenticators, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminAuthenticatorList {
    pub authenticators: Vec<AdminAuthenticator>,
}

/// A user, as `AdminUser`, with its new secret, shown once (`Cache-Control: no-store`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminEnrollment {
    #[serde(flatten)]
    pub user: AdminUser,
    /// The authenticator the secret is for: `active` for a new user, `pending` after a
    /// rotation (the old one keeps working until a code of this one is accepted).
    pub authenticator: AdminAuthenticator,
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
        let authenticator = AdminAuthenticator::from(&e.authenticator);
        Self {
            user,
            authenticator,
            secret: e.secret.to_base32(),
            otpauth_uri: e.otpauth_uri.clone(),
            qr_svg,
            qr_png_url,
        }
    }
}

/// A new authenticator, as `AdminAuthenticator`, with its secret, shown once
/// (`Cache-Control: no-store`). It is `pending` until its first code is accepted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminAuthenticatorEnrollment {
    #[serde(flatten)]
    pub authenticator: AdminAuthenticator,
    /// The secret in base32, for typing into an app that cannot scan.
    pub secret: String,
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri` as an SVG document.
    pub qr_svg: String,
    /// Where the PNG of the same QR code can be fetched while it is fresh.
    pub qr_png_url: String,
}

impl AdminAuthenticatorEnrollment {
    pub fn new(e: &Enrollment, qr_svg: String) -> Self {
        let qr_png_url = format!("/admin/users/{}/qr.png", e.user.record.profile.username);
        let authenticator = AdminAuthenticator::from(&e.authenticator);
        Self { authenticator, secret: e.secret.to_base32(), otpauth_uri: e.otpauth_uri.clone(), qr_svg, qr_png_url }
    }
}

/// An authenticator to add: `kind` says which fields it may have (see its schema, by kind).
/// Unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAuthenticator {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub digits: Option<serde_json::Number>,
    #[serde(default)]
    pub period: Option<serde_json::Number>,
    #[serde(default)]
    pub counter: Option<serde_json::Number>,
}

const TOTP_REQUEST: &str = "NewTotpAuthenticator";
const HOTP_REQUEST: &str = "NewHotpAuthenticator";

/// The body of one kind: `kind`, `name`, the optional `algorithm` and `digits`, and the
/// kind's own optional field (`period` or `counter`); nothing else.
fn authenticator_request(kind: &str, title: &str, own: (&str, Schema)) -> Schema {
    let nullable_integer = |min: f64, max: f64, what: &str| -> Schema {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(what.to_string()))
            .into()
    };
    let algorithm = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(["SHA1", "SHA256", "SHA512"].map(Some).into_iter().chain([None])))
        .description(Some("`SHA1`, `SHA256` or `SHA512`; `OTP_ALGORITHM` (TOTP) or `SHA1` (HOTP) when absent"));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::users::AUTHENTICATOR_NAME_MAX_CHARS))
        .pattern(Some(crate::users::AUTHENTICATOR_NAME_PATTERN))
        .description(Some("what the user calls it, e.g. the device: \"iPhone\", \"YubiKey\""))
        .examples(["iPhone"]);
    ObjectBuilder::new()
        .title(Some(title))
        .property("kind", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([kind])))
        .required("kind")
        .property("name", name)
        .required("name")
        .property("algorithm", algorithm)
        .property("digits", nullable_integer(6.0, 8.0, "6 to 8; `OTP_DIGITS` when absent"))
        .property(own.0, own.1)
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        .into()
}

impl utoipa::PartialSchema for CreateAuthenticator {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        let mut by_kind = utoipa::openapi::schema::Discriminator::new("kind");
        by_kind.mapping = [
            ("totp".to_string(), format!("#/components/schemas/{TOTP_REQUEST}")),
            ("hotp".to_string(), format!("#/components/schemas/{HOTP_REQUEST}")),
        ]
        .into();
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(TOTP_REQUEST))
            .item(utoipa::openapi::Ref::from_schema_name(HOTP_REQUEST))
            .discriminator(Some(by_kind))
            .description(Some("An authenticator to add: a TOTP app or an HOTP token."))
            .into()
    }
}

impl utoipa::ToSchema for CreateAuthenticator {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("CreateAuthenticator")
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<Schema>)>) {
        let period: Schema = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(1.0))
            .maximum(Some(300.0))
            .description(Some("seconds per step, 1 to 300; `OTP_PERIOD` when absent"))
            .into();
        let counter: Schema = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .minimum(Some(0.0))
            .maximum(Some(MAX_COUNTER as f64))
            .description(Some("the token's counter now; 0 when absent"))
            .into();
        let totp = authenticator_request("totp", "A TOTP authenticator app.", ("period", period));
        let hotp = authenticator_request("hotp", "An HOTP (counter-based) token.", ("counter", counter));
        schemas.push((TOTP_REQUEST.to_string(), totp.into()));
        schemas.push((HOTP_REQUEST.to_string(), hotp.into()));
    }
}

/// The highest counter an HOTP token may start at (what the databases store).
const MAX_COUNTER: u64 = 1 << 53;

/// An authenticator id in a path.
pub struct AuthenticatorId;

impl utoipa::PartialSchema for AuthenticatorId {
    fn schema() -> utoipa::openapi::RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::users::AUTHENTICATOR_ID_PATTERN))
            .description(Some("An authenticator's `id`, as listed."))
            .examples(["3f9a0c51b2de"])
            .into()
    }
}

impl utoipa::ToSchema for AuthenticatorId {}

impl CreateAuthenticator {
    /// The authenticator to add, or why the body is refused.
    pub(crate) fn validate(self) -> Result<NewAuthenticator, InvalidRequest> {
        let name = crate::users::parse_authenticator_name(&self.name)
            .map_err(|e| InvalidRequest::new(format!("name: {e}")))?;
        let algorithm = self.algorithm.as_deref().map(exact_algorithm).transpose()?;
        let digits = optional_digits(self.digits)?;
        let number = |field: &str, n: Option<serde_json::Number>, range: std::ops::RangeInclusive<u64>| {
            n.map(|n| {
                whole_number(&n).and_then(|n| n.parse::<u64>().ok()).filter(|n| range.contains(n)).ok_or_else(|| {
                    InvalidRequest::new(format!(
                        "{field}: '{n}' is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
            })
            .transpose()
        };
        match self.kind.as_str() {
            "totp" => {
                if self.counter.is_some() {
                    return Err(InvalidRequest::new("counter: only an hotp authenticator has a counter"));
                }
                let period = number("period", self.period, 1..=300)?;
                Ok(NewAuthenticator::Totp { name, algorithm, digits, period })
            }
            "hotp" => {
                if self.period.is_some() {
                    return Err(InvalidRequest::new("period: only a totp authenticator has a period"));
                }
                let counter = number("counter", self.counter, 0..=MAX_COUNTER)?;
                Ok(NewAuthenticator::Hotp { name, algorithm, digits, counter })
            }
            other => Err(InvalidRequest::new(format!("kind: '{other}' is not totp or hotp"))),
        }
    }
}

/// Two consecutive codes of the authenticator, as it shows them one after the other.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    #[schema(schema_with = resync_codes_schema)]
    pub codes: Vec<String>,
}

fn channel_order_schema() -> Schema {
    let channel = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["email", "telegram"]));
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(channel)
        .min_items(Some(1))
        .max_items(Some(2))
        .unique_items(true)
        .description(Some("the order `OTP_DELIVERY=first` tries the channels in; `null`: Telegram, then email"))
        .examples([serde_json::json!(["email", "telegram"])])
        .into()
}

fn resync_codes_schema() -> Schema {
    let code = ObjectBuilder::new().schema_type(Type::String).pattern(Some(crate::domain::OTP_CODE_PATTERN));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(code)
        .min_items(Some(2))
        .max_items(Some(2))
        .description(Some("two consecutive codes, in the order the authenticator showed them"))
        .examples([serde_json::json!(["123456", "654321"])])
        .into()
}

impl ResyncRequest {
    pub(crate) fn validate(self) -> Result<ResyncCodes, InvalidRequest> {
        let codes: Vec<OtpCode> = self
            .codes
            .iter()
            .map(|c| OtpCode::parse(c))
            .collect::<Result<_, _>>()
            .map_err(|e| InvalidRequest::new(format!("codes: {e}")))?;
        match <[OtpCode; 2]>::try_from(codes) {
            Ok(pair) => Ok(ResyncCodes(pair)),
            Err(_) => Err(InvalidRequest::new("codes: give exactly two consecutive codes")),
        }
    }
}

/// A new set of recovery codes, shown once (`Cache-Control: no-store`); each works once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryCodeSet {
    #[schema(example = json!(["4k7q-m2xp-9z3c"]))]
    pub codes: Vec<String>,
}

/// How many of the user's recovery codes are unused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecoveryCodesLeft {
    pub remaining: u64,
}

/// A link that links the Telegram chat opening it to the user: it works once.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TelegramLinkReply {
    /// Seconds it works for.
    #[schema(example = 600)]
    pub expires_in: u64,
    /// `https://t.me/<bot>?start=<token>`: give it to the user only (it is a credential).
    #[schema(example = "https://t.me/acme_login_bot?start=q3J0bGw4Sk1hN2V2cEZ3OXh0Y2VHQmZ0b2RkUkVrV0E")]
    pub url: String,
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
        let digits = optional_digits(self.digits)?;
        Ok(NewUser { username, email, telegram, algorithm, digits })
    }
}

/// An optional `digits` field: 6, 7 or 8, as a whole JSON number.
fn optional_digits(digits: Option<serde_json::Number>) -> Result<Option<u8>, InvalidRequest> {
    digits
        .map(|d| whole_number(&d).map_or_else(|| Err(format!("'{d}' is not 6, 7 or 8")), |d| parse_digits(&d)))
        .transpose()
        .map_err(|e| InvalidRequest::new(format!("digits: {e}")))
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
/// Written with a fraction, it is read as a float, which holds every whole number up to
/// 2^53 (the highest counter) exactly; beyond that it may have been rounded, so it is not
/// taken.
fn whole_number(n: &serde_json::Number) -> Option<String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => Some(i.to_string()),
        (None, Some(u), _) => Some(u.to_string()),
        // `-0.0` is 0 (`+ 0.0` drops its sign).
        (None, None, Some(f)) if f.fract() == 0.0 && f.abs() <= EXACT => Some(format!("{:.0}", f + 0.0)),
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
    /// The order `OTP_DELIVERY=first` tries the channels in, each once (`["email",
    /// "telegram"]`); `null`: the default (Telegram, then email).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = channel_order_schema)]
    pub channels: Option<Option<Vec<String>>>,
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
        let channels = match self.channels {
            None => None,
            Some(None) => Some(None),
            Some(Some(list)) => {
                let parsed = list.iter().map(|c| Channel::parse(c)).collect::<Result<Vec<_>, _>>();
                let parsed = parsed.map_err(|e| InvalidRequest::new(format!("channels: {e}")))?;
                let distinct = parsed.iter().enumerate().all(|(i, c)| !parsed[..i].contains(c));
                if parsed.is_empty() || !distinct {
                    return Err(InvalidRequest::new("channels: each of email and telegram at most once, one or both"));
                }
                Some(Some(parsed))
            }
        };
        Ok(ContactChange { email, telegram, channels })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn number(json: &str) -> serde_json::Number {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn whole_numbers_are_taken_with_or_without_a_fraction_up_to_two_to_the_53() {
        for (json, whole) in [
            ("6", Some("6")),
            ("6.0", Some("6")),
            ("-0.0", Some("0")),
            ("6646716309507072.0", Some("6646716309507072")),
            ("9007199254740992.0", Some("9007199254740992")),
            ("9007199254740992", Some("9007199254740992")),
            ("18446744073709551615", Some("18446744073709551615")),
            ("18014398509481984.0", None),
            ("6.5", None),
            ("1e300", None),
        ] {
            assert_eq!(whole_number(&number(json)).as_deref(), whole, "{json}");
        }
    }
}
