//! `minik server`: opens the store, serves the API, and shuts down cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use minik_apiserver::{app, ApiServer, Auth, Config};
use minik_store::{SledStore, StoreConfig};

/// How long events are kept after they were last seen (Kubernetes' `--event-ttl`).
const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(60 * 60);

/// The encryption configuration `--secrets-encryption` uses (and makes) in the data dir.
const ENCRYPTION_CONFIG_FILE: &str = "encryption-config.yaml";

/// How long open requests may finish after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The smallest watch buffer and history window, in bytes: less would cut every watcher of an
/// object of a few hundred kilobytes at its first changes.
/// The smallest page cache the store is given (sled's pages must fit).
const MIN_STORE_CACHE: u64 = 1 << 20;
const MIN_WATCH_BYTES: usize = 1 << 20;

/// Flags of `minik server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long, default_value = "./minik-data")]
    data_dir: PathBuf,
    /// How many recent changes a watch can resume from before it gets 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    watch_history: usize,
    /// Seconds between BOOKMARK events on watches that allow them.
    #[arg(long, default_value_t = 60)]
    bookmark_interval_seconds: u64,
    /// How long a node's agent may stay silent before the node is marked Unknown and tainted
    /// unreachable (a Go duration: 40s, 1m).
    #[arg(long, default_value = "40s", value_parser = crate::cli::time::parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long pods stay on a node that is unreachable or not ready before they are evicted,
    /// unless their own tolerationSeconds say otherwise.
    #[arg(long, default_value = "5m", value_parser = crate::cli::time::parse_duration)]
    pod_eviction_timeout: Duration,
    /// How long events are kept after they were last seen.
    #[arg(long, default_value = "1h", value_parser = crate::cli::time::parse_duration)]
    event_ttl: Duration,
    /// The largest request body accepted, in bytes (413 beyond; Kubernetes: 3 MiB).
    #[arg(long, default_value_t = 3 << 20)]
    max_request_bytes: usize,
    /// Free space to keep on the data dir's filesystem, as a quantity (`64Mi`, `1Gi`): writes
    /// that would leave less are refused with 507 until space is freed (0: no reserve).
    #[arg(long, default_value = "64Mi", value_parser = parse_bytes)]
    min_free_disk: u64,
    /// How many watches one client address may hold open at once (429 beyond; 0: no limit).
    #[arg(long, default_value_t = 500)]
    max_watches_per_client: usize,
    /// How many bytes of changes a watch may fall behind (what is queued for it and what it was
    /// sent but its client has not read) before it is cut as too slow; its client lists again.
    #[arg(long, default_value_t = minik_store::DEFAULT_WATCH_BUFFER_BYTES)]
    watch_buffer_bytes: usize,
    /// How many bytes of recent changes a watch can resume from, at most (as well as at most
    /// --watch-history changes; default 64 MiB). Watches share these and what they buffer: all
    /// of them together hold at most this plus --watch-buffer-bytes.
    #[arg(long)]
    watch_history_bytes: Option<usize>,
    /// The store's page cache in memory (sled's cache capacity), a quantity of bytes: what
    /// GETs and LISTs read without going to the data dir's files. The server's RSS holds up to
    /// this much of it.
    #[arg(long, default_value = "64Mi", value_parser = parse_bytes)]
    store_cache: u64,
    /// Let clients without a token in as the administrator when they connect from a loopback
    /// address (what `minik up` does). Everyone else always needs a token.
    #[arg(long)]
    allow_anonymous_loopback: bool,
    /// The admin token's file: read if it exists, made (mode 0600) if not
    /// (default DATA_DIR/auth/admin-token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Encrypt Secrets at rest (AES-256-GCM) with the keys of DATA_DIR/encryption-config.yaml,
    /// made with one fresh key (mode 0600) if missing. Without it (or
    /// --encryption-provider-config) Secrets are stored as written: base64 is not encryption.
    #[arg(long)]
    secrets_encryption: bool,
    /// Encrypt at rest as this Kubernetes EncryptionConfiguration file says (aesgcm and
    /// identity providers) instead of DATA_DIR/encryption-config.yaml; implies
    /// --secrets-encryption. Rotation: docs/secrets-encryption.md.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
    /// More names or addresses the serving certificate carries (comma-separated, repeatable):
    /// those clients and nodes reach the server by, beyond the listen address, this host's
    /// name and addresses, localhost and the `kubernetes.default.svc` names.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Serve this certificate (PEM, the chain after it) instead of one the cluster CA issues;
    /// re-read when the file changes. Goes with --tls-private-key-file.
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file (PEM).
    #[arg(long, value_name = "FILE")]
    tls_private_key_file: Option<PathBuf>,
    /// How long the certificates the cluster CA issues (the server's, the nodes', the admin's
    /// client certificate) are valid; each is renewed once two thirds of it have passed.
    #[arg(long, default_value = "8760h", value_parser = crate::cli::time::parse_duration)]
    tls_cert_lifetime: Duration,
    /// The cluster CIDR each node's `spec.podCIDR` is carved from (`none`: no node IPAM).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's pod CIDR (a /24: 253 pod addresses per node, besides
    /// its gateway).
    #[arg(long, default_value_t = minik_api::cidr::DEFAULT_NODE_MASK)]
    node_cidr_mask_size: u8,
    /// The range ClusterIPs come from: IPv4, /12 to /28, apart from --cluster-cidr. The
    /// default is loopback addresses, which every node can listen on (the user-space proxy,
    /// nodes without root); pods in network namespaces of their own need a routable range, as
    /// Kubernetes' 10.96.0.0/12. The `kubernetes` Service gets its first address, `kube-dns`
    /// its 10th.
    #[arg(long, default_value = "127.96.0.0/16", value_name = "CIDR")]
    service_cidr: String,
    /// Serve plain HTTP instead of HTTPS: only on a loopback address, for curl on a laptop.
    /// Tokens and Secrets would cross the network in the clear anywhere else.
    #[arg(long)]
    plain_http: bool,
}

/// The validated settings a server runs from.
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// The API server's; `api.service_cidr` is the service CIDR (the controllers' is set from
    /// it when the server starts).
    pub api: Config,
    /// The controllers'; `controllers.cluster_cidr` and `node_cidr_mask` are the node IPAM's
    /// (the API publishes them from there when the server starts).
    pub controllers: minik_controllers::Config,
    /// How long events are kept after they were last seen.
    pub event_ttl: Duration,
    /// Where the tokens are and who may come in without one.
    pub auth: minik_apiserver::AuthConfig,
    /// HTTPS (`None`: plain HTTP, on loopback only).
    pub tls: Option<minik_apiserver::TlsSettings>,
    /// `DATA_DIR`, where the kubeconfig is written.
    pub data_dir: PathBuf,
}

/// The smallest certificate lifetime accepted: renewal runs at two thirds of it.
const MIN_CERT_LIFETIME: Duration = Duration::from_secs(10);

/// The TLS settings for `data_dir`: the serving certificate names `extra` (names and addresses)
/// and the address the server listens on (every address of this host when that is
/// unspecified) and this host's name.
pub fn tls_settings(
    data_dir: &std::path::Path,
    listen: SocketAddr,
    extra: &[String],
    lifetime: Duration,
) -> minik_apiserver::TlsSettings {
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    for name in extra.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns_names.push(name.to_ascii_lowercase()),
        }
    }
    if listen.ip().is_unspecified() {
        ips.extend(host_addresses());
    } else {
        ips.push(listen.ip());
    }
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(host) = host.to_str().filter(|h| !h.is_empty()) {
            dns_names.push(host.to_ascii_lowercase());
        }
    }
    minik_apiserver::TlsSettings {
        dir: data_dir.join("tls"),
        dns_names,
        ips,
        lifetime,
        cert_file: None,
        key_file: None,
    }
}

/// This host's addresses, for a server listening on all of them.
fn host_addresses() -> Vec<std::net::IpAddr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<std::net::IpAddr> = addresses
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        })
        // Link-local IPv6 addresses need a zone, which certificates cannot name.
        .filter(
            |ip| !matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80),
        )
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

impl Settings {
    /// The defaults, listening on `listen` with the store under `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: &std::path::Path) -> Settings {
        Settings {
            listen,
            store: StoreConfig::new(data_dir.join("store")),
            api: Config {
                cluster_cidr: Some(minik_api::cidr::DEFAULT_CLUSTER_CIDR),
                ..Config::default()
            },
            controllers: minik_controllers::Config {
                cluster_cidr: Some(minik_api::cidr::DEFAULT_CLUSTER_CIDR),
                service_cidr: Some(minik_apiserver::loopback_service_cidr()),
                ..minik_controllers::Config::default()
            },
            event_ttl: DEFAULT_EVENT_TTL,
            auth: auth_config(data_dir, None, false),
            tls: Some(tls_settings(
                data_dir,
                listen,
                &[],
                minik_apiserver::DEFAULT_CERT_LIFETIME,
            )),
            data_dir: data_dir.to_path_buf(),
        }
    }
}

/// The tokens under `data_dir/auth`.
pub fn auth_config(
    data_dir: &std::path::Path,
    admin_file: Option<PathBuf>,
    anonymous_loopback: bool,
) -> minik_apiserver::AuthConfig {
    minik_apiserver::AuthConfig {
        dir: data_dir.join("auth"),
        admin_file,
        anonymous_loopback,
        ca_fingerprint: None,
    }
}

impl ServerArgs {
    fn settings(self) -> anyhow::Result<Settings> {
        anyhow::ensure!(self.watch_history > 0, "--watch-history must be at least 1");
        anyhow::ensure!(
            self.bookmark_interval_seconds > 0,
            "--bookmark-interval-seconds must be at least 1"
        );
        anyhow::ensure!(
            self.node_monitor_grace_period >= Duration::from_secs(1),
            "--node-monitor-grace-period must be at least 1s"
        );
        anyhow::ensure!(
            self.event_ttl >= Duration::from_secs(1),
            "--event-ttl must be at least 1s"
        );
        anyhow::ensure!(
            self.max_request_bytes >= 1024,
            "--max-request-bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.watch_buffer_bytes >= MIN_WATCH_BYTES,
            "--watch-buffer-bytes must be at least {MIN_WATCH_BYTES} (1 MiB)"
        );
        anyhow::ensure!(
            self.watch_history_bytes
                .is_none_or(|b| b >= MIN_WATCH_BYTES),
            "--watch-history-bytes must be at least {MIN_WATCH_BYTES} (1 MiB)"
        );
        let cluster_cidr = match self.cluster_cidr.as_str() {
            "none" | "" => None,
            text => Some(
                text.parse::<minik_api::cidr::Cidr>()
                    .map_err(|e| anyhow::anyhow!("--cluster-cidr {text:?}: {e}"))?,
            ),
        };
        let service_cidr = parse_service_cidr(&self.service_cidr)?;
        check_network(service_cidr, cluster_cidr)?;
        let controllers = minik_controllers::Config {
            cluster_cidr,
            node_cidr_mask: self.node_cidr_mask_size,
            // Node IPAM never hands out the service CIDR.
            service_cidr: Some(service_cidr),
            node_monitor_grace_period: self.node_monitor_grace_period,
            // Look often enough that a short grace period is noticed soon after it passes.
            node_monitor_period: (self.node_monitor_grace_period / 8)
                .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            pod_eviction_timeout: self.pod_eviction_timeout,
            ..minik_controllers::Config::default()
        };
        controllers.check().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.tls_cert_lifetime >= MIN_CERT_LIFETIME,
            "--tls-cert-lifetime must be at least 10s"
        );
        let tls = if self.plain_http {
            anyhow::ensure!(
                self.listen.ip().is_loopback(),
                "--plain-http serves only on a loopback address (127.0.0.1, ::1), not {}: elsewhere tokens and Secrets would cross the network in the clear",
                self.listen
            );
            anyhow::ensure!(
                self.tls_cert_file.is_none()
                    && self.tls_private_key_file.is_none()
                    && self.tls_san.is_empty(),
                "--plain-http serves no certificate: drop --tls-cert-file, --tls-private-key-file and --tls-san"
            );
            None
        } else {
            let mut tls = tls_settings(
                &self.data_dir,
                self.listen,
                &self.tls_san,
                self.tls_cert_lifetime,
            );
            tls.cert_file = self.tls_cert_file;
            tls.key_file = self.tls_private_key_file;
            Some(tls)
        };
        let auth = auth_config(
            &self.data_dir,
            self.token_file,
            self.allow_anonymous_loopback,
        );
        let mut store = StoreConfig::new(self.data_dir.join("store"));
        anyhow::ensure!(
            self.store_cache >= MIN_STORE_CACHE,
            "--store-cache must be at least 1Mi"
        );
        store.cache_bytes = self.store_cache;
        store.history_size = self.watch_history;
        if let Some(bytes) = self.watch_history_bytes {
            store.history_bytes = bytes;
        }
        store.min_free_bytes = self.min_free_disk;
        store.encryption = encryption(
            &self.data_dir,
            self.secrets_encryption,
            self.encryption_provider_config,
        )?;
        Ok(Settings {
            listen: self.listen,
            store,
            api: Config {
                bookmark_interval: Duration::from_secs(self.bookmark_interval_seconds),
                // Pods tolerate their node being unreachable or not ready for the eviction
                // timeout unless they say otherwise.
                default_toleration_seconds: self.pod_eviction_timeout.as_secs() as i64,
                max_body_bytes: self.max_request_bytes,
                max_watches_per_client: self.max_watches_per_client,
                watch_buffer_bytes: self.watch_buffer_bytes,
                service_cidr,
                cluster_cidr,
                node_cidr_mask_size: self.node_cidr_mask_size,
                ..Config::default()
            },
            controllers,
            event_ttl: self.event_ttl,
            auth,
            tls,
            data_dir: self.data_dir,
        })
    }
}

/// `--service-cidr`: an IPv4 CIDR of a size [`minik_apiserver::check_service_cidr`] accepts.
fn parse_service_cidr(text: &str) -> anyhow::Result<minik_api::cidr::Cidr> {
    anyhow::ensure!(
        !text.contains(':'),
        "--service-cidr {text:?}: minik's Services are IPv4 only; give an IPv4 CIDR (like 10.96.0.0/12)"
    );
    text.parse::<minik_api::cidr::Cidr>()
        .map_err(|e| anyhow::anyhow!("--service-cidr {text:?}: {e}"))
}

/// Checks the network settings together: the service CIDR's size, and that it keeps clear of
/// the cluster CIDR (pod addresses and ClusterIPs must never be mistaken for each other).
fn check_network(
    service: minik_api::cidr::Cidr,
    cluster: Option<minik_api::cidr::Cidr>,
) -> anyhow::Result<()> {
    minik_apiserver::check_service_cidr(service)
        .map_err(|e| anyhow::anyhow!("--service-cidr {service}: {e}"))?;
    if let Some(cluster) = cluster {
        minik_api::cidr::check_cluster(cluster, service).map_err(|e| {
            anyhow::anyhow!("--service-cidr and --cluster-cidr must not overlap: {e}")
        })?;
    }
    Ok(())
}

/// The encryption at rest the flags ask for: the given configuration file, or the data dir's
/// (made with a fresh key if missing) with `--secrets-encryption`, or none.
fn encryption(
    data_dir: &std::path::Path,
    secrets_encryption: bool,
    provider_config: Option<PathBuf>,
) -> anyhow::Result<Option<Arc<minik_store::Encryption>>> {
    let path = match provider_config {
        Some(path) => path,
        None if secrets_encryption => {
            let path = data_dir.join(ENCRYPTION_CONFIG_FILE);
            if minik_store::Encryption::generate(&path)? {
                tracing::info!(path = %path.display(), "made an encryption configuration with a new key; keep it, and back it up apart from the data");
            }
            path
        }
        None => return Ok(None),
    };
    let encryption = minik_store::Encryption::load(&path)?;
    tracing::info!(path = %path.display(), "encryption at rest: configured");
    Ok(Some(Arc::new(encryption)))
}

/// A size in bytes written as a Kubernetes quantity (`64Mi`, `1G`, `1048576`).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let quantity = minik_api::quantity::Quantity::parse(text)
        .map_err(|e| format!("{text:?} is not a quantity of bytes (like 64Mi or 1Gi): {e}"))?;
    u64::try_from(quantity.value())
        .map_err(|_| format!("{text:?} is negative; a size of bytes is 0 or more"))
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let admin = settings.auth.admin_file();
    let join = settings.auth.join_file();
    let anonymous = settings.auth.anonymous_loopback;
    runtime.block_on(serve(settings, shutdown_signal(), move |ready| {
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("minik server listening on {}", ready.url);
        println!("admin token: {}", admin.display());
        println!(
            "node join token: {} (minik node --server {} --token $(cat {}))",
            join.display(),
            ready.url,
            join.display()
        );
        if let Some(ca) = &ready.ca_file {
            println!("cluster CA: {}", ca.display());
        }
        if let Some(kubeconfig) = &ready.kubeconfig {
            println!("kubeconfig: {}", kubeconfig.display());
        }
        if anonymous {
            println!("clients on loopback need no token (--allow-anonymous-loopback)");
        }
    }))
}

/// What a server that listens tells its starter.
pub struct Ready {
    /// `https://ADDR` (or `http://` with --plain-http).
    pub url: String,
    /// The cluster CA certificate, over HTTPS.
    pub ca_file: Option<PathBuf>,
    /// The administrator's kubeconfig (`DATA_DIR/kubeconfig`), when it could be written.
    pub kubeconfig: Option<PathBuf>,
}

/// Serves until `shutdown` resolves; `on_ready` learns the address once it listens.
pub async fn serve(
    mut settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Ready),
) -> anyhow::Result<()> {
    minik_tls::install_crypto_provider();
    // One source for each network setting: the service CIDR is the API server's, the cluster
    // CIDR the node IPAM's.
    settings.controllers.service_cidr = Some(settings.api.service_cidr);
    settings.api.cluster_cidr = settings.controllers.cluster_cidr;
    settings.api.node_cidr_mask_size = settings.controllers.node_cidr_mask;
    check_network(settings.api.service_cidr, settings.api.cluster_cidr)?;
    // TLS and tokens before the store: a server that cannot secure its API does not start.
    let tls = match &settings.tls {
        Some(tls) => Some(Arc::new(
            minik_apiserver::ClusterTls::open(
                tls.clone().naming_service_ip(settings.api.service_cidr),
            )
            .context("cannot set up TLS (DATA_DIR/tls)")?,
        )),
        None => None,
    };
    let mut auth_settings = settings.auth.clone();
    auth_settings.ca_fingerprint = tls.as_ref().map(|t| t.ca().fingerprint());
    let auth = Auth::open(auth_settings).context("cannot set up the API tokens")?;
    let path = settings.store.path.clone();
    std::fs::create_dir_all(&path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    let store = SledStore::open(settings.store)
        .with_context(|| format!("cannot open the store in {}", path.display()))?;
    let server = match &tls {
        Some(tls) => {
            ApiServer::secured_with_tls(Arc::new(store.clone()), settings.api, auth, tls.clone())
        }
        None => ApiServer::secured(Arc::new(store.clone()), settings.api, auth),
    };
    server
        .registry
        .bootstrap()
        .await
        .context("cannot create the system namespaces")?;
    // The components that run inside the server reach the API through the same registry the
    // HTTP handlers use.
    let api: Arc<dyn minik_client::Api> = Arc::new(server.registry.clone());
    let mut controllers = settings.controllers;
    controllers.root_ca = tls.as_ref().map(|t| t.ca().pem().to_owned());
    let mut components = start_components(api, controllers);
    components.push(tokio::spawn(minik_apiserver::sweep_events(
        server.registry.clone(),
        settings.event_ttl,
    )));
    if let Some(tls) = &tls {
        components.push(tokio::spawn(tls.clone().keep_fresh()));
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    // Pods find the API server through the `kubernetes` Service and DNS through `kube-dns`:
    // kept in the background, so that a server with many objects (whose controllers are
    // loading them) is ready at once.
    let advertised = if addr.ip().is_unspecified() {
        host_addresses()
            .into_iter()
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    } else {
        addr.ip()
    };
    components.push(tokio::spawn(keep_cluster_services(
        server.registry.clone(),
        advertised,
        addr.port(),
    )));
    tracing::info!(
        %addr,
        data = %path.display(),
        revision = store_revision(&store),
        allocator_purge_delay_ms = crate::allocator::purge_delay_ms(),
        "minik server is serving"
    );
    tracing::info!(
        admin = %settings.auth.admin_file().display(),
        join = %settings.auth.join_file().display(),
        anonymous_loopback = settings.auth.anonymous_loopback,
        "tokens (mode 0600)"
    );
    let ca_file = settings.tls.as_ref().map(|t| t.dir.join("ca.crt"));
    let kubeconfig = write_admin_kubeconfig(
        &settings.data_dir,
        &settings.auth.admin_file(),
        &url,
        tls.as_deref(),
    );
    on_ready(Ready {
        url,
        ca_file,
        kubeconfig,
    });
    // On shutdown, end the watches first (they would hold graceful shutdown for up to their
    // timeout), then give the other requests a few seconds.
    let closing = server.clone();
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let graceful = async move {
        shutdown.await;
        closing.close_watches();
        let _ = began_tx.send(());
    };
    let api_config = server.config.clone();
    let serving = async {
        match &tls {
            Some(tls) => {
                let config = tls.server_config().context("cannot configure TLS")?;
                minik_apiserver::serve_tls(listener, app(server), &api_config, config, graceful)
                    .await
                    .map_err(anyhow::Error::from)
            }
            None => minik_apiserver::serve(listener, app(server), &api_config, graceful)
                .await
                .map_err(anyhow::Error::from),
        }
    };
    let grace_over = async {
        if began_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => served.context("the API server failed")?,
        _ = grace_over => tracing::warn!("requests still open {}s after shutdown began; closing them", SHUTDOWN_GRACE.as_secs()),
    }
    for component in components {
        component.abort();
    }
    tracing::info!("minik server stopped");
    store.close().await;
    Ok(())
}

/// Writes `DATA_DIR/kubeconfig` for the administrator (the admin token, and the CA over
/// HTTPS), as k3s writes its `k3s.yaml`; `None` (and a warning) when it cannot be written.
fn write_admin_kubeconfig(
    data_dir: &std::path::Path,
    admin_file: &std::path::Path,
    url: &str,
    tls: Option<&minik_apiserver::ClusterTls>,
) -> Option<PathBuf> {
    let path = data_dir.join("kubeconfig");
    let written = std::fs::read_to_string(admin_file)
        .map_err(anyhow::Error::from)
        .and_then(|token| {
            let token = token.lines().next().unwrap_or_default().trim().to_owned();
            crate::kubeconfig::write(&path, url, tls.map(|t| t.ca().pem()), &token)
        });
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cannot write the kubeconfig");
            None
        }
    }
}

/// Makes the `kubernetes` Service point at this server and the `kube-dns` Service exist,
/// retrying each until it is done; first warns of the Services whose ClusterIPs an earlier
/// service CIDR gave (they keep them).
async fn keep_cluster_services(
    registry: minik_apiserver::Registry,
    address: std::net::IpAddr,
    port: u16,
) {
    let range = registry.service_cidr();
    match minik_apiserver::master::services_outside_range(&registry).await {
        Ok(outside) if !outside.is_empty() => tracing::warn!(
            service_cidr = %range,
            services = %outside.join(", "),
            "these Services keep ClusterIPs outside the service CIDR, given before it changed; delete and recreate one to move it into the range (the kubernetes and kube-dns Services are made again at the next start)"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the Services' ClusterIPs against the service CIDR")
        }
    }
    let ip = retrying("update the kubernetes Service", || {
        minik_apiserver::master::ensure(&registry, address, port)
    })
    .await;
    tracing::info!(%ip, %address, port, "the kubernetes Service points at this server");
    let ip = retrying("make the kube-dns Service", || {
        minik_apiserver::master::ensure_dns(&registry)
    })
    .await;
    tracing::info!(%ip, "the kube-dns Service is the cluster DNS address");
}

/// Runs `attempt` until it succeeds, backing off from 100 ms to 10 s; answers its result.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, minik_api::ApiError>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) => {
                tracing::warn!(error = %e, "cannot {what}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Starts the control loops that run in the server process; each runs until aborted.
fn start_components(
    api: Arc<dyn minik_client::Api>,
    controllers: minik_controllers::Config,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scheduler = minik_scheduler::Config::default();
    // One informer per kind for both: each object is decoded and cached once in the process.
    let informers = minik_client::SharedInformers::new(
        api,
        minik_client::InformerConfig {
            resync: controllers.resync,
            buffer: scheduler.informer_buffer,
            ..minik_client::InformerConfig::default()
        },
    );
    let shared = informers.clone();
    vec![
        tokio::spawn(async move { minik_scheduler::run_shared(&shared, scheduler).await }),
        tokio::spawn(async move { minik_controllers::run_shared(&informers, controllers).await }),
    ]
}

fn store_revision(store: &SledStore) -> u64 {
    use minik_store::Store;
    store.revision()
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, ServerArgs};

    fn settings(flags: &[&str]) -> anyhow::Result<super::Settings> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let dir = tempfile::tempdir()?;
        let data = dir.path().to_str().unwrap_or_default().to_owned();
        let mut argv = vec!["minik", "--data-dir", &data];
        argv.extend_from_slice(flags);
        let cli = <Cli as clap::Parser>::try_parse_from(argv)?;
        cli.server.settings()
    }

    #[test]
    fn the_store_cache_is_a_quantity_of_at_least_a_mebibyte() {
        assert_eq!(settings(&[]).unwrap().store.cache_bytes, 64 << 20);
        let small = settings(&["--store-cache", "16Mi"]).unwrap();
        assert_eq!(small.store.cache_bytes, 16 << 20);
        let err = settings(&["--store-cache", "512Ki"]).err().unwrap();
        assert_eq!(err.to_string(), "--store-cache must be at least 1Mi");
        assert!(settings(&["--store-cache", "lots"]).is_err());
    }

    #[test]
    fn disk_reserves_are_quantities_of_bytes() {
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("-1Mi").unwrap_err().contains("negative"));
        assert!(parse_bytes("lots").unwrap_err().contains("not a quantity"));
    }
}
