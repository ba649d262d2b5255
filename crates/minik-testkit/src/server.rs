//! An API server in process: a real `minik_apiserver::app` on an ephemeral loopback port over a
//! sled store in a temporary directory, as the in-process components of `minik server` see it.
//! Every task it starts is aborted when it is dropped, even when a test fails.

use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use minik_apiserver::{app, ApiServer, Config};
use minik_client::Api;
use minik_store::{SledStore, StoreConfig};

use crate::Http;

/// The watch history a test store keeps (revisions a watch can resume from).
pub const HISTORY: usize = 10_000;

pub struct TestServer {
    /// HTTP to the server; the server derefs to it (`s.get(path)`, `s.base`).
    pub http: Http,
    /// The store under the server.
    pub store: SledStore,
    /// The API in process, as the controllers and the scheduler inside `minik server` reach it.
    pub api: Arc<dyn Api>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Deref for TestServer {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl TestServer {
    /// Spawns a task that is aborted with the server (a controller, a scheduler, a stand-in
    /// for node agents), or earlier through the handle.
    pub fn spawn(
        &mut self,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        let task = tokio::spawn(task);
        let handle = task.abort_handle();
        self.tasks.push(task);
        handle
    }
}

/// A server with the default configuration.
pub async fn start() -> TestServer {
    start_with(Config::default(), HISTORY).await
}

/// A server with `config` over a store that keeps `history` revisions for watches.
pub async fn start_with(config: Config, history: usize) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path(), history);
    let server = ApiServer::new(Arc::new(store.clone()), config);
    serve(server, store, dir).await
}

/// A server with the default configuration over HTTPS: a cluster CA and serving certificate
/// of its own (in its temporary directory), trusted by its [`Http`] and by [`crate::client`].
pub async fn start_tls() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path(), HISTORY);
    let settings = minik_apiserver::TlsSettings {
        dir: dir.path().join("tls"),
        dns_names: Vec::new(),
        ips: Vec::new(),
        lifetime: minik_apiserver::DEFAULT_CERT_LIFETIME,
        cert_file: None,
        key_file: None,
    };
    let tls = Arc::new(minik_apiserver::ClusterTls::open(settings).expect("the test CA"));
    let config = Config::default();
    let server = ApiServer::with_tls(Arc::new(store.clone()), config.clone(), tls.clone());
    server.registry.bootstrap().await.expect("bootstrap");
    let api: Arc<dyn Api> = Arc::new(server.registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("https://{addr}");
    crate::trust::remember_ca(&base, &dir.path().join("tls").join("ca.crt"));
    let server_config = tls.server_config().expect("the TLS configuration");
    let task = tokio::spawn(async move {
        minik_apiserver::serve_tls(
            listener,
            app(server),
            &config,
            server_config,
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
    TestServer {
        http: Http::new(base),
        store,
        api,
        tasks: vec![task],
        _dir: dir,
    }
}

/// The PEM of the CA the server at `base` is verified with (one [`start_tls`] or a test's
/// `minik server` made).
pub fn ca_pem(base: &str) -> String {
    let file = crate::trust::ca_for(base).expect("a server started over HTTPS");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// A store in `dir/store` keeping `history` revisions.
pub fn open_store(dir: &Path, history: usize) -> SledStore {
    let mut config = StoreConfig::new(dir.join("store"));
    config.history_size = history;
    SledStore::open(config).expect("open store")
}

/// Serves `server` (over `store`, kept in `dir`) on `127.0.0.1:0`: for a server built otherwise
/// than [`start_with`] does (with authentication).
pub async fn serve(server: Arc<ApiServer>, store: SledStore, dir: tempfile::TempDir) -> TestServer {
    server.registry.bootstrap().await.expect("bootstrap");
    let api: Arc<dyn Api> = Arc::new(server.registry.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app(server)).await.expect("serve");
    });
    TestServer {
        http: Http::new(format!("http://{addr}")),
        store,
        api,
        tasks: vec![task],
        _dir: dir,
    }
}
