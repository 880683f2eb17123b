//! `/metrics` on both services: requests, latency, verification outcomes, lockouts, rate
//! limiting, deliveries and retries, database pool.

use crate::helpers::*;
use crate::support::telegram::{BotApi, Scripted};

async fn scrape(app: &TestApp, addr: std::net::SocketAddr) -> String {
    let url = format!("http://{addr}/metrics");
    let plain = app.client.get(&url).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert!(plain.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let response = app.client.get(&url).header("accept", accept).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    response.text().await.unwrap()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test]
async fn the_mfa_server_counts_outcomes_lockouts_and_rate_limits() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "2"), ("RATE_LIMIT", "8 per minute")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    let code = app.totp(&secret, 0);
    app.verify("alice", &code).await; // valid
    app.verify("alice", &code).await; // replayed (not a failure)
    app.verify("alice", "000000").await; // invalid
    app.verify("alice", &code).await; // replayed
    app.verify("someone-else", "123456").await; // 404
    for _ in 0..4 {
        app.verify("alice", "000000").await; // invalid and the lock, locked twice, rate limited
    }

    let text = scrape(&app, app.addr).await;

    assert_eq!(value(&text, "mfa_verifications_total{outcome=\"valid\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "mfa_verifications_total{outcome=\"replayed\"}"), Some(2.0));
    assert_eq!(value(&text, "mfa_verifications_total{outcome=\"invalid\"}"), Some(2.0));
    assert_eq!(value(&text, "mfa_verifications_total{outcome=\"locked\"}"), Some(2.0));
    assert_eq!(value(&text, "mfa_lockouts_total"), Some(1.0));
    assert_eq!(value(&text, "mfa_rate_limited_total"), Some(1.0));
    assert_eq!(value(&text, "http_requests_total{route=\"/verify\",method=\"POST\",status=\"200\"}"), Some(1.0));
    assert_eq!(value(&text, "http_requests_total{route=\"/verify\",method=\"POST\",status=\"404\"}"), Some(1.0));
    assert!(text.contains("http_request_duration_seconds_bucket{le="), "latency histogram");
    // Between requests the connections that served them are open and idle.
    assert!(value(&text, "mfa_db_pool_connections{state=\"idle\"}").unwrap() >= 1.0, "{text}");
    assert!(!text.contains("someone-else"), "labels never carry usernames");
}

#[tokio::test]
async fn the_notification_service_counts_deliveries_and_retries() {
    let bot = BotApi::start().await;
    bot.script([Scripted::Error(500, "Internal Server Error"), Scripted::Error(400, "Bad Request: chat not found")]);
    let app = TestApp::builder().envs(bot.env()).start().await;
    let body = serde_json::json!({"channel": "telegram", "recipient": "42", "message": "hi"});
    assert_eq!(app.send(body.clone(), None).await.status, 422, "500 retried, then the chat refused");
    assert_eq!(app.send(body.clone(), None).await.status, 200);
    let email = serde_json::json!({"channel": "email", "recipient": "a@example.com", "message": "hi"});
    assert_eq!(app.send(email, None).await.status, 503);

    let text = scrape(&app, app.notify_addr.unwrap()).await;

    assert_eq!(value(&text, "notify_deliveries_total{channel=\"telegram\",outcome=\"rejected\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "notify_deliveries_total{channel=\"telegram\",outcome=\"sent\"}"), Some(1.0));
    assert_eq!(value(&text, "notify_deliveries_total{channel=\"email\",outcome=\"not_configured\"}"), Some(1.0));
    assert_eq!(value(&text, "notify_retries_total{channel=\"telegram\"}"), Some(1.0));
    assert_eq!(value(&text, "http_requests_total{route=\"/send\",method=\"POST\",status=\"200\"}"), Some(1.0));
    assert!(!text.contains("mfa_verifications"), "each service exposes its own metrics");
}
