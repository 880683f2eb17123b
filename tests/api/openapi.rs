//! `/openapi.json` on both services: OpenAPI 3.1, every served route documented with its
//! statuses, and every documented operation actually served.

use serde_json::Value;

use crate::helpers::*;
use crate::support::telegram::BotApi;

const ADMIN: &str = "admin-token-0123456789abcdef";

async fn document(app: &TestApp, addr: std::net::SocketAddr) -> Value {
    let reply = Reply::read(app.client.get(format!("http://{addr}/openapi.json")).send().await.unwrap()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3.1"), "{}", reply.body["openapi"]);
    reply.body
}

fn statuses(doc: &Value, path: &str, method: &str) -> Vec<String> {
    let responses =
        doc["paths"][path][method]["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} missing"));
    responses.keys().cloned().collect()
}

/// Calls every documented operation; none may hit the router's fallback.
async fn every_operation_is_served(app: &TestApp, addr: std::net::SocketAddr, doc: &Value) -> usize {
    let mut called = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("http://{addr}{}", path.replace("{username}", "nobody"));
            let request = app.client.request(method.to_uppercase().parse().unwrap(), &url).bearer_auth(ADMIN);
            let response = request.json(&serde_json::json!({})).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is documented but not served");
            assert_ne!(body["error"], "not_found", "{method} {path} is documented but not served");
            called += 1;
        }
    }
    called
}

#[tokio::test]
async fn the_mfa_document_covers_every_route_and_status() {
    let app = TestApp::builder().envs(&[("ADMIN_TOKEN", ADMIN)]).start().await;
    let doc = document(&app, app.addr).await;

    for status in ["200", "400", "401", "404", "413", "415", "429"] {
        assert!(statuses(&doc, "/verify", "post").contains(&status.to_string()), "/verify {status}");
    }
    for status in ["200", "404", "422", "429", "502"] {
        assert!(statuses(&doc, "/request-otp", "post").contains(&status.to_string()), "/request-otp {status}");
    }
    assert!(statuses(&doc, "/healthcheck", "get").contains(&"503".to_string()));
    assert!(statuses(&doc, "/admin/users", "post").contains(&"409".to_string()));
    assert!(statuses(&doc, "/admin/users/{username}/qr.png", "get").contains(&"410".to_string()));
    for path in
        ["/admin/users/{username}", "/admin/users/{username}/rotate", "/admin/users/{username}/unlock", "/metrics"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    for scheme in ["api_key", "admin_token"] {
        assert_eq!(doc["components"]["securitySchemes"][scheme]["scheme"], "bearer");
    }
    assert!(doc["components"]["securitySchemes"].get("notify_token").is_none(), "the other service's token");
    assert!(doc["components"]["schemas"]["VerifyBody"]["properties"]["token"].is_object());

    let operations = every_operation_is_served(&app, app.addr, &doc).await;
    assert!(operations >= 12, "{operations}");
}

#[tokio::test]
async fn the_notifier_document_covers_send_the_bots_calls_and_their_errors() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;
    let addr = app.notify_addr.unwrap();
    let doc = document(&app, addr).await;

    let send = statuses(&doc, "/send", "post");
    for status in ["200", "400", "401", "502", "503"] {
        assert!(send.contains(&status.to_string()), "/send {status}: {send:?}");
    }
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/healthcheck", "/metrics", "/send", "/telegram/bot", "/telegram/starts"]);
    let bot_answers = statuses(&doc, "/telegram/bot", "get");
    assert!(["200", "401", "502", "503"].iter().all(|s| bot_answers.contains(&s.to_string())), "{bot_answers:?}");
    assert!(doc["paths"].get("/verify").is_none(), "each service documents its own routes");
    let schemes: Vec<&String> = doc["components"]["securitySchemes"].as_object().unwrap().keys().collect();
    assert_eq!(schemes, ["notify_token"]);
    every_operation_is_served(&app, addr, &doc).await;
}

const API_KEY: &str = "backend-key-for-the-generated-client";
const NOTIFY_TOKEN: &str = "notify-token-for-the-generated-client";

/// Runs a program of the test virtualenv (`MFA_TEST_PYTHON`'s directory); panics with its
/// output if it fails.
async fn venv_tool(tool: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let python = std::path::PathBuf::from(std::env::var("MFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into()));
    let program = if tool == "python" { python.clone() } else { python.with_file_name(tool) };
    // The generator formats its output with ruff, which the virtualenv has beside it.
    let bin = python.parent().map(|dir| dir.to_path_buf()).unwrap_or_default();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = tokio::process::Command::new(&program);
    command.args(args).env("PATH", path).envs(env.iter().copied());
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 120 s", program.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (scripts/test installs it)", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {args:?} failed:\n{text}", program.display());
    text
}

/// Every `description` and `summary` in a document.
fn descriptions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(text) if key == "description" || key == "summary" => out.push(text.clone()),
                    _ => descriptions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| descriptions(v, out)),
        _ => {}
    }
}

/// Both documents pass an independent validator (openapi-spec-validator), and a client
/// generated from each by openapi-python-client drives a whole flow against the real
/// services (tests/api/support/generated_clients.py).
#[tokio::test]
async fn generated_clients_drive_a_whole_flow_against_the_real_services() {
    let bot = BotApi::start().await;
    let mut notifier_env = bot.env();
    notifier_env.push(("NOTIFY_API_TOKEN".into(), NOTIFY_TOKEN.into()));
    let notifier = TestApp::builder().envs(notifier_env).start().await;
    let notify_addr = notifier.notify_addr.unwrap();
    let server = TestApp::builder()
        .envs(&[("ADMIN_TOKEN", ADMIN), ("MFA_API_KEYS", API_KEY), ("OTP_RESEND_SECONDS", "0")])
        .start_binary("server")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let mut packages = Vec::new();
    for (name, doc) in [
        ("mfa_client", document(&server, server.addr).await),
        ("notify_client", document(&notifier, notify_addr).await),
    ] {
        let mut internal = Vec::new();
        descriptions(&doc, &mut internal);
        internal.retain(|text| {
            ["declared in the order", "[`", "crate::", "Flask", "src/"].iter().any(|m| text.contains(m))
        });
        assert!(internal.is_empty(), "descriptions that speak of our code, not the API: {internal:#?}");
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        let path = path.to_str().unwrap().to_string();
        let valid = venv_tool("openapi-spec-validator", &[&path], &[]).await;
        assert!(valid.contains("OK"), "{valid}");
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, format!("package_name_override: {name}\nproject_name_override: {name}\n")).unwrap();
        let output = dir.path().join(name);
        venv_tool(
            "openapi-python-client",
            &[
                "generate",
                "--path",
                &path,
                "--config",
                config.to_str().unwrap(),
                "--meta",
                "none",
                "--output-path",
                output.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        packages.push(output);
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/support/generated_clients.py");
    let log = server.notifications_log();
    let flow = venv_tool(
        "python",
        &[script],
        &[
            ("PYTHONPATH", dir.path().to_str().unwrap()),
            ("MFA_URL", &server.url("")),
            ("NOTIFY_URL", &format!("http://{notify_addr}")),
            ("ADMIN_TOKEN", ADMIN),
            ("API_KEY", API_KEY),
            ("NOTIFY_TOKEN", NOTIFY_TOKEN),
            ("NOTIFICATIONS_LOG", log.to_str().unwrap()),
        ],
    )
    .await;
    assert!(flow.trim_end().ends_with("flow done"), "{flow}");
    let sent: Vec<String> = bot.received().iter().map(|m| m["text"].as_str().unwrap_or_default().to_string()).collect();
    assert!(sent.iter().any(|text| text == "sent through the generated client"), "{sent:?}");
}
