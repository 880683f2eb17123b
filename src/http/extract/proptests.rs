//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): a bearer token is accepted exactly
//! when it is one of the configured ones.

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;

use super::has_bearer;
use crate::config::{EnvMap, Settings};

proptest! {
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
}
