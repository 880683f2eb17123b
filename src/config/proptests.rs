//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): the whole `Settings` reader on
//! arbitrary variables, `RATE_LIMIT`, `OTP_MESSAGE_TEMPLATE` and the tokens: settings or
//! errors that name their variable, never a secret's value.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use crate::config::rate_limit::parse_rate_limits;
use crate::config::template::MessageTemplate;
use crate::config::{DatabaseConfig, EnvMap, RateLimit, Settings, vars};
use crate::strategies::{any_text, valid_username};

fn map(pairs: &[(String, String)]) -> EnvMap {
    EnvMap::from_pairs(pairs.iter().cloned(), [])
}

use crate::config::settings_of as settings;

/// Values that get past the first checks, so the generated maps reach the deeper ones.
const PLAUSIBLE: &[&str] = &[
    "off",
    "200 per day",
    "10/minute",
    "json",
    "pretty",
    "SHA256",
    "sha-512",
    "tls",
    "starttls",
    "none",
    "465",
    "587",
    "0",
    "1",
    "6",
    "8",
    "30",
    "300",
    "601",
    "127.0.0.1:0",
    "0.0.0.0:6001",
    "localhost:7000",
    "[::1]:80",
    "sqlite://x.db",
    "sqlite::memory:",
    "postgres://u:p@h/db",
    "http://127.0.0.1:1",
    "https://api.telegram.org/",
    "base32secret3232",
    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "a@example.com",
    "@my_channel",
    "-100123",
    "{code} {issuer}",
    "{nope}",
    "10.0.0.1, ::1",
    "0.5",
    "1e3",
    "NaN",
    "inf",
    "-1",
    "18446744073709551616",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vars::ALL.iter().filter(|v| !v.is_per_user()).map(|v| v.name).collect::<Vec<_>>()).prop_map(String::from),
        2 => "[A-Za-z0-9_]{0,8}_(SECRET|EMAIL|TELEGRAM_ID)",
        1 => "(MFA|OTP)_[A-Z_]{0,8}",
        1 => any_text(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(PLAUSIBLE).prop_map(String::from),
        2 => any_text(),
        1 => "[ \t]{0,2}-?[0-9]{1,22}[ \t]{0,2}",
        1 => "[ -~]{0,20}(@|:|/|\\{code\\})[ -~]{0,20}",
    ]
}

/// Any set of variables, weighted towards ours.
fn env_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((key(), value()), 0..14)
}

/// Variables that hold secrets, with values nobody would find in a message by chance.
fn secret_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let var = prop_oneof![
        prop::sample::select(vec![
            "SECRET_KEY",
            "FLASK_SECRET_KEY",
            "ADMIN_TOKEN",
            "MFA_API_KEYS",
            "NOTIFY_API_TOKEN",
            "EMAIL_PASSWORD",
            "TELEGRAM_TOKEN",
        ])
        .prop_map(String::from),
        "[A-Z]{1,6}_SECRET",
    ];
    prop::collection::vec((var, "zq[A-Za-z0-9!%=/+]{10,30}"), 1..5)
}

proptest! {
    /// Whatever the environment holds, the reader gives settings or errors that each name
    /// a variable that is set (or one that must be) and say what is wrong.
    #[test]
    fn the_settings_reader_gives_settings_or_named_errors(pairs in env_pairs()) {
        let env = map(&pairs);
        match Settings::from_env(&env) {
            Ok(s) => {
                let rows = s.report(&env);
                prop_assert!(rows.iter().all(|(var, value, _)| !var.is_empty() && !value.is_empty()));
                prop_assert!(s.warnings.iter().all(|w| !w.is_empty()));
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(e.is_clear(), "{e:?}");
                    let set = pairs.iter().any(|(k, _)| *k == e.var);
                    prop_assert!(set || vars::is_known(&e.var), "{} is neither set nor ours", e.var);
                }
                prop_assert!(errors.to_string().starts_with("invalid configuration"));
            }
        }
    }

    /// No error, warning, report row or `Debug` output quotes a secret's value.
    #[test]
    fn no_message_quotes_a_secret(secrets in secret_pairs(), others in env_pairs()) {
        let mut pairs = others;
        pairs.extend(secrets.iter().cloned());
        let env = map(&pairs);
        let text = match Settings::from_env(&env) {
            Ok(s) => format!("{:?}\n{:?}\n{s:?}", s.warnings, s.report(&env)),
            Err(e) => format!("{e}\n{e:?}"),
        };
        for (var, secret) in &secrets {
            prop_assert!(!text.contains(secret.as_str()), "{var}'s value shows in:\n{text}");
        }
    }

    #[test]
    fn numbers_in_range_are_read_and_others_named(digits in 6u8..=8, period in 1u64..=300, window in 0u16..=10,
                                                  ttl in 1u64..=600, attempts in 1u32..=1_000_000, pad in "[ \t]{0,2}",
                                                  bad_ttl in prop_oneof![601u64..=u64::MAX, Just(0u64)]) {
        let p = |n: &dyn std::fmt::Display| format!("{pad}{n}{pad}");
        let (d, pe, w, t, a) = (p(&digits), p(&period), p(&window), p(&ttl), p(&attempts));
        let s = settings(&[("OTP_DIGITS", &d), ("OTP_PERIOD", &pe), ("OTP_VALID_WINDOW", &w), ("OTP_CODE_TTL", &t),
                           ("MAX_FAILED_ATTEMPTS", &a)]).unwrap();
        prop_assert_eq!((s.otp.digits, s.otp.period, s.valid_window), (digits, period, window));
        prop_assert_eq!((s.code_ttl_seconds, s.lockout.max_failed_attempts), (ttl, attempts));
        let err = settings(&[("OTP_CODE_TTL", &bad_ttl.to_string())]).unwrap_err();
        prop_assert_eq!(err.0.len(), 1);
        prop_assert_eq!(err.0[0].var.as_str(), "OTP_CODE_TTL");
        prop_assert!(err.0[0].reason.contains(&bad_ttl.to_string()));
    }

    /// Without `DATABASE_URL` the database is `mfa.db` in the data directory, whatever its name.
    #[test]
    fn the_default_database_lives_in_the_data_directory(dir in "[ -~]{1,30}") {
        prop_assume!(!dir.trim().is_empty());
        let s = settings(&[("MFA_DATA_DIR", &dir)]).unwrap();
        prop_assert_eq!(&s.data_dir, &PathBuf::from(&dir));
        prop_assert_eq!(s.database, DatabaseConfig::Sqlite { path: PathBuf::from(&dir).join("mfa.db") });
    }

    #[test]
    fn trusted_proxies_are_addresses(ips in prop::collection::vec(any::<IpAddr>(), 0..5), sep in "[, ]{1,3}") {
        let list = ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(&sep);
        prop_assert_eq!(settings(&[("TRUSTED_PROXIES", &list)]).unwrap().trusted_proxies, ips);
    }

    #[test]
    fn rate_limits_parse_or_quote_the_bad_part(raw in prop_oneof![any_text(), "[0-9a-z /;,|]{0,30}"]) {
        match parse_rate_limits(&raw) {
            Ok(limits) => {
                for limit in &limits {
                    prop_assert!(limit.count >= 1 && limit.per >= Duration::from_secs(1));
                    // What `mfa check-config` prints reads back to the same limit.
                    prop_assert_eq!(parse_rate_limits(&limit.to_string()), Ok(vec![*limit]));
                }
            }
            Err(e) => prop_assert!(e.starts_with("cannot read '") || e.starts_with("is empty"), "{e}"),
        }
    }

    /// A `RATE_LIMIT` written in any of Flask-Limiter's spellings gives the numbers it was
    /// written with.
    #[test]
    fn generated_rate_limits_parse_to_their_numbers(
        parts in prop::collection::vec((1u32..=u32::MAX, prop::option::of(1u64..=100_000), 0usize..6, any::<bool>(),
                                        any::<bool>(), any::<bool>()), 1..4),
        sep in prop::sample::select(vec![";", ",", "|", " ; ", "; "]),
    ) {
        const UNITS: [(&str, u64); 6] =
            [("second", 1), ("minute", 60), ("hour", 3600), ("day", 86_400), ("month", 2_592_000), ("year", 31_104_000)];
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for (count, multiplier, unit, plural, slash, upper) in parts {
            let (name, seconds) = UNITS[unit];
            let unit = format!("{name}{}", if plural { "s" } else { "" });
            let per = match multiplier {
                Some(n) => format!("{n} {unit}"),
                None => unit,
            };
            let part = if slash { format!("{count}/{per}") } else { format!("{count} per {per}") };
            text.push(if upper { part.to_uppercase() } else { part });
            expected.push(RateLimit { count, per: Duration::from_secs(seconds * multiplier.unwrap_or(1)) });
        }
        prop_assert_eq!(parse_rate_limits(&text.join(sep)), Ok(expected));
    }

    #[test]
    fn message_templates_parse_or_explain(raw in prop_oneof![any_text(), "[a-z {}]{0,30}",
                                                               "[ -~]{0,10}\\{(code|expires|issuer|username|x)\\}[ -~]{0,10}"]) {
        match MessageTemplate::parse(&raw) {
            Ok(t) => {
                prop_assert!(t.as_str().contains("{code}"), "accepted without a code placeholder");
                prop_assert!(t.render("123456", 300, "ACME", "dair").contains("123456"));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    /// Each placeholder is replaced once, by its value: a value that itself looks like a
    /// placeholder (an `OTP_ISSUER` of `{code}`, say) is not expanded again.
    #[test]
    fn templates_render_each_placeholder_once(
        pieces in prop::collection::vec(prop_oneof![
            "[^{}\\p{Cc}]{0,12}".prop_map(Piece::Text),
            prop::sample::select(vec!["code", "expires", "issuer", "username"]).prop_map(Piece::Placeholder),
        ], 0..8),
        code in "[0-9]{6,8}", ttl in 1u64..=600, username in valid_username(),
        issuer in prop_oneof![any_text(), "[a-z ]{0,5}\\{(code|expires|issuer|username)\\}[a-z ]{0,5}"],
    ) {
        let mut pieces = pieces;
        pieces.push(Piece::Placeholder("code"));
        let template: String = pieces.iter().map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Placeholder(name) => format!("{{{name}}}"),
        }).collect();
        let expires = match ttl {
            60 => "1 minute".to_string(),
            s if s % 60 == 0 => format!("{} minutes", s / 60),
            s => format!("{s} seconds"),
        };
        let expected: String = pieces.iter().map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Placeholder("code") => code.as_str(),
            Piece::Placeholder("expires") => expires.as_str(),
            Piece::Placeholder("issuer") => issuer.as_str(),
            Piece::Placeholder(_) => username.as_str(),
        }).collect();
        let parsed = MessageTemplate::parse(&template).unwrap();
        prop_assert_eq!(parsed.render(&code, ttl, &issuer, &username), expected);
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Placeholder(&'static str),
}

/// The inputs the properties above found, kept as examples.
#[test]
fn regressions_found_by_the_properties() {
    // NOTIFY_API_TOKEN kept a trailing tab that no HTTP request can carry: it is trimmed now.
    let s = settings(&[("NOTIFY_API_TOKEN", "A0123456789abcdef\t")]).unwrap();
    assert_eq!(s.notification.api_token.unwrap().expose(), "A0123456789abcdef");
    // Too short to resist guessing: refused, by name, for every token.
    for var in ["MFA_API_KEYS", "ADMIN_TOKEN", "NOTIFY_API_TOKEN"] {
        let err = settings(&[(var, "k")]).unwrap_err();
        assert_eq!((err.0[0].var.as_str(), err.0[0].reason.contains("at least 16")), (var, true), "{err}");
    }
    // A token with a character no header can carry could never match: refused, by name.
    for var in ["MFA_API_KEYS", "ADMIN_TOKEN", "NOTIFY_API_TOKEN"] {
        let err = settings(&[(var, "caf\u{e9}-0123456789abcdef")]).unwrap_err();
        assert_eq!(err.0[0].var, var);
        assert!(err.0[0].reason.contains("printable ASCII") && !err.0[0].reason.contains("caf"), "{err}");
    }
    let err = settings(&[("MFA_API_KEYS", "good-key-0123456789, b\u{0}d-0123456789abcdef")]).unwrap_err();
    assert!(err.0[0].reason.starts_with("key 2 "), "{err}");
    // A data directory named `?` (or holding `:memory:`) is a directory, not a URL query.
    for dir in ["?", "/srv/a?b", "x:memory:"] {
        let s = settings(&[("MFA_DATA_DIR", dir)]).unwrap();
        assert_eq!(s.database, DatabaseConfig::Sqlite { path: PathBuf::from(dir).join("mfa.db") });
    }
}
