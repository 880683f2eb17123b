//! The benchmark's ceiling: a minimal axum server that parses the same JSON body as
//! `/verify` and answers a fixed JSON, on the same runtime and HTTP stack as `mfa`. What it
//! reaches under the same load generator is the most this machine allows; `bench/run`
//! prints every figure of ours as a ratio to it.
//!
//! Run: cargo run --release --example ceiling -- 127.0.0.1:7000

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct VerifyLike {
    #[allow(dead_code)]
    username: String,
    #[allow(dead_code)]
    token: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7000".into());
    let app = Router::new()
        .route("/verify", post(|Json(_): Json<VerifyLike>| async { Json(json!({"valid": true})) }))
        .route("/healthcheck", get(|| async { Json::<Value>(json!({"status": "ok"})) }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
