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
    let app = TestApp::builder().envs(&[("MFA_API_KEYS", "backend-key-1, backend-key-2")]).start().await;
    let call = |key: Option<&'static str>| {
        let mut request = app.client.post(app.url("/verify")).json(&json!({"username": "nobody", "token": "123456"}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    let none = Reply::read(call(None).await.unwrap()).await;
    let wrong = Reply::read(call(Some("backend-key-3")).await.unwrap()).await;
    let right = Reply::read(call(Some("backend-key-2")).await.unwrap()).await;

    assert_eq!((none.status, none.body), (401, json!({"error": "unauthorized"})));
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(wrong.status, 401);
    assert_eq!((right.status, right.body["error"].as_str()), (404, Some("unknown_user")));
    assert_eq!(app.get("/healthcheck").await.status, 200, "health stays open for probes");
}
