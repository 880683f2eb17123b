//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): a bearer token is accepted exactly
//! when it is one of the configured ones, and every token the configuration accepts can be
//! sent and then matches.

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;

use super::has_bearer;
use crate::config::{EnvMap, Settings};
use crate::strategies::any_text;

use crate::config::settings_of as settings;

proptest! {
    /// A token is accepted exactly when it is presented as `Bearer <token>`.
    #[test]
    fn bearer_tokens_match_exactly(tokens in prop::collection::vec("[!-+--~]{16,40}", 1..4), pick in any::<prop::sample::Index>(),
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

    /// Every token the configuration accepts can be presented in an `Authorization` header
    /// and is then accepted; one that cannot is refused at start-up, without being quoted.
    #[test]
    fn every_accepted_token_can_authenticate(raw in prop_oneof![any_text(), "[ \t]{0,2}[!-~]{1,30}[ \t]{0,2}"],
                                             var in prop::sample::select(vec!["MFA_API_KEYS", "ADMIN_TOKEN", "NOTIFY_API_TOKEN"])) {
        let result = settings(&[(var, &raw)]);
        let tokens = match &result {
            Ok(s) => match var {
                "MFA_API_KEYS" => s.api_keys.clone(),
                "ADMIN_TOKEN" => s.admin_token.iter().cloned().collect(),
                _ => s.notification.api_token.iter().cloned().collect(),
            },
            Err(e) => {
                prop_assert_eq!(e.0.len(), 1);
                prop_assert_eq!(e.0[0].var.as_str(), var);
                if raw.trim().len() >= 4 {
                    prop_assert!(!e.0[0].reason.contains(raw.trim()), "{}", e.0[0].reason);
                }
                vec![]
            }
        };
        for token in &tokens {
            // What a client sends; the server's HTTP parser drops blanks around a header value.
            let sent = HeaderValue::from_str(&format!("Bearer {}", token.expose()));
            prop_assert!(sent.is_ok(), "{var}: a token no header can carry was accepted");
            let received = HeaderValue::from_str(sent.unwrap().to_str().unwrap().trim_matches([' ', '\t'])).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, received);
            prop_assert!(has_bearer(&headers, std::slice::from_ref(token)), "{var}: an accepted token never matches");
        }
    }
}
