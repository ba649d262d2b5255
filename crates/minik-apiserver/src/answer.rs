//! How an answer goes out: an [`ApiError`] as a Kubernetes `Status` ([`HttpError`]), a
//! success `Status`, JSON bodies, and content negotiation (the media type of a request body,
//! the encoding an `Accept` header asks for). A leaf module: every other HTTP module uses it,
//! it uses none of them. Every `Status` the server sends is built here.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use minik_api::ApiError;
use serde_json::{json, Value};

/// `error` as a `Status` object (`status: Failure`), as answers and watch ERROR events carry it.
pub(crate) fn failure_status(error: &ApiError) -> Value {
    let mut status = serde_json::to_value(error.to_status()).unwrap_or(Value::Null);
    status["kind"] = "Status".into();
    status["apiVersion"] = "v1".into();
    status["metadata"] = json!({});
    status
}

/// The bare `Status` of a success with `code`, what Kubernetes answers when there is no object.
pub(crate) fn success_status(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

/// An [`ApiError`] on its way out as an HTTP answer.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // A full disk is a state the store logs when it begins and ends, not once per refusal.
        if self.0.is_server_error() && !matches!(self.0, ApiError::InsufficientStorage(_)) {
            tracing::error!(error = %self.0, "request failed");
        }
        let status = failure_status(&self.0);
        let code = StatusCode::from_u16(self.0.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, Bytes::from(status.to_string()))
    }
}

pub(crate) fn json_response(code: StatusCode, body: Bytes) -> Response {
    json_response_body(code, Body::from(body))
}

/// A JSON answer whose body is made as it is sent.
pub(crate) fn json_response_body(code: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The media type of a request body, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// How the answer is encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Yaml,
}

pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Encoding::Json);
    };
    for item in accept.split(',') {
        let media = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            // text/plain is what log readers ask for; everything else is answered as JSON.
            "" | "*/*" | "application/*" | "application/json" | "text/plain" => {
                return Ok(Encoding::Json)
            }
            "application/yaml" => return Ok(Encoding::Yaml),
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml (asked for {accept})"
    )))
}

pub(crate) fn encode(
    encoding: Encoding,
    code: StatusCode,
    body: Bytes,
) -> Result<Response, ApiError> {
    match encoding {
        Encoding::Json => Ok(json_response(code, body)),
        Encoding::Yaml => {
            let value: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
            let yaml = minik_api::yaml::to_yaml(&value);
            let mut response = Response::new(Body::from(yaml));
            *response.status_mut() = code;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            Ok(response)
        }
    }
}
