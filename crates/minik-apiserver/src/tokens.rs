//! minik's own endpoints for credentials (docs/api.md, "Tokens"), outside Kubernetes' paths:
//! - `POST /minik/v1/join` `{"nodeName": NAME}`: exchanges the join token (or the admin's
//!   credentials) for the node's own credential and agent key ([`JoinAnswer`]);
//! - `POST /minik/v1/tokens/admin`, `POST /minik/v1/tokens/join`: rotate a token (admin only);
//! - `DELETE /minik/v1/nodes/{name}/token`: revoke a node's credential (admin only);
//! - `GET /cacerts`: the cluster CA certificate (PEM; public, as k3s serves it: a new node
//!   checks it against its join token's hash);
//! - `POST /minik/v1/nodes/{name}/serving-certificate`
//!   `{"certificateSigningRequest": PEM, "addresses": [IP, ...]}`: the certificate of the node's
//!   agent endpoint, for the key of the request, the node's name and addresses (the node
//!   itself or an admin).
//!
//! A host with the join token may join only under a name that has never had a credential and
//! has no Node object: it cannot take over another node, nor get back a credential an
//! administrator revoked (the revoked name stays marked). Joining over an existing name takes
//! an admin token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use bytes::Bytes;
use minik_api::{resources, ApiError};
use serde::Deserialize;
use serde_json::json;

use minik_client::JOIN_PATH;

use crate::answer::{json_response, success_status, HttpError};
use crate::auth::{Auth, TokenKind};
use crate::identity::Identity;
use crate::ApiServer;

/// Where the cluster CA certificate is served.
pub(crate) const CACERTS_PATH: &str = "/cacerts";

/// Where node `node` gets its agent endpoint's certificate.
pub(crate) fn serving_certificate_path(node: &str) -> String {
    format!("/minik/v1/nodes/{node}/serving-certificate")
}

/// The routes of this module.
pub fn router() -> Router<Arc<ApiServer>> {
    Router::new()
        .route(JOIN_PATH, post(join))
        .route(CACERTS_PATH, axum::routing::get(cacerts))
        .route(
            "/minik/v1/nodes/{name}/serving-certificate",
            post(serving_certificate),
        )
        .route("/minik/v1/tokens/{which}", post(rotate))
        .route("/minik/v1/nodes/{name}/token", delete(revoke))
}

fn auth(server: &ApiServer) -> Result<&Auth, ApiError> {
    server.auth.as_ref().ok_or_else(|| {
        ApiError::NotFound(minik_api::ObjectRef::new(
            "",
            "tokens",
            "this server runs without authentication",
        ))
    })
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| HttpError(e).into_response())
}

fn json(code: StatusCode, value: serde_json::Value) -> Response {
    json_response(code, Bytes::from(value.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinRequest {
    node_name: String,
}

async fn join(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    answer(join_node(&server, request).await)
}

async fn join_node(server: &ApiServer, request: Request) -> Result<Response, ApiError> {
    let auth = auth(server)?;
    let identity = request
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Admin);
    let bytes = crate::limits::read_body(request.into_body(), server.config.max_body_bytes).await?;
    let body: JoinRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "the join request must be {{\"nodeName\": NAME}}: {e}"
        ))
    })?;
    let name = body.node_name;
    let problems = minik_api::names::dns1123_subdomain(&name);
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            kind: "Node".into(),
            group: String::new(),
            name: name.clone(),
            errors: vec![minik_api::error::FieldError::invalid(
                &minik_api::error::FieldPath::new("nodeName"),
                name.as_str(),
                problems.join("; "),
            )],
        });
    }
    let taken = |why: &str| {
        ApiError::Conflict {
        target: minik_api::ObjectRef::new("", "nodes", &name),
        detail: format!("{why}, and a host with the join token cannot take it over; run the node's agent with its saved credential, or join it once with an admin token"),
    }
    };
    // Decided under the lock that orders joins and revocations, so two joins of one name
    // cannot both pass.
    let (taken, name_ref) = (&taken, name.as_str());
    let joined = auth
        .join(name_ref, |known| async move {
            if identity != Identity::Joiner {
                return Ok(());
            }
            if known {
                return Err(taken(
                    "the node has joined already (or its credential was revoked)",
                ));
            }
            if node_exists(server, name_ref).await? {
                return Err(taken("a node of this name is registered"));
            }
            Ok(())
        })
        .await?;
    tracing::info!(node = %name, "a node joined");
    let value = serde_json::to_value(&joined).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json(StatusCode::CREATED, value))
}

async fn cacerts(State(server): State<Arc<ApiServer>>) -> Response {
    match server.tls.as_ref() {
        Some(tls) => (
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            tls.ca().pem().to_owned(),
        )
            .into_response(),
        None => HttpError(ApiError::NotFound(minik_api::ObjectRef::new(
            "",
            "cacerts",
            "this server serves plain HTTP and has no CA",
        )))
        .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServingCertificateRequest {
    certificate_signing_request: String,
    #[serde(default)]
    addresses: Vec<std::net::IpAddr>,
}

async fn serving_certificate(
    State(server): State<Arc<ApiServer>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    answer(sign_serving(&server, &name, request).await)
}

async fn sign_serving(
    server: &ApiServer,
    name: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let tls = server.tls.as_ref().ok_or_else(|| {
        ApiError::NotFound(minik_api::ObjectRef::new(
            "",
            "serving-certificate",
            "this server serves plain HTTP and issues no certificates",
        ))
    })?;
    let identity = request
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Admin);
    let allowed = match &identity {
        Identity::Admin => true,
        Identity::Node(node) => node == name,
        _ => false,
    };
    if !allowed {
        return Err(crate::authz::forbidden_path(
            &identity,
            &axum::http::Method::POST,
            &serving_certificate_path(name),
        ));
    }
    let bytes = crate::limits::read_body(request.into_body(), server.config.max_body_bytes).await?;
    let body: ServingCertificateRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request must be {{\"certificateSigningRequest\": PEM, \"addresses\": [IP, ...]}}: {e}"
        ))
    })?;
    let certificate = tls
        .sign_node_serving(name, &body.certificate_signing_request, &body.addresses)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    tracing::info!(node = %name, addresses = ?body.addresses, "issued a serving certificate for a node's agent");
    Ok(json(
        StatusCode::CREATED,
        json!({ "certificate": certificate, "ca": tls.ca().pem() }),
    ))
}

async fn node_exists(server: &ApiServer, name: &str) -> Result<bool, ApiError> {
    let nodes = resources::by_plural("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    match server.registry.get(nodes, None, name).await {
        Ok(_) => Ok(true),
        Err(ApiError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn rotate(
    State(server): State<Arc<ApiServer>>,
    Path(which): Path<String>,
    _body: Body,
) -> Response {
    answer(
        async {
            let kind = match which.as_str() {
                "admin" => TokenKind::Admin,
                "join" => TokenKind::Join,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "there is no {other:?} token to rotate: use admin or join"
                    )))
                }
            };
            let (token, file) = auth(&server)?.rotate(kind).await?;
            tracing::info!(token = %which, file = %file.display(), "token rotated");
            Ok(json(
                StatusCode::OK,
                json!({"token": token, "file": file.display().to_string()}),
            ))
        }
        .await,
    )
}

async fn revoke(State(server): State<Arc<ApiServer>>, Path(name): Path<String>) -> Response {
    answer(
        async {
            if !auth(&server)?.revoke(&name).await? {
                return Err(ApiError::NotFound(minik_api::ObjectRef::new(
                    "",
                    "node credentials",
                    &name,
                )));
            }
            tracing::info!(node = %name, "node credential revoked");
            Ok(json(StatusCode::OK, success_status(200)))
        }
        .await,
    )
}
