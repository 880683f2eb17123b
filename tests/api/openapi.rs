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
async fn the_notifier_document_covers_send_and_its_errors() {
    let bot = BotApi::start().await;
    let app = TestApp::builder().envs(bot.env()).start().await;
    let addr = app.notify_addr.unwrap();
    let doc = document(&app, addr).await;

    let send = statuses(&doc, "/send", "post");
    for status in ["200", "400", "401", "502", "503"] {
        assert!(send.contains(&status.to_string()), "/send {status}: {send:?}");
    }
    assert_eq!(doc["paths"].as_object().unwrap().len(), 3, "/send, /healthcheck, /metrics");
    assert!(doc["paths"].get("/verify").is_none(), "each service documents its own routes");
    let schemes: Vec<&String> = doc["components"]["securitySchemes"].as_object().unwrap().keys().collect();
    assert_eq!(schemes, ["notify_token"]);
    every_operation_is_served(&app, addr, &doc).await;
}
