//! A user's authenticators through the admin API and `/verify`: several per user, pending
//! until the first code confirms them, rotation that keeps the old secret until then,
//! HOTP with its look-ahead and resynchronisation, learned clock drift, and recovery codes.
//! Codes come from pyotp and oathtool, not from our own code.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, postgres_mode};
use crate::process::cli;

/// Runs a line of Python with pyotp (the test virtualenv's, from `MFA_TEST_PYTHON`) and
/// gives back what it printed.
fn pyotp(expression: &str) -> String {
    let python = std::env::var("MFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .args(["-c", &format!("import pyotp, sys; print({expression})")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run ./scripts/test, which installs pyotp"));
    assert!(out.status.success(), "pyotp: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// OATH Toolkit's code(s) for these arguments.
fn oathtool(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("oathtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run oathtool: {e}; run ./scripts/test, which installs it"));
    assert!(out.status.success(), "oathtool: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// The HOTP code of a base32 secret at `counter`, by oathtool, checked against pyotp.
fn hotp(secret: &str, counter: u64) -> String {
    let by_oathtool = oathtool(&["--hotp", "--base32", "-c", &counter.to_string(), secret]).remove(0);
    let by_pyotp = pyotp(&format!("pyotp.HOTP('{secret}').at({counter})"));
    assert_eq!(by_oathtool, by_pyotp, "oathtool and pyotp agree");
    by_oathtool
}

/// The TOTP code of a base32 secret at a Unix time, by pyotp, checked against oathtool.
fn totp(secret: &str, at: u64) -> String {
    let by_pyotp = pyotp(&format!("pyotp.TOTP('{secret}').at({at})"));
    let now = format!("@{at}");
    let by_oathtool = oathtool(&["--totp", "--base32", "--now", &now, secret]).remove(0);
    assert_eq!(by_oathtool, by_pyotp, "oathtool and pyotp agree");
    by_pyotp
}

async fn admin_app(extra: &[(&str, &str)]) -> TestApp {
    let mut builder = TestApp::builder().admin();
    for (k, v) in extra {
        builder = builder.env(k, v);
    }
    builder.start().await
}

/// Creates `name` through the admin API: the response.
async fn create(app: &TestApp, name: &str) -> Value {
    let created = app.admin(Method::POST, "/admin/users", Some(json!({"username": name}))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.body
}

async fn add(app: &TestApp, user: &str, body: Value) -> Value {
    let added = app.admin(Method::POST, &format!("/admin/users/{user}/authenticators"), Some(body)).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(added.headers.get("cache-control").unwrap(), "no-store");
    added.body
}

async fn list(app: &TestApp, user: &str) -> Vec<Value> {
    let listed = app.admin(Method::GET, &format!("/admin/users/{user}/authenticators"), None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    listed.body["authenticators"].as_array().unwrap().clone()
}

fn secret_of(body: &Value) -> String {
    body["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_active_authenticator_verifies_with_its_own_replay_guard_and_one_lockout() {
    let app = admin_app(&[]).await;
    let created = create(&app, "dair").await;
    assert_eq!(created["authenticator"]["status"], "active", "a new user's first authenticator works at once");
    let first = secret_of(&created);
    let phone = add(&app, "dair", json!({"kind": "totp", "name": "iPhone"})).await;
    assert_eq!((phone["status"].as_str(), phone["name"].as_str()), (Some("pending"), Some("iPhone")));
    assert!(phone["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    assert!(phone["qr_svg"].as_str().unwrap().contains("<svg"));
    let second = secret_of(&phone);

    let listed = list(&app, "dair").await;
    assert_eq!(listed.len(), 2);
    let status_of = |listed: &[Value], id: &Value| listed.iter().find(|a| a["id"] == *id).unwrap()["status"].clone();
    assert_eq!(status_of(&listed, &phone["id"]), "pending");
    for a in &listed {
        let text = a.to_string();
        assert!(!text.contains(&first) && !text.contains(&second) && a.get("secret").is_none(), "{text}");
    }

    let now = app.now();
    let code = totp(&second, now);
    let confirmed = app.verify("dair", &code).await;
    assert_eq!((confirmed.status, confirmed.body["method"].as_str()), (200, Some("totp")), "{:?}", confirmed.body);
    assert_eq!(status_of(&list(&app, "dair").await, &phone["id"]), "active", "the first code confirmed it");
    assert_eq!(app.verify("dair", &code).await.status, 401, "each step once per authenticator");
    assert_eq!(app.verify("dair", &totp(&first, now)).await.status, 200, "the other one's guard is its own");
    assert!(list(&app, "dair").await.iter().all(|a| a["last_used_at"] == now));

    // One lockout across them all.
    for _ in 0..5 {
        app.verify("dair", "000000").await;
    }
    app.clock().advance(30);
    let locked = app.verify("dair", &totp(&second, app.now())).await;
    assert_eq!((locked.status, locked.body["error"].as_str()), (429, Some("too_many_attempts")));
}

#[tokio::test]
async fn authenticators_are_listed_oldest_first_with_ties_in_id_order() {
    // Ids are random, so the table's key order is not the order they were added in.
    let app = admin_app(&[]).await;
    create(&app, "dair").await;
    let mut added = vec![];
    for i in 0..6 {
        if i % 2 == 0 {
            app.clock().advance(1); // two in each second: ties
        }
        added.push(add(&app, "dair", json!({"kind": "totp", "name": format!("device {i}")})).await);
    }
    let listed = list(&app, "dair").await;
    let key = |a: &Value| (a["created_at"].as_u64().unwrap(), a["id"].as_str().unwrap().to_string());
    let mut expected: Vec<_> = added.iter().map(key).collect();
    expected.sort();
    assert_eq!(listed[0]["name"], "default", "the first, made with the user");
    assert_eq!(listed[1..].iter().map(key).collect::<Vec<_>>(), expected, "{listed:?}");
    assert!(listed.windows(2).all(|w| key(&w[0]) < key(&w[1])), "{listed:?}");
}

#[tokio::test]
async fn a_pending_authenticator_that_is_not_confirmed_in_time_is_removed() {
    let app = admin_app(&[("ENROLL_CONFIRM_SECONDS", "120")]).await;
    create(&app, "dair").await;
    let added = add(&app, "dair", json!({"kind": "totp", "name": "tablet"})).await;
    assert_eq!(added["expires_at"], app.now() + 120);
    app.clock().advance(121);

    assert_eq!(app.verify("dair", &totp(&secret_of(&added), app.now())).await.status, 401, "expired");
    let left = list(&app, "dair").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["name"], "default");
    let removed = app.users().expire_pending().await.unwrap();
    assert_eq!(removed, 1, "and the sweep deletes it");
}

#[tokio::test]
async fn a_rotation_keeps_the_old_secret_until_the_new_one_is_confirmed_across_a_restart() {
    let app = admin_app(&[]).await;
    let old = secret_of(&create(&app, "dair").await);
    let rotated = app.admin(Method::POST, "/admin/users/dair/rotate", None).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert_eq!(rotated.body["authenticator"]["status"], "pending");
    let new = secret_of(&rotated.body);

    assert_eq!(app.verify("dair", &totp(&old, app.now())).await.status, 200, "a failed scan locks nobody out");
    let dir = app.stop().await;
    let app = TestApp::builder().admin().dir(dir).start().await;
    app.clock().advance(30);
    assert_eq!(app.verify("dair", &totp(&new, app.now())).await.status, 200, "confirmed after a restart");
    app.clock().advance(30);
    assert_eq!(app.verify("dair", &totp(&old, app.now())).await.status, 401, "the old one is retired");
    let left = list(&app, "dair").await;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0]["status"].as_str(), left[0]["name"].as_str()), (Some("active"), Some("default")));
}

#[tokio::test]
async fn hotp_codes_verify_once_each_within_the_lookahead_and_resync_past_it() {
    let app = admin_app(&[("HOTP_LOOKAHEAD", "5")]).await;
    create(&app, "dair").await;
    let token = add(&app, "dair", json!({"kind": "hotp", "name": "YubiKey", "counter": 7})).await;
    let uri = token["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://hotp/") && uri.ends_with("&counter=7"), "{uri}");
    assert_eq!(pyotp(&format!("pyotp.parse_uri('{uri}').at(0)")), hotp(&secret_of(&token), 7), "pyotp reads it");
    let (secret, id) = (secret_of(&token), token["id"].as_str().unwrap().to_string());

    let first = app.verify("dair", &hotp(&secret, 7)).await;
    assert_eq!((first.status, first.body["method"].as_str()), (200, Some("hotp")), "{:?}", first.body);
    assert_eq!(app.verify("dair", &hotp(&secret, 7)).await.status, 401, "never twice");
    assert_eq!(app.verify("dair", &hotp(&secret, 13)).await.status, 200, "presses 8-12 never arrived");
    let counter = list(&app, "dair").await.into_iter().find(|a| a["id"] == id.as_str()).unwrap()["counter"].clone();
    assert_eq!(counter, 14);
    assert_eq!(app.verify("dair", &hotp(&secret, 20)).await.status, 401, "past the look-ahead of 5");
    assert_eq!(app.verify("dair", &hotp(&secret, 12)).await.status, 401, "behind the counter");

    let path = format!("/admin/users/dair/authenticators/{id}/resync");
    let apart = app.admin(Method::POST, &path, Some(json!({"codes": [hotp(&secret, 40), hotp(&secret, 42)]}))).await;
    assert_eq!((apart.status, apart.body["error"].as_str()), (422, Some("resync_failed")), "not consecutive");
    let synced = app.admin(Method::POST, &path, Some(json!({"codes": [hotp(&secret, 40), hotp(&secret, 41)]}))).await;
    assert_eq!(synced.status, 200, "{:?}", synced.body);
    assert_eq!(synced.body["counter"], 42);
    assert_eq!(app.verify("dair", &hotp(&secret, 41)).await.status, 401, "the resync used them");
    assert_eq!(app.verify("dair", &hotp(&secret, 42)).await.status, 200);
}

/// JSON Schema's `integer` includes a whole number written with a fraction (`7.0`): the
/// counter is taken so up to its highest, 2^53, and refused beyond it or with a fraction.
#[tokio::test]
async fn an_hotp_counter_written_with_a_fraction_is_taken_when_it_is_whole() {
    let app = admin_app(&[]).await;
    create(&app, "dair").await;
    let path = "/admin/users/dair/authenticators";
    for (i, counter) in [6_646_716_309_507_072.0, 9_007_199_254_740_992.0].into_iter().enumerate() {
        let added = app
            .admin(Method::POST, path, Some(json!({"kind": "hotp", "name": format!("k{i}"), "counter": counter})))
            .await;
        assert_eq!(added.status, 201, "{counter}: {:?}", added.body);
        let listed = list(&app, "dair").await.into_iter().find(|a| a["id"] == added.body["id"]).unwrap();
        assert_eq!(listed["counter"].as_u64(), Some(counter as u64), "{listed:?}");
    }
    for counter in [json!(18_014_398_509_481_984.0), json!(7.5), json!(-1.0)] {
        let refused =
            app.admin(Method::POST, path, Some(json!({"kind": "hotp", "name": "x", "counter": counter}))).await;
        assert_eq!((refused.status, refused.body["error"].as_str()), (400, Some("invalid_request")), "{counter}");
    }
}

/// The RFC 4226 Appendix D vectors, as oathtool and pyotp compute them, and as we do.
#[test]
fn the_rfc4226_vectors_agree_with_oathtool_and_pyotp() {
    let expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    let hex = "3132333435363738393031323334353637383930"; // "12345678901234567890"
    let by_oathtool = oathtool(&["--hotp", "-c", "0", "-w", "9", hex]);
    assert_eq!(by_oathtool, expected);
    let base32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let secret = mfa::otp::SecretBytes::from_base32(base32).unwrap();
    for (counter, want) in expected.iter().enumerate() {
        assert_eq!(hotp(base32, counter as u64), *want);
        assert_eq!(mfa::otp::hotp_code(&secret, mfa::otp::Algorithm::Sha1, 6, counter as u64), *want);
    }
}

#[tokio::test]
async fn a_clock_that_runs_ahead_is_learned_and_the_window_follows_it() {
    let app = admin_app(&[("OTP_VALID_WINDOW", "1")]).await;
    let secret = secret_of(&create(&app, "dair").await);
    let ahead = |steps: u64| totp(&secret, app.now() + 30 * steps);

    assert_eq!(app.verify("dair", &ahead(1)).await.body["method"], "totp");
    assert_eq!(list(&app, "dair").await[0]["drift_seconds"], 30);
    app.clock().advance(30);
    assert_eq!(app.verify("dair", &ahead(2)).await.status, 200, "centred on the drift, 2 steps ahead is in");
    assert_eq!(list(&app, "dair").await[0]["drift_seconds"], 60);
    app.clock().advance(30);
    assert_eq!(app.verify("dair", &ahead(0)).await.status, 401, "the window moved: it is not widened");
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("mfa_totp_step_offset_bucket{le=\"1.5\"} 1"), "{text}");
    assert!(text.contains("mfa_totp_step_offset_count 2"), "{text}");

    // Far off: only a resynchronisation from two consecutive codes finds it.
    let id = list(&app, "dair").await[0]["id"].as_str().unwrap().to_string();
    let path = format!("/admin/users/dair/authenticators/{id}/resync");
    let codes = json!({"codes": [ahead(20), ahead(21)]});
    let synced = app.admin(Method::POST, &path, Some(codes)).await;
    assert_eq!((synced.status, &synced.body["drift_seconds"]), (200, &json!(630)), "{:?}", synced.body);
    app.clock().advance(30);
    assert_eq!(app.verify("dair", &ahead(21)).await.status, 200);
}

#[tokio::test]
async fn recovery_codes_work_once_each_count_toward_the_lockout_and_are_replaced_as_a_set() {
    let app = admin_app(&[]).await;
    create(&app, "dair").await;
    let made = app.admin(Method::POST, "/admin/users/dair/recovery-codes", None).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.headers.get("cache-control").unwrap(), "no-store");
    let codes: Vec<String> =
        made.body["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    assert_eq!(codes.len(), 10);
    let form = regex_like(&codes[0]);
    assert!(codes.iter().all(|c| regex_like(c) == form), "{codes:?}");
    assert_eq!(form, "xxxx-xxxx-xxxx");
    let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);

    let typed = codes[3].to_uppercase().replace('-', " ");
    let used = app.verify("dair", &typed).await;
    assert_eq!(used.status, 200, "{:?}", used.body);
    assert_eq!(
        (used.body["method"].as_str(), used.body["recovery_codes_remaining"].as_u64()),
        (Some("recovery"), Some(9))
    );
    assert_eq!(app.verify("dair", &codes[3]).await.status, 401, "once");
    let left = app.admin(Method::GET, "/admin/users/dair/recovery-codes", None).await;
    assert_eq!(left.body, json!({"remaining": 9}));

    let again = app.admin(Method::POST, "/admin/users/dair/recovery-codes", None).await;
    assert_eq!(app.verify("dair", &codes[4]).await.status, 401, "a new set replaces the old one");
    let fresh = again.body["codes"][0].as_str().unwrap().to_string();
    for _ in 0..4 {
        assert_eq!(app.verify("dair", "zzzz-zzzz-zzzz").await.status, 401);
    }
    let locked = app.verify("dair", &fresh).await;
    assert_eq!((locked.status, locked.body["error"].as_str()), (429, Some("too_many_attempts")), "wrong ones count");

    if !postgres_mode() {
        let db = std::fs::read(app.settings.data_dir.join("mfa.db")).unwrap();
        let wal = std::fs::read(app.settings.data_dir.join("mfa.db-wal")).unwrap_or_default();
        for code in &codes {
            let plain = code.replace('-', "");
            assert!(![&db, &wal].iter().any(|bytes| bytes.windows(12).any(|w| w == plain.as_bytes())), "stored hashed");
        }
    }
}

/// `4k7q-m2xp-9z3c` → `xxxx-xxxx-xxxx`: the shape of a code, letters and digits as `x`,
/// with only the alphabet of Crockford's base32 (no i, l, o, u) allowed.
fn regex_like(code: &str) -> String {
    code.chars()
        .map(|c| match c {
            '-' => '-',
            c if c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c)) => 'x',
            other => other,
        })
        .collect()
}

#[tokio::test]
async fn removing_an_authenticator_stops_its_codes_and_env_users_are_managed_in_env() {
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ";
    let app = admin_app(&[("DAIR_SECRET", secret), ("MFA_ENV_USERS", "dair")]).await;
    let env_listed = list(&app, "dair").await;
    assert_eq!((env_listed.len(), env_listed[0]["status"].as_str()), (1, Some("active")));
    let refused =
        app.admin(Method::POST, "/admin/users/dair/authenticators", Some(json!({"kind": "totp", "name": "x"}))).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (409, Some("defined_in_env")));
    let env_id = env_listed[0]["id"].as_str().unwrap();
    let refused = app.admin(Method::DELETE, &format!("/admin/users/dair/authenticators/{env_id}"), None).await;
    assert_eq!(refused.status, 409);

    create(&app, "bob").await;
    let token = add(&app, "bob", json!({"kind": "hotp", "name": "token"})).await;
    let id = token["id"].as_str().unwrap();
    let gone = app.admin(Method::DELETE, &format!("/admin/users/bob/authenticators/{id}"), None).await;
    assert_eq!(gone.status, 204);
    assert_eq!(app.verify("bob", &hotp(&secret_of(&token), 0)).await.status, 401);
    let again = app.admin(Method::DELETE, &format!("/admin/users/bob/authenticators/{id}"), None).await;
    assert_eq!((again.status, again.body["error"].as_str()), (404, Some("unknown_authenticator")));
    let bad =
        app.admin(Method::POST, "/admin/users/bob/authenticators", Some(json!({"kind": "sms", "name": "x"}))).await;
    assert_eq!((bad.status, bad.body["error"].as_str()), (400, Some("invalid_request")));
    let bad =
        app.admin(Method::POST, "/admin/users/bob/authenticators", Some(json!({"kind": "totp", "name": " "}))).await;
    assert_eq!(bad.status, 400);
    let bad = app
        .admin(
            Method::POST,
            "/admin/users/bob/authenticators",
            Some(json!({"kind": "totp", "name": "a", "counter": 3})),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn the_cli_lists_adds_resyncs_and_removes_authenticators_and_makes_recovery_codes() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SECRET_KEY", crate::helpers::TEST_SECRET_KEY)];
    let run = |args: Vec<String>| {
        let dir = dir.path().to_path_buf();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = cli(&dir, &env, &args).await;
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
            out.stdout
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    run(args(&["user", "add", "dair", "--no-qr"])).await;
    let added =
        run(args(&["user", "add-authenticator", "dair", "--kind", "hotp", "--name", "YubiKey", "--no-qr"])).await;
    let secret = crate::process::secret_from_cli(&added).to_base32();
    let listed = run(args(&["user", "authenticators", "dair"])).await;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains("hotp pending 'YubiKey'") && listed.contains("counter 0"), "{listed}");
    let id = listed.lines().find(|l| l.contains("YubiKey")).unwrap().split(' ').next().unwrap().to_string();
    assert!(!listed.contains(&secret));

    let synced = run(args(&["user", "resync", "dair", &id, &hotp(&secret, 30), &hotp(&secret, 31)])).await;
    assert!(synced.contains("counter 32"), "{synced}");
    let codes = run(args(&["user", "recovery-codes", "dair"])).await;
    let shown: Vec<&str> = codes.lines().map(str::trim).filter(|l| regex_like(l) == "xxxx-xxxx-xxxx").collect();
    assert_eq!(shown.len(), 10, "{codes}");
    assert!(run(args(&["user", "recovery-codes", "dair", "--remaining"])).await.contains("10 unused"));
    let removed = run(args(&["user", "remove-authenticator", "dair", &id])).await;
    assert!(removed.contains("YubiKey"), "{removed}");
    assert_eq!(run(args(&["user", "authenticators", "dair"])).await.lines().count(), 1);

    let server = crate::process::start_server(dir.path(), &env).await;
    let used = server.verify("dair", shown[0]).await;
    assert_eq!((used.status, used.body["recovery_codes_remaining"].as_u64()), (200, Some(9)), "{:?}", used.body);
}

/// Two servers on one database race for one HOTP code: exactly one accepts it.
#[tokio::test]
async fn an_hotp_code_sent_to_two_instances_at_once_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("SECRET_KEY", crate::helpers::TEST_SECRET_KEY)];
    let out = cli(dir.path(), &env, &["user", "add", "dair", "--no-qr"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out =
        cli(dir.path(), &env, &["user", "add-authenticator", "dair", "--kind", "hotp", "--name", "t", "--no-qr"]).await;
    let secret = crate::process::secret_from_cli(&out.stdout).to_base32();
    let a = crate::process::start_server(dir.path(), &env).await;
    let b = crate::process::start_server(dir.path(), &env).await;

    for counter in 0..5 {
        let code = hotp(&secret, counter);
        let tasks: Vec<_> = (0..8)
            .map(|i| if i % 2 == 0 { a.verify_task("dair", &code) } else { b.verify_task("dair", &code) })
            .collect();
        let replies = crate::helpers::join_all(tasks.into_iter()).await;
        let accepted = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(accepted, 1, "counter {counter}: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        assert!(replies.iter().all(|r| [200, 401].contains(&r.status)));
    }
}
