//! `.env` users are kept in step with the environment at every start-up.

use mfa::domain::Username;
use mfa::startup::StartupError;

use crate::helpers::*;

const SECRET_A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const SECRET_B: &str = "KRUGS4ZANFZSAYJAONSWG4TFOQQGM33S";

async fn dair(app: &TestApp) -> Option<mfa::store::UserRecord> {
    app.users().find(&Username::parse("dair").unwrap()).await.ok().map(|user| user.record)
}

#[tokio::test]
async fn env_users_are_added_updated_and_removed_with_the_environment() {
    let first = TestApp::builder().envs([("DAIR_SECRET", SECRET_A), ("DAIR_EMAIL", "dair@example.com")]).start().await;
    assert_eq!(dair(&first).await.unwrap().profile.email.as_deref(), Some("dair@example.com"));
    let a = mfa::otp::SecretBytes::from_base32(SECRET_A).unwrap();
    assert_eq!(first.verify("dair", &first.totp(&a, 0)).await.status, 200);
    let dir = first.stop().await;

    let second =
        TestApp::builder().dir(dir).envs([("DAIR_SECRET", SECRET_B), ("DAIR_TELEGRAM_ID", "777")]).start().await;
    let record = dair(&second).await.unwrap();
    assert_eq!((record.profile.email, record.profile.telegram_id.as_deref()), (None, Some("777")));
    assert_eq!(record.last_step, None, "a new secret restarts the replay guard");
    let b = mfa::otp::SecretBytes::from_base32(SECRET_B).unwrap();
    assert_eq!(second.verify("dair", &second.totp(&a, 0)).await.status, 401, "the old secret is gone");
    assert_eq!(second.verify("dair", &second.totp(&b, 0)).await.status, 200);
    let dir = second.stop().await;

    let third = TestApp::builder().dir(dir).start().await;
    assert!(dair(&third).await.is_none(), "removed from the environment, removed from the database");
}

#[tokio::test]
async fn an_unchanged_env_user_keeps_its_replay_state_across_restarts() {
    let first = TestApp::builder().env("DAIR_SECRET", SECRET_A).start().await;
    let a = mfa::otp::SecretBytes::from_base32(SECRET_A).unwrap();
    let code = first.totp(&a, 0);
    assert_eq!(first.verify("dair", &code).await.status, 200);
    let dir = first.stop().await;

    let second = TestApp::builder().dir(dir).env("DAIR_SECRET", SECRET_A).start().await;

    assert_eq!(second.verify("dair", &code).await.status, 401);
}

#[tokio::test]
async fn a_name_defined_both_in_env_and_by_the_cli_stops_start_up() {
    let app = TestApp::builder().start().await;
    app.enroll("dair", None, None).await;
    let dir = app.stop().await;

    let err = TestApp::builder().dir(dir).env("DAIR_SECRET", SECRET_A).try_start().await.err().unwrap();

    assert!(matches!(err, StartupError::Users(_)), "{err}");
    assert!(err.to_string().contains("DAIR_SECRET"), "{err}");
}
