//! [`Api`] over HTTP, for processes other than the server: node agents and the command line.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use minik_api::request::{DeleteOptions, Patch, WriteOptions};
use minik_api::resources::{FieldValidation, ResourceInfo};
use minik_api::ApiError;
use serde_json::{json, Value};

use crate::api::{Api, BoxFuture, ListParams, RawEventStream, RawObjectList, RawWatchEvent};

/// Whom an HTTPS client trusts and what it presents: the cluster CA (PEM) and, optionally, a
/// client certificate and key (PEM). Without a CA, HTTPS servers are checked against the
/// public web roots.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub ca_pem: Option<String>,
    pub client_certificate: Option<(String, String)>,
}

impl std::fmt::Debug for Trust {
    // The client key is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field(
                "ca",
                &self.ca_pem.as_ref().map(|p| minik_tls::fingerprint(p)),
            )
            .field("client_certificate", &self.client_certificate.is_some())
            .finish()
    }
}

impl Trust {
    /// Trusting the CA of `ca_pem` only.
    pub fn ca(ca_pem: impl Into<String>) -> Trust {
        Trust {
            ca_pem: Some(ca_pem.into()),
            client_certificate: None,
        }
    }

    /// The rustls configuration, when a CA is given.
    pub fn rustls(&self) -> Result<Option<minik_tls::rustls::ClientConfig>, ApiError> {
        let Some(ca) = &self.ca_pem else {
            if self.client_certificate.is_some() {
                return Err(ApiError::BadRequest(
                    "a client certificate needs the cluster CA too (certificate-authority)".into(),
                ));
            }
            return Ok(None);
        };
        let identity = self
            .client_certificate
            .as_ref()
            .map(|(cert, key)| (cert.as_str(), key.as_str()));
        minik_tls::client_config(ca, identity)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// The API of a minik server at a base URL such as `https://127.0.0.1:6443`.
#[derive(Clone)]
pub struct HttpApi {
    base: String,
    /// For ordinary requests: bounded in time.
    client: reqwest::Client,
    /// For watches, which last as long as the server keeps them open.
    streaming: reqwest::Client,
    token: Option<String>,
}

impl HttpApi {
    /// The API at `base`, over plain HTTP or HTTPS checked against the public web roots.
    pub fn new(base: &str) -> Result<HttpApi, ApiError> {
        HttpApi::trusting(base, &Trust::default())
    }

    /// The API at `base`, over HTTPS as `trust` says.
    pub fn trusting(base: &str, trust: &Trust) -> Result<HttpApi, ApiError> {
        let base = base.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            ApiError::BadRequest(format!("the server address {base:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::BadRequest(format!(
                "the server address {base:?} must start with http:// or https://"
            )));
        }
        let tls = trust.rustls()?;
        let build = |timeout: Option<Duration>| {
            let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
            if let Some(t) = timeout {
                builder = builder.timeout(t);
            }
            if let Some(tls) = &tls {
                builder = builder.use_preconfigured_tls(tls.clone());
            }
            builder
                .build()
                .map_err(|e| ApiError::Internal(format!("cannot build the HTTP client: {e}")))
        };
        Ok(HttpApi {
            base,
            client: build(Some(Duration::from_secs(60)))?,
            streaming: build(None)?,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `/api/v1/namespaces/ns/pods/name/sub`, or the cluster-scoped or all-namespaces forms.
    fn path(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> String {
        let mut path = self.base.clone();
        if info.group.is_empty() {
            path.push_str(&format!("/api/{}", info.version));
        } else {
            path.push_str(&format!("/apis/{}/{}", info.group, info.version));
        }
        if let Some(ns) = ns.filter(|_| info.namespaced) {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push('/');
        path.push_str(info.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        if let Some(sub) = sub {
            path.push('/');
            path.push_str(sub);
        }
        path
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let request = client
            .request(method, url)
            .header("accept", "application/json");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        // The innermost cause says what happened ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let cause = cause.to_string();
        let cause = cause
            .split(" (os error")
            .next()
            .unwrap_or(&cause)
            .to_lowercase();
        if e.is_timeout() {
            return ApiError::Unreachable(format!(
                "the minik server at {} did not answer in time",
                self.base
            ));
        }
        if cause.contains("certificate") {
            return ApiError::Unreachable(format!(
                "the server at {} presented a certificate this client does not trust ({cause}): give the cluster CA (the server's DATA_DIR/tls/ca.crt) with --certificate-authority",
                self.base
            ));
        }
        ApiError::Unreachable(format!(
            "cannot reach the minik server at {} ({cause}): is 'minik server' or 'minik up' running?",
            self.base
        ))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let body = self.send_for_bytes(request).await?;
        Ok(serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())))
    }

    /// The body of a successful answer as it came; a failure as its error.
    async fn send_for_bytes(&self, request: reqwest::RequestBuilder) -> Result<Bytes, ApiError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let code = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if (200..300).contains(&code) {
            return Ok(body);
        }
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Err(error_of(code, value))
    }

    /// GET of a path that is not an object, such as `/version`, answered as JSON.
    pub async fn get_path(&self, path: &str) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(self.request(&self.client, reqwest::Method::GET, &url))
            .await
    }

    /// POST of a JSON body to a path that is not a collection, such as a pod's `eviction`.
    pub async fn post_path(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(
            self.request(&self.client, reqwest::Method::POST, &url)
                .json(body),
        )
        .await
    }

    /// DELETE of a path that is not an object, such as a node's credential.
    pub async fn delete_path(&self, path: &str) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        self.send(self.request(&self.client, reqwest::Method::DELETE, &url))
            .await
    }

    /// GET of a byte stream, such as a pod's log (`follow=true` keeps it open), read as it
    /// arrives; a refusal is the server's `Status` as an error.
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<BoxStream<'static, Result<Vec<u8>, ApiError>>, ApiError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .request(&self.streaming, reqwest::Method::GET, &url)
            .query(query)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let code = response.status().as_u16();
        if !(200..300).contains(&code) {
            let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
            let value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            return Err(error_of(code, value));
        }
        let base = self.base.clone();
        Ok(response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map(|b| b.to_vec()).map_err(|e| {
                    ApiError::Unreachable(format!("the stream from {base} broke: {e}"))
                })
            })
            .boxed())
    }

    /// POSTs to `path_and_query` asking to switch the connection to `protocol` (minik's exec
    /// and port-forward tunnels): on `101 Switching Protocols` the connection, over TLS as the
    /// API is; otherwise the server's `Status` as the error.
    pub async fn upgrade(
        &self,
        path_and_query: &str,
        protocol: &str,
    ) -> Result<reqwest::Upgraded, ApiError> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self
            .request(&self.streaming, reqwest::Method::POST, &url)
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, protocol)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let code = response.status().as_u16();
        if code == 101 {
            return response.upgrade().await.map_err(|e| {
                ApiError::Unreachable(format!(
                    "the connection to {} broke as it switched to {protocol}: {e}",
                    self.base
                ))
            });
        }
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Err(error_of(code, value))
    }

    /// A create, replace or patch request: `method` on `url` with the write options' query.
    fn write_request(
        &self,
        method: reqwest::Method,
        url: &str,
        opts: WriteOptions,
    ) -> reqwest::RequestBuilder {
        self.request(&self.client, method, url)
            .query(&Self::write_query(opts))
    }

    /// A create (POST) or replace (PUT) of `object` at `url`.
    async fn send_object(
        &self,
        method: reqwest::Method,
        url: String,
        object: Value,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.send(self.write_request(method, &url, opts).json(&object))
            .await
    }

    fn write_query(opts: WriteOptions) -> Vec<(&'static str, &'static str)> {
        let mut query = vec![(
            "fieldValidation",
            match opts.field_validation {
                FieldValidation::Strict => "Strict",
                FieldValidation::Warn => "Warn",
                FieldValidation::Ignore => "Ignore",
            },
        )];
        if opts.dry_run {
            query.push(("dryRun", "All"));
        }
        query
    }
}

/// The error a non-2xx answer stands for: the server's `Status` when it sent one.
fn error_of(code: u16, value: Value) -> ApiError {
    match serde_json::from_value(value.clone()) {
        Ok(status) if value.get("kind").and_then(Value::as_str) == Some("Status") => {
            ApiError::from_status(code, &status)
        }
        _ => ApiError::Other {
            code,
            reason: String::new(),
            message: format!(
                "the server answered {code}: {}",
                value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string())
            ),
        },
    }
}

fn list_query(params: &ListParams) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(l) = params.label_selector.as_ref().filter(|s| !s.is_empty()) {
        query.push(("labelSelector", l.clone()));
    }
    if let Some(f) = params.field_selector.as_ref().filter(|s| !s.is_empty()) {
        query.push(("fieldSelector", f.clone()));
    }
    query
}

impl Api for HttpApi {
    fn get<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = self.path(info, ns, Some(name), None);
            self.send(self.request(&self.client, reqwest::Method::GET, &url))
                .await
        })
    }

    fn list_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
    ) -> BoxFuture<'a, Result<RawObjectList, ApiError>> {
        Box::pin(async move {
            let url = self.path(info, ns, None, None);
            let body = self
                .send_for_bytes(
                    self.request(&self.client, reqwest::Method::GET, &url)
                        .query(&list_query(params)),
                )
                .await?;
            RawObjectList::from_body(body)
        })
    }

    fn watch_raw<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        params: &'a ListParams,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RawEventStream, ApiError>> {
        Box::pin(async move {
            let url = self.path(info, ns, None, None);
            let mut query = list_query(params);
            query.push(("watch", "true".into()));
            query.push(("allowWatchBookmarks", "true".into()));
            if let Some(rv) = resource_version {
                query.push(("resourceVersion", rv.to_owned()));
            }
            let response = self
                .request(&self.streaming, reqwest::Method::GET, &url)
                .query(&query)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            if !response.status().is_success() {
                let code = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let status = serde_json::from_value(body).unwrap_or_default();
                return Err(ApiError::from_status(code, &status));
            }
            let base = self.base.clone();
            let lines = futures::stream::unfold(
                (response.bytes_stream(), BytesMut::new(), false),
                move |(mut body, mut buffer, mut done)| {
                    let base = base.clone();
                    async move {
                        loop {
                            if done {
                                return None;
                            }
                            if let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                                let line = buffer.split_to(pos + 1).freeze();
                                if line.iter().all(u8::is_ascii_whitespace) {
                                    continue;
                                }
                                let event = RawWatchEvent::from_line(line);
                                done = event.is_err();
                                return Some((event, (body, buffer, done)));
                            }
                            match body.next().await {
                                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                                Some(Err(e)) => {
                                    let error = ApiError::Unreachable(format!(
                                        "the watch from {base} broke: {e}"
                                    ));
                                    return Some((Err(error), (body, buffer, true)));
                                }
                                None => return None,
                            }
                        }
                    }
                },
            );
            Ok(lines.boxed())
        })
    }

    fn create<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        object: Value,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let url = self.path(info, ns, None, None);
        Box::pin(self.send_object(reqwest::Method::POST, url, object, opts))
    }

    fn replace<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        object: Value,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let url = self.path(info, ns, Some(name), status.then_some("status"));
        Box::pin(self.send_object(reqwest::Method::PUT, url, object, opts))
    }

    fn patch<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        patch: Patch,
        status: bool,
        opts: WriteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = self.path(info, ns, Some(name), status.then_some("status"));
            self.send(
                self.write_request(reqwest::Method::PATCH, &url, opts)
                    .header("content-type", patch.kind.content_type())
                    .body(patch.body.to_string()),
            )
            .await
        })
    }

    fn delete<'a>(
        &'a self,
        info: &'static ResourceInfo,
        ns: Option<&'a str>,
        name: &'a str,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = self.path(info, ns, Some(name), None);
            self.send(
                self.request(&self.client, reqwest::Method::DELETE, &url)
                    .header("content-type", "application/json")
                    .body(opts.to_body().to_string()),
            )
            .await
        })
    }

    fn bind<'a>(
        &'a self,
        ns: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let info = crate::api::resource_of::<minik_api::k8s_openapi::api::core::v1::Pod>();
            let url = self.path(info, Some(ns), Some(pod), Some("binding"));
            let body = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            self.send(
                self.request(&self.client, reqwest::Method::POST, &url)
                    .json(&body),
            )
            .await
            .map(|_| ())
        })
    }

    fn request_token<'a>(
        &'a self,
        ns: &'a str,
        account: &'a str,
        body: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let info =
                crate::api::resource_of::<minik_api::k8s_openapi::api::core::v1::ServiceAccount>();
            let url = self.path(info, Some(ns), Some(account), Some("token"));
            self.send(
                self.request(&self.client, reqwest::Method::POST, &url)
                    .json(&body),
            )
            .await
        })
    }
}
