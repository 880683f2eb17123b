//! The integration guide's examples (docs/integration/login.py and login.mjs) run as
//! written against the real server: enroll, confirm with the app's first code, log in with
//! a sent code, and guess until the lockout answers.

use std::time::Duration;

use crate::helpers::*;

const API_KEY: &str = "backend-key-of-the-integration-guide";

/// Runs one example against a fresh server; returns its output after checking what the
/// server then holds.
async fn run_example(program: &str, file: &str, user: &str) -> String {
    let server = TestApp::builder()
        .admin()
        .envs(&[("MFA_API_KEYS", API_KEY), ("MAX_FAILED_ATTEMPTS", "3"), ("OTP_RESEND_SECONDS", "0")])
        .start_binary("server")
        .await;
    let example = format!("{}/docs/integration/{file}", env!("CARGO_MANIFEST_DIR"));
    let log = server.notifications_log();
    let mut command = tokio::process::Command::new(program);
    command.arg(&example).envs([
        ("MFA_URL", server.url("").as_str()),
        ("MFA_API_KEY", API_KEY),
        ("MFA_ADMIN_TOKEN", ADMIN_TOKEN),
        ("MFA_NOTIFICATIONS_LOG", log.to_str().unwrap()),
        ("DEMO_USER", user),
    ]);
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{file} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/test installs it): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{file} failed:\n{text}\nserver logs:\n{}", server.logs());
    assert!(text.trim_end().ends_with("demo done"), "{text}");
    // MAX_FAILED_ATTEMPTS=3: the third wrong guess locks, the fourth is refused with 429. The
    // example runs on the real clock: a second may turn between the lock and the refusal.
    assert!(
        ["300", "299"].iter().any(|s| text.contains(&format!("guess 4: too many wrong codes: try again in {s} s"))),
        "{text}"
    );

    // What the server holds afterwards: the user, locked, with its two codes used.
    let shown = server.admin(reqwest::Method::GET, &format!("/admin/users/{user}"), None).await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["locked"], true, "{:?}", shown.body);
    assert_eq!(shown.body["email"], format!("{user}@example.com"));
    let to_user: Vec<_> =
        server.notifications().into_iter().filter(|n| n["recipient"] == format!("{user}@example.com")).collect();
    let codes = to_user.iter().filter(|n| n["subject"] == "MFA verification code").count();
    assert_eq!(codes, 1, "one code was sent");
    // The lockout is told to the user, in the background: at most that one alert.
    assert!(to_user.len() - codes <= 1, "{to_user:?}");
    text
}

#[tokio::test]
async fn the_python_example_of_the_integration_guide_runs_as_written() {
    let python = std::env::var("MFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    run_example(&python, "login.py", "guide-python").await;
}

#[tokio::test]
async fn the_node_example_of_the_integration_guide_runs_as_written() {
    run_example("node", "login.mjs", "guide-node").await;
}
