//! The HTTP edge: Kubernetes paths to registry calls, query parameters and content types to
//! options, and every error to a `Status` answer with the right code.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use minik_api::decode;
use minik_api::protobuf;
use minik_api::resources::{self, FieldValidation, ResourceInfo};
use minik_api::ApiError;
use serde_json::Value;

use crate::answer::{content_type, encode, negotiate, success_status, Encoding, HttpError};
use crate::identity::Identity;
use crate::listbody::ListBody;
use crate::registry::{Filter, ListError, ListOptions, ListResult, ScaleChange, Scope};
use crate::watch::{WatchOptions, WatchStart};
use crate::ApiServer;
use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};

/// The longest a single watch request lasts.
const MAX_WATCH_SECONDS: u64 = 24 * 3600;

/// What a request path names.
#[derive(Debug)]
struct Target {
    info: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    watch_path: bool,
}

fn not_found_path() -> ApiError {
    ApiError::NoSuchPath("the server could not find the requested resource".into())
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...`.
fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path()),
    };
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let find = |plural: &str| resources::by_plural(group, version, plural);
    let namespaced_collection = match rest {
        ["namespaces", _, plural, ..] => find(plural).filter(|i| i.namespaced),
        _ => None,
    };
    let (info, namespace, rest) = match (namespaced_collection, rest) {
        (Some(info), [_, ns, _, rest @ ..]) => (info, Some(ns.to_string()), rest),
        (_, [plural, rest @ ..]) => (find(plural).ok_or_else(not_found_path)?, None, rest),
        _ => return Err(not_found_path()),
    };
    let (name, subresource) = match rest {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] if info.has_subresource(sub) => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(not_found_path()),
    };
    if name.as_deref() == Some("") {
        return Err(not_found_path());
    }
    Ok(Target {
        info,
        namespace,
        name,
        subresource,
        watch_path,
    })
}

/// Query parameters, last value wins.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(raw.unwrap_or(""))?;
        Ok(Query(pairs.into_iter().collect()))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | ""))
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "invalid dry run option {other:?}: the only supported value is \"All\""
            ))),
        }
    }

    fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation {other:?} is not valid: use Strict, Warn or Ignore"
            ))),
        }
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation: self.field_validation()?,
        })
    }

    fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::BadRequest(format!("{key}: {v:?} is not an integer")))
            })
            .transpose()
    }
}

fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{raw}")
            .parse()
            .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::BadRequest(format!("the query string is malformed: {e}")))
}

/// What a request body is decoded as, for the words of strict decoding errors.
#[derive(Clone, Copy)]
struct BodyOf {
    kind: &'static str,
    version: &'static str,
    /// A patch of such an object, not the object.
    patch: Option<PatchKind>,
}

impl BodyOf {
    fn object(info: &ResourceInfo) -> BodyOf {
        BodyOf {
            kind: info.kind,
            version: info.version,
            patch: None,
        }
    }

    fn patch(info: &ResourceInfo, kind: PatchKind) -> BodyOf {
        BodyOf {
            patch: Some(kind),
            ..BodyOf::object(info)
        }
    }

    /// A subresource's own kind (`Scale`, `Binding`, `Eviction`), all served in `v1`.
    fn subresource(kind: &'static str, patch: Option<PatchKind>) -> BodyOf {
        BodyOf {
            kind,
            version: "v1",
            patch,
        }
    }
}

/// Reads the request body up to the configured limit and parses it as JSON or YAML. Fields that
/// appear twice in one object fail the request under `fieldValidation=Strict` and are warned
/// about under `Warn`, in Kubernetes' words; the last value is the one kept.
async fn read_body(
    body: Body,
    limit: usize,
    headers: &HeaderMap,
    of: BodyOf,
    query: &Query,
    warnings: &mut Warnings,
) -> Result<Value, ApiError> {
    let media = content_type(headers);
    if of.patch.is_none() && media == protobuf::MEDIA_TYPE {
        let bytes = crate::limits::read_body(body, limit).await?;
        return protobuf_body(&bytes, query.field_validation()?);
    }
    if of.patch.is_none()
        && !matches!(
            media.as_str(),
            "" | "application/json" | "application/yaml" | "*/*"
        )
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({media}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        )));
    }
    let bytes = crate::limits::read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    let document = decode::parse_body(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))?;
    if document.duplicates == 0 {
        return Ok(document.value);
    }
    // Kubernetes' words (sigs.k8s.io/json's strict errors), a JSON patch's own fields apart.
    let noun = if of.patch == Some(PatchKind::Json) {
        "json patch duplicate field"
    } else {
        "duplicate field"
    };
    let problems = document
        .duplicate_fields
        .iter()
        .map(|path| format!("{noun} {path:?}"));
    let unnamed = document.duplicates - document.duplicate_fields.len();
    match query.field_validation()? {
        FieldValidation::Strict => Err(ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}{}",
            problems.collect::<Vec<_>>().join(", "),
            match unnamed {
                0 => String::new(),
                n => format!(", and {n} more duplicate fields"),
            },
            kind = of.kind,
            version = of.version,
        ))),
        FieldValidation::Warn => {
            problems.for_each(|problem| warnings.add(problem));
            Ok(document.value)
        }
        FieldValidation::Ignore => Ok(document.value),
    }
}

/// What an answer warns about, in `Warning: 299 - "text"` headers (RFC 7234 §5.5), as Kubernetes
/// sends them. Like Kubernetes' recorder, it keeps each text to 256 characters and all of them
/// to 4 KiB, so that a body with thousands of duplicate fields cannot make the answer's head
/// too large for clients.
#[derive(Default)]
pub(crate) struct Warnings(Vec<String>);

impl Warnings {
    const MAX_TEXT_CHARS: usize = 256;
    const MAX_TOTAL_BYTES: usize = 4096;

    pub(crate) fn add(&mut self, text: String) {
        self.0.push(text);
    }

    /// Adds the warnings to `response` as `Warning` headers, while they fit.
    pub(crate) fn apply(self, response: &mut Response) {
        let mut total = 0;
        for text in self.0 {
            let text: String = text.chars().take(Self::MAX_TEXT_CHARS).collect();
            let value = format!("299 - {}", quoted_string(&text));
            total += value.len();
            if total > Self::MAX_TOTAL_BYTES {
                break;
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
    }
}

/// `text` as an HTTP quoted-string of visible ASCII: quotes and backslashes escaped, anything
/// else outside visible ASCII written as Go's `strconv.Quote` writes it (`\n`, `\u00e9`).
fn quoted_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

/// A protobuf body (client-go's typed clients since 1.32) as the JSON object a JSON client sends.
fn protobuf_body(bytes: &[u8], validation: FieldValidation) -> Result<Value, ApiError> {
    protobuf::decode(bytes, validation)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid: {e}")))
}

fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let media = content_type(headers);
    if let Some(kind) = PatchKind::from_content_type(&media) {
        return Ok(kind);
    }
    match media.as_str() {
        "application/apply-patch+yaml" => Err(ApiError::UnsupportedMediaType(
            "server-side apply is not supported by minik; use client-side apply (minik apply, or kubectl apply without --server-side)".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
        ))),
    }
}

/// `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"N"},"items":[...]}`,
/// assembled from the stored bytes without decoding them; `metadata` also has `continue` and
/// `remainingItemCount` when the list is a page that others follow. In JSON the answer is
/// written out a chunk at a time ([`ListBody`]), so the list is never held twice.
fn list_answer(
    encoding: Encoding,
    info: &ResourceInfo,
    list: ListResult,
) -> Result<Response, ApiError> {
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        info.kind,
        info.api_version(),
        list_meta(&list)
    );
    let body = ListBody::new(Bytes::from(head), list.items);
    match encoding {
        Encoding::Json => Ok(crate::answer::json_response_body(
            StatusCode::OK,
            Body::new(body),
        )),
        Encoding::Yaml => encode(encoding, StatusCode::OK, body.whole()),
    }
}

/// A list's `metadata` (Kubernetes' ListMeta): its resourceVersion, and where it goes on.
pub(crate) fn list_meta(list: &ListResult) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert(
        "resourceVersion".into(),
        Value::String(list.revision.to_string()),
    );
    if let Some(token) = &list.continue_token {
        meta.insert("continue".into(), Value::String(token.clone()));
        if let Some(remaining) = list.remaining {
            meta.insert("remainingItemCount".into(), remaining.into());
        }
    }
    Value::Object(meta)
}

/// The paging and versioning parameters of a list request.
fn list_options(query: &Query) -> Result<ListOptions, ApiError> {
    let given = |key| query.get(key).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(ListOptions {
        limit: query.i64("limit")?,
        continue_token: given("continue"),
        resource_version: given("resourceVersion"),
        resource_version_match: given("resourceVersionMatch"),
    })
}

/// A list whose snapshot is gone: the 410 `Status`, with the token that reads the rest of the
/// list as of now in its `metadata.continue`, as kube-apiserver answers it.
fn expired_list(error: &ApiError, token: &str) -> Response {
    let mut status = crate::answer::failure_status(error);
    status["metadata"] = serde_json::json!({ "continue": token });
    crate::answer::json_response(StatusCode::GONE, Bytes::from(status.to_string()))
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// The part of an object a write to the subresource `sub` (`status`, or none) may change.
fn scope_of(sub: Option<&str>) -> Scope {
    match sub {
        Some(_) => Scope::Status,
        None => Scope::Main,
    }
}

/// The bare `201` Success Kubernetes answers to a binding or an eviction.
fn created_success(encoding: Encoding) -> Result<Response, ApiError> {
    encode(
        encoding,
        StatusCode::CREATED,
        to_bytes(&success_status(201)),
    )
}

/// Checks that `identity` (not the administrator) may make the request; answers the body, read
/// whole for the check (the authorizer needs it for some writes) and given back.
async fn authorize(
    server: &ApiServer,
    identity: &Identity,
    parts: &axum::http::request::Parts,
    target: &Target,
    query: &Query,
    watch: bool,
    body: Body,
) -> Result<Body, ApiError> {
    let bytes = if parts.method == Method::GET {
        Bytes::new()
    } else {
        crate::limits::read_body(body, server.config.max_body_bytes).await?
    };
    let attempt = crate::authz::Attempt {
        method: &parts.method,
        info: target.info,
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref(),
        subresource: target.subresource.as_deref(),
        watch,
        field_selector: query.get("fieldSelector"),
        label_selector: query.get("labelSelector"),
        patch: PatchKind::from_content_type(&content_type(&parts.headers)),
        body: &bytes,
    };
    crate::authz::authorize(server, identity, &attempt).await?;
    Ok(Body::from(bytes))
}

/// The middleware that makes every error answer a `Status`: those that do not come from an
/// [`ApiError`] (axum's 405 on a path served for other methods, its rejection of a malformed
/// path parameter) get one with their code, and keep their `Allow` and `Retry-After` headers.
/// The health probes keep their plain-text answers, as in Kubernetes.
pub(crate) async fn status_errors(request: Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let code = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let probe = matches!(method, Method::GET | Method::HEAD)
        && matches!(path.as_str(), "/healthz" | "/livez" | "/readyz");
    if !(code.is_client_error() || code.is_server_error()) || is_json || probe {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let error = match code {
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed(format!("{method} is not supported on {path}"))
        }
        StatusCode::NOT_FOUND => not_found_path(),
        _ => {
            let message = if text.is_empty() {
                code.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text
            };
            let status = minik_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Status {
                message: Some(message),
                ..Default::default()
            };
            ApiError::from_status(code.as_u16(), &status)
        }
    };
    let mut answer = HttpError(error).into_response();
    *answer.status_mut() = code;
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// Every request under `/api` and `/apis` that names a resource.
pub async fn resource_handler(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    let mut warnings = Warnings::default();
    let mut response = match handle(&server, request, &mut warnings).await {
        Ok(response) => response,
        Err(e) => HttpError(e).into_response(),
    };
    warnings.apply(&mut response);
    response
}

async fn handle(
    server: &ApiServer,
    request: Request,
    warnings: &mut Warnings,
) -> Result<Response, ApiError> {
    if let Some(document) = crate::discovery::document(request.uri().path()) {
        if request.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported on discovery documents",
                request.method()
            )));
        }
        return encode(
            negotiate(request.headers())?,
            StatusCode::OK,
            to_bytes(&document?),
        );
    }
    let identity = request.extensions().get::<Identity>().cloned();
    let (parts, body) = request.into_parts();
    let target = parse_path(parts.uri.path())?;
    let query = Query::parse(parts.uri.query())?;
    let body = match identity {
        Some(Identity::Admin) => body,
        // Behind the authentication middleware every request has an identity; without one the
        // request did not come through it (a server without authentication never gets here
        // without `Identity::Admin` either).
        None => return Err(ApiError::Unauthorized("Unauthorized".into())),
        Some(identity) => {
            let watch = target.watch_path || query.flag("watch");
            authorize(server, &identity, &parts, &target, &query, watch, body).await?
        }
    };
    let encoding = negotiate(&parts.headers)?;
    let table = crate::table::requested(&parts.headers);
    let registry = &server.registry;
    let info = target.info;
    let ns = target.namespace.as_deref();
    if info.namespaced && target.name.is_some() && ns.is_none() {
        return Err(not_found_path());
    }
    let watch = target.watch_path || query.flag("watch");
    let stalled = parts
        .extensions
        .get::<crate::limits::CloseConnection>()
        .map(|close| close.0.clone());
    let limit = server.config.max_body_bytes;
    let headers = &parts.headers;

    match (
        &parts.method,
        target.name.as_deref(),
        target.subresource.as_deref(),
    ) {
        (&Method::POST | &Method::DELETE, None, None) if info.namespaced && ns.is_none() => {
            Err(ApiError::MethodNotAllowed(format!(
                "{} {} across all namespaces is not supported: name a namespace",
                parts.method, info.plural
            )))
        }
        (&Method::GET, None, None) if watch => watch_response(server, info, ns, &query, stalled)
            .await
            .and_then(|r| crate::table::maybe_watch(info, r, table, &query.0)),
        (&Method::GET, None, None) => {
            let filter =
                Filter::parse(info, query.get("labelSelector"), query.get("fieldSelector"))?;
            let options = list_options(&query)?;
            let listed = if options.is_plain() {
                registry.list(info, ns, &filter).await?
            } else {
                match registry.list_page(info, ns, &filter, &options).await {
                    Ok(listed) => listed,
                    Err(ListError {
                        error,
                        continue_token: Some(token),
                    }) => return Ok(expired_list(&error, &token)),
                    Err(ListError { error, .. }) => return Err(error),
                }
            };
            if let Some(t) = table {
                return crate::table::list(info, &listed, t, &query.0);
            }
            list_answer(encoding, info, listed)
        }
        (&Method::GET, Some(name), None) if watch => {
            let selector = format!("metadata.name={name}");
            let fields = match query.get("fieldSelector").filter(|f| !f.is_empty()) {
                Some(f) => format!("{f},{selector}"),
                None => selector,
            };
            let mut query = query;
            query.0.insert("fieldSelector".into(), fields);
            watch_response(server, info, ns, &query, stalled)
                .await
                .and_then(|r| crate::table::maybe_watch(info, r, table, &query.0))
        }
        (&Method::GET, Some(name), None) => {
            let stored = registry.get(info, ns, name).await?;
            if let Some(t) = table {
                return crate::table::object(info, &stored.value, t, &query.0);
            }
            encode(encoding, StatusCode::OK, stored.value)
        }
        (&Method::POST, None, None) => {
            let of = BodyOf::object(info);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let created = registry
                .create(info, ns, body, query.write_options()?)
                .await?;
            encode(encoding, StatusCode::CREATED, created)
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let of = BodyOf::object(info);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let scope = scope_of(sub);
            let updated = registry
                .update(info, ns, name, body, scope, query.write_options()?)
                .await?;
            encode(encoding, StatusCode::OK, updated)
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let kind = patch_kind(headers)?;
            let of = BodyOf::patch(info, kind);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let scope = scope_of(sub);
            let patched = registry
                .patch(
                    info,
                    ns,
                    name,
                    &Patch { kind, body },
                    scope,
                    query.write_options()?,
                )
                .await?;
            encode(encoding, StatusCode::OK, patched)
        }
        (&Method::GET, Some(name), Some("status")) => {
            let stored = registry.get(info, ns, name).await?;
            encode(encoding, StatusCode::OK, stored.value)
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = delete_options(&query, headers, body, limit).await?;
            // Kubernetes answers 200 whether the object is gone or only marked (graceful
            // deletion, finalizers): the body tells which.
            let done = registry.delete(info, ns, name, &opts).await?;
            encode(encoding, StatusCode::OK, done.into_object())
        }
        (&Method::DELETE, None, None) if !info.strategy.deletes_collection() => {
            Err(ApiError::MethodNotAllowed(
                "deleting every namespace at once is not supported: delete them by name".into(),
            ))
        }
        (&Method::PUT, Some(name), Some("finalize")) => {
            let of = BodyOf::object(info);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let done = registry
                .finalize_namespace(name, &body, query.dry_run()?)
                .await?;
            encode(encoding, StatusCode::OK, done)
        }
        (&Method::DELETE, None, None) => {
            let opts = delete_options(&query, headers, body, limit).await?;
            let filter =
                Filter::parse(info, query.get("labelSelector"), query.get("fieldSelector"))?;
            let listed = registry.list(info, ns, &filter).await?;
            let mut deleted = Vec::new();
            for item in &listed.items {
                let object: Value =
                    serde_json::from_slice(item).map_err(|e| ApiError::Internal(e.to_string()))?;
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let item_ns = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str);
                match registry.delete(info, item_ns, name, &opts).await {
                    Ok(done) => deleted.push(done.into_object()),
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let deleted = ListResult {
                items: deleted,
                revision: registry.store().revision(),
                continue_token: None,
                remaining: None,
            };
            list_answer(encoding, info, deleted)
        }
        (&Method::GET, Some(name), Some("scale")) => encode(
            encoding,
            StatusCode::OK,
            to_bytes(&registry.get_scale(info, ns, name).await?),
        ),
        (&Method::PUT | &Method::PATCH, Some(name), Some("scale")) => {
            let kind = match parts.method {
                Method::PATCH => Some(patch_kind(headers)?),
                _ => None,
            };
            let of = BodyOf::subresource("Scale", kind);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let change = match kind {
                Some(kind) => ScaleChange::Patch(kind, body),
                None => ScaleChange::Replace(body),
            };
            let opts = query.write_options()?;
            let scale = registry.update_scale(info, ns, name, change, opts).await?;
            encode(encoding, StatusCode::OK, to_bytes(&scale))
        }
        (&Method::GET, Some(name), Some("log")) => {
            crate::logs::pod_log(server, ns.unwrap_or_default(), name, &query.0).await
        }
        (&Method::GET | &Method::POST, Some(name), Some("portforward")) => {
            let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
            let ns = ns.unwrap_or_default();
            crate::portforward::pod_port_forward(server, ns, name, &query.0, headers, on_upgrade)
                .await
        }
        (&Method::GET | &Method::POST, Some(name), Some(sub @ ("exec" | "attach"))) => {
            let on_upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
            let ns = ns.unwrap_or_default();
            let options = match sub {
                "exec" => crate::exec::ExecOptions::parse(parts.uri.query())?,
                _ => crate::exec::ExecOptions::parse_attach(parts.uri.query())?,
            };
            crate::exec::pod_session(server, ns, name, options, headers, on_upgrade).await
        }
        // A binding, or an eviction: Kubernetes answers an eviction with 201 and a bare Success,
        // the pod gone or only marked for a graceful deletion.
        (&Method::POST, Some(name), Some(sub @ ("binding" | "eviction"))) => {
            let binding = sub == "binding";
            let of = BodyOf::subresource(if binding { "Binding" } else { "Eviction" }, None);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let ns = ns.unwrap_or_default();
            if binding {
                registry.bind(ns, name, &body, query.dry_run()?).await?;
            } else {
                registry
                    .evict(ns, name, &body, query.write_options()?)
                    .await?;
            }
            created_success(encoding)
        }
        // A TokenRequest: a service account token, answered with 201 and the TokenRequest.
        (&Method::POST, Some(name), Some("token")) => {
            let of = BodyOf::subresource("TokenRequest", None);
            let body = read_body(body, limit, headers, of, &query, warnings).await?;
            let ns = ns.unwrap_or_default();
            let fv = query.field_validation()?;
            let answer = crate::satokens::token_request(server, ns, name, body, fv).await?;
            encode(encoding, StatusCode::CREATED, to_bytes(&answer))
        }
        (method, name, sub) => Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on {}{}{}",
            info.plural,
            name.map(|_| "/{name}").unwrap_or(""),
            sub.map(|s| format!("/{s}")).unwrap_or_default()
        ))),
    }
}

async fn delete_options(
    query: &Query,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<DeleteOptions, ApiError> {
    let bytes = crate::limits::read_body(body, limit).await?;
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else if content_type(headers) == protobuf::MEDIA_TYPE {
        protobuf_body(&bytes, query.field_validation()?)?
    } else {
        decode::parse_document(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("DeleteOptions: {e}")))?
    };
    let propagation = |s: &str| {
        Propagation::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "propagationPolicy {s:?} is not valid: use Background, Foreground or Orphan"
            ))
        })
    };
    let mut opts = DeleteOptions {
        grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
        propagation: body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(propagation)
            .transpose()?,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        precondition_resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run: query.dry_run()?
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All")),
    };
    if body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        || query.get("orphanDependents") == Some("true")
    {
        opts.propagation = Some(Propagation::Orphan);
    }
    if let Some(grace) = query.i64("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(grace);
    }
    if let Some(p) = query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        opts.propagation = Some(propagation(p)?);
    }
    Ok(opts)
}

async fn watch_response(
    server: &ApiServer,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    stalled: Option<Arc<tokio::sync::Notify>>,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(info, query.get("labelSelector"), query.get("fieldSelector"))?;
    let start = match query.get("resourceVersion") {
        None | Some("") | Some("0") => WatchStart::Now,
        Some(rv) => WatchStart::After(rv.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion {rv:?} is not a valid resource version"
            ))
        })?),
    };
    // A watch lasts at most a day, whatever it asks: the client re-watches from its revision.
    let timeout = match query.i64("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs((t as u64).min(MAX_WATCH_SECONDS)),
        _ => server.config.watch_timeout,
    };
    let bookmarks = query
        .flag("allowWatchBookmarks")
        .then_some(server.config.bookmark_interval);
    let stream = server
        .registry
        .watch(
            info,
            ns,
            WatchOptions {
                start,
                filter,
                bookmarks,
                timeout,
                closing: Some(server.closing()),
                stalled,
            },
        )
        .await?;
    let chunks = stream.flat_map(|frame| futures::stream::iter(frame.into_chunks()));
    let body = Body::from_stream(chunks.map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_kubernetes() {
        let t = parse_path("/api/v1/namespaces/default/pods/web/status").unwrap();
        assert_eq!(
            (
                t.info.plural,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("status"))
        );
        let t = parse_path("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (t.info.plural, t.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let t = parse_path("/api/v1/namespaces/default/status").unwrap();
        assert_eq!(
            (t.info.plural, t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("default"), Some("status"))
        );
        let t = parse_path("/apis/apps/v1/deployments").unwrap();
        assert_eq!((t.info.plural, t.namespace), ("deployments", None));
        let t = parse_path("/api/v1/watch/namespaces/kube-system/pods").unwrap();
        assert!(t.watch_path);
        assert_eq!(t.namespace.as_deref(), Some("kube-system"));
        for bad in [
            "/api/v2/pods",
            "/apis/apps/v1/pods",
            "/api/v1/widgets",
            "/api/v1/namespaces/a/pods/b/c/d",
            "/api/v1/nodes/n/binding",
            "/x",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }
}
