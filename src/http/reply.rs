//! JSON answers, built with one header insert: every JSON answer of both services goes
//! through here.
//!
//! axum's `Json` (and a `(status, [(CONTENT_TYPE, ...)], body)` tuple) first makes the body
//! a response of `application/octet-stream` and then replaces that content type: two
//! inserts into the header map for one header, about 250 instructions of every answer
//! (callgrind; docs/BENCHMARKS.md, finding 34).

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `body`, already JSON, with `status` and its content type.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `value` as JSON with `status`; a 500 should it not serialise (none of our bodies can
/// fail to: their maps have string keys).
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, Bytes::from(body)),
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be written as JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A handler's 200 answer as JSON: `axum::Json` with one header insert.
pub struct JsonReply<T>(pub T);

impl<T: Serialize> IntoResponse for JsonReply<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_has_its_status_one_json_content_type_and_the_body() {
        let response = json_response(StatusCode::TOO_MANY_REQUESTS, &serde_json::json!({"error": "x", "n": 1}));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let types: Vec<_> = response.headers().get_all(header::CONTENT_TYPE).iter().collect();
        assert_eq!(types, [HeaderValue::from_static("application/json")]);
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"x","n":1}"#);
        assert_eq!(JsonReply([1, 2]).into_response().status(), StatusCode::OK);
    }
}
