//! Response and request plumbing shared by the handlers: JSON and streaming bodies, Status errors,
//! query strings and content negotiation.

use super::status::ApiError;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Every response body: a whole document or a stream (watch, followed logs).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub const JSON: &str = "application/json";

/// Request bodies above this are refused: nothing the lab stores comes close.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    // Serializing a `Value` cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full_body(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(JSON));
    response
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &error.to_status())
}

/// A [`Stream`] over an mpsc receiver (tokio-stream is not a dependency for this one adapter).
struct ReceiverStream(mpsc::Receiver<Bytes>);

impl Stream for ReceiverStream {
    type Item = Bytes;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.0.poll_recv(cx)
    }
}

/// A chunked response whose chunks are whatever is sent into the returned sender; dropping the
/// sender ends the response, and a client going away closes the sender (`Sender::closed`).
pub fn streaming_response(content_type: &'static str) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    let stream = ReceiverStream(receiver).map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    (response, sender)
}

/// The decoded query parameters (the last value wins, as in the real server for these params).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `true`/`1` as the real server reads boolean parameters.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("{name}: invalid value {text:?}: must be a number"))
            }),
        }
    }
}

/// Whether the client asked for `meta.k8s.io` Table output (kubectl get does).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("as=Table"))
}
