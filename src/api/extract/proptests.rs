//! Property tests (proptest, 256 cases each; a failure is shrunk to a minimal input and
//! kept in `proptest-regressions/` to replay first): the client IP is read from
//! `X-Forwarded-For` only when a trusted proxy sent it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::client_ip;

proptest! {
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
