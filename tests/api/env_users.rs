//! `.env` users are kept in step with the environment at every start-up.

use mfa::domain::Username;
use mfa::startup::StartupError;
use mfa::store::Factor;

use crate::helpers::*;

const SECRET_A: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const SECRET_B: &str = "KRUGS4ZANFZSAYJAONSWG4TFOQQGM33S";
/// Users from the process environment are named (in `.env` every `<NAME>_SECRET` is one).
const ENV_USERS: (&str, &str) = ("MFA_ENV_USERS", "dair");

async fn dair(app: &TestApp) -> Option<mfa::store::UserRecord> {
    app.users().find(&Username::parse("dair").unwrap()).await.ok().map(|user| user.record)
}

#[tokio::test]
async fn env_users_are_added_updated_and_removed_with_the_environment() {
    let first = TestApp::builder()
        .envs([("DAIR_SECRET", SECRET_A), ("DAIR_EMAIL", "dair@example.com"), ENV_USERS])
        .start()
        .await;
    assert_eq!(dair(&first).await.unwrap().profile.email.as_deref(), Some("dair@example.com"));
    let a = mfa::otp::SecretBytes::from_base32(SECRET_A).unwrap();
    assert_eq!(first.verify("dair", &first.totp(&a, 0)).await.status, 200);
    let dir = first.stop().await;

    let second = TestApp::builder()
        .dir(dir)
        .envs([("DAIR_SECRET", SECRET_B), ("DAIR_TELEGRAM_ID", "777"), ENV_USERS])
        .start()
        .await;
    let record = dair(&second).await.unwrap();
    assert_eq!((record.profile.email, record.profile.telegram_id.as_deref()), (None, Some("777")));
    assert!(
        matches!(record.authenticators.as_slice(), [a] if matches!(a.factor, Factor::Totp { last_step: None, .. })),
        "a new secret is a new authenticator, whose replay guard starts afresh: {:?}",
        record.authenticators
    );
    let b = mfa::otp::SecretBytes::from_base32(SECRET_B).unwrap();
    assert_eq!(second.verify("dair", &second.totp(&a, 0)).await.status, 401, "the old secret is gone");
    assert_eq!(second.verify("dair", &second.totp(&b, 0)).await.status, 200);
    let dir = second.stop().await;

    let third = TestApp::builder().dir(dir).start().await;
    assert!(dair(&third).await.is_none(), "removed from the environment, removed from the database");
}

#[tokio::test]
async fn an_unchanged_env_user_keeps_its_replay_state_across_restarts() {
    let first = TestApp::builder().envs([("DAIR_SECRET", SECRET_A), ENV_USERS]).start().await;
    let a = mfa::otp::SecretBytes::from_base32(SECRET_A).unwrap();
    let code = first.totp(&a, 0);
    assert_eq!(first.verify("dair", &code).await.status, 200);
    let dir = first.stop().await;

    let second = TestApp::builder().dir(dir).envs([("DAIR_SECRET", SECRET_A), ENV_USERS]).start().await;

    assert_eq!(second.verify("dair", &code).await.status, 401);
}

#[tokio::test]
async fn a_name_defined_both_in_env_and_by_the_cli_stops_start_up() {
    let app = TestApp::builder().start().await;
    app.enroll("dair", None, None).await;
    let dir = app.stop().await;

    let err = TestApp::builder().dir(dir).envs([("DAIR_SECRET", SECRET_A), ENV_USERS]).try_start().await.err().unwrap();

    assert!(matches!(err, StartupError::Users(_)), "{err}");
    assert!(err.to_string().contains("DAIR_SECRET"), "{err}");
}

#[tokio::test]
async fn other_programs_secrets_in_the_environment_are_not_users_but_dotenv_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), format!("DAIR_SECRET={SECRET_A}\n")).unwrap();
    // Values that read as base32 secrets, and one that does not: none of them is a user.
    let others = [
        ("GITHUB_CLIENT_SECRET", "3f9a0c1d2b4e5f60718293a4b5c6d7e8f9012345"),
        ("JWT_SECRET", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
        ("CLIENT_SECRET", "not a secret of ours!"),
    ];

    let out = crate::process::cli(dir.path(), &others, &["check-config"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("user 'dair'"), "the .env user stays:\n{all}");
    for (var, value) in others {
        assert!(all.contains(var), "{var} is named as left alone:\n{all}");
        assert!(!all.contains(value), "{var}'s value was printed:\n{all}");
    }
    for name in ["github_client", "jwt", "client"] {
        assert!(!all.contains(&format!("user '{name}'")), "{name} became a user:\n{all}");
    }

    let server = crate::process::start_server(dir.path(), &others).await;
    let a = mfa::otp::SecretBytes::from_base32(SECRET_A).unwrap();
    let code = crate::process::now_code(&a, mfa::otp::OtpParams::default());
    assert_eq!(server.verify("dair", &code).await.status, 200);
    let jwt = mfa::otp::SecretBytes::from_base32(others[1].1).unwrap();
    let jwt_code = crate::process::now_code(&jwt, mfa::otp::OtpParams::default());
    let refused = server.verify("jwt", &jwt_code).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (404, Some("unknown_user")));
}

#[tokio::test]
async fn mfa_env_users_names_the_environment_users_and_each_must_exist() {
    let named = TestApp::builder().envs([("JWT_SECRET", SECRET_B), ("MFA_ENV_USERS", "jwt")]).start().await;
    assert!(named.users().find(&Username::parse("jwt").unwrap()).await.is_ok(), "named, so a user");
    let every = TestApp::builder().envs([("DAIR_SECRET", SECRET_A), ("MFA_ENV_USERS", "*")]).start().await;
    assert!(dair(&every).await.is_some(), "`*` admits every one");

    let dir = tempfile::tempdir().unwrap();
    let missing =
        crate::process::cli(dir.path(), &[("MFA_ENV_USERS", "dair,bob"), ("DAIR_SECRET", SECRET_A)], &["check-config"])
            .await;
    assert_eq!(missing.code, 2, "bob has no secret: {}", missing.stdout);
    assert!(missing.stderr.contains("MFA_ENV_USERS: names 'bob', but BOB_SECRET is not set"), "{}", missing.stderr);
}
