//! Extractors whose rejections are the service's own error (so they are answered by its one
//! mapping, in its JSON shape), and the bearer-token check.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::de::DeserializeOwned;

use super::ServiceState;
use super::error::{HttpFault, InvalidRequest};

/// `Json<T>` whose body must be a JSON object, rejected with the service's error.
///
/// Hostile bodies are 4xx: not JSON, invalid UTF-8, nested deeper than serde_json's
/// recursion limit (128), over the body limit (413), a field given twice (serde's derive
/// refuses duplicate fields: a body's meaning must not depend on which duplicate a parser
/// keeps, since a proxy or WAF in front may have read the other one), or an array where
/// an object belongs (serde's derive would otherwise read `["dair", "123456"]` as a struct).
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: ServiceState,
{
    type Rejection = S::Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let refuse = |invalid: InvalidRequest| S::Error::from(HttpFault::Invalid(invalid));
        if !is_json(req.headers()) {
            return Err(refuse(InvalidRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: "expected a body with Content-Type: application/json".into(),
            }));
        }
        let bytes = whole_body(req.into_body())
            .await
            .map_err(|_| refuse(InvalidRequest::new("the request body could not be read")))?;
        read_json_object(&bytes).map(Self).map_err(refuse)
    }
}

/// The body's bytes. `observe` has read every body whole, within the size limit, before a
/// route sees it (`crate::http::observe`), so the body here is one frame already in memory,
/// and it is taken as it is. axum's `Bytes` extractor collected it again, into a new list of
/// frames and after a look-up of its own body limit in the extensions: about 1,000
/// instructions of every JSON request (callgrind, docs/BENCHMARKS.md finding 27). Frames
/// after the first, which `observe` never leaves, are joined all the same.
async fn whole_body(mut body: Body) -> Result<Bytes, axum::Error> {
    let mut read = super::observe::BodyBytes::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read.push(data);
        }
    }
    Ok(read.into_bytes())
}

/// Whether the request says its body is JSON: `application/json` or `application/<x>+json`,
/// in any case, with or without parameters, and with the optional whitespace RFC 9110
/// allows around the `;` before them (`application/json ; charset=utf-8`, which axum's own
/// check refuses).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return false };
    // What nearly every client sends, told before the general reading below, which cost
    // about 600 instructions a request (callgrind, docs/BENCHMARKS.md finding 27).
    if value.as_bytes().eq_ignore_ascii_case(b"application/json") {
        return true;
    }
    // `to_str` admits visible ASCII only, so the byte offsets below are character offsets.
    let Ok(value) = value.to_str() else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim_matches([' ', '\t']);
    match essence.split_once('/') {
        Some((kind, subtype)) if kind.eq_ignore_ascii_case("application") => {
            let token =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
            let suffix = subtype.len().checked_sub("+json".len()).map(|at| subtype.split_at(at));
            subtype.eq_ignore_ascii_case("json")
                || suffix.is_some_and(|(name, json)| json.eq_ignore_ascii_case("+json") && token(name))
        }
        _ => false,
    }
}

/// A body's bytes read as [`AppJson`] reads them once the content type and the size have
/// passed: the entry point of the property tests and the fuzzer (`crate::input_checks`).
pub fn read_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, InvalidRequest> {
    // serde_json alone when the body is good; axum's `Json`, which tracks the path of the
    // field at fault (serde_path_to_error) at a price every request paid, only to say what
    // is wrong. Both accept and refuse the same bodies (each ends with `Deserializer::end`).
    if let Ok(ObjectOnly(value)) = serde_json::from_slice::<ObjectOnly<T>>(bytes) {
        return Ok(value);
    }
    let Json(ObjectOnly(value)) = Json::<ObjectOnly<T>>::from_bytes(bytes)?;
    Ok(value)
}

/// Deserializes `T` only from a JSON object.
struct ObjectOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);

        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(Object(std::marker::PhantomData)).map(ObjectOnly)
    }
}

/// `Query<T>`, rejected with the service's error (400).
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: ServiceState,
{
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(HttpFault::Invalid(InvalidRequest::new(rejection.body_text())).into()),
        }
    }
}

/// `Path<T>`, rejected with the service's error (400): a path that is not valid UTF-8 once
/// percent-decoded, for instance.
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: ServiceState,
{
    type Rejection = S::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(HttpFault::Invalid(InvalidRequest::new(rejection.body_text())).into()),
        }
    }
}
