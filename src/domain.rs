//! Parsed values from the outside world. Each type can only be built through its `parse`,
//! so code that holds one knows it is well-formed.

use std::fmt;

/// A user name: 1 to 64 characters of `a-z 0-9 . _ - @ +`, starting with a letter or digit.
///
/// Input is case-folded to lower case, because the seed derived usernames from
/// `<NAME>_SECRET` variables (`DAIR_SECRET` is user `dair`) and Flask clients sent either case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

pub const USERNAME_MAX_LEN: usize = 64;
/// What [`Username::parse`] accepts, as the API documents it (before case folding).
pub const USERNAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$";

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err("username must not be empty".into());
        }
        if name.chars().count() > USERNAME_MAX_LEN {
            return Err(format!("username must be at most {USERNAME_MAX_LEN} characters"));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@+".contains(c);
        if !name.chars().all(allowed) {
            return Err("username may only contain a-z, 0-9 and . _ - @ +".into());
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("username must start with a letter or a digit".into());
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A one-time code as typed by a user: 6 to 8 digits. Spaces are dropped, since
/// authenticator apps display codes as `123 456`.
///
/// Its `Debug` does not show the digits, so a code cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

/// [`OtpCode`] as a pattern: 6 to 8 digits, spaces anywhere.
pub const OTP_CODE_PATTERN: &str = r"^ *(?:[0-9] *){6,8}$";
/// [`RecoveryCode`] as a pattern: 12 characters of its alphabet (and `i`, `l`, `o`, read as
/// digits), in either case, spaces and dashes anywhere.
pub const RECOVERY_CODE_PATTERN: &str = r"^[ -]*(?:[0-9a-tv-zA-TV-Z][ -]*){12}$";

impl OtpCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        // Most codes come without spaces: copied whole, not char by char.
        let code: String = if raw.contains(' ') { raw.chars().filter(|c| *c != ' ').collect() } else { raw.to_owned() };
        if !(6..=8).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err("token must be a string of 6 to 8 digits".into());
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

/// A recovery code: 12 characters of Crockford's base32 (60 random bits), shown as
/// `4k7q-m2xp-9z3c`. Read as people type and say it: case, spaces and dashes are ignored,
/// and `i`/`l` are read as `1`, `o` as `0` (the alphabet has none of them). Never printed
/// by `Debug`; wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RecoveryCode(String);

/// Crockford's base32: digits and lower-case letters without i, l, o and u.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
pub const RECOVERY_CODE_CHARS: usize = 12;

impl RecoveryCode {
    /// A fresh code from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let chars = (0..RECOVERY_CODE_CHARS).map(|_| char::from(RECOVERY_ALPHABET[rand::random_range(0..32usize)]));
        Self(chars.collect())
    }

    /// The code in `raw`, or `None` if it is not one.
    pub fn parse(raw: &str) -> Option<Self> {
        let code: String = raw
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .map(|c| match c.to_ascii_lowercase() {
                'i' | 'l' => '1',
                'o' => '0',
                other => other,
            })
            .collect();
        let valid = code.len() == RECOVERY_CODE_CHARS && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
        valid.then_some(Self(code))
    }

    /// The normalised form, which is what is hashed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form shown to the user: three groups of four.
    pub fn display(&self) -> String {
        let (a, rest) = self.0.split_at(4);
        let (b, c) = rest.split_at(4);
        format!("{a}-{b}-{c}")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// What `/verify`'s `token` holds: a one-time code, or a recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Otp(OtpCode),
    Recovery(RecoveryCode),
}

impl Token {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match OtpCode::parse(raw) {
            Ok(code) => Ok(Self::Otp(code)),
            Err(e) => RecoveryCode::parse(raw).map(Self::Recovery).ok_or_else(|| {
                format!("{e}, or a recovery code of {RECOVERY_CODE_CHARS} letters and digits (xxxx-xxxx-xxxx)")
            }),
        }
    }
}

/// An email address in the common ASCII form every relay and `lettre` accept (so that a
/// stored address can always be sent to): a local part of 1 to 64 characters of
/// `A-Z a-z 0-9 ! # $ % & ' * + / = ? ^ _ ` { | } ~ - .` with no dot at either end and no
/// two dots in a row (RFC 5322's dot-atom), `@`, and a domain of two or more labels, each 1
/// to 63 letters, digits or hyphens, starting and ending with a letter or digit (an
/// internationalized domain in its `xn--` form); 254 characters in all. Quoted local parts,
/// address literals and non-ASCII addresses are refused. Surrounding whitespace is
/// trimmed. The OpenAPI documents state the same rule as a pattern (`crate::openapi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

pub const EMAIL_MAX_LEN: usize = 254;
pub const EMAIL_LOCAL_MAX_LEN: usize = 64;
pub const EMAIL_LABEL_MAX_LEN: usize = 63;

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let addr = raw.trim();
        let bad = || Err(format!("'{addr}' is not an email address (name@example.com, in ASCII)"));
        let Some((local, domain)) = addr.split_once('@') else { return bad() };
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        let local_ok = (1..=EMAIL_LOCAL_MAX_LEN).contains(&local.len())
            && local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext));
        let label_ok = |label: &str| {
            (1..=EMAIL_LABEL_MAX_LEN).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let domain_ok = domain.split('.').count() >= 2 && domain.split('.').all(label_ok);
        if addr.len() <= EMAIL_MAX_LEN && local_ok && domain_ok { Ok(Self(addr.to_string())) } else { bad() }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@` (the parser made sure there is one).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

/// A Telegram chat: a numeric chat id (negative for groups) or a public `@channelname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramChat(String);

/// What [`TelegramChat::parse`] accepts, as the API documents it.
pub const TELEGRAM_CHAT_PATTERN: &str = r"^(?:-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32})$";

impl TelegramChat {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chat = raw.trim();
        let numeric = chat.strip_prefix('-').unwrap_or(chat);
        let is_id = !numeric.is_empty() && numeric.len() <= 20 && numeric.bytes().all(|b| b.is_ascii_digit());
        let is_channel = chat.strip_prefix('@').is_some_and(|name| {
            (5..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if is_id || is_channel {
            Ok(Self(chat.to_string()))
        } else {
            Err(format!("'{chat}' is not a Telegram chat id or @channel"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A way to deliver a sent code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Telegram,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Telegram => "telegram",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "email" => Ok(Self::Email),
            "telegram" => Ok(Self::Telegram),
            other => Err(format!("unknown channel '{other}': use \"email\" or \"telegram\"")),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_are_case_folded_and_checked() {
        assert_eq!(Username::parse("DAIR").unwrap().as_str(), "dair");
        assert_eq!(Username::parse("john_doe").unwrap().as_str(), "john_doe");
        assert!(Username::parse("").is_err());
        assert!(Username::parse("a\u{7}b").is_err());
        assert!(Username::parse("_x").is_err());
        assert!(Username::parse("a:b").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn codes_are_six_to_eight_digits_and_never_printed() {
        assert_eq!(OtpCode::parse("123 456").unwrap().as_str(), "123456");
        assert!(OtpCode::parse("12345").is_err());
        assert!(OtpCode::parse("123456789").is_err());
        assert!(OtpCode::parse("12a456").is_err());
        assert!(!format!("{:?}", OtpCode::parse("654321").unwrap()).contains("654321"));
    }

    #[test]
    fn recovery_codes_are_read_as_typed_and_said() {
        let code = RecoveryCode::generate();
        assert_eq!(code.as_str().len(), 12);
        let shown = code.display();
        assert_eq!(shown.len(), 14);
        assert_eq!(RecoveryCode::parse(&shown), Some(code.clone()));
        assert_eq!(RecoveryCode::parse(&shown.to_uppercase().replace('-', " ")), Some(code.clone()));
        assert_eq!(RecoveryCode::parse("4K7Q-M2XP-9Z3C").unwrap().as_str(), "4k7qm2xp9z3c");
        assert_eq!(RecoveryCode::parse("4k7q-m2xp-9zoi").unwrap().as_str(), "4k7qm2xp9z01");
        assert!(RecoveryCode::parse("4k7q-m2xp-9z3").is_none(), "too short");
        assert!(RecoveryCode::parse("4k7q-m2xp-9z3u").is_none(), "u is not in the alphabet");
        assert!(!format!("{code:?}").contains(code.as_str()));
        assert_ne!(RecoveryCode::generate(), code);
        assert!(matches!(Token::parse("123 456"), Ok(Token::Otp(_))));
        assert!(matches!(Token::parse(&shown), Ok(Token::Recovery(_))));
        assert!(Token::parse("12345").is_err());
        assert!(Token::parse("hunter2").unwrap_err().contains("recovery code"));
    }

    #[test]
    fn contacts_are_checked() {
        assert!(EmailAddress::parse("dair@example.com").is_ok());
        assert!(EmailAddress::parse("dair@localhost").is_err());
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert!(EmailAddress::parse("o'brien+mfa@mail.example.co.uk").is_ok());
        assert!(EmailAddress::parse("first.last@xn--bcher-kva.example").is_ok());
        for bad in [
            ".dair@example.com",
            "da..ir@example.com",
            "dair.@example.com",
            "\"da ir\"@example.com",
            "dair@[127.0.0.1]",
            "dair@-example.com",
            "dair@example-.com",
            "dair@example..com",
            "dair@@example.com",
            "dä@example.com",
            "dair@exämple.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        let long_label = format!("dair@{}.com", "a".repeat(64));
        assert!(EmailAddress::parse(&long_label).is_err(), "a label is at most 63 characters");
        assert!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(EmailAddress::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
        let longest = format!("a@{}.{}.{}.{}", "b".repeat(63), "c".repeat(63), "d".repeat(63), "e".repeat(60));
        assert_eq!(longest.len(), 254);
        assert!(EmailAddress::parse(&longest).is_ok());
        assert!(EmailAddress::parse(&format!("{longest}f")).is_err());
        // lettre cannot send to these, so they are refused here.
        for undeliverable in ["a@a.:", "a,b@example.com", "<a@example.com>", "a@example.com>"] {
            assert!(EmailAddress::parse(undeliverable).is_err(), "{undeliverable}");
        }
        assert!(TelegramChat::parse("123456789").is_ok());
        assert!(TelegramChat::parse("-1001234567890").is_ok());
        assert!(TelegramChat::parse("@my_channel").is_ok());
        assert!(TelegramChat::parse("hello").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = Username::parse(&s);
            let _ = OtpCode::parse(&s);
            let _ = EmailAddress::parse(&s);
            let _ = TelegramChat::parse(&s);
        }
    }
}
