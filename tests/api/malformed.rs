//! Every malformed request gets a 4xx with `{"error":"invalid_request","detail":...}`.

use serde_json::json;

use crate::helpers::*;

async fn raw(app: &TestApp, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    Reply::read(request.send().await.unwrap()).await
}

fn assert_invalid(reply: &Reply, status: u16, case: &str) {
    assert_eq!(reply.status, status, "{case}: {:?}", reply.body);
    assert_eq!(reply.body["error"], "invalid_request", "{case}");
    assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{case}: a detail explains it");
}

#[tokio::test]
async fn bodies_that_are_not_the_expected_json_are_400() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", None, None).await;
    let json = Some("application/json");
    let cases: &[(&str, &str)] = &[
        ("not json", "username=alice"),
        ("empty body", ""),
        ("truncated", "{\"username\": \"ali"),
        ("array", "[\"alice\"]"),
        ("missing token", "{\"username\": \"alice\"}"),
        ("missing username", "{\"token\": \"123456\"}"),
        ("username is a number", "{\"username\": 42, \"token\": \"123456\"}"),
        ("token is a number", "{\"username\": \"alice\", \"token\": 123456}"),
        ("token is null", "{\"username\": \"alice\", \"token\": null}"),
        ("token has letters", "{\"username\": \"alice\", \"token\": \"12ab56\"}"),
        ("token too long", "{\"username\": \"alice\", \"token\": \"1234567890\"}"),
        ("control characters", "{\"username\": \"\\u0000\\u0007\\u001b\", \"token\": \"123456\"}"),
        ("empty username", "{\"username\": \"\", \"token\": \"123456\"}"),
        ("huge username", &format!("{{\"username\": \"{}\", \"token\": \"123456\"}}", "a".repeat(5000))),
    ];
    for (case, body) in cases {
        assert_invalid(&raw(&app, "/verify", json, body.to_string()).await, 400, case);
    }
    assert_invalid(&raw(&app, "/request-otp", json, "{\"username\": [1]}").await, 400, "request-otp mistyped");
}

#[tokio::test]
async fn a_missing_or_wrong_content_type_is_415() {
    let app = TestApp::builder().start().await;
    let body = json!({"username": "alice", "token": "123456"}).to_string();
    assert_invalid(&raw(&app, "/verify", None, body.clone()).await, 415, "no content type");
    assert_invalid(&raw(&app, "/verify", Some("text/plain"), body).await, 415, "text/plain");
}

#[tokio::test]
async fn a_one_megabyte_body_is_413() {
    let app = TestApp::builder().start().await;
    let body = format!("{{\"username\": \"{}\"}}", "a".repeat(1 << 20));
    assert_invalid(&raw(&app, "/request-otp", Some("application/json"), body).await, 413, "1 MB");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::builder().start().await;
    let missing = app.get("/nope").await;
    assert_eq!((missing.status, missing.body), (404, json!({"error": "not_found"})));
    let wrong_method = app.get("/verify").await;
    assert_eq!((wrong_method.status, wrong_method.body), (405, json!({"error": "method_not_allowed"})));
}

#[tokio::test]
async fn extra_fields_are_ignored_like_flask_did() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let reply =
        app.post_json("/verify", json!({"username": "alice", "token": app.totp(&secret, 0), "remember": true})).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn malformed_requests_do_not_count_as_failed_attempts() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "1")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    for _ in 0..3 {
        assert_eq!(app.verify("alice", "abc").await.status, 400);
    }
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
}
