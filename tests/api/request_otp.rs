use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_code_is_sent_to_every_channel_and_verifies_once() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", Some("alice@example.com"), Some("123456789")).await;

    let reply = app.request_otp("alice").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"status": "sent", "channels": ["email", "telegram"], "expires_in": 300}));
    let notes = app.notifications();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0]["channel"], "email");
    assert_eq!(notes[1]["recipient"], "123456789");
    let code = app.last_code_sent_to("alice@example.com");
    assert_eq!(code, app.last_code_sent_to("123456789"), "one code, two channels");
    assert_eq!(code.len(), 6);
    assert_eq!(app.verify("alice", &code).await.status, 200);
    assert_eq!(app.verify("alice", &code).await.status, 401, "single use");
}

#[tokio::test]
async fn a_sent_code_outlives_the_totp_window_but_not_its_ttl() {
    let app = TestApp::builder().envs(&[("OTP_CODE_TTL", "120")]).start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    app.enroll("bob", Some("bob@example.com"), None).await;
    app.request_otp("alice").await;
    app.request_otp("bob").await;
    let alice = app.last_code_sent_to("alice@example.com");
    let bob = app.last_code_sent_to("bob@example.com");

    app.clock().advance(119);
    assert_eq!(app.verify("alice", &alice).await.status, 200, "a slow email still works");
    app.clock().advance(1);
    assert_eq!(app.verify("bob", &bob).await.status, 401, "expired");
}

#[tokio::test]
async fn asking_again_too_soon_is_429_with_retry_after() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    assert_eq!(app.request_otp("alice").await.status, 200);
    app.clock().advance(10);

    let again = app.request_otp("alice").await;

    assert_eq!(again.status, 429);
    assert_eq!(again.body, json!({"error": "resend_too_soon", "retry_after": 20}));
    assert_eq!(again.retry_after(), Some(20));
    assert_eq!(app.notifications().len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn a_request_within_half_the_lifetime_resends_the_same_code() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    assert_eq!(app.request_otp("alice").await.body["expires_in"], 300);
    let first = app.last_code_sent_to("alice@example.com");
    app.clock().advance(150);

    let again = app.request_otp("alice").await;

    assert_eq!((again.status, again.body["expires_in"].as_u64()), (200, Some(150)), "{:?}", again.body);
    assert_eq!(app.last_code_sent_to("alice@example.com"), first, "the same code, with the time it has left");
    let message = app.notifications().last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains("2 minutes") || message.contains("150"), "{message}");
    assert_eq!(app.notifications().len(), 2);
    assert_eq!(app.verify("alice", &first).await.status, 200);
}

/// Anyone who knows the username can ask for codes; that must never break the code the
/// user is typing (which then would fail, and count as a failure).
#[tokio::test]
async fn requests_by_someone_else_never_knock_out_the_code_being_typed() {
    let app = TestApp::builder().env("OTP_SENDS_PER_HOUR", "100").start().await;
    let secret = app.enroll("alice", Some("alice@example.com"), None).await;
    app.request_otp("alice").await;
    let typing = app.last_code_sent_to("alice@example.com");
    // Someone asks again every OTP_RESEND_SECONDS while the user types.
    let mut seen = std::collections::HashSet::from([typing.clone()]);
    for _ in 0..9 {
        app.clock().advance(30);
        assert_eq!(app.request_otp("alice").await.status, 200);
        seen.insert(app.last_code_sent_to("alice@example.com"));
    }
    assert!(seen.len() <= 2, "a new code only past half the lifetime: {seen:?}");

    app.clock().advance(9); // 279 s after it was sent: still in its lifetime
    assert_eq!(app.verify("alice", &typing).await.status, 200, "the code being typed still works");
    let newest = app.last_code_sent_to("alice@example.com");
    if newest != typing {
        let used = app.verify("alice", &newest).await;
        assert_eq!(used.status, 401, "the first success used both codes");
    }
    // Those were replays, not failures: five attempts are still left.
    for _ in 0..4 {
        assert_eq!(app.verify("alice", "000000").await.status, 401);
    }
    assert_eq!(app.verify("alice", &app.totp(&secret, 0)).await.status, 200);
}

#[tokio::test]
async fn past_half_its_lifetime_a_new_code_is_sent_and_the_previous_one_stays_valid() {
    let app = TestApp::builder().start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    app.enroll("bob", Some("bob@example.com"), None).await;
    for user in ["alice", "bob"] {
        app.request_otp(user).await;
    }
    let (alice_first, bob_first) =
        (app.last_code_sent_to("alice@example.com"), app.last_code_sent_to("bob@example.com"));
    app.clock().advance(151);
    for user in ["alice", "bob"] {
        assert_eq!(app.request_otp(user).await.body["expires_in"], 300, "a new code, with a whole lifetime");
    }
    let (alice_second, bob_second) =
        (app.last_code_sent_to("alice@example.com"), app.last_code_sent_to("bob@example.com"));

    assert_eq!(app.verify("alice", &alice_first).await.status, 200, "the previous code still works");
    assert_eq!(app.verify("bob", &bob_second).await.status, 200, "and so does the new one");
    if alice_second != alice_first {
        assert_eq!(app.verify("alice", &alice_second).await.status, 401, "one success uses both");
    }
    if bob_first != bob_second {
        assert_eq!(app.verify("bob", &bob_first).await.status, 401);
    }
    // The previous code ends with its own lifetime.
    app.clock().advance(30);
    app.request_otp("alice").await;
    let third = app.last_code_sent_to("alice@example.com");
    app.clock().advance(151);
    app.request_otp("alice").await; // a new code; `third` is the previous one now
    app.clock().advance(150); // 301 s after `third` was sent
    assert_eq!(app.verify("alice", &third).await.status, 401, "expired");
}

#[tokio::test]
async fn each_user_gets_at_most_otp_sends_per_hour() {
    let app = TestApp::builder().envs(&[("OTP_SENDS_PER_HOUR", "3"), ("OTP_RESEND_SECONDS", "0")]).start().await;
    app.enroll("alice", Some("alice@example.com"), None).await;
    app.enroll("bob", Some("bob@example.com"), None).await;
    for _ in 0..3 {
        assert_eq!(app.request_otp("alice").await.status, 200);
    }

    let capped = app.request_otp("alice").await;

    // 3 at once, then one every 3,600 / 3 = 1,200 s.
    assert_eq!(capped.body, json!({"error": "resend_too_soon", "retry_after": 1200}));
    assert_eq!(capped.retry_after(), Some(1200));
    assert_eq!(app.request_otp("bob").await.status, 200, "per user");
    app.clock().advance(1199);
    assert_eq!(app.request_otp("alice").await.status, 429);
    app.clock().advance(1);
    assert_eq!(app.request_otp("alice").await.status, 200);
    assert_eq!(app.request_otp("alice").await.status, 429);
    let to_alice = app.notifications().iter().filter(|n| n["recipient"] == "alice@example.com").count();
    assert_eq!(to_alice, 4, "the inbox got what the limit allows, no more");
}

#[tokio::test]
async fn unknown_users_and_users_without_channels_get_clear_errors() {
    let app = TestApp::builder().start().await;
    app.enroll("appuser", None, None).await;

    let unknown = app.request_otp("nobody").await;
    assert_eq!((unknown.status, unknown.body.clone()), (404, json!({"error": "unknown_user"})));

    let no_channel = app.request_otp("appuser").await;
    assert_eq!(no_channel.status, 422);
    assert_eq!(no_channel.body["error"], "no_delivery_channel");
}

#[tokio::test]
async fn codes_follow_the_users_digits() {
    let app = TestApp::builder().start().await;
    app.enroll_with("alice", Some("alice@example.com"), None, sha256_8()).await;
    app.request_otp("alice").await;
    let code = app.last_code_sent_to("alice@example.com");
    assert_eq!(code.len(), 8);
    assert_eq!(app.verify("alice", &code).await.status, 200);
}
