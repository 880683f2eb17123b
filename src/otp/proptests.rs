//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): algorithms, digits and base32 secrets
//! read back to what was written, and an enrollment URI reads back to what was enrolled.

use proptest::prelude::*;

use super::{Algorithm, MIN_ACCEPTED_SECRET_BYTES, OtpParams, SecretBytes, otpauth_uri, parse_digits, totp_code};
use crate::strategies::{any_text, mangle_case, valid_username};

/// Any of the three algorithms.
pub(crate) fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Sha1), Just(Algorithm::Sha256), Just(Algorithm::Sha512)]
}

proptest! {
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
}
