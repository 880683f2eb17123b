//! The benchmark's ceiling: a minimal axum server that parses the same JSON body as
//! `/verify` and answers a fixed JSON, on the same runtime and HTTP stack as `mfa` (served
//! by `mfa::http::BoundRouter`, the connection loop both services use). What it
//! reaches under the same load generator is the most this machine allows; `bench/run`
//! prints every figure of ours as a ratio to it.
//!
//! Run: cargo run --release --example ceiling -- 127.0.0.1:7000

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The same allocator as `mfa`, so the ratio measures our code, not the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let addr = addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let server = mfa::http::BoundRouter::bind(addr, app).await?;
    eprintln!("ceiling listening on http://{}", server.local_addr()?);
    server.run_until(std::future::pending()).await
}
