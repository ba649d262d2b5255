//! minik's API server: the Kubernetes REST API (paths, verbs, watch, discovery, `Status`
//! errors) over a [`minik_store::Store`]. [`app`] builds the axum router; [`Registry`] is the
//! same set of operations for in-process callers.

mod agent;
mod answer;
mod auth;
mod authz;
mod discovery;
mod disruption;
mod errors;
mod events;
mod exec;
mod http;
mod identity;
mod limits;
mod listbody;
mod local;
mod logs;
pub mod master;
mod openapi;
mod portforward;
mod quota;
mod registry;
pub mod satokens;
mod services;
mod spdy;
mod table;
mod tls;
mod tokens;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;
use minik_store::Store;

pub use auth::{Auth, AuthConfig};
pub use events::{expire_events, sweep_events};
pub use limits::{serve, serve_tls, ClientCertificate};
pub use minik_api::request::{DeleteOptions, Patch, PatchKind, Propagation, WriteOptions};
pub use registry::{
    Deleted, Filter, ListError, ListOptions, ListResult, Registry, ScaleChange, Scope,
    EXPIRED_LIST, INCONSISTENT_CONTINUE, SYSTEM_NAMESPACES,
};
pub use services::{check_service_cidr, loopback_service_cidr};
pub use tls::{ClusterTls, TlsSettings, DEFAULT_CERT_LIFETIME};
pub use watch::{WatchFrame, WatchOptions, WatchStart};

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest request body accepted (Kubernetes: 3 MiB).
    pub max_body_bytes: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How long a watch lasts when the client does not say (`timeoutSeconds`).
    pub watch_timeout: Duration,
    /// The `tolerationSeconds` pods get for their node being not-ready or unreachable when
    /// they do not tolerate it themselves (Kubernetes' `--default-unreachable-toleration-seconds`).
    pub default_toleration_seconds: i64,
    /// How long a client may take to send a request's head, and how long a kept-alive
    /// connection may stay idle, before it is disconnected (slow-loris).
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body: 408 after.
    pub body_read_timeout: Duration,
    /// How many watches one client address may hold open at once (429 beyond; 0: no limit).
    pub max_watches_per_client: usize,
    /// How many bytes of changes a watch may fall behind, counting what it has sent that its
    /// connection has not yet written, before it is cut as too slow.
    pub watch_buffer_bytes: usize,
    /// The range ClusterIPs are allocated from (`--service-cidr`; checked with
    /// [`check_service_cidr`]).
    pub service_cidr: minik_api::cidr::Cidr,
    /// The cluster CIDR nodes' pod CIDRs come from (`--cluster-cidr`; `None`: no node IPAM)
    /// and the prefix length of each (`--node-cidr-mask-size`), as `/minik/v1/network`
    /// publishes them; the controllers' node IPAM hands them out.
    pub cluster_cidr: Option<minik_api::cidr::Cidr>,
    pub node_cidr_mask_size: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 3 << 20,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(30 * 60),
            default_toleration_seconds: minik_api::defaults::DEFAULT_TOLERATION_SECONDS,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_watches_per_client: 500,
            watch_buffer_bytes: minik_store::DEFAULT_WATCH_BUFFER_BYTES,
            service_cidr: loopback_service_cidr(),
            cluster_cidr: None,
            node_cidr_mask_size: minik_api::cidr::DEFAULT_NODE_MASK,
        }
    }
}

/// The API server's state, shared by every request.
pub struct ApiServer {
    pub registry: Registry,
    pub config: Config,
    /// For calls to node agents (logs); no overall timeout, as logs may be followed.
    pub(crate) nodes: reqwest::Client,
    /// Turns true when the server shuts down, to end long requests such as watches.
    closing: tokio::sync::watch::Sender<bool>,
    /// Open watches per client, for `max_watches_per_client`.
    watches: limits::WatchCounts,
    /// Tokens and who may come in without one; `None`: no authentication, every client is the
    /// administrator (in-process tests and benchmarks; `minik server` always has tokens).
    pub(crate) auth: Option<Auth>,
    /// The key of service account tokens (`satokens.rs`): the one kept with the tokens, or a
    /// fresh one for a server without authentication (`None` only if it could not be made).
    pub(crate) service_account_key: Option<Arc<satokens::SigningKey>>,
    /// The cluster CA and certificates when the API is served over HTTPS; then node agents
    /// are reached over HTTPS too, trusting only that CA.
    pub(crate) tls: Option<Arc<ClusterTls>>,
}

impl ApiServer {
    /// An API server over `store` without authentication: every client is the administrator.
    /// Call [`Registry::bootstrap`] once before serving.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Arc<ApiServer> {
        Self::build(store, config, None, None)
    }

    /// An API server over `store` that authenticates every request with `auth`'s tokens and
    /// authorizes nodes (SPEC §8).
    pub fn secured(store: Arc<dyn Store>, config: Config, auth: Auth) -> Arc<ApiServer> {
        Self::build(store, config, Some(auth), None)
    }

    /// [`ApiServer::new`] (no authentication: in-process tests and benchmarks) over HTTPS with
    /// `tls`, reaching node agents over HTTPS.
    pub fn with_tls(store: Arc<dyn Store>, config: Config, tls: Arc<ClusterTls>) -> Arc<ApiServer> {
        Self::build(store, config, None, Some(tls))
    }

    /// [`ApiServer::secured`], serving over HTTPS with `tls` (give its
    /// [`ClusterTls::server_config`] to [`serve_tls`]) and reaching node agents over HTTPS.
    pub fn secured_with_tls(
        store: Arc<dyn Store>,
        config: Config,
        auth: Auth,
        tls: Arc<ClusterTls>,
    ) -> Arc<ApiServer> {
        Self::build(store, config, Some(auth), Some(tls))
    }

    fn build(
        store: Arc<dyn Store>,
        config: Config,
        auth: Option<Auth>,
        tls: Option<Arc<ClusterTls>>,
    ) -> Arc<ApiServer> {
        let mut nodes = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A node chooses the address its agent is reached at; a redirect from it must not
            // send the server's own requests elsewhere (to the API itself on loopback, say).
            .redirect(reqwest::redirect::Policy::none());
        if let Some(tls) = &tls {
            match tls.agents_client_config() {
                Ok(config) => nodes = nodes.use_preconfigured_tls(config),
                Err(e) => tracing::error!(error = %e, "node agents cannot be reached over HTTPS"),
            }
        }
        let nodes = nodes.build().unwrap_or_default();
        let service_account_key = match &auth {
            Some(auth) => Some(auth.service_account_key()),
            None => match satokens::SigningKey::generate() {
                Ok((key, _)) => Some(Arc::new(key)),
                Err(e) => {
                    tracing::warn!("service account tokens cannot be issued: {e}");
                    None
                }
            },
        };
        Arc::new(ApiServer {
            registry: Registry::new(store)
                .with_service_cidr(config.service_cidr)
                .with_pod_toleration_seconds(config.default_toleration_seconds)
                .with_watch_buffer_bytes(config.watch_buffer_bytes)
                .with_token_volumes(tls.is_some()),
            config,
            nodes,
            closing: tokio::sync::watch::channel(false).0,
            watches: limits::WatchCounts::default(),
            auth,
            service_account_key,
            tls,
        })
    }

    /// Ends every watch now; call when shutting down, before waiting for connections to close.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// The cluster's TLS, when the API is served over HTTPS.
    pub fn tls(&self) -> Option<&Arc<ClusterTls>> {
        self.tls.as_ref()
    }

    /// The tokens, when the server authenticates.
    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// The router of the whole API.
pub fn app(server: Arc<ApiServer>) -> Router {
    Router::new()
        .route("/healthz", get(discovery::ok))
        .route("/livez", get(discovery::ok))
        .route("/readyz", get(discovery::readyz))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::api_versions))
        .route("/api/", get(discovery::api_versions))
        .route("/apis", get(discovery::api_groups))
        .route("/apis/", get(discovery::api_groups))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*path}", get(openapi::group_version))
        .route("/api/{*rest}", any(http::resource_handler))
        .route("/apis/{*rest}", any(http::resource_handler))
        .route(minik_api::network::NETWORK_PATH, get(master::network))
        .merge(tokens::router())
        .fallback(discovery::not_found)
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            server.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn(http::status_errors))
        .with_state(server)
}
