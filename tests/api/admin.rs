//! The admin API: enrollment with a one-time secret and QR code, listing, contact changes,
//! rotation, unlock, removal; guarded by ADMIN_TOKEN and absent without it.

use mfa::otp::SecretBytes;
use serde_json::{Value, json};

use crate::helpers::*;

async fn create(app: &TestApp, body: Value) -> Reply {
    app.admin(reqwest::Method::POST, "/admin/users", Some(body)).await
}

#[tokio::test]
async fn without_admin_token_there_is_no_admin_api() {
    let app = TestApp::builder().start().await;
    let reply = app.post_json("/admin/users", json!({"username": "alice"})).await;
    assert_eq!((reply.status, reply.body), (404, json!({"error": "not_found"})));
}

#[tokio::test]
async fn every_admin_route_needs_the_token() {
    let app = TestApp::builder().admin().start().await;
    for (method, path) in [("POST", "/admin/users"), ("GET", "/admin/users"), ("GET", "/admin/users/alice")] {
        let request = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth("wrong-token-0123456789");
        let reply = Reply::read(request.send().await.unwrap()).await;
        assert_eq!((reply.status, reply.body["error"].as_str()), (401, Some("unauthorized")), "{method} {path}");
    }
}

#[tokio::test]
async fn creating_a_user_returns_the_secret_once_with_its_uri_and_qr_codes() {
    let app = TestApp::builder().admin().start().await;

    let created = create(&app, json!({"username": "alice", "email": "alice@example.com", "digits": 8})).await;

    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.headers["cache-control"], "no-store");
    let secret = SecretBytes::from_base32(created.body["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.bits(), 160);
    assert!(created.body["otpauth_uri"].as_str().unwrap().contains(&secret.to_base32()));
    assert!(created.body["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!((created.body["digits"].as_u64(), created.body["email"].as_str()), (Some(8), Some("alice@example.com")));

    let png = app.client.get(app.url("/admin/users/alice/qr.png")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(
        (png.headers()["content-type"].to_str().unwrap(), png.headers()["cache-control"].to_str().unwrap()),
        ("image/png", "no-store")
    );
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));

    let params = mfa::otp::OtpParams { digits: 8, ..mfa::otp::OtpParams::default() };
    assert_eq!(app.verify("alice", &app.totp_with(&secret, params, 0)).await.status, 200);

    let shown = app.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
    assert_eq!(shown.status, 200);
    assert!(!shown.body.to_string().contains(&secret.to_base32()), "the secret is never shown again");
    assert!(shown.body.get("secret").is_none());
    let gone = app.admin(reqwest::Method::GET, "/admin/users/alice/qr.png", None).await;
    assert_eq!((gone.status, gone.body["error"].as_str()), (410, Some("qr_expired")), "used: no more QR");

    let again = create(&app, json!({"username": "alice"})).await;
    assert_eq!((again.status, again.body["error"].as_str()), (409, Some("user_exists")));
}

#[tokio::test]
async fn the_qr_code_expires_ten_minutes_after_the_secret_was_issued() {
    let app = TestApp::builder().admin().start().await;
    create(&app, json!({"username": "alice"})).await;
    app.clock().advance(599);
    assert_eq!(
        app.client.get(app.url("/admin/users/alice/qr.png")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().status(),
        200
    );
    app.clock().advance(1);
    assert_eq!(app.admin(reqwest::Method::GET, "/admin/users/alice/qr.png", None).await.status, 410);
}

#[tokio::test]
async fn bad_creation_requests_are_400() {
    let app = TestApp::builder().admin().start().await;
    for body in [
        json!({"username": "bad name"}),
        json!({"username": "alice", "email": "nope"}),
        json!({"username": "alice", "telegram_id": "nope"}),
        json!({"username": "alice", "algorithm": "MD5"}),
        json!({"username": "alice", "digits": 9}),
        json!({"email": "a@example.com"}),
    ] {
        let reply = create(&app, body.clone()).await;
        assert_eq!((reply.status, reply.body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    }
}

#[tokio::test]
async fn users_are_listed_page_by_page() {
    let app = TestApp::builder().admin().start().await;
    for name in ["erin", "alice", "dave", "bob", "carol"] {
        assert_eq!(create(&app, json!({"username": name})).await.status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/admin/users?limit=2".to_string();
    loop {
        let page = app.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(page.status, 200);
        let users = page.body["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        seen.extend(users.iter().map(|u| u["username"].as_str().unwrap().to_string()));
        assert!(users.iter().all(|u| u.get("secret").is_none()));
        match page.body["next"].as_str() {
            Some(next) => path = format!("/admin/users?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["alice", "bob", "carol", "dave", "erin"]);
    assert_eq!(app.admin(reqwest::Method::GET, "/admin/users?limit=0", None).await.status, 400);
}

#[tokio::test]
async fn contact_details_can_be_changed_and_cleared() {
    let app = TestApp::builder()
        .admin()
        .envs(&[("DAIR_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), ("MFA_ENV_USERS", "dair")])
        .start()
        .await;
    create(&app, json!({"username": "alice", "telegram_id": "42"})).await;
    let patch = |body: Value| app.admin(reqwest::Method::PATCH, "/admin/users/alice", Some(body));

    let changed = patch(json!({"email": "alice@example.com", "telegram_id": null})).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(
        (changed.body["email"].as_str(), changed.body["telegram_id"].as_str()),
        (Some("alice@example.com"), None)
    );
    let kept = patch(json!({"telegram_id": "@alice_chan"})).await;
    assert_eq!(
        (kept.body["email"].as_str(), kept.body["telegram_id"].as_str()),
        (Some("alice@example.com"), Some("@alice_chan"))
    );

    assert_eq!(patch(json!({"email": "nope"})).await.status, 400);
    assert_eq!(patch(json!({"secret": "x"})).await.status, 400);
    let env_user =
        app.admin(reqwest::Method::PATCH, "/admin/users/dair", Some(json!({"email": "d@example.com"}))).await;
    assert_eq!((env_user.status, env_user.body["error"].as_str()), (409, Some("defined_in_env")));
    let missing = app.admin(reqwest::Method::PATCH, "/admin/users/nobody", Some(json!({"email": null}))).await;
    assert_eq!((missing.status, missing.body["error"].as_str()), (404, Some("unknown_user")));
}

#[tokio::test]
async fn rotate_unlock_and_delete() {
    let app = TestApp::builder().admin().envs(&[("MAX_FAILED_ATTEMPTS", "2")]).start().await;
    let first = create(&app, json!({"username": "alice"})).await;
    let old = SecretBytes::from_base32(first.body["secret"].as_str().unwrap()).unwrap();

    let rotated = app.admin(reqwest::Method::POST, "/admin/users/alice/rotate", None).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(rotated.headers["cache-control"], "no-store");
    let new = SecretBytes::from_base32(rotated.body["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new, old);
    assert_eq!(rotated.body["authenticator"]["status"], "pending");
    assert_eq!(app.verify("alice", &app.totp(&new, -1)).await.status, 200, "the new one, confirmed");
    assert_eq!(app.verify("alice", &app.totp(&old, 0)).await.status, 401, "retires the old one");
    assert_eq!(app.verify("alice", &app.totp(&old, 1)).await.status, 401);
    let locked = app.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
    assert_eq!(locked.body["locked"], true);
    assert_eq!(app.verify("alice", &app.totp(&new, 0)).await.status, 429);

    let unlocked = app.admin(reqwest::Method::POST, "/admin/users/alice/unlock", None).await;
    assert_eq!((unlocked.status, unlocked.body["locked"].as_bool()), (200, Some(false)));
    assert_eq!(app.verify("alice", &app.totp(&new, 0)).await.status, 200);

    assert_eq!(app.admin(reqwest::Method::DELETE, "/admin/users/alice", None).await.status, 204);
    assert_eq!(app.admin(reqwest::Method::GET, "/admin/users/alice", None).await.status, 404);
    assert_eq!(app.verify("alice", &app.totp(&new, 1)).await.status, 404);
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_503_for_the_admin_api_too() {
    let app = TestApp::builder().admin().start().await;
    app.users().close().await; // the database goes away under the running server
    let reply = app.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
    assert_eq!((reply.status, reply.body["error"].as_str()), (503, Some("database_unavailable")));
}

#[tokio::test]
async fn each_user_shows_how_it_was_created() {
    let secret = SecretBytes::generate().to_base32();
    let app = TestApp::builder().admin().envs(&[("MFA_ENV_USERS", "dair"), ("DAIR_SECRET", &secret)]).start().await;
    assert_eq!(create(&app, json!({"username": "alice"})).await.status, 201);
    app.enroll("bob", None, None).await;

    let sources = app.user_sources().await;

    assert_eq!(sources, "alice:admin bob:cli dair:env");
    let shown = app.admin(reqwest::Method::GET, "/admin/users/alice", None).await;
    assert_eq!(shown.body["source"], "admin");
}
