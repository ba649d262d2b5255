//! The node's Service proxy, minik's kube-proxy. It watches Services and Endpoints and, in
//! one of two modes ([`ProxyMode`]), sends each new connection to a Service address — every
//! Service's `clusterIP:port`, the node's address at each node port, and for LoadBalancer
//! Services `port` on the node's address — to a ready endpoint.
//!
//! The `nftables` mode programs the kernel to translate the connections (see [`nft`]), for
//! every protocol, with session affinity and the `Local` traffic policies; it is the mode of
//! the pod network, where pods have addresses of their own ([`ProxyOptions`]). The rest of
//! this comment is about the `userspace` mode, the default, which listens on every Service
//! address (TCP only; affinity and traffic policies are not applied there). Each new
//! connection goes to the next ready endpoint in turn (a refusing one is skipped) and bytes are
//! copied with `copy_bidirectional`. An endpoint change swaps the backend list of a listener
//! in place, so open connections are never cut; a listener whose Service went is closed.
//!
//! Listeners set `SO_REUSEPORT`: several agents on one host (as `minik up` runs them) all
//! listen on the same ClusterIP address and the kernel spreads connections over them.
//!
//! The bytes do not go through the agent's runtime. A small data plane of threads, each with
//! a single-threaded tokio runtime of its own, carries them: every thread has its own
//! listening socket for each frontend (`SO_REUSEPORT` again), so a connection is accepted,
//! dialled and copied on one thread from start to end, with no cross-thread wake-ups, no work
//! stealing, and no contention with the agent's informers and pod work. Measured with
//! `minik-bench proxy` (see `docs/benchmarks.md`).
//!
//! This module also gives the agent what Services mean for pods: their environment variables
//! ([`Services::env_for`]), the `minik.io/host-ports` annotation ([`publish_host_ports`]), and
//! where a port-forward of a pod on this node goes ([`Services`] as a
//! [`crate::endpoint::ForwardTarget`]).

mod nft;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use minik_api::cidr::Cidr;
use minik_api::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use minik_api::podview::PodView;
use minik_api::request::{Patch, PatchKind, WriteOptions};
use minik_api::ApiError;
use minik_client::{resource_of, Api, Informer, InformerCache, InformerConfig};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::spec::{self, PortBinding};

pub use nft::Ruleset;

/// How long a connection to one endpoint may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the agent waits for the first list of Services before starting a container
/// without service variables.
const ENV_SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// How often addresses that could not be bound are tried again.
const RETRY_BIND: Duration = Duration::from_secs(2);

/// The agent's view of Services: cheap to clone.
#[derive(Clone)]
pub struct Services {
    services: InformerCache<Service>,
    pods: InformerCache<Pod>,
    node_address: String,
}

/// How the proxy carries connections to Service addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// The agent listens on every Service address and copies the bytes of each connection to
    /// an endpoint (skipping endpoints that refuse).
    #[default]
    Userspace,
    /// The agent programs the kernel (its own nftables table, `ip minik-NODE`) to translate
    /// each new connection's destination to an endpoint; it listens on nothing. It also sets
    /// `net.ipv4.conf.all.route_localnet=1` (and leaves it set), so that local clients reach
    /// endpoints on other hosts.
    Nftables,
}

impl std::str::FromStr for ProxyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "userspace" => Ok(ProxyMode::Userspace),
            "nftables" => Ok(ProxyMode::Nftables),
            other => Err(format!(
                "unknown proxy mode {other:?}: it is userspace or nftables"
            )),
        }
    }
}

impl std::fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyMode::Userspace => "userspace",
            ProxyMode::Nftables => "nftables",
        })
    }
}

/// What the proxy needs to know of the node's network besides its address. The default is a
/// cluster without the pod network (the process runtime's): the proxy then works as it always
/// has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// The cluster CIDR (`--cluster-cidr`) when the pod network is on and pods have addresses
    /// of their own. In the nftables mode, connections to a ClusterIP from outside it (the node
    /// itself, other hosts) are then masqueraded, so that the answers of an endpoint on another
    /// node come back through this one, while pods keep their addresses; and pods' connections
    /// to a node port or LoadBalancer address under `externalTrafficPolicy: Local` go to every
    /// endpoint, as kube-proxy does with its cluster CIDR.
    pub cluster_cidr: Option<Cidr>,
    /// Where this node answers cluster DNS itself. When set, port 53 (UDP and TCP) of the
    /// `kube-dns` Service of `kube-system` goes there, whatever its Endpoints say.
    pub local_dns: Option<SocketAddr>,
}

/// The running proxy; dropping it stops every listener (open connections finish on their own)
/// or, in nftables mode, deletes the agent's table (conntrack keeps open connections going).
pub struct Proxy {
    _services: Informer<Service>,
    _endpoints: Informer<Endpoints>,
    task: JoinHandle<()>,
    table: Option<Arc<nft::Nft>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(nft) = &self.table {
            // Waits for an update under way, so that it cannot bring the table back.
            match nft.delete() {
                Ok(()) => tracing::info!(table = nft.table(), "deleted the proxy's nftables table"),
                Err(e) => {
                    tracing::warn!(table = nft.table(), error = %e, "cannot delete the proxy's nftables table")
                }
            }
        }
    }
}

impl Proxy {
    /// The proxy's informers of Services and Endpoints, which the node's cluster DNS follows
    /// too (one watch of each per node).
    pub fn informers(&self) -> (&Informer<Service>, &Informer<Endpoints>) {
        (&self._services, &self._endpoints)
    }
}

/// Starts watching Services and Endpoints and proxying them, in `mode`, on the node `node`
/// that advertises `node_address`, with what `options` says of the node's network
/// (`ProxyOptions::default()` without the pod network). `pods` is the agent's cache of its own
/// pods (for port-forward).
pub fn start(
    api: Arc<dyn Api>,
    node: &str,
    node_address: &str,
    mode: ProxyMode,
    pods: InformerCache<Pod>,
    options: ProxyOptions,
) -> (Services, Proxy) {
    let config = InformerConfig::default();
    let services = Informer::<Service>::spawn(api.clone(), config.clone());
    let endpoints = Informer::<Endpoints>::spawn(api, config);
    let address = node_address
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (plane, table) = match mode {
        ProxyMode::Userspace => (
            Plane::Listeners {
                listening: HashMap::new(),
                failed: HashMap::new(),
            },
            None,
        ),
        ProxyMode::Nftables => {
            nft::ensure_route_localnet();
            let nft = nft::Nft::new(nft::table_name(node));
            (
                Plane::Kernel {
                    nft: nft.clone(),
                    applied: None,
                    failed: None,
                    unsupported: Vec::new(),
                },
                Some(nft),
            )
        }
    };
    let run = Run {
        services: services.cache(),
        endpoints: endpoints.cache(),
        node: node.to_owned(),
        node_address: address,
        options,
        plane,
    };
    let task = tokio::spawn(run.run(services.subscribe(), endpoints.subscribe()));
    let view = Services {
        services: services.cache(),
        pods,
        node_address: node_address.to_owned(),
    };
    (
        view,
        Proxy {
            _services: services,
            _endpoints: endpoints,
            task,
            table,
        },
    )
}

impl Services {
    /// The service variables for a container of `pod`: the Services of its namespace that
    /// exist now, and in every namespace the `kubernetes` Service of `default` (how
    /// in-cluster clients find the API server), as the kubelet gives them. Waits (briefly) for the first list of Services, so that a pod started right
    /// after the agent does not miss them.
    pub async fn env_for(&self, pod: &Pod) -> Vec<(String, String)> {
        if tokio::time::timeout(ENV_SYNC_TIMEOUT, self.services.wait_synced())
            .await
            .is_err()
        {
            tracing::warn!(
                "Services are not listed yet; starting a container without service variables"
            );
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let services = self.services.filter(|s| {
            let namespace = s.metadata.namespace.as_deref().unwrap_or_default();
            namespace == ns
                || (namespace == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
        });
        let refs: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
        spec::service_variables(&refs)
    }
}

impl crate::endpoint::ForwardTarget for Services {
    fn resolve(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
    ) -> Result<(SocketAddr, Option<std::path::PathBuf>), (u16, String)> {
        let found = self.pods.get(&format!("{ns}/{pod}")).ok_or_else(|| {
            (
                404,
                format!("pod {pod:?} in namespace {ns:?} is not on this node"),
            )
        })?;
        let phase = found
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        if phase != "Running" {
            return Err((
                400,
                format!(
                    "unable to forward port because pod is not running. Current status={phase}"
                ),
            ));
        }
        let ip = found
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .unwrap_or(&self.node_address)
            .parse::<IpAddr>()
            .map_err(|e| (500, format!("pod {pod:?} has no usable IP: {e}")))?;
        let host_port = spec::host_port_of(&PodView::from(&*found), i32::from(port));
        let host_port = u16::try_from(host_port)
            .map_err(|_| (500, format!("pod {pod:?} records host port {host_port}")))?;
        Ok((SocketAddr::new(ip, host_port), None))
    }
}

/// Records in the pod which host port each of its declared container ports got
/// ([`spec::HOST_PORTS_ANNOTATION`]) unless it says so already.
pub async fn publish_host_ports(
    api: &dyn Api,
    pod: &Pod,
    ports: &[Vec<PortBinding>],
) -> Result<(), ApiError> {
    let Some(value) = spec::host_ports_annotation(ports) else {
        return Ok(());
    };
    let current = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(spec::HOST_PORTS_ANNOTATION));
    if current == Some(&value) {
        return Ok(());
    }
    let patch = Patch {
        kind: PatchKind::Merge,
        body: json!({"metadata": {"annotations": {spec::HOST_PORTS_ANNOTATION: value}}}),
    };
    match api
        .patch(
            resource_of::<Pod>(),
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            patch,
            false,
            WriteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The backends of one listener, swapped whole when the Endpoints change.
#[derive(Default)]
struct Pool {
    backends: RwLock<Arc<Vec<SocketAddr>>>,
    next: AtomicUsize,
}

impl Pool {
    fn set(&self, backends: Vec<SocketAddr>) {
        let mut current = self.backends.write().unwrap_or_else(|p| p.into_inner());
        if **current != backends {
            *current = Arc::new(backends);
        }
    }

    fn snapshot(&self) -> Arc<Vec<SocketAddr>> {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The threads that carry proxied bytes, shared by every agent of the process and alive as
/// long as it is: each runs a single-threaded runtime that is otherwise idle.
struct DataPlane {
    workers: Vec<tokio::runtime::Handle>,
}

/// How many data-plane threads: one per core, at most [`MAX_DATA_THREADS`].
const MAX_DATA_THREADS: usize = 4;

impl DataPlane {
    /// The process's data plane, started on first use. Without it (a thread or runtime that
    /// cannot be made) the proxy runs on the caller's runtime.
    fn get() -> &'static [tokio::runtime::Handle] {
        static PLANE: OnceLock<DataPlane> = OnceLock::new();
        &PLANE.get_or_init(DataPlane::start).workers
    }

    fn start() -> DataPlane {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_DATA_THREADS);
        let mut workers = Vec::new();
        for i in 0..threads {
            match DataPlane::worker(i) {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a proxy thread");
                    break;
                }
            }
        }
        DataPlane { workers }
    }

    fn worker(i: usize) -> std::io::Result<tokio::runtime::Handle> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name(format!("minik-proxy-{i}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(handle)
    }
}

/// Listens on `addr` on every data-plane thread (or, without one, on the current runtime),
/// each thread with its own socket, accepting into `pool`'s endpoints.
fn serve(addr: SocketAddr, pool: &Arc<Pool>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let workers = DataPlane::get();
    if workers.is_empty() {
        return Ok(vec![tokio::spawn(accept(listen(addr)?, pool.clone()))]);
    }
    let mut tasks = Vec::with_capacity(workers.len());
    for worker in workers {
        // The socket registers with the reactor of the runtime entered here.
        let listener = {
            let _runtime = worker.enter();
            listen(addr)
        };
        match listener {
            Ok(listener) => tasks.push(worker.spawn(accept(listener, pool.clone()))),
            Err(e) => {
                tasks.iter().for_each(JoinHandle::abort);
                return Err(e);
            }
        }
    }
    Ok(tasks)
}

struct Listening {
    service: String,
    pool: Arc<Pool>,
    /// One accept loop per data-plane thread.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        // Closing the listeners; connections they handed out run in their own tasks.
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

struct Run {
    services: InformerCache<Service>,
    endpoints: InformerCache<Endpoints>,
    node: String,
    node_address: IpAddr,
    options: ProxyOptions,
    plane: Plane,
}

/// Where the connections are carried, and what is done there so far.
enum Plane {
    /// User space: a listener per Service address.
    Listeners {
        listening: HashMap<SocketAddr, Listening>,
        /// Addresses that could not be bound, with the error last logged for each.
        failed: HashMap<SocketAddr, String>,
    },
    /// The kernel: the agent's nftables table.
    Kernel {
        nft: Arc<nft::Nft>,
        /// The ruleset the table holds, once one was applied.
        applied: Option<nft::Ruleset>,
        /// The error of the last attempt, if it failed (it is retried).
        failed: Option<String>,
        /// The addresses last warned about as not programmable (not IPv4).
        unsupported: Vec<SocketAddr>,
    },
}

impl Plane {
    fn needs_retry(&self) -> bool {
        match self {
            Plane::Listeners { failed, .. } => !failed.is_empty(),
            Plane::Kernel { failed, .. } => failed.is_some(),
        }
    }
}

impl Run {
    async fn run(
        mut self,
        mut services: minik_client::Subscription<Service>,
        mut endpoints: minik_client::Subscription<Endpoints>,
    ) {
        let mut retry = tokio::time::interval(RETRY_BIND);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = services.next() => if change.is_none() { return },
                change = endpoints.next() => if change.is_none() { return },
                _ = retry.tick() => if !self.plane.needs_retry() { continue },
            }
            let services = self.services.list();
            let refs: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
            let endpoints = &self.endpoints;
            let lookup = |key: &str| endpoints.get(key);
            let wanted = table::frontends(
                &refs,
                &lookup,
                &self.node,
                self.node_address,
                self.options.local_dns,
            );
            match &mut self.plane {
                Plane::Listeners { listening, failed } => listen_on(wanted, listening, failed),
                Plane::Kernel {
                    nft,
                    applied,
                    failed,
                    unsupported,
                } => {
                    let cluster_cidr = self.options.cluster_cidr;
                    program(wanted, cluster_cidr, nft, applied, failed, unsupported).await
                }
            }
        }
    }
}

/// Makes the table in the kernel translate `wanted`: renders it, and applies the ruleset if
/// it is not the one applied last, as an update of that one (which keeps the clients of
/// session affinity), or replacing the table if there is none or the update fails. A failure
/// is logged (once per distinct error) and left in `failed` for the next retry.
async fn program(
    wanted: table::Frontends,
    cluster_cidr: Option<Cidr>,
    nft: &Arc<nft::Nft>,
    applied: &mut Option<nft::Ruleset>,
    failed: &mut Option<String>,
    unsupported: &mut Vec<SocketAddr>,
) {
    let skipped = nft::unsupported(&wanted);
    if skipped != *unsupported {
        if !skipped.is_empty() {
            let list: Vec<String> = skipped.iter().map(SocketAddr::to_string).collect();
            tracing::warn!(addresses = %list.join(", "), "the nftables proxy mode is IPv4 only; not proxying these Service addresses");
        }
        *unsupported = skipped;
    }
    let ruleset = nft::render(nft.table(), &wanted, cluster_cidr);
    if applied.as_ref() == Some(&ruleset) {
        *failed = None;
        return;
    }
    let mut result = match applied.as_ref() {
        Some(previous) => apply(nft, ruleset.updating(previous)).await,
        None => apply(nft, ruleset.replacing()).await,
    };
    if let (Err(e), Some(_)) = (&result, applied.as_ref()) {
        // The table is not what was applied last (someone changed it): start afresh.
        tracing::debug!(table = nft.table(), error = %e, "cannot update the table; replacing it");
        result = apply(nft, ruleset.replacing()).await;
    }
    match result {
        Ok(()) => {
            tracing::info!(
                table = nft.table(),
                frontends = wanted.len(),
                "programmed the Service addresses"
            );
            *applied = Some(ruleset);
            *failed = None;
        }
        Err(e) => {
            let message = e.to_string();
            if failed.as_ref() != Some(&message) {
                tracing::warn!(table = nft.table(), error = %message, "cannot program the Service addresses; retrying");
            }
            // What the table holds is not known any more.
            *applied = None;
            *failed = Some(message);
        }
    }
}

/// Applies the transaction `text` to the table on a blocking thread.
async fn apply(nft: &Arc<nft::Nft>, text: String) -> Result<(), minik_net::nft::NftFailure> {
    let worker = nft.clone();
    tokio::task::spawn_blocking(move || worker.apply(&text))
        .await
        .unwrap_or_else(|e| {
            Err(minik_net::nft::NftFailure {
                command: "nft -f -".into(),
                message: format!("the thread running it failed: {e}"),
            })
        })
}

/// The ruleset the nftables mode gives node `node` (advertising `node_address`) for
/// `services` and their `endpoints`, with `options`: what its agent applies to its table
/// `ip minik-NODE`. For tests that apply it in network namespaces of their own.
pub fn nftables_ruleset(
    node: &str,
    node_address: IpAddr,
    services: &[&Service],
    endpoints: &[&Endpoints],
    options: &ProxyOptions,
) -> Ruleset {
    let lookup = |key: &str| {
        endpoints
            .iter()
            .find(|e| {
                let namespace = e.metadata.namespace.as_deref().unwrap_or_default();
                let name = e.metadata.name.as_deref().unwrap_or_default();
                format!("{namespace}/{name}") == key
            })
            .map(|e| Arc::new((*e).clone()))
    };
    let wanted = table::frontends(services, &lookup, node, node_address, options.local_dns);
    nft::render(&nft::table_name(node), &wanted, options.cluster_cidr)
}

/// Makes the listeners match the TCP frontends of `wanted`.
fn listen_on(
    wanted: table::Frontends,
    listening: &mut HashMap<SocketAddr, Listening>,
    failed: &mut HashMap<SocketAddr, String>,
) {
    let wanted: BTreeMap<SocketAddr, table::Frontend> = wanted
        .into_iter()
        .filter(|((protocol, _), _)| *protocol == table::Protocol::Tcp)
        .map(|((_, addr), frontend)| (addr, frontend))
        .collect();
    listening.retain(|addr, l| {
        let keep = wanted.get(addr).is_some_and(|f| f.service == l.service);
        if !keep {
            tracing::info!(address = %addr, service = %l.service, "no longer proxying");
        }
        keep
    });
    failed.retain(|addr, _| wanted.contains_key(addr));
    for (addr, frontend) in wanted {
        let backends: Vec<SocketAddr> = frontend.backends.iter().map(|b| b.addr).collect();
        if let Some(l) = listening.get(&addr) {
            l.pool.set(backends);
            continue;
        }
        let pool = Arc::new(Pool::default());
        pool.set(backends);
        match serve(addr, &pool) {
            Ok(tasks) => {
                tracing::info!(address = %addr, service = %frontend.service, port = %frontend.port, "proxying");
                failed.remove(&addr);
                listening.insert(
                    addr,
                    Listening {
                        service: frontend.service,
                        pool,
                        tasks,
                    },
                );
            }
            Err(e) => {
                let message = e.to_string();
                if failed.get(&addr) != Some(&message) {
                    tracing::warn!(address = %addr, service = %frontend.service, error = %message, "cannot listen for a Service; retrying");
                    failed.insert(addr, message);
                }
            }
        }
    }
}

/// A listening socket that shares its address with the other agents of this host.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept(listener: TcpListener, pool: Arc<Pool>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay(client, pool.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connects a client to the next endpoint that answers, then copies bytes both ways until
/// either side closes. Without a ready endpoint the client's connection is closed.
async fn relay(mut client: TcpStream, pool: Arc<Pool>) {
    let backends = pool.snapshot();
    if backends.is_empty() {
        return;
    }
    let start = pool.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%backend, error = %e, "endpoint refused; trying the next")
            }
            Err(_) => tracing::debug!(%backend, "endpoint did not answer; trying the next"),
        }
    }
    tracing::debug!("no endpoint answered; closing the connection");
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers each connection with its name, then echoes.
    async fn named_server(name: &'static str) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = s.write_all(name.as_bytes()).await;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    async fn hello(addr: SocketAddr) -> Option<String> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 1];
        let mut out = Vec::new();
        // Names are one letter.
        let n = s.read(&mut buf).await.ok()?;
        out.extend_from_slice(&buf[..n]);
        (n > 0).then(|| String::from_utf8_lossy(&out).into_owned())
    }

    #[tokio::test]
    async fn round_robin_skips_refusing_endpoints_and_keeps_open_connections() {
        let (a, _ta) = named_server("a").await;
        let (b, _tb) = named_server("b").await;
        // A port nobody listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let front = listener.local_addr().unwrap();
        let pool = Arc::new(Pool::default());
        pool.set(vec![a, dead, b]);
        let task = tokio::spawn(accept(listener, pool.clone()));

        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(hello(front).await.expect("an answer"));
        }
        // In turn a, (dead →) b, b, a, (dead →) b, b.
        assert_eq!(seen, ["a", "b", "b", "a", "b", "b"]);

        // An open connection survives a change of endpoints.
        let mut open = TcpStream::connect(front).await.unwrap();
        let mut first = [0u8; 1];
        open.read_exact(&mut first).await.unwrap();
        pool.set(vec![b]);
        open.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        open.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        for _ in 0..3 {
            assert_eq!(hello(front).await.as_deref(), Some("b"));
        }

        // No endpoint: the connection is closed at once.
        pool.set(vec![]);
        assert_eq!(hello(front).await, None);
        task.abort();
    }

    #[tokio::test]
    async fn listeners_share_an_address_with_siblings() {
        let first = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = listen(addr).expect("a second agent binds the same address");
        drop(first);
        let pool = Arc::new(Pool::default());
        let (b, _tb) = named_server("b").await;
        pool.set(vec![b]);
        let task = tokio::spawn(accept(second, pool));
        assert_eq!(hello(addr).await.as_deref(), Some("b"));
        task.abort();
    }

    #[tokio::test]
    async fn data_plane_serves_a_frontend_and_closing_it_keeps_open_connections() {
        let (a, _ta) = named_server("a").await;
        // Holds a free port while the data plane binds it too.
        let holder = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = holder.local_addr().unwrap();
        let pool = Arc::new(Pool::default());
        pool.set(vec![a]);
        let tasks = serve(addr, &pool).expect("every data-plane thread listens");
        drop(holder);
        assert_eq!(tasks.len(), DataPlane::get().len().max(1));
        // Enough connections that SO_REUSEPORT hands some to each thread.
        for _ in 0..16 {
            assert_eq!(hello(addr).await.as_deref(), Some("a"));
        }

        let mut open = TcpStream::connect(addr).await.unwrap();
        let mut first = [0u8; 1];
        open.read_exact(&mut first).await.unwrap();
        drop(Listening {
            service: "default/web".into(),
            pool,
            tasks,
        });
        // The accept loops end on their own threads; then the address refuses.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still listening on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        open.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        open.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
    }
}
