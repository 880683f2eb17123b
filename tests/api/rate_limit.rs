use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn requests_over_the_limit_get_429_rate_limited() {
    let app = TestApp::builder().envs(&[("RATE_LIMIT", "3 per minute")]).start().await;
    for _ in 0..3 {
        assert_eq!(app.verify("nobody", "123456").await.status, 404);
    }

    let limited = app.request_otp("nobody").await;

    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"], "rate_limited");
    let retry = limited.body["retry_after"].as_u64().unwrap();
    assert!((1..=20).contains(&retry), "one request comes back every 20 s: {retry}");
    assert_eq!(limited.retry_after(), Some(retry));
}

#[tokio::test]
async fn healthcheck_is_never_rate_limited() {
    let app = TestApp::builder().envs(&[("RATE_LIMIT", "2 per day")]).start().await;
    for _ in 0..10 {
        assert_eq!(app.get("/healthcheck").await.status, 200);
    }
    assert_eq!(app.verify("nobody", "123456").await.status, 404, "probes did not eat the quota");
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = TestApp::builder().envs(&[("RATE_LIMIT", "1 per minute")]).start().await;
    let send = |ip: &str| {
        app.client
            .post(app.url("/verify"))
            .header("x-forwarded-for", ip)
            .json(&json!({"username": "nobody", "token": "123456"}))
            .send()
    };
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 404);
    assert_eq!(send("203.0.113.2").await.unwrap().status(), 429, "a spoofed header does not buy a new quota");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_quota() {
    let app =
        TestApp::builder().envs(&[("RATE_LIMIT", "1 per minute"), ("TRUSTED_PROXIES", "127.0.0.1")]).start().await;
    let send = |xff: &'static str| {
        app.client
            .post(app.url("/verify"))
            .header("x-forwarded-for", xff)
            .json(&json!({"username": "nobody", "token": "123456"}))
            .send()
    };
    assert_eq!(send("203.0.113.1").await.unwrap().status(), 404);
    assert_eq!(send("203.0.113.2").await.unwrap().status(), 404);
    assert_eq!(send("6.6.6.6, 203.0.113.1").await.unwrap().status(), 429, "the right-most entry is the client");
}

#[tokio::test]
async fn with_mfa_api_keys_the_endpoints_need_one_of_them() {
    let app = TestApp::builder()
        .envs(&[("MFA_API_KEYS", "backend-key-1-0123456789, backend-key-2-0123456789")])
        .start()
        .await;
    let call = |key: Option<&'static str>| {
        let mut request = app.client.post(app.url("/verify")).json(&json!({"username": "nobody", "token": "123456"}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    let none = Reply::read(call(None).await.unwrap()).await;
    let wrong = Reply::read(call(Some("backend-key-3-0123456789")).await.unwrap()).await;
    let right = Reply::read(call(Some("backend-key-2-0123456789")).await.unwrap()).await;

    assert_eq!((none.status, none.body), (401, json!({"error": "unauthorized"})));
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(wrong.status, 401);
    assert_eq!((right.status, right.body["error"].as_str()), (404, Some("unknown_user")));
    assert_eq!(app.get("/healthcheck").await.status, 200, "health stays open for probes");
}

/// Wrong bearer tokens are limited per client address on every gate: after a burst, 429 with
/// `Retry-After`, even for the right token, until the wait is over.
#[tokio::test]
async fn wrong_tokens_are_limited_per_address_on_every_gate() {
    let key = "backend-key-0123456789abcdef";
    let notify_token = "notify-token-0123456789abcdef";
    let app = TestApp::builder()
        .admin()
        .envs(&[("MFA_API_KEYS", key), ("NOTIFY_API_TOKEN", notify_token), ("TELEGRAM_TOKEN", "1:unused")])
        .start()
        .await;
    let notifier = app.notify_addr.unwrap();
    let gates = [
        (app.url("/verify"), reqwest::Method::POST, key),
        (app.url("/admin/users"), reqwest::Method::GET, ADMIN_TOKEN),
        (format!("http://{notifier}/send"), reqwest::Method::POST, notify_token),
    ];
    // The gates of one service share the count: each gate is tried from an address of its own.
    for ((url, method, right), n) in gates.into_iter().zip(2u8..) {
        let client = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, n])).build().unwrap();
        let call = |token: &str| {
            let body = json!({"username": "nobody", "token": "123456", "channel": "telegram", "recipient": "42", "message": "x"});
            client.request(method.clone(), &url).bearer_auth(token).json(&body).send()
        };
        for _ in 0..mfa::http::AUTH_FAILURE_BURST {
            assert_eq!(Reply::read(call("a-wrong-token-0123456789").await.unwrap()).await.status, 401, "{url}");
        }
        let limited = Reply::read(call("a-wrong-token-0123456789").await.unwrap()).await;
        assert_eq!((limited.status, limited.body["error"].as_str()), (429, Some("rate_limited")), "{url}");
        assert!(limited.retry_after().is_some_and(|s| s >= 1), "{url}: {:?}", limited.headers);
        let right = Reply::read(call(right).await.unwrap()).await;
        assert_eq!(right.status, 429, "{url}: while limited, a right token tells nothing");
    }
}
