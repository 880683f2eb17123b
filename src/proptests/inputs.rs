//! The values inside requests and configuration: usernames, codes, email addresses,
//! Telegram chats, algorithms, base32 secrets, `otpauth://` URIs, bearer tokens and
//! `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;

use super::any_text;
use crate::api::extract::client_ip;
use crate::config::{EnvMap, Settings};
use crate::domain::{EmailAddress, OtpCode, TelegramChat, USERNAME_MAX_LEN, Username};
use crate::http::has_bearer;
use crate::otp::{Algorithm, parse_digits};
use crate::otp::{MIN_ACCEPTED_SECRET_BYTES, OtpParams, SecretBytes, otpauth_uri, totp_code};

pub(super) fn valid_username() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._@+-]{0,63}"
}

/// `s` with each ASCII letter's case chosen by `upper`, and blanks around it.
fn mangle_case(s: &str, upper: &[bool]) -> String {
    s.chars().zip(upper.iter().cycle()).map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c }).collect()
}

pub(super) fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Sha1), Just(Algorithm::Sha256), Just(Algorithm::Sha512)]
}

/// Email addresses of the usual shape: dot-atom local part, a domain of LDH labels.
pub(super) fn valid_email() -> impl Strategy<Value = String> {
    "[a-z0-9_%+-]{1,12}(\\.[a-z0-9_+-]{1,8}){0,2}@[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z]{2,8}){1,3}"
}

proptest! {
    #[test]
    fn usernames_parse_or_explain(raw in any_text()) {
        match Username::parse(&raw) {
            Ok(name) => {
                let s = name.as_str();
                prop_assert!(!s.is_empty() && s.chars().count() <= USERNAME_MAX_LEN);
                prop_assert_eq!(s, raw.trim().to_ascii_lowercase());
                prop_assert_eq!(Username::parse(s), Ok(name.clone()), "parse -> as_str -> parse");
                prop_assert_eq!(name.to_string(), s);
            }
            Err(e) => prop_assert!(e.starts_with("username "), "{e}"),
        }
    }

    #[test]
    fn valid_usernames_survive_case_and_blanks(name in valid_username(), upper in prop::collection::vec(any::<bool>(), 1..8),
                                               pad in "[ \t]{0,3}") {
        let parsed = Username::parse(&name).unwrap();
        prop_assert_eq!(parsed.as_str(), name.as_str());
        let noisy = format!("{pad}{}{pad}", mangle_case(&name, &upper));
        prop_assert_eq!(Username::parse(&noisy).unwrap(), parsed);
    }

    #[test]
    fn codes_are_their_digits_whatever_the_spacing(digits in "[0-9]{6,8}", spaces in prop::collection::vec(0usize..9, 0..4)) {
        let mut spaced = digits.clone();
        for at in spaces {
            spaced.insert(at.min(spaced.len()), ' ');
        }
        let code = OtpCode::parse(&spaced).unwrap();
        prop_assert_eq!(code.as_str(), digits.as_str());
        prop_assert!(!format!("{code:?}").contains(&digits), "Debug never shows the code");
    }

    #[test]
    fn codes_accept_only_six_to_eight_digits(raw in any_text()) {
        match OtpCode::parse(&raw) {
            Ok(code) => {
                prop_assert!((6..=8).contains(&code.as_str().len()));
                prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// An accepted address is one lettre can send to, unchanged: otherwise `/send` would take
    /// it with 200-class validation and fail at delivery with a 502.
    #[test]
    fn accepted_email_addresses_are_deliverable_as_given(raw in prop_oneof![any_text(), valid_email(),
                                                          "[ -~]{1,12}@[ -~]{1,12}"]) {
        match EmailAddress::parse(&raw) {
            Ok(addr) => {
                prop_assert_eq!(addr.as_str(), raw.trim());
                prop_assert_eq!(EmailAddress::parse(addr.as_str()), Ok(addr.clone()));
                let mailbox = lettre::message::Mailbox::from_str(addr.as_str());
                prop_assert!(mailbox.is_ok(), "lettre refuses {:?}", addr.as_str());
                let mailbox = mailbox.unwrap();
                prop_assert!(mailbox.name.is_none());
                prop_assert_eq!(mailbox.email.to_string(), addr.as_str());
            }
            Err(e) => prop_assert!(e.contains("is not an email address"), "{e}"),
        }
    }

    #[test]
    fn usual_email_addresses_are_accepted(addr in valid_email()) {
        prop_assert_eq!(EmailAddress::parse(&addr).map(|a| a.as_str().to_string()), Ok(addr));
    }

    #[test]
    fn telegram_chats_parse_or_explain(raw in any_text()) {
        match TelegramChat::parse(&raw) {
            Ok(chat) => {
                prop_assert_eq!(chat.as_str(), raw.trim());
                prop_assert_eq!(TelegramChat::parse(chat.as_str()), Ok(chat.clone()));
            }
            Err(e) => prop_assert!(e.contains("is not a Telegram chat id or @channel"), "{e}"),
        }
    }

    #[test]
    fn every_telegram_chat_id_and_channel_name_is_accepted(id in any::<i64>(), channel in "@[A-Za-z0-9_]{5,32}") {
        prop_assert_eq!(TelegramChat::parse(&id.to_string()).unwrap().as_str().to_string(), id.to_string());
        prop_assert_eq!(TelegramChat::parse(&channel).unwrap().as_str().to_string(), channel);
    }

    #[test]
    fn algorithms_and_digits_round_trip(alg in algorithm(), upper in prop::collection::vec(any::<bool>(), 1..4),
                                        dash in any::<bool>(), n in any::<u8>(), raw in any_text()) {
        let name = if dash { alg.as_str().replacen("SHA", "sha-", 1) } else { alg.as_str().to_string() };
        prop_assert_eq!(Algorithm::parse(&mangle_case(&name.to_ascii_lowercase(), &upper)), Ok(alg));
        prop_assert_eq!(parse_digits(&format!(" {n} ")).is_ok(), (6..=8).contains(&n));
        if let Err(e) = Algorithm::parse(&raw) {
            prop_assert!(e.contains("SHA1, SHA256 or SHA512"));
        }
        if let Err(e) = parse_digits(&raw) {
            prop_assert!(e.contains("is not 6, 7 or 8"));
        }
    }

    /// What a user pastes: any case, spaces, `=` padding or dashes anywhere.
    #[test]
    fn base32_secrets_round_trip_through_pasting_noise(bytes in prop::collection::vec(any::<u8>(), MIN_ACCEPTED_SECRET_BYTES..80),
                                                       noise in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![' ', '\t', '=', '-'])), 0..6),
                                                       lower in any::<bool>()) {
        let secret = SecretBytes::new(bytes.clone());
        let mut text = secret.to_base32();
        if lower {
            text = text.to_ascii_lowercase();
        }
        for (at, c) in noise {
            text.insert(at.index(text.len() + 1), c);
        }
        prop_assert_eq!(SecretBytes::from_base32(&text).unwrap().expose().to_vec(), bytes);
    }

    #[test]
    fn short_or_bad_base32_is_refused_without_echoing_it(bytes in prop::collection::vec(any::<u8>(), 1..MIN_ACCEPTED_SECRET_BYTES),
                                                         raw in prop_oneof![any_text(), "[A-Za-z0-9=!#]{8,40}"]) {
        let short = SecretBytes::from_base32(&SecretBytes::new(bytes.clone()).to_base32()).unwrap_err();
        prop_assert!(short.contains(&format!("is {} bits long", bytes.len() * 8)), "{short}");
        if let Err(e) = SecretBytes::from_base32(&raw) {
            prop_assert!(!e.is_empty());
            if raw.trim().len() >= 8 {
                prop_assert!(!e.contains(raw.trim()), "the error quotes the secret: {e}");
            }
        }
    }

    /// The enrollment URI, read back by an `otpauth://` parser (totp-rs's, as an app would),
    /// gives the same secret, parameters, issuer and codes, and writes back to the same URI.
    #[test]
    fn otpauth_uris_read_back_to_what_was_enrolled(bytes in prop::collection::vec(any::<u8>(), MIN_ACCEPTED_SECRET_BYTES..64),
                                                   issuer in any_text(), account in valid_username(),
                                                   algorithm in algorithm(), digits in 6u8..=8, period in 1u64..=300,
                                                   time in 0u64..=20_000_000_000) {
        let secret = SecretBytes::new(bytes);
        let params = OtpParams { algorithm, digits, period };
        let uri = otpauth_uri(&issuer, &account, &secret, params).unwrap();
        prop_assert!(uri.starts_with("otpauth://totp/"));
        let app = totp_rs::Totp::from_url_unchecked(&uri);
        prop_assert!(app.is_ok(), "{uri}: {:?}", app.err());
        let app = app.unwrap();
        prop_assert_eq!(app.to_url().unwrap(), uri.clone());
        let expected_issuer = issuer.replace(':', "");
        prop_assert_eq!(app.issuer(), Some(expected_issuer.as_str()));
        prop_assert_eq!(app.generate(time).to_string(), totp_code(&secret, params, time));
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        let b32 = query.split('&').find_map(|kv| kv.strip_prefix("secret=")).unwrap();
        prop_assert_eq!(SecretBytes::from_base32(b32).unwrap(), secret);
    }

    /// A token is accepted exactly when it is presented as `Bearer <token>`.
    #[test]
    fn bearer_tokens_match_exactly(tokens in prop::collection::vec("[!-~]{1,40}", 1..4), pick in any::<prop::sample::Index>(),
                                   other in "[!-~]{0,40}", raw in prop::collection::vec(any::<u8>(), 0..60)) {
        let map = EnvMap::from_pairs([], [("MFA_API_KEYS".to_string(), tokens.join(","))]);
        let keys = Settings::from_env(&map).unwrap().api_keys;
        let headers = |value: &[u8]| {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(value) {
                h.insert(header::AUTHORIZATION, v);
            }
            h
        };
        let chosen = tokens[pick.index(tokens.len())].split(',').find(|t| !t.is_empty());
        if let Some(chosen) = chosen {
            prop_assert!(has_bearer(&headers(format!("Bearer {chosen}").as_bytes()), &keys), "a configured key is refused");
        }
        let is_key = keys.iter().any(|k| k.expose() == other);
        prop_assert_eq!(has_bearer(&headers(format!("Bearer {other}").as_bytes()), &keys), is_key);
        prop_assert!(!has_bearer(&headers(other.as_bytes()), &keys) || other.is_empty() && keys.is_empty());
        let presented = String::from_utf8_lossy(&raw);
        let expected = keys.iter().any(|k| format!("Bearer {}", k.expose()) == presented && presented.as_bytes() == raw);
        prop_assert_eq!(has_bearer(&headers(&raw), &keys), expected && HeaderValue::from_bytes(&raw).is_ok());
        prop_assert!(!has_bearer(&headers(b"Bearer "), &keys), "an empty token never matches");
    }

    /// The client IP is the peer, unless the peer is a trusted proxy and its own (right-most)
    /// `X-Forwarded-For` entry is an address.
    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies(peer in any::<IpAddr>(), client in any::<IpAddr>(),
                                                        trusted in any::<bool>(), junk in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut extensions = axum::http::Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(peer, 1234)));
        let trust = if trusted { vec![peer] } else { vec![] };
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&junk) {
            headers.append("x-forwarded-for", v);
        }
        let from_junk = client_ip(&extensions, &headers, &trust);
        prop_assert!(from_junk == peer || trusted);
        headers.append("x-forwarded-for", HeaderValue::from_str(&format!("1.2.3.4, {client}")).unwrap());
        prop_assert_eq!(client_ip(&extensions, &headers, &trust), if trusted { client } else { peer });
    }
}
