use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_right_app_code_is_valid() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;

    let reply = app.verify("alice", &app.totp(&secret, 0)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"valid": true, "method": "totp"}),
        "the seed's `valid`, and what kind of code it was"
    );
}

#[tokio::test]
async fn a_wrong_code_is_401_invalid_token() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;

    let reply = app.verify("alice", &wrong(&app.totp(&secret, 0))).await;

    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, json!({"valid": false, "error": "invalid_token"}));
}

#[tokio::test]
async fn an_unknown_user_is_404() {
    let app = TestApp::builder().start().await;
    let reply = app.verify("nobody", "123456").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, json!({"error": "unknown_user"}));
}

#[tokio::test]
async fn the_window_accepts_one_step_either_side_and_no_more() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let bob = app.enroll("bob", None, None).await;
    let carol = app.enroll("carol", None, None).await;

    assert_eq!(app.verify("alice", &app.totp(&secret, -1)).await.status, 200, "previous step");
    assert_eq!(app.verify("bob", &app.totp(&bob, 1)).await.status, 200, "next step");
    assert_eq!(app.verify("carol", &app.totp(&carol, -2)).await.status, 401, "two steps old");
    assert_eq!(app.verify("carol", &app.totp(&carol, 2)).await.status, 401, "two steps ahead");
}

#[tokio::test]
async fn a_zero_window_accepts_only_the_current_step() {
    let app = TestApp::builder().envs(&[("OTP_VALID_WINDOW", "0")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    assert_eq!(app.verify("alice", &app.totp(&secret, -1)).await.status, 401);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
}

#[tokio::test]
async fn a_code_expires_with_time() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let code = app.totp(&secret, 0);
    app.clock().advance(61);
    assert_eq!(app.verify("alice", &code).await.status, 401);
}

#[tokio::test]
async fn users_with_sha256_and_eight_digits_verify_with_their_own_parameters() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll_with("alice", None, None, sha256_8()).await;
    let code = app.totp_with(&secret, sha256_8(), 0);
    assert_eq!(code.len(), 8);
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 401, "a SHA1 6-digit code is wrong");
    assert_eq!(app.verify("alice", &code).await.status, 200);
}

#[tokio::test]
async fn usernames_are_case_insensitive_and_codes_may_contain_spaces() {
    let app = TestApp::builder().start().await;
    let secret = app.enroll("alice", None, None).await;
    let code = app.totp(&secret, 0);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    assert_eq!(app.verify("ALICE", &spaced).await.status, 200);
}

/// The seed's `.env` user with its 80-bit secret, checked against pyotp's value for
/// `base32secret3232` at t = 1234567890 (tests/fixtures/pyotp.tsv): 357655.
#[tokio::test]
async fn the_seed_user_verifies_the_code_pyotp_computes() {
    let app = TestApp::builder()
        .envs(&[("DAIR_SECRET", "base32secret3232"), ("DAIR_EMAIL", "dair@example.com"), ("MFA_ENV_USERS", "dair")])
        .start()
        .await;
    app.clock().set(1_234_567_890);

    assert_eq!(app.verify("dair", "357656").await.status, 401);
    assert_eq!(app.verify("dair", "357655").await.status, 200);
}

#[tokio::test]
async fn a_user_added_while_the_server_runs_verifies_at_once() {
    let app = TestApp::builder().start().await;
    assert_eq!(app.verify("late", "123456").await.status, 404);
    let secret = app.enroll("late", None, None).await;
    assert_eq!(app.verify("late", &app.totp(&secret, 0)).await.status, 200);
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_once_a_code_of_it_is_accepted() {
    let app = TestApp::builder().start().await;
    let old = app.enroll("alice", None, None).await;
    let name = mfa::domain::Username::parse("alice").unwrap();
    let rotated = app.users().rotate(&name).await.unwrap();
    assert_ne!(rotated.secret, old);
    assert!(rotated.otpauth_uri.contains(&rotated.secret.to_base32()));
    assert_eq!(app.verify("alice", &app.totp(&old, -1)).await.status, 200, "until then the old one works");
    assert_eq!(app.verify("alice", &app.totp(&rotated.secret, 0)).await.status, 200);
    assert_eq!(app.verify("alice", &app.totp(&old, 1)).await.status, 401, "then it is retired");
}

#[tokio::test]
async fn healthcheck_reports_the_database_and_503_when_it_is_gone() {
    let app = TestApp::builder().start().await;
    let up = app.get("/healthcheck").await;
    assert_eq!(up.status, 200);
    assert_eq!(up.body["status"], "ok");
    assert_eq!(up.body["database"], "ok");
    assert_eq!(up.body["time"], START);

    app.users().close().await; // the database goes away under the running server
    let cached = app.get("/healthcheck").await;
    assert_eq!(cached.status, 200, "the probe's answer is reused within the clock's second");
    app.clock().advance(1);

    let down = app.get("/healthcheck").await;
    assert_eq!(down.status, 503);
    assert_eq!(down.body["database"], "unreachable");
    let verify = app.verify("alice", "123456").await;
    assert_eq!((verify.status, verify.body["error"].as_str()), (503, Some("database_unavailable")));
    assert_eq!(verify.retry_after(), Some(5));
}

#[tokio::test]
async fn responses_carry_a_request_id_and_keep_the_clients() {
    let app = TestApp::builder().start().await;
    let generated = app.client.get(app.url("/healthcheck")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let echoed = app.client.get(app.url("/healthcheck")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
}
