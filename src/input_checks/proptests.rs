//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): the JSON bodies of `/verify`,
//! `/request-otp`, the admin API and `/send`, deserialized into the real request types and
//! validated as their handlers do (through the entry points of this module).

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::domain::{Channel, Token};
use crate::domain::{EmailAddress, TelegramChat, Username};
use crate::input_checks::{self, ContactChange, NewAuthenticator, NewUser, is_clear_rejection};
use crate::notify::wire::{EMAIL_MAX_CHARS, SUBJECT_MAX_CHARS, TELEGRAM_MAX_CHARS};
use crate::otp::proptests::algorithm;
use crate::strategies::{any_text, valid_email, valid_username};

const FIELDS: &[&str] =
    &["username", "token", "channel", "email", "telegram_id", "algorithm", "digits", "recipient", "message", "subject"];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any_text().prop_map(Value::String),
        "[0-9 ]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(FIELDS).prop_map(String::from), 1 => any_text()]
}

/// Objects with the fields the endpoints read, holding anything.
fn body_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((field(), json_value()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()).to_string().into_bytes())
}

/// Text that is nearly JSON: fragments glued together, duplicate keys, deep nesting.
fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"username\"",
        "\"token\"",
        "\"dair\"",
        "\"123456\"",
        "null",
        "1e999",
        "-0",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\\"",
        "true",
        " ",
        "\"email\"",
        "\"channel\"",
        "\"telegram\"",
    ]);
    prop_oneof![
        prop::collection::vec(fragment, 0..30).prop_map(|f| f.concat().into_bytes()),
        (0usize..3000, prop::sample::select(vec!["[", "{\"a\":"]))
            .prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
        ("[a-z]{1,8}", "[a-z]{1,8}")
            .prop_map(|(a, b)| format!(r#"{{"username":"{a}","username":"{b}","token":"123456"}}"#).into_bytes()),
    ]
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        body_like(),
        json_ish(),
    ]
}

/// Each endpoint's parse-and-validate on `bytes` must give a value or a clear 4xx.
fn check_every_endpoint(bytes: &[u8]) -> Result<(), TestCaseError> {
    let results = [
        input_checks::verify_body(bytes).err(),
        input_checks::request_otp_body(bytes).err(),
        input_checks::create_user_body(bytes).err(),
        input_checks::update_user_body(bytes).err(),
        input_checks::create_authenticator_body(bytes).err(),
        input_checks::resync_body(bytes).err(),
        input_checks::send_body(bytes).err(),
    ];
    for e in results.iter().flatten() {
        prop_assert!(is_clear_rejection(e), "{} {:?} for {:?}", e.status, e.detail, String::from_utf8_lossy(bytes));
    }
    Ok(())
}

/// Spaces inserted into a code where `at` says.
fn spaced(code: &str, at: &[usize]) -> String {
    let mut s = code.to_string();
    for i in at {
        s.insert((*i).min(s.len()), ' ');
    }
    s
}

proptest! {
    #[test]
    fn any_body_is_parsed_or_refused_with_a_4xx_and_a_reason(bytes in any_body()) {
        check_every_endpoint(&bytes)?;
    }

    #[test]
    fn any_admin_list_query_is_read_or_explained(query in prop_oneof![any_text(), "(limit|after)=[^&]{0,12}(&(limit|after)=[^&]{0,12})?"]) {
        if let Err(e) = input_checks::list_users_query(&query) {
            prop_assert!(!e.trim().is_empty());
        }
    }

    #[test]
    fn recovery_codes_are_read_whatever_their_case_spaces_and_dashes(name in valid_username(),
                                                                     code in "[0-9a-hjkmnp-tv-z]{12}",
                                                                     upper in any::<bool>(),
                                                                     at in prop::collection::vec(0usize..13, 0..4)) {
        let typed = spaced(&if upper { code.to_uppercase() } else { code.clone() }, &at).replacen(' ', "-", 1);
        let body = json!({"username": name, "token": typed}).to_string();
        match input_checks::verify_body(body.as_bytes()).unwrap().1 {
            Token::Recovery(read) => prop_assert_eq!(read.as_str(), code.as_str()),
            Token::Otp(_) => prop_assert!(code.bytes().all(|b| b.is_ascii_digit()), "only digits read as an OTP"),
        }
    }

    #[test]
    fn authenticator_bodies_are_read_with_their_fields(name in "[A-Za-z0-9 ]{0,70}", kind in "totp|hotp|sms",
                                                       counter in prop::option::of(0u64..1_000_000)) {
        let body = json!({"kind": kind, "name": name, "counter": counter}).to_string();
        let read = input_checks::create_authenticator_body(body.as_bytes());
        let name_ok = !name.trim().is_empty() && name.trim().chars().count() <= 64;
        let ok = name_ok && (kind == "hotp" || (kind == "totp" && counter.is_none()));
        prop_assert_eq!(read.is_ok(), ok, "{:?}", read);
        if let Ok(NewAuthenticator::Hotp { counter: read, name: got, .. }) = read {
            prop_assert_eq!((read, got), (counter, name.trim().to_string()));
        }
    }

    #[test]
    fn valid_verify_and_request_otp_bodies_are_read(name in valid_username(), code in "[0-9]{6,8}",
                                                    at in prop::collection::vec(0usize..9, 0..3),
                                                    channel in prop::option::of(prop::sample::select(vec!["email", "telegram"]))) {
        let body = json!({"username": name.to_uppercase(), "token": spaced(&code, &at)}).to_string();
        let (user, token) = input_checks::verify_body(body.as_bytes()).unwrap();
        prop_assert_eq!(user.as_str(), name.as_str());
        match token {
            Token::Otp(token) => prop_assert_eq!(token.as_str(), code.as_str()),
            Token::Recovery(_) => prop_assert!(false, "read as a recovery code"),
        }

        let body = json!({"username": name, "channel": channel}).to_string();
        let (user, only) = input_checks::request_otp_body(body.as_bytes()).unwrap();
        prop_assert_eq!(user.as_str(), name.as_str());
        prop_assert_eq!(only, channel.map(|c| Channel::parse(c).unwrap()));
    }

    #[test]
    fn valid_admin_bodies_are_read(name in valid_username(), email in prop::option::of(valid_email()),
                                   chat in prop::option::of(any::<i64>()), alg in prop::option::of(algorithm()),
                                   digits in prop::option::of(6u8..=8), clear in any::<bool>()) {
        let chat = chat.map(|c| c.to_string());
        let body = json!({"username": name, "email": email, "telegram_id": chat,
                          "algorithm": alg.map(|a| a.as_str()), "digits": digits}).to_string();
        let NewUser { username: user, email: e, telegram: t, algorithm: a, digits: d } =
            input_checks::create_user_body(body.as_bytes()).unwrap();
        prop_assert_eq!(user, Username::parse(&name).unwrap());
        prop_assert_eq!(e.map(|e| e.as_str().to_string()), email.clone());
        prop_assert_eq!(t.map(|t| t.as_str().to_string()), chat.clone());
        prop_assert_eq!((a, d), (alg, digits));

        let mut patch = Map::new();
        if let Some(email) = &email {
            patch.insert("email".into(), json!(email));
        }
        if clear {
            patch.insert("telegram_id".into(), Value::Null);
        }
        let ContactChange { email: e, telegram: t, channels } =
            input_checks::update_user_body(Value::Object(patch).to_string().as_bytes()).unwrap();
        prop_assert_eq!(channels, None, "absent: kept");
        prop_assert_eq!(e, email.map(|e| Some(EmailAddress::parse(&e).unwrap())));
        prop_assert_eq!(t, clear.then_some(None::<TelegramChat>));
    }

    #[test]
    fn valid_send_bodies_are_read(email in valid_email(), chat in any::<i64>(), telegram in any::<bool>(),
                                  message in "\\PC{0,200}[!-~]", subject in prop::option::of("[^\\p{Cc}]{0,255}")) {
        let (channel, recipient) = if telegram { ("telegram", chat.to_string()) } else { ("email", email) };
        let body = json!({"channel": channel, "recipient": recipient, "message": message, "subject": subject}).to_string();
        let delivery = input_checks::send_body(body.as_bytes()).unwrap();
        prop_assert_eq!(delivery.channel.as_str(), channel);
        prop_assert_eq!(delivery.recipient, recipient);
        prop_assert_eq!(delivery.message, message);
        prop_assert_eq!(delivery.subject, subject.unwrap_or_else(|| "MFA notification".into()));
    }
}

/// Few enough cases to try them all: each channel, one- and two-byte characters, at and
/// just past the limit.
#[test]
fn send_enforces_each_channels_length_in_characters() {
    for (telegram, extra, wide) in
        (0..2).flat_map(|t| (0..3).flat_map(move |x| (0..2).map(move |w| (t == 1, x, w == 1))))
    {
        let limit = if telegram { TELEGRAM_MAX_CHARS } else { EMAIL_MAX_CHARS };
        let c = if wide { "é" } else { "x" };
        let (channel, recipient) = if telegram { ("telegram", "42") } else { ("email", "a@example.com") };
        let body = |n: usize| json!({"channel": channel, "recipient": recipient, "message": c.repeat(n)}).to_string();
        assert!(input_checks::send_body(body(limit - extra).as_bytes()).is_ok());
        let e = input_checks::send_body(body(limit + 1 + extra).as_bytes()).unwrap_err();
        assert!(is_clear_rejection(&e) && e.detail.contains(&limit.to_string()), "{}", e.detail);
        let long_subject = json!({"channel": channel, "recipient": recipient, "message": "hi",
                                  "subject": "s".repeat(SUBJECT_MAX_CHARS + 1 + extra)});
        assert!(input_checks::send_body(long_subject.to_string().as_bytes()).is_err());
    }
}

/// The entry points read bodies through the handlers' own validation, so they refuse and
/// accept what the handlers do. Each case once differed, when the entry points repeated the
/// handlers' steps.
#[test]
fn the_entry_points_read_bodies_as_the_handlers_do() {
    let e = input_checks::verify_body(br#"["dair", "123456"]"#).unwrap_err();
    assert!(is_clear_rejection(&e) && e.detail.contains("JSON object"), "{}", e.detail);

    let e = input_checks::create_user_body(br#"{"username": "dair", "algorithm": "sha-1"}"#).unwrap_err();
    assert!(e.detail.contains("unknown algorithm 'sha-1'"), "{}", e.detail);
    let user = input_checks::create_user_body(br#"{"username": "dair", "digits": 7.0}"#).unwrap();
    assert_eq!(user.digits, Some(7));

    let e = input_checks::update_user_body(br#"{"email": null, "username": "x"}"#).unwrap_err();
    assert!(e.detail.contains("unknown field `username`"), "{}", e.detail);
    let e = input_checks::update_user_body(br#"{"email": null, "email": "a@example.com"}"#).unwrap_err();
    assert!(e.detail.contains("duplicate field `email`"), "{}", e.detail);
}
