//! HTTP plumbing both services share: the error vocabulary and its writer (`error`), the
//! extractors (`extract`), JSON answers (`reply`), the layers around every request (`observe`), and serving with
//! a connection cap (`serve`) and timeouts (`deadlines`).

mod auth;
mod deadlines;
mod error;
mod extract;
mod observe;
mod reply;
mod serve;

use axum::response::IntoResponse;

pub use auth::{AUTH_FAILURE_BURST, AUTH_FAILURE_PERIOD, AuthFailures, AuthRefusal, client_network, has_bearer};
pub use error::{ErrorBody, ErrorCode, HttpFault, InvalidRequest};
pub use extract::{AppJson, AppPath, AppQuery, read_json_object};
pub use observe::{LOGGED_PATH_CHARS, MAX_REQUEST_ID_LEN, REQUEST_TIMEOUT, with_common_layers};
pub use reply::{JsonReply, json_bytes, json_response};
pub use serve::{BoundRouter, MAX_HEADER_BYTES, MAX_HEADERS, open_files_limit, peer_addr, shutdown_signal};

/// A service's router state, as the shared plumbing sees it: it names the service's error
/// type, whose `IntoResponse` is that service's one mapping from failure to response. The
/// extractors reject with it and the fallbacks answer with it, so every error a service
/// sends has its shape.
pub trait ServiceState: Clone + Send + Sync + 'static {
    type Error: From<HttpFault> + IntoResponse + Send + 'static;
}
