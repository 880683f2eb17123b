//! `POST /send` on the wire: the one request and reply types, which the notification
//! service reads and writes and the MFA server's client (`super::client`) writes and reads.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Discriminator, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};

use super::Delivery;
use crate::domain::{Channel, EmailAddress, TELEGRAM_CHAT_PATTERN, TelegramChat};
use crate::http::InvalidRequest;

/// Telegram's limit for one message's text.
pub const TELEGRAM_MAX_CHARS: usize = 4096;
/// Our limit for an email body: codes and short notices, not newsletters.
pub const EMAIL_MAX_CHARS: usize = 32 * 1024;
pub const SUBJECT_MAX_CHARS: usize = 255;
/// A message must have a character that is neither a space nor a control character.
const VISIBLE_PATTERN: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// A subject is one line: no control character.
const ONE_LINE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// The body of `POST /send`. The fields are read as text and checked by [`Self::validate`]
/// so that each refusal says what is wrong; the schema states the same rules per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// `email` or `telegram`
    pub channel: String,
    /// An email address, or a Telegram chat id / `@channel`.
    pub recipient: String,
    pub message: String,
    /// Email subject (one line); default "<OTP_ISSUER> notification".
    #[serde(default)]
    pub subject: Option<String>,
}

impl From<&Delivery> for SendRequest {
    fn from(d: &Delivery) -> Self {
        Self {
            channel: d.channel.as_str().to_string(),
            recipient: d.recipient.clone(),
            message: d.message.clone(),
            subject: Some(d.subject.clone()),
        }
    }
}

impl SendRequest {
    /// The delivery to make, or why the request is refused. The property tests and the
    /// fuzzer check bodies with this too (`crate::input_checks`).
    pub fn validate(self, default_subject: &str) -> Result<Delivery, InvalidRequest> {
        let channel = Channel::parse(&self.channel).map_err(InvalidRequest::new)?;
        let recipient = match channel {
            Channel::Email => EmailAddress::parse(&self.recipient).map_err(InvalidRequest::new)?.as_str().to_string(),
            Channel::Telegram => {
                TelegramChat::parse(&self.recipient).map_err(InvalidRequest::new)?.as_str().to_string()
            }
        };
        let limit = if channel == Channel::Telegram { TELEGRAM_MAX_CHARS } else { EMAIL_MAX_CHARS };
        let length = self.message.chars().count();
        if !self.message.chars().any(|c| !c.is_whitespace() && !c.is_control()) {
            return Err(InvalidRequest::new("message must not be empty (it has no visible character)"));
        }
        if length > limit {
            return Err(InvalidRequest::new(format!("message is {length} characters; the {channel} limit is {limit}")));
        }
        let subject = self.subject.unwrap_or_else(|| default_subject.to_string());
        if subject.chars().count() > SUBJECT_MAX_CHARS || subject.chars().any(char::is_control) {
            return Err(InvalidRequest::new(format!(
                "subject must be one line of at most {SUBJECT_MAX_CHARS} characters"
            )));
        }
        Ok(Delivery { channel, recipient, subject, message: self.message })
    }
}

/// The schema of one channel's request: `recipient` and the longest `message` depend on it.
fn channel_request(channel: Channel, title: &str, what: &str, recipient: Schema, max_message: usize) -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let subject_note = match channel {
        Channel::Email => "One line of at most 255 characters; default \"<OTP_ISSUER> notification\".",
        Channel::Telegram => "Not used by Telegram; checked as for email.",
    };
    ObjectBuilder::new()
        .title(Some(title))
        .description(Some(what))
        .property("channel", text().enum_values(Some([channel.as_str()])))
        .required("channel")
        .property("recipient", recipient)
        .required("recipient")
        .property(
            "message",
            text()
                .description(Some(format!(
                    "At most {max_message} characters, at least one of them visible (not a space or control)."
                )))
                .max_length(Some(max_message))
                .pattern(Some(VISIBLE_PATTERN))
                .examples(["Your code is 123456"]),
        )
        .required("message")
        .property(
            "subject",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(subject_note))
                .max_length(Some(SUBJECT_MAX_CHARS))
                .pattern(Some(ONE_LINE_PATTERN)),
        )
        .into()
}

/// The two shapes of a `/send` body, each a named schema of its own, so that client
/// generators make one model per channel.
const EMAIL_MESSAGE: &str = "EmailMessage";
const TELEGRAM_MESSAGE: &str = "TelegramMessage";

fn email_message() -> Schema {
    channel_request(
        Channel::Email,
        EMAIL_MESSAGE,
        "An email: `recipient` is an address.",
        crate::openapi::email_schema(),
        EMAIL_MAX_CHARS,
    )
}

fn telegram_message() -> Schema {
    let chat =
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(TELEGRAM_CHAT_PATTERN)).examples(["123456789"]);
    channel_request(
        Channel::Telegram,
        TELEGRAM_MESSAGE,
        "A Telegram message: `recipient` is a chat id or `@channel`.",
        chat.into(),
        TELEGRAM_MAX_CHARS,
    )
}

impl utoipa::PartialSchema for SendRequest {
    fn schema() -> RefOr<Schema> {
        let mut by_channel = Discriminator::new("channel");
        by_channel.mapping = [
            (Channel::Email.as_str().to_string(), format!("#/components/schemas/{EMAIL_MESSAGE}")),
            (Channel::Telegram.as_str().to_string(), format!("#/components/schemas/{TELEGRAM_MESSAGE}")),
        ]
        .into();
        OneOfBuilder::new()
            .item(Ref::from_schema_name(EMAIL_MESSAGE))
            .item(Ref::from_schema_name(TELEGRAM_MESSAGE))
            .discriminator(Some(by_channel))
            .description(Some(
                "One message to one recipient; what `recipient` and `message` may be depends on `channel`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for SendRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SendRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((EMAIL_MESSAGE.to_string(), email_message().into()));
        schemas.push((TELEGRAM_MESSAGE.to_string(), telegram_message().into()));
    }
}

/// `sent`: the only status of a 200 from `/send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    Sent,
}

/// The reply of `POST /send` when the message went out.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SendReply {
    /// Tries it took, the first one included.
    #[schema(example = 1)]
    pub attempts: u32,
    pub channel: Channel,
    /// Telegram moved the chat (a group that became a supergroup): the message went to
    /// this new chat id, which replaces the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "-1001234567890")]
    pub recipient_moved_to: Option<String>,
    pub status: SendStatus,
}

/// Whether the SMTP server answered at the last attempt, for `/healthcheck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Unknown,
    Reachable,
    Unreachable,
}

/// A channel's last check, as `/healthcheck` shows it.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelCheck {
    /// Unix seconds.
    pub checked_at: u64,
    /// Why it failed (never a password, token or URL); absent when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub ok: bool,
}

impl From<super::check::CheckResult> for ChannelCheck {
    fn from(result: super::check::CheckResult) -> Self {
        Self { checked_at: result.checked_at, ok: result.failure.is_none(), detail: result.failure }
    }
}

/// A channel's state in `/healthcheck`.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelHealth {
    /// The last check without sending (SMTP connect, TLS, AUTH; Telegram `getMe`); absent
    /// before the first, or when the channel is not configured or checks are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<ChannelCheck>,
    pub configured: bool,
    /// Email only: what the last delivery found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<Reachability>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelsHealth {
    pub email: ChannelHealth,
    pub telegram: ChannelHealth,
}

/// The notification service's `/healthcheck`.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotifierHealth {
    pub channels: ChannelsHealth,
    /// `ok`, or `degraded` when a configured channel failed its last check or the SMTP
    /// server did not answer at the last attempt.
    #[schema(example = "ok")]
    pub status: &'static str,
    pub version: &'static str,
}

/// `GET /telegram/bot`: the bot, for the links the MFA server makes.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TelegramBot {
    /// Whether this service receives the bot's messages (`TELEGRAM_UPDATES` is not `off`),
    /// so that a chat can link itself with `/start <token>`.
    pub linking: bool,
    /// The bot's username (from `getMe`), without the `@`.
    #[schema(example = "acme_login_bot")]
    pub username: String,
}

/// A chat that sent the bot `/start <token>`.
// Fields are declared in the order they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkStart {
    /// The chat's id.
    #[schema(example = "123456789")]
    pub chat: String,
    /// The start parameter: 1 to 64 of `A-Z a-z 0-9 _ -`.
    pub token: String,
}

/// `POST /telegram/starts`: the `/start <token>` messages received since the last call,
/// oldest first, each given out once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkStarts {
    pub starts: Vec<LinkStart>,
}
