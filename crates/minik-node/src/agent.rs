//! The agent's plumbing: register the Node, heartbeat, watch the pods bound to this node and
//! drive each to its spec, level-triggered — every pass compares what the API says with what
//! the runtime runs, whatever event caused it.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use minik_api::k8s_openapi::api::coordination::v1::Lease;
use minik_api::k8s_openapi::api::core::v1::{Container, Node, Pod, PodStatus};
use minik_api::k8s_openapi::api::node::v1::RuntimeClass;
use minik_api::request::{DeleteOptions, Patch, PatchKind, WriteOptions};
use minik_api::resources::NODE_LEASE_NAMESPACE;
use minik_api::ApiError;
use minik_client::{
    resource_of, Api, Change, Informer, InformerCache, InformerConfig, ListParams, WorkQueue,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::events::Recorder;
use crate::images::{ImageManager, ERR_IMAGE_PULL};
use crate::plan::{self, AfterTearDown, Now, Phase, Plan, View};
use crate::pod::{self, Backoff, PodRecord};
use crate::probe::{self, Checker};
use crate::runtime::{ContainerSpec, FakeScript, Runtime, Runtimes};
use crate::saved::SavedPod;
use crate::spec::{self, Placement, PortBinding};

/// Settings of a node agent, validated.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub name: String,
    /// The address the node advertises (and its pods get as their IP).
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// Taints as Kubernetes JSON (`{"key":..,"value":..,"effect":..}`).
    pub taints: Vec<Value>,
    /// Capacity: cpu as a quantity string, memory in bytes.
    pub cpu: String,
    pub memory_bytes: u64,
    pub max_pods: u32,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub sync_period: Duration,
    pub backoff: Backoff,
    /// Name of the runtime, reported in nodeInfo.
    pub runtime_name: String,
    /// The runtime handlers the node offers (`status.runtimeHandlers`); filled from the
    /// runtimes by [`run`].
    pub runtime_handlers: Vec<String>,
    /// How many pods are worked on at once.
    pub workers: usize,
    /// The port of the agent's own endpoint (logs), on `address`; 0 picks a free one.
    pub port: u16,
    /// On shutdown, leave the pods' processes running (for an upgrade: the next agent adopts
    /// them) instead of stopping them.
    pub leave_running: bool,
    /// What the agent's endpoint requires from its callers (`Authorization: Bearer KEY`): the
    /// key the server got when the node joined. `None` leaves the endpoint open (tests only).
    pub endpoint_key: Option<minik_client::Secret>,
    /// How the Service proxy carries connections (user space, or the kernel's nftables).
    pub proxy_mode: crate::proxy::ProxyMode,
    /// HTTPS for the agent's endpoint, when the API server serves HTTPS (`None`: plain HTTP).
    pub endpoint_tls: Option<EndpointTls>,
    /// The pod network, for pods in network namespaces of their own (`None`: such pods have
    /// loopback only).
    pub pod_network: Option<crate::network::PodNetworkSettings>,
}

/// The certificate the agent's endpoint serves, and how it is renewed.
#[derive(Clone)]
pub struct EndpointTls {
    pub serving: Arc<minik_tls::ServingCert>,
    /// The API with the node's own credential, to ask for the next certificate.
    pub api: minik_client::HttpApi,
    /// The addresses the certificate names.
    pub addresses: Vec<std::net::IpAddr>,
}

impl std::fmt::Debug for EndpointTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointTls")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// How many plans one pass over a pod makes at most: every plan but the last stops something
/// for good (a replaced pod, a container whose probe gave up), so a few are plenty.
const MAX_PLANS_PER_PASS: usize = 4;

/// The state the workers share.
struct Agent {
    api: Arc<dyn Api>,
    /// The node's runtimes, by handler name (one container API over all of them).
    runtime: Arc<Runtimes>,
    /// The RuntimeClasses, to find the handler a pod's `runtimeClassName` names.
    runtime_classes: InformerCache<RuntimeClass>,
    config: AgentConfig,
    pods: InformerCache<Pod>,
    records: Mutex<HashMap<String, PodRecord>>,
    /// The host ports of each container of each pod, given once for the pod's life.
    ports: Mutex<HashMap<String, Vec<Vec<PortBinding>>>>,
    queue: WorkQueue<String>,
    checker: Arc<dyn Checker>,
    /// The probes of each running container instance.
    probes: Mutex<HashMap<String, probe::Probes>>,
    /// Services as pods see them (environment variables).
    services: crate::proxy::Services,
    events: Recorder,
    /// What was last written to each pod's state file, to write only changes.
    saved: Mutex<HashMap<String, SavedPod>>,
    /// The image manager, for runtimes that run images; `None` when containers are host
    /// programs (the process runtime).
    images: Option<Arc<ImageManager>>,
    /// The ConfigMaps and Secrets the pods read, followed.
    configs: crate::configs::Configs,
    /// The service account tokens of projected volumes.
    tokens: crate::tokens::Tokens,
    /// Whether the agent runs as root: it may mount (tmpfs volumes, the process runtime's
    /// private mount namespaces).
    root: bool,
    /// The node's pod network, when it has one.
    network: Option<Arc<crate::network::Network>>,
}

/// Runs the agent until `shutdown` resolves; then stops every pod's containers. With `images`,
/// every container's image is made present (pulled, as its pull policy says) before it starts;
/// the archives in `DATA_DIR/images/` are imported first.
pub async fn run(
    api: Arc<dyn Api>,
    runtime: Arc<Runtimes>,
    checker: Arc<dyn Checker>,
    images: Option<Arc<ImageManager>>,
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut config = config;
    config.runtime_handlers = runtime.names().into_iter().map(str::to_owned).collect();
    if let Some(images) = &images {
        import_images(images, &config.data_dir.join("images")).await;
        images.unpin_all_but(&runtime.containers().into_iter().collect());
    }
    let listener = tokio::net::TcpListener::bind((config.address.as_str(), config.port))
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {}:{} for the agent endpoint: {e}",
                    config.address, config.port
                ),
            )
        })?;
    let port = listener.local_addr()?.port();
    register(api.as_ref(), &config, port).await;
    let informer = Informer::<Pod>::spawn(
        api.clone(),
        InformerConfig {
            params: ListParams::fields(format!("spec.nodeName={}", config.name)),
            resync: config.sync_period,
            ..Default::default()
        },
    );
    let classes = Informer::<RuntimeClass>::spawn(api.clone(), InformerConfig::default());
    let nodes = config
        .pod_network
        .as_ref()
        .map(|_| Informer::<Node>::spawn(api.clone(), InformerConfig::default()));
    let network = match (&config.pod_network, &nodes) {
        (Some(settings), Some(nodes)) => Some(Arc::new(
            crate::network::Network::start(&config.name, nodes, &config.data_dir, settings.clone())
                .await
                .map_err(std::io::Error::other)?,
        )),
        _ => None,
    };
    let (events, write_events) = Recorder::new(api.clone(), &config.name);
    // What an earlier run of the agent left: its pods' records (the runtime adopted their
    // processes already).
    let mut records = HashMap::new();
    let mut ports = HashMap::new();
    let mut saved = HashMap::new();
    let known = runtime.containers();
    for pod in SavedPod::load_all(&config.data_dir) {
        let mut record = pod.record();
        pod::adopt_instances(&mut record, &known);
        records.insert(pod.key.clone(), record);
        ports.insert(pod.key.clone(), pod.port_bindings());
        saved.insert(pod.key.clone(), pod);
    }
    if !records.is_empty() {
        tracing::info!(pods = records.len(), "found the pods of an earlier run");
    }
    if let Some(network) = &network {
        // The pods of an earlier run keep their addresses; what pods that are gone left (an
        // agent killed with -9) is released.
        let live: std::collections::BTreeSet<String> = records
            .values()
            .map(|r: &PodRecord| r.uid.clone())
            .collect();
        network.recall(&live).await;
        network.reclaim(&live).await;
    }
    let local_dns = network
        .as_ref()
        .filter(|n| n.settings().cluster_dns.is_some())
        .map(|n| std::net::SocketAddr::new(n.gateway().into(), 53));
    let (services, _proxy) = crate::proxy::start(
        api.clone(),
        &config.name,
        &config.address,
        config.proxy_mode,
        informer.cache(),
        crate::proxy::ProxyOptions {
            cluster_cidr: network.as_ref().map(|n| n.settings().cluster_cidr),
            local_dns,
        },
    );
    // The node answers cluster DNS itself, on its bridge address, for its pods.
    let _dns = match (&network, local_dns) {
        (Some(network), Some(listen)) => {
            let (services, endpoints) = _proxy.informers();
            let settings = network.settings();
            Some(
                crate::dns::start(
                    services,
                    endpoints,
                    crate::dns::DnsSettings {
                        domain: settings.cluster_domain.clone(),
                        listen: vec![listen],
                        upstream: dns_upstream(settings.egress),
                    },
                )
                .await
                .map_err(std::io::Error::other)?,
            )
        }
        _ => None,
    };
    let queue: WorkQueue<String> = WorkQueue::new(
        config.backoff.initial.min(Duration::from_secs(1)),
        Duration::from_secs(30),
    );
    let wake = queue.clone();
    let configs = crate::configs::Configs::new(api.clone(), Arc::new(move |key| wake.add(key)));
    let agent = Arc::new(Agent {
        api: api.clone(),
        runtime,
        runtime_classes: classes.cache(),
        pods: informer.cache(),
        records: Mutex::new(records),
        ports: Mutex::new(ports),
        queue,
        checker,
        probes: Mutex::default(),
        services: services.clone(),
        events,
        saved: Mutex::new(saved),
        images,
        configs,
        tokens: crate::tokens::Tokens::default(),
        root: nix::unistd::geteuid().is_root(),
        network: network.clone(),
        config,
    });
    let mut tasks = Vec::new();
    let forward = PodForward {
        services,
        agent: agent.clone(),
    };
    let endpoint = crate::endpoint::router(agent.clone())
        .merge(crate::endpoint::forward_router(Arc::new(forward)));
    let endpoint = match agent.config.endpoint_key.clone() {
        Some(key) => crate::endpoint::only_with_key(endpoint, key.expose().to_owned()),
        None => endpoint,
    };
    match agent.config.endpoint_tls.clone() {
        Some(tls) => {
            let listener = crate::certs::TlsListener::new(listener, tls.serving.clone())
                .map_err(std::io::Error::other)?;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, endpoint).await {
                    tracing::error!(error = %e, "the agent endpoint failed");
                }
            }));
            tasks.push(tokio::spawn(crate::certs::keep_renewed(
                tls.api,
                agent.config.name.clone(),
                tls.addresses,
                tls.serving,
            )));
        }
        None => tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, endpoint).await {
                tracing::error!(error = %e, "the agent endpoint failed");
            }
        })),
    }
    tasks.push(tokio::spawn(heartbeat(agent.clone(), port)));
    tasks.push(tokio::spawn(feed(agent.clone(), informer.subscribe())));
    tasks.push(tokio::spawn(write_events));
    for _ in 0..agent.config.workers.max(1) {
        tasks.push(tokio::spawn(work(agent.clone())));
    }
    tasks.push(tokio::spawn(adopt(agent.clone())));
    if let (Some(network), Some(nodes)) = (&network, &nodes) {
        tasks.push(tokio::spawn(crate::network::Network::follow_peers(
            network.clone(),
            nodes.cache(),
            nodes.subscribe(),
        )));
    }
    tasks.push(tokio::spawn(crate::storage::clean_local_paths(
        api.clone(),
        agent.config.name.clone(),
        crate::storage::root(&agent.config.data_dir),
    )));
    if let Some(images) = agent.images.clone() {
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::images::GC_PERIOD);
            loop {
                tick.tick().await;
                let images = images.clone();
                let _ = tokio::task::spawn_blocking(move || images.collect_garbage()).await;
            }
        }));
    }
    shutdown.await;
    for task in &tasks {
        task.abort();
    }
    // Until each has ended, an aborted task still holds what it was given (the agent, the
    // pod network).
    for task in tasks {
        let _ = task.await;
    }
    drop(informer);
    drop(classes);
    drop(nodes);
    if agent.config.leave_running {
        tracing::info!("leaving the pods running for the next agent to adopt");
        // Stop the probes; the processes, their state and their records stay.
        agent.probes().clear();
    } else {
        agent.stop_everything().await;
        drop(agent);
        match network.map(Arc::try_unwrap) {
            Some(Ok(network)) => network.stop().await,
            Some(Err(_)) => tracing::warn!("the pod network is still in use; it is left in place"),
            None => {}
        }
    }
    Ok(())
}

/// Where the node's cluster DNS sends names outside the cluster: the host's resolvers when
/// pods may reach beyond the cluster, nowhere (REFUSED) when they may not — a pod without
/// egress does not reach the outside through DNS either.
fn dns_upstream(egress: bool) -> crate::dns::Upstream {
    if !egress {
        return crate::dns::Upstream::none();
    }
    let host = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
        .or_else(|_| std::fs::read_to_string("/etc/resolv.conf"))
        .unwrap_or_default();
    crate::dns::Upstream::new(
        crate::dns::Upstream::parse_resolv_conf(&host),
        crate::dns::DEFAULT_UPSTREAM_TIMEOUT,
    )
}

/// Imports the image archives dropped in `dir` (k3s's `agent/images`), so that air-gapped nodes
/// have their images before the first pod starts.
async fn import_images(images: &ImageManager, dir: &std::path::Path) {
    for (file, result) in images.service().import_dir(dir).await {
        match result {
            Ok(records) => {
                let names: Vec<String> = records.iter().map(|r| r.display_name()).collect();
                tracing::info!(file = %file.display(), images = ?names, "imported image archive");
            }
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot import image archive")
            }
        }
    }
}

fn node_object(config: &AgentConfig, port: u16) -> Value {
    let mut labels = config.labels.clone();
    labels.insert(
        minik_api::wellknown::LABEL_HOSTNAME.into(),
        config.name.clone(),
    );
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert(
        "kubernetes.io/arch".into(),
        minik_api::wellknown::go_arch().into(),
    );
    let resources = json!({
        "cpu": config.cpu,
        "memory": format!("{}Ki", config.memory_bytes / 1024),
        "pods": config.max_pods.to_string(),
    });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.name,
            "labels": labels,
            "annotations": {crate::storage::LOCAL_PATH_ROOT: crate::storage::root(&config.data_dir).display().to_string()},
        },
        "spec": {"taints": if config.taints.is_empty() { Value::Null } else { json!(config.taints) }},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [ready_condition(config.pod_network.is_none())],
            "addresses": [
                {"type": "InternalIP", "address": config.address},
                {"type": "Hostname", "address": config.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "runtimeHandlers": config.runtime_handlers.iter().map(|name| json!({
                "name": name,
                "features": {"recursiveReadOnlyMounts": false, "userNamespaces": false},
            })).collect::<Vec<_>>(),
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": kernel_version(),
                "osImage": std::env::consts::OS,
                "containerRuntimeVersion": format!("{}://minik-{}", config.runtime_name, env!("CARGO_PKG_VERSION")),
                "kubeletVersion": format!("v1.33.0-minik.{}", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "",
                "operatingSystem": std::env::consts::OS,
                "architecture": minik_api::wellknown::go_arch(),
            },
        },
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    minik_api::time::rfc3339(minik_api::time::from_system(SystemTime::now()))
}

/// The node's Ready condition. A node with a pod network registers not ready, as the kubelet
/// does until its network plugin is up; the first heartbeat after the network is built
/// reports it ready.
fn ready_condition(ready: bool) -> Value {
    let now = now_rfc3339();
    if !ready {
        return json!({
            "type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:the pod network is not set up yet",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        });
    }
    json!({
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "minik node agent is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
}

/// Registers the Node, retrying until the server answers. A Node that exists already (the
/// agent restarted) keeps what administrators set (unschedulable, their labels and taints) and
/// gets fresh status.
async fn register(api: &dyn Api, config: &AgentConfig, port: u16) {
    let nodes = resource_of::<Node>();
    let object = node_object(config, port);
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            match api
                .create(nodes, None, object.clone(), WriteOptions::default())
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_already_exists() => {
                    // Where its local volumes go may have moved with its data dir.
                    let annotations = Patch {
                        kind: PatchKind::Merge,
                        body: json!({"metadata": {"annotations": object["metadata"]["annotations"]}}),
                    };
                    api.patch(
                        nodes,
                        None,
                        &config.name,
                        annotations,
                        false,
                        WriteOptions::default(),
                    )
                    .await?;
                    let status = Patch {
                        kind: PatchKind::Merge,
                        body: json!({"status": object["status"]}),
                    };
                    api.patch(
                        nodes,
                        None,
                        &config.name,
                        status,
                        true,
                        WriteOptions::default(),
                    )
                    .await
                    .map(|_| ())
                }
                Err(e) => Err(e),
            }
        };
        match attempt.await {
            Ok(()) => {
                tracing::info!(node = %config.name, "registered");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot register the node yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How long a node's Lease is valid without renewal (the kubelet's `nodeLeaseDurationSeconds`).
const LEASE_DURATION_SECONDS: i64 = 40;
/// How often the node's status is written when nothing in it changed (the kubelet's
/// `nodeStatusReportFrequency`); the Lease is the heartbeat in between.
const STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);

/// The agent's heartbeat, as the kubelet's: every period it renews the node's Lease, and writes
/// the node's Ready condition when the stored one says otherwise (the node controller marked it
/// Unknown, say) or has not been written for [`STATUS_REPORT_FREQUENCY`]. Registers again if
/// the Node disappeared.
async fn heartbeat(agent: Arc<Agent>, port: u16) {
    let nodes = resource_of::<Node>();
    let mut tick = tokio::time::interval(agent.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: Option<Instant> = None;
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(agent.api.as_ref(), &agent.config.name).await {
            tracing::warn!(error = %e, "cannot renew the node's lease");
        }
        let node: Node = match minik_client::ApiExt::get_as(
            agent.api.as_ref(),
            None,
            &agent.config.name,
        )
        .await
        {
            Ok(node) => node,
            Err(e) if e.is_not_found() => {
                tracing::warn!("the Node object is gone; registering again");
                register(agent.api.as_ref(), &agent.config, port).await;
                reported = Some(Instant::now());
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        };
        let stored = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let ready_stored = stored.is_some_and(|c| c.status == "True");
        let due = reported.is_none_or(|at| at.elapsed() >= STATUS_REPORT_FREQUENCY);
        let images = agent.images.as_ref().map(|m| m.node_images());
        let images_stored = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .map(|i| serde_json::to_value(i).unwrap_or_default())
            .unwrap_or(Value::Array(Vec::new()));
        let images_changed = images.as_ref().is_some_and(|i| i != &images_stored);
        if ready_stored && !due && !images_changed {
            continue;
        }
        let now = now_rfc3339();
        // Ready since the stored transition if it was Ready already; since now otherwise.
        let transition = stored
            .filter(|_| ready_stored)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| minik_api::time::rfc3339(t.0))
            .unwrap_or_else(|| now.clone());
        let mut body = json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "minik node agent is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": transition,
        }]}});
        if let Some(images) = images {
            body["status"]["images"] = images;
        }
        let patch = Patch {
            kind: PatchKind::Merge,
            body,
        };
        match agent
            .api
            .patch(
                nodes,
                None,
                &agent.config.name,
                patch,
                true,
                WriteOptions::default(),
            )
            .await
        {
            Ok(_) => reported = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot report the node's status"),
        }
    }
}

/// Renews the node's Lease (`kube-node-lease/NAME`), creating it the first time.
async fn renew_lease(api: &dyn Api, name: &str) -> Result<(), ApiError> {
    let leases = resource_of::<Lease>();
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now_micro(),
    });
    let patch = Patch {
        kind: PatchKind::Merge,
        body: json!({ "spec": spec }),
    };
    match api
        .patch(
            leases,
            Some(NODE_LEASE_NAMESPACE),
            name,
            patch,
            false,
            WriteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
                "spec": spec,
            });
            match api
                .create(
                    leases,
                    Some(NODE_LEASE_NAMESPACE),
                    lease,
                    WriteOptions::default(),
                )
                .await
            {
                // Another renewal made it meanwhile: renewed either way.
                Ok(_) => Ok(()),
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Now as a Kubernetes `MicroTime`: RFC 3339 with microseconds.
fn now_micro() -> String {
    minik_api::time::rfc3339_micro(minik_api::time::from_system(SystemTime::now()))
}

/// Once the pods bound to this node are known: looks again at every pod an earlier agent ran
/// (a pod deleted meanwhile is stopped then), and stops what runs for no pod at all.
async fn adopt(agent: Arc<Agent>) {
    agent.pods.wait_synced().await;
    let known: Vec<String> = agent.records().keys().cloned().collect();
    for key in known {
        agent.queue.add(key);
    }
    agent.stop_orphans().await;
}

/// Turns informer changes into work: every change names a pod to look at again.
async fn feed(agent: Arc<Agent>, mut changes: minik_client::Subscription<Pod>) {
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied(pod) => {
                let key = minik_client::cache_key(&pod.metadata);
                agent.configs.track(&key, &pod);
                agent.queue.add(key)
            }
            Change::Deleted(pod) => agent.queue.add(minik_client::cache_key(&pod.metadata)),
            Change::Resync => {
                for pod in agent.pods.list() {
                    agent.queue.add(minik_client::cache_key(&pod.metadata));
                }
                let known: Vec<String> = agent.records().keys().cloned().collect();
                for key in known {
                    agent.queue.add(key);
                }
                if agent.pods.is_synced() {
                    agent.stop_orphans().await;
                }
            }
        }
    }
}

async fn work(agent: Arc<Agent>) {
    loop {
        let key = agent.queue.next().await;
        match agent.sync(&key).await {
            Ok(requeue) => {
                agent.queue.forget(&key);
                if let Some(after) = requeue {
                    agent.queue.add_after(key.clone(), after);
                }
            }
            Err(e) => {
                if !e.is_conflict() {
                    tracing::warn!(pod = %key, error = %e, "sync failed; retrying");
                }
                agent.queue.retry(key.clone());
            }
        }
        agent.queue.done(&key);
    }
}

/// A free TCP port on this host, for a container port without a hostPort.
fn free_port(address: &str) -> Option<u16> {
    TcpListener::bind((address, 0))
        .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

impl Agent {
    fn records(&self) -> MutexGuard<'_, HashMap<String, PodRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn probes(&self) -> MutexGuard<'_, HashMap<String, probe::Probes>> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_probes(&self, instance: &str) {
        // Dropping them stops them.
        self.probes().remove(instance);
    }

    fn log_path(&self, pod: &Pod, container: &str, attempt: &str) -> PathBuf {
        let meta = &pod.metadata;
        self.config
            .data_dir
            .join("pods")
            .join(format!(
                "{}_{}_{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default()
            ))
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// The host ports of each container of a pod, given once and kept for the pod's life.
    fn ports_of(&self, key: &str, pod: &Pod) -> Vec<Vec<PortBinding>> {
        let own_network = self.has_own_network(pod);
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        ports
            .entry(key.to_owned())
            .or_insert_with(|| {
                let containers = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.as_slice())
                    .unwrap_or_default();
                containers
                    .iter()
                    .map(|c| {
                        c.ports
                            .iter()
                            .flatten()
                            .map(|p| {
                                let host = if own_network {
                                    // Reached at its own address, on the port itself.
                                    u16::try_from(p.container_port).ok()
                                } else {
                                    p.host_port
                                        .and_then(|h| u16::try_from(h).ok())
                                        .or_else(|| free_port(&self.config.address))
                                }
                                .unwrap_or(0);
                                PortBinding {
                                    name: p.name.clone(),
                                    container_port: p.container_port,
                                    host_port: host,
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .clone()
    }

    /// One pass over one pod: plans, applies the plan, and plans again after anything was
    /// stopped (see `plan.rs`), until the plan is to run the pod or to leave it. Returns when
    /// to look again.
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ApiError> {
        // Every plan but the last stops something for good, so a pass takes a few at most.
        for _ in 0..MAX_PLANS_PER_PASS {
            let pod = self.pods.get(key);
            let record = self.records().get(key).cloned();
            let mut view = self.view(pod.as_deref(), record.as_ref(), true);
            if let (Some(pod), Some(record)) = (pod.as_deref(), record.as_ref()) {
                view.evict = self.over_size_limit(key, pod, record).await;
            }
            let now = Now {
                instant: Instant::now(),
                wall: SystemTime::now(),
            };
            let plan = plan::plan(
                pod.as_deref(),
                record.as_ref(),
                &view,
                now,
                &self.config.backoff,
            );
            match (plan, pod) {
                (Plan::Idle, _) => return Ok(None),
                (Plan::TearDown(t), pod) => {
                    if let Some(pod) = &pod {
                        self.send(pod, &t.events);
                    }
                    self.tear_down(key, t.grace, true).await;
                    if let AfterTearDown::Delete {
                        namespace,
                        name,
                        uid,
                    } = t.then
                    {
                        return self.delete(namespace.as_deref(), &name, uid).await;
                    }
                }
                (Plan::Kill { kills, events }, pod) => {
                    if let Some(pod) = &pod {
                        self.send(pod, &events);
                    }
                    for kill in kills {
                        tracing::info!(pod = %key, container = %kill.container, probe = kill.probe.name(), reason = %kill.message, "restarting a container whose probe failed");
                        self.drop_probes(&kill.instance);
                        self.runtime.stop(&kill.instance, kill.grace).await;
                    }
                }
                (Plan::Run(run), Some(pod)) => return self.run_pod(key, &pod, run, now).await,
                // A plan to run comes only with a pod.
                (Plan::Run(_), None) => return Ok(None),
            }
        }
        Ok(Some(Duration::ZERO))
    }

    /// What the runtime and the probes say now about the instances `record` names (with
    /// `take_news`, the probes' new failures and restart requests are taken out, to be acted
    /// on once by the plan made from this view). For a pod without a record, the instances the
    /// runtime has of it (an earlier agent may have left some) are what the view is about.
    fn view(&self, pod: Option<&Pod>, record: Option<&PodRecord>, take_news: bool) -> View {
        let mut view = View::default();
        let instances: Vec<String> = match (record, pod) {
            (Some(record), _) => record
                .containers
                .values()
                .filter_map(|c| c.instance.clone())
                .collect(),
            (None, Some(pod)) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                view.found = self
                    .runtime
                    .containers()
                    .into_iter()
                    .filter(|id| id.split('/').next() == Some(uid))
                    .collect();
                view.found.clone()
            }
            (None, None) => Vec::new(),
        };
        let probes = self.probes();
        for instance in instances {
            view.states
                .insert(instance.clone(), self.runtime.state(&instance));
            if let Some(p) = probes.get(&instance) {
                let verdict = if take_news {
                    p.verdict.take()
                } else {
                    p.verdict.get()
                };
                view.probes.insert(instance, verdict);
            }
        }
        view
    }

    /// Sends the events of a plan, about `pod`.
    fn send(&self, pod: &Pod, events: &[plan::Event]) {
        for e in events {
            self.events
                .pod(pod, e.container.as_deref(), e.kind, e.reason, &e.message);
        }
    }

    /// Removes a pod whose containers all stopped from the API (only the pod with `uid`).
    async fn delete(
        &self,
        namespace: Option<&str>,
        name: &str,
        uid: Option<String>,
    ) -> Result<Option<Duration>, ApiError> {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: uid,
            ..Default::default()
        };
        match self
            .api
            .delete(resource_of::<Pod>(), namespace, name, opts)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a plan to run the pod: starts what is due, keeps the probes in step with the
    /// containers' phases, and reports the status of what then runs. Returns when to look
    /// again.
    async fn run_pod(
        &self,
        key: &str,
        pod: &Pod,
        run: plan::Run,
        now: Now,
    ) -> Result<Option<Duration>, ApiError> {
        let plan::Run {
            mut record,
            containers: phases,
            events,
            stops,
            requeue_after: mut requeue,
        } = run;
        for (instance, grace) in stops {
            tracing::info!(pod = %key, container = %instance, "stopping a container of a failed pod");
            self.drop_probes(&instance);
            self.runtime.stop(&instance, grace).await;
        }
        // Kept at once: what the runtime said is not lost if publishing the ports fails.
        self.records().insert(key.to_owned(), record.clone());
        self.send(pod, &events);
        let ports = self.ports_of(key, pod);
        if !self.has_own_network(pod) {
            crate::proxy::publish_host_ports(self.api.as_ref(), pod, &ports).await?;
        }
        let spec = pod.spec.as_ref();
        let init_containers = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default();
        let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
        // Init containers have no ports of their own on the node; app containers have theirs
        // by index.
        let all = init_containers
            .iter()
            .map(|c| (c, None))
            .chain(containers.iter().enumerate().map(|(i, c)| (c, Some(i))));
        for (container, index) in all {
            let Some((_, phase)) = phases.iter().find(|(name, _)| *name == container.name) else {
                continue;
            };
            let binds_of = |index: Option<usize>| {
                index
                    .and_then(|i| ports.get(i).cloned())
                    .unwrap_or_default()
            };
            let instance = record
                .containers
                .get(&container.name)
                .and_then(|c| c.instance.clone());
            match (phase, instance) {
                (Phase::Starting, _) => {
                    let binds = binds_of(index);
                    if let Err(delay) = self
                        .start(key, pod, container, binds, &mut record, now.instant)
                        .await
                    {
                        requeue = Some(requeue.map_or(delay, |r| r.min(delay)));
                    }
                }
                // A running instance adopted from an earlier agent gets its probes.
                (Phase::Running, Some(instance)) if !self.probes().contains_key(&instance) => {
                    let binds = binds_of(index);
                    let placement = self.placement(pod, binds.clone(), Vec::new());
                    let env =
                        spec::environment(pod, container, &placement, &spec::Sources::default())
                            .map(|e| e.vars)
                            .unwrap_or_default();
                    let runs_images = self.handler_of(pod).is_ok_and(|h| h.runs_images);
                    let target = self.probe_target(
                        runs_images,
                        &instance,
                        binds,
                        env,
                        container.working_dir.as_ref().map(PathBuf::from),
                        FakeScript::of(pod, &container.name),
                    );
                    self.spawn_probes(key, container, target, instance);
                }
                // The probes of an instance that ended are of no more use.
                (Phase::Waiting(_) | Phase::Exited, Some(instance)) => self.drop_probes(&instance),
                _ => {}
            }
        }
        self.refresh_volumes(key, pod, &record).await;
        let view = self.view(Some(pod), Some(&record), false);
        let pod_ip = self.pod_ip(pod);
        let status = pod::status(
            pod,
            &record,
            &view,
            SystemTime::now(),
            &self.config.address,
            pod_ip.as_deref(),
        );
        self.save(key, &record, &ports);
        self.records().insert(key.to_owned(), record);
        self.write_status(pod, &status).await?;
        Ok(Some(requeue.map_or(self.config.sync_period, |r| {
            r.min(self.config.sync_period)
        })))
    }

    /// Writes the pod's status when it differs from the stored one.
    async fn write_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        let new_status =
            serde_json::to_value(status).map_err(|e| ApiError::Internal(e.to_string()))?;
        let old_status = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        if new_status == old_status {
            return Ok(());
        }
        let patch = Patch {
            kind: PatchKind::Merge,
            body: json!({"status": new_status}),
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.api
            .patch(
                resource_of::<Pod>(),
                pod.metadata.namespace.as_deref(),
                name,
                patch,
                true,
                WriteOptions::default(),
            )
            .await
            .map(|_| ())
    }

    /// Where a container of `pod` runs on this node, as its environment sees it.
    fn placement(
        &self,
        pod: &Pod,
        ports: Vec<PortBinding>,
        services: Vec<(String, String)>,
    ) -> Placement {
        Placement {
            node_name: self.config.name.clone(),
            host_ip: self.config.address.clone(),
            pod_ip: self.pod_ip(pod).unwrap_or_default(),
            ports,
            services,
        }
    }

    /// The pod's address: the node's for a pod on the host's network; a pod that is to have
    /// an address of its own has none until it is connected (never the node's: its
    /// Endpoints would send traffic to the node).
    fn pod_ip(&self, pod: &Pod) -> Option<String> {
        if !self.has_own_network(pod) {
            return Some(self.config.address.clone());
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.network
            .as_ref()
            .and_then(|n| n.address_of(uid))
            .map(|ip| ip.to_string())
    }

    /// The pod's `/etc/resolv.conf` for its `dnsPolicy` (the kubelet's rules; the cluster DNS
    /// when the node has a pod network) and its fully qualified name
    /// (`hostname.subdomain.ns.svc.DOMAIN`, when it has a subdomain). What the kubelet warns
    /// about is sent as Warning events; what cannot be written is the error.
    fn pod_dns(&self, pod: &Pod) -> Result<(String, Option<String>), String> {
        let settings = self.network.as_ref().map(|n| n.settings());
        let cluster = settings.and_then(|s| {
            s.cluster_dns.map(|ip| crate::resolv::ClusterDnsConfig {
                nameserver: std::net::IpAddr::V4(ip),
                domain: s.cluster_domain.clone(),
            })
        });
        // Where systemd-resolved runs, /etc/resolv.conf names its stub on loopback, which a
        // pod's own network namespace cannot reach: the upstream servers are in this file (as
        // kubeadm points the kubelet at it).
        let host = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
            .or_else(|_| std::fs::read_to_string("/etc/resolv.conf"))
            .unwrap_or_default();
        let made = crate::resolv::resolv_conf(pod, cluster.as_ref(), &host)?;
        for warning in made.warnings {
            self.send(
                pod,
                &[plan::Event {
                    container: None,
                    kind: crate::events::Kind::Warning,
                    reason: warning.reason,
                    message: warning.message,
                }],
            );
        }
        let spec = pod.spec.as_ref();
        let fqdn = match (spec.and_then(|s| s.subdomain.as_deref()), settings) {
            (Some(subdomain), Some(settings)) if !subdomain.is_empty() => {
                let hostname = crate::images::pod_sandbox(pod).hostname;
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                Some(format!(
                    "{hostname}.{subdomain}.{ns}.svc.{}",
                    settings.cluster_domain
                ))
            }
            _ => None,
        };
        Ok((made.text, fqdn))
    }

    /// Whether `pod` is to get an address of its own on the pod network: the node has one,
    /// the pod is not `hostNetwork`, and its runtime gives pods network namespaces.
    fn has_own_network(&self, pod: &Pod) -> bool {
        self.network.is_some()
            && !pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false)
            && self
                .handler_of(pod)
                .is_ok_and(|h| h.runtime.pod_network_namespaces())
    }

    /// Makes the pod's sandbox and connects it to the pod network, unless both are done:
    /// before any container of the pod starts (the kubelet's `RunPodSandbox` and CNI ADD).
    /// Answers the pod's address, `None` for a pod without a network of its own.
    async fn connect_pod(
        &self,
        pod: &Pod,
        handler: &crate::runtime::Handler,
    ) -> Result<Option<std::net::Ipv4Addr>, String> {
        let Some(network) = self.network.as_ref().filter(|_| self.has_own_network(pod)) else {
            return Ok(None);
        };
        let sandbox = crate::images::pod_sandbox(pod);
        let uid = sandbox.uid.clone();
        let runtime = handler.runtime.clone();
        let made = tokio::task::spawn_blocking(move || runtime.run_pod_sandbox(&sandbox))
            .await
            .map_err(|e| format!("making the pod sandbox failed: {e}"))??;
        let Some((netns, fresh)) = made else {
            return Ok(None);
        };
        let known = network.address_of(&uid).is_some();
        let address = network
            .attach(&uid, &netns, fresh)
            .await
            .map_err(|e| format!("plugin type=\"minik-net\" failed (add): {e}"))?;
        if fresh || !known {
            network.publish_host_ports(&self.pods.list()).await;
        }
        Ok(Some(address))
    }

    /// Starts one container of the pod, recording the attempt in `record`; when it cannot
    /// start, records why and returns the back-off before the next try.
    async fn start(
        &self,
        key: &str,
        pod: &Pod,
        container: &Container,
        binds: Vec<PortBinding>,
        record: &mut PodRecord,
        now: Instant,
    ) -> Result<(), Duration> {
        let name = container.name.as_str();
        let handler = match self.handler_of(pod) {
            Ok(handler) => handler,
            Err(message) => return Err(self.sandbox_failed(pod, record, name, &message, now)),
        };
        // The pod's sandbox and its place on the pod network come first, as the kubelet's.
        let pod_ip = match self.connect_pod(pod, handler).await {
            Ok(ip) => ip,
            Err(message) => return Err(self.sandbox_failed(pod, record, name, &message, now)),
        };
        // What the pod reads from the API, then its volumes (before any image is pulled, as the
        // kubelet mounts them first).
        let sources = self.sources(key, pod).await;
        let pod_dir = self.pod_dir(key, &record.uid);
        let volumes = match crate::volumes::set_up(&pod_dir, pod, &sources, self.root) {
            Ok(dirs) => dirs,
            Err(e) => {
                let message = e.to_string();
                self.send(
                    pod,
                    &[plan::Event {
                        container: None,
                        kind: crate::events::Kind::Warning,
                        reason: "FailedMount",
                        message: message.clone(),
                    }],
                );
                return Err(pod::wait_for_config(
                    record,
                    name,
                    "ContainerCreating",
                    &message,
                    now,
                    &self.config.backoff,
                ));
            }
        };
        let image = match self.images.as_ref().filter(|_| handler.runs_images) {
            Some(images) => {
                let emit = |event: plan::Event| self.send(pod, &[event]);
                let (pull_secrets, warnings) = crate::images::pull_secrets(pod, &sources);
                self.send(pod, &warnings);
                match images.ensure(container, &pull_secrets, &emit).await {
                    Ok(ready) => Some(ready),
                    Err(failure) => {
                        self.send(pod, &[plan::start_failed(name, failure.reason)]);
                        let delay = pod::start_failed(
                            record,
                            name,
                            failure.reason,
                            &failure.message,
                            now,
                            &self.config.backoff,
                        );
                        // Look again soon, to report the back-off (`ImagePullBackOff`).
                        return Err(if failure.reason == ERR_IMAGE_PULL {
                            delay.min(Duration::from_secs(1))
                        } else {
                            delay
                        });
                    }
                }
            }
            None => None,
        };
        let placement = self.placement(pod, binds.clone(), self.services.env_for(pod).await);
        // The pod's /etc/resolv.conf and fully qualified name, for runtimes that write them.
        let dns = if handler.runs_images {
            match self.pod_dns(pod) {
                Ok(dns) => Some(dns),
                Err(message) => {
                    self.send(pod, &[plan::start_failed(name, &message)]);
                    return Err(pod::wait_for_config(
                        record,
                        name,
                        "CreateContainerConfigError",
                        &message,
                        now,
                        &self.config.backoff,
                    ));
                }
            }
        } else {
            None
        };
        let previous = record.containers.get(name).and_then(|c| c.instance.clone());
        let id = pod::begin_start(record, name, now);
        if let Some(c) = record.containers.get_mut(name) {
            c.image_id = image.as_ref().map(|i| i.image_id.clone());
            c.image = image.as_ref().map(|i| i.image.clone());
        }
        if let Some(previous) = previous {
            // The run that ended is in the status as lastState; the runtime can forget it.
            self.drop_probes(&previous);
            self.forget(&previous);
        }
        // What the container's spec cannot give: the kubelet's CreateContainerConfigError, or,
        // for what only the runtime finds (an image with no command), CreateContainerError.
        let config_error = |e: String| ("CreateContainerConfigError", e);
        let spec = spec::environment(pod, container, &placement, &sources)
            .map(|e| {
                for message in e.skipped {
                    self.send(
                        pod,
                        &[plan::Event {
                            container: Some(name.to_owned()),
                            kind: crate::events::Kind::Warning,
                            reason: "InvalidEnvironmentVariableNames",
                            message,
                        }],
                    );
                }
                e.vars
            })
            .map_err(config_error)
            .and_then(|env| {
                let mounts =
                    crate::volumes::mounts(container, &volumes, &env).map_err(config_error)?;
                let images = self.images.as_ref().filter(|_| handler.runs_images);
                let (program, args, env, image_spec) = match (images, &image) {
                    (Some(images), Some(ready)) => {
                        let (layers, config) =
                            images.layers_and_config(ready).map_err(config_error)?;
                        let env = crate::runtime::oci::command::environment(&config, &env);
                        let mut argv =
                            crate::runtime::oci::command::command_line(container, &config, &env)
                                .map_err(|e| ("CreateContainerError", e))?
                                .into_iter();
                        let program = argv.next().unwrap_or_default();
                        let mut image_spec =
                            crate::images::image_spec(pod, container, layers, config)
                                .map_err(config_error)?;
                        image_spec.pod.pod_ip = pod_ip.map(std::net::IpAddr::V4);
                        if let Some((resolv, fqdn)) = &dns {
                            image_spec.pod.resolv_conf = Some(resolv.clone());
                            image_spec.pod.fqdn = fqdn.clone();
                        }
                        (program, argv.collect(), env, Some(image_spec))
                    }
                    _ => {
                        let (program, args) =
                            spec::command_line(container, &env).map_err(config_error)?;
                        // A host process sees the node's PATH and HOME unless the pod sets them.
                        let mut env = env;
                        for name in ["PATH", "HOME"] {
                            if !env.iter().any(|(k, _)| k == name) {
                                if let Ok(value) = std::env::var(name) {
                                    env.insert(0, (name.to_owned(), value));
                                }
                            }
                        }
                        (program, args, env, None)
                    }
                };
                let mut env = env;
                if container.tty == Some(true) {
                    with_terminal_type(&mut env);
                }
                probe_problem(container, &self.config.address, &binds, &env)
                    .map_err(config_error)?;
                Ok(ContainerSpec {
                    log_path: self.log_path(pod, name, attempt_of(&id)),
                    id: id.clone(),
                    program,
                    args,
                    env,
                    working_dir: container.working_dir.as_ref().map(PathBuf::from),
                    memory_limit: memory_limit(container).map_err(config_error)?,
                    host_ports: declared_host_ports(container, &self.config.address),
                    fake: FakeScript::of(pod, name),
                    image: image_spec,
                    handler: Some(handler.name.clone()),
                    mounts,
                    stdio: crate::runtime::Stdio::of(container),
                })
            });
        let started = match spec {
            Ok(spec) => match self.runtime.start(&spec) {
                Ok(info) => {
                    if let (Some(images), Some(image)) = (&self.images, &image) {
                        images.pin(&spec.id, &image.record);
                    }
                    Ok((spec, info))
                }
                Err(e) => Err((e.reason(), e.to_string())),
            },
            Err(failure) => Err(failure),
        };
        match started {
            Ok((spec, info)) => {
                self.send(
                    pod,
                    &plan::started(container, &spec.program, &info, image.is_some()),
                );
                let target = self.probe_target(
                    handler.runs_images,
                    &id,
                    binds,
                    spec.env,
                    spec.working_dir,
                    spec.fake,
                );
                self.spawn_probes(key, container, target, id);
                Ok(())
            }
            Err((reason, message)) if reason == "CreateContainerConfigError" => {
                self.send(pod, &[plan::start_failed(name, &message)]);
                Err(pod::wait_for_config(
                    record,
                    name,
                    reason,
                    &message,
                    now,
                    &self.config.backoff,
                ))
            }
            Err((reason, message)) => {
                self.send(pod, &[plan::start_failed(name, &message)]);
                Err(pod::start_failed(
                    record,
                    name,
                    reason,
                    &message,
                    now,
                    &self.config.backoff,
                ))
            }
        }
    }

    /// A pod sandbox that cannot be made (no runtime for the pod, no place on the pod
    /// network): the kubelet's `FailedCreatePodSandBox` event, and the container waits in
    /// `ContainerCreating`; answers the back-off before the next try.
    fn sandbox_failed(
        &self,
        pod: &Pod,
        record: &mut PodRecord,
        container: &str,
        message: &str,
        now: Instant,
    ) -> Duration {
        self.send(
            pod,
            &[plan::Event {
                container: None,
                kind: crate::events::Kind::Warning,
                reason: "FailedCreatePodSandBox",
                message: format!("Failed to create pod sandbox: {message}"),
            }],
        );
        pod::start_failed(
            record,
            container,
            "ContainerCreating",
            message,
            now,
            &self.config.backoff,
        )
    }

    /// Where the probes of a container's instance reach it: a host process on the node's
    /// address and its host ports; a container of its own (a runtime that runs images) from
    /// the inside — exec in it, connections from its pod's network namespace to its ports.
    fn probe_target(
        &self,
        inside: bool,
        instance: &str,
        ports: Vec<PortBinding>,
        env: Vec<(String, String)>,
        working_dir: Option<PathBuf>,
        fake: FakeScript,
    ) -> probe::Target {
        if !inside {
            return probe::Target {
                host: self.config.address.clone(),
                ports,
                env,
                working_dir,
                fake,
                inside: None,
            };
        }
        let netns = self.runtime.network_namespace(instance);
        probe::Target {
            // In the pod's own network namespace the container is on its loopback; a
            // host-network pod's is the node's.
            host: if netns.is_some() {
                "127.0.0.1".into()
            } else {
                self.config.address.clone()
            },
            ports: Vec::new(),
            env,
            working_dir,
            fake,
            inside: Some(probe::Inside {
                runtime: self.runtime.clone(),
                instance: instance.to_owned(),
                netns,
            }),
        }
    }

    /// Runs the probes of a container's instance; each change of their verdict brings the pod
    /// back to the queue.
    fn spawn_probes(
        &self,
        key: &str,
        container: &Container,
        target: probe::Target,
        instance: String,
    ) {
        let queue = self.queue.clone();
        let pod_key = key.to_owned();
        let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || queue.add(pod_key.clone()));
        let probes = probe::spawn(container, target, self.checker.clone(), changed);
        self.probes().insert(instance, probes);
    }

    /// Stops every container of a pod and forgets it; with `forget`, the pod is gone for
    /// good and its state and logs on disk go too.
    async fn tear_down(&self, key: &str, grace: Duration, forget: bool) {
        let record = self.records().remove(key);
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let Some(record) = record else { return };
        let stops = record
            .containers
            .values()
            .filter_map(|c| c.instance.clone())
            .map(|id| async move {
                self.drop_probes(&id);
                self.runtime.stop(&id, grace).await;
                self.forget(&id);
            });
        futures::future::join_all(stops).await;
        // Nothing of the pod runs any more: its sandbox (the oci runtime's namespaces) goes too,
        // also when the agent stops; a pod started again gets a new one (and a new address).
        if let Some(network) = &self.network {
            if network.address_of(&record.uid).is_some() {
                network.detach(&record.uid).await;
                network.publish_host_ports(&self.pods.list()).await;
            }
        }
        self.runtime.remove_pod_sandbox(&record.uid);
        let dir = self.pod_dir(key, &record.uid);
        if !forget {
            // The agent is stopping its pods: their disk volumes stay for the next agent; their
            // mounts and API-backed volumes do not outlive this one.
            if let Err(e) = crate::volumes::release(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot unmount a pod's volumes");
            }
            return;
        }
        self.saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.configs.forget(key);
        self.tokens.forget(&record.uid);
        // A volume that cannot be torn down (a busy mount) keeps the pod's directory:
        // removing it would reach into the mount.
        if let Err(e) = crate::volumes::tear_down(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod's volumes");
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pod's files");
            }
        }
    }

    async fn stop_everything(&self) {
        let keys: Vec<String> = self.records().keys().cloned().collect();
        futures::future::join_all(
            keys.iter()
                .map(|k| self.tear_down(k, Duration::from_secs(10), false)),
        )
        .await;
    }

    /// Stops and forgets containers that belong to no pod this agent knows: started by an
    /// earlier agent for a pod that was deleted before it could record it.
    async fn stop_orphans(&self) {
        let mut uids: std::collections::HashSet<String> = self
            .pods
            .list()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        uids.extend(self.records().values().map(|r| r.uid.clone()));
        let orphans: Vec<String> = self
            .runtime
            .containers()
            .into_iter()
            .filter(|id| !uids.contains(id.split('/').next().unwrap_or_default()))
            .collect();
        for id in orphans {
            tracing::info!(container = %id, "stopping a container whose pod is gone");
            self.runtime.stop(&id, Duration::from_secs(2)).await;
            self.forget(&id);
        }
    }

    /// The runtime handler for a pod: the one its RuntimeClass names, or the node's default.
    fn handler_of(&self, pod: &Pod) -> Result<&crate::runtime::Handler, String> {
        let class = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref());
        let handler = match class {
            None => None,
            Some(class) => Some(
                self.runtime_classes
                    .get(class)
                    .map(|rc| rc.handler.clone())
                    .ok_or_else(|| format!("RuntimeClass {class:?} not found"))?,
            ),
        };
        self.runtime.handler(handler.as_deref())
    }

    /// What `pod` reads from the API (its ConfigMaps and Secrets as last seen, the volumes its
    /// claims are bound to, its tokens), and the node's allocatable resources for
    /// `resourceFieldRef`s.
    async fn sources(&self, key: &str, pod: &Pod) -> spec::Sources {
        let mut sources = self.file_sources(key, pod).await;
        sources.claims = self.claims_of(pod).await;
        sources
    }

    /// [`Agent::sources`] without the claims: what the files of API-backed volumes are made
    /// of (read on every pass over a running pod, so it asks the API nothing but for tokens
    /// that are due).
    async fn file_sources(&self, key: &str, pod: &Pod) -> spec::Sources {
        let mut sources = self.configs.sources(key, pod).await;
        let mut allocatable = BTreeMap::new();
        if let Ok(cpu) = minik_api::quantity::Quantity::parse(&self.config.cpu) {
            allocatable.insert("cpu".to_owned(), cpu);
        }
        allocatable.insert(
            "memory".to_owned(),
            minik_api::quantity::Quantity::from_value(
                i64::try_from(self.config.memory_bytes).unwrap_or(i64::MAX),
            ),
        );
        sources.node_allocatable = allocatable;
        sources.tokens = self
            .tokens
            .for_pod(self.api.as_ref(), pod, SystemTime::now())
            .await;
        sources
    }

    /// The volumes bound to the claims `pod` uses, or why a claim has none.
    async fn claims_of(
        &self,
        pod: &Pod,
    ) -> BTreeMap<String, Result<minik_api::k8s_openapi::api::core::v1::PersistentVolume, String>>
    {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let names = pod
            .spec
            .as_ref()
            .map(|s| minik_api::references::of_pod_spec(s).claims)
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for name in names {
            let resolved = crate::storage::bound_volume(self.api.as_ref(), &ns, &name).await;
            out.insert(name, resolved);
        }
        out
    }

    /// Why the pod is evicted, if one of its disk emptyDir volumes holds more than its
    /// `sizeLimit` (the kubelet's eviction manager; a `medium: Memory` one is a tmpfs of that
    /// size, which the kernel keeps to it).
    async fn over_size_limit(
        &self,
        key: &str,
        pod: &Pod,
        record: &PodRecord,
    ) -> Option<(String, String)> {
        if record.failed.is_some() {
            return None;
        }
        let limited: Vec<(String, String, u64)> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let source = v.empty_dir.as_ref()?;
                if source.medium.as_deref().unwrap_or_default() == "Memory" {
                    return None;
                }
                let limit = source.size_limit.as_ref()?;
                let bytes = minik_api::quantity::Quantity::try_from(limit).ok()?.value();
                Some((v.name.clone(), limit.0.clone(), u64::try_from(bytes).ok()?))
            })
            .collect();
        if limited.is_empty() {
            return None;
        }
        let volumes = crate::volumes::volumes_dir(&self.pod_dir(key, &record.uid));
        tokio::task::spawn_blocking(move || {
            limited.into_iter().find_map(|(name, text, bytes)| {
                let dir = volumes.join("kubernetes.io~empty-dir").join(&name);
                let used = crate::volumes::host::disk_usage(&dir).ok()?;
                (used > bytes).then(|| {
                    (
                        "Evicted".to_owned(),
                        crate::volumes::host::exceeded_message(&name, &text),
                    )
                })
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// Updates the files of the volumes whose contents come from the API (ConfigMaps, Secrets,
    /// the downward API) of a pod whose containers started, as the kubelet does on every sync;
    /// a source that went missing keeps the files as they were, with a `FailedMount` warning.
    async fn refresh_volumes(&self, key: &str, pod: &Pod, record: &PodRecord) {
        let has_api_volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|vs| {
                vs.iter().any(|v| {
                    v.config_map.is_some()
                        || v.secret.is_some()
                        || v.downward_api.is_some()
                        || v.projected.is_some()
                })
            });
        let started = record.containers.values().any(|c| c.instance.is_some());
        if !has_api_volumes || !started {
            return;
        }
        let sources = self.file_sources(key, pod).await;
        let pod_dir = self.pod_dir(key, &record.uid);
        if let Err(e) = crate::volumes::refresh(&pod_dir, pod, &sources) {
            self.send(
                pod,
                &[plan::Event {
                    container: None,
                    kind: crate::events::Kind::Warning,
                    reason: "FailedMount",
                    message: e.to_string(),
                }],
            );
        }
    }

    /// Forgets an exited container instance: the runtime's record of it and its image's pin.
    fn forget(&self, id: &str) {
        self.runtime.remove(id);
        if let Some(images) = &self.images {
            images.unpin(id);
        }
    }

    /// The directory of a pod's logs and state.
    fn pod_dir(&self, key: &str, uid: &str) -> PathBuf {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        self.config
            .data_dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"))
    }

    /// Writes the pod's state file when what it would hold changed.
    fn save(&self, key: &str, record: &PodRecord, ports: &[Vec<PortBinding>]) {
        let now = SavedPod::of(key, record, ports);
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if saved.get(key) == Some(&now) {
            return;
        }
        let path = self.pod_dir(key, &record.uid).join("pod.json");
        match now.save(&path) {
            Ok(()) => {
                saved.insert(key.to_owned(), now);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write a pod's state")
            }
        }
    }
}

/// `resources.limits.memory` in bytes.
fn memory_limit(container: &Container) -> Result<Option<u64>, String> {
    let Some(q) = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
    else {
        return Ok(None);
    };
    let parsed = minik_api::quantity::Quantity::parse(&q.0)
        .map_err(|e| format!("resources.limits.memory {:?}: {e}", q.0))?;
    u64::try_from(parsed.value())
        .ok()
        .filter(|b| *b > 0)
        .map(Some)
        .ok_or_else(|| format!("resources.limits.memory {:?} must be positive", q.0))
}

/// The declared `hostPort`s of a container, on the address each asks for (the node's address
/// by default): they must be free on the node.
fn declared_host_ports(container: &Container, address: &str) -> Vec<(String, u16)> {
    container
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty() && ip != "0.0.0.0")
                .unwrap_or_else(|| address.to_owned());
            Some((ip, port))
        })
        .collect()
}

/// A probe the agent cannot run (a port name the container does not declare, a scheme or
/// handler minik does not support): said before the container starts, rather than failing
/// every check once it runs.
fn probe_problem(
    container: &Container,
    host: &str,
    ports: &[PortBinding],
    env: &[(String, String)],
) -> Result<(), String> {
    let target = probe::Target {
        host: host.to_owned(),
        ports: ports.to_vec(),
        env: env.to_vec(),
        ..Default::default()
    };
    for (field, p) in [
        ("startupProbe", &container.startup_probe),
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
    ] {
        if let Some(p) = p {
            if let probe::Check::Unsupported(why) = probe::check_of(p, &target) {
                return Err(format!("{field} of container {}: {why}", container.name));
            }
        }
    }
    Ok(())
}

/// The attempt number at the end of an instance id (`uid/name/3`) or container id.
fn attempt_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or("0")
}

impl Agent {
    /// The pod `ns/name` on this node and the runtime id of its `container`'s current run,
    /// when that runs; else why not, as the endpoint answers it (404 no such pod or
    /// container here, 400 not running).
    fn running(
        &self,
        ns: &str,
        name: &str,
        container: &str,
    ) -> Result<(Arc<Pod>, String), (u16, String)> {
        let key = format!("{ns}/{name}");
        let pod = self.pods.get(&key).ok_or_else(|| {
            (
                404,
                format!("pod {name:?} in namespace {ns:?} is not on this node"),
            )
        })?;
        let spec = pod.spec.as_ref();
        let declared = spec.is_some_and(|s| {
            s.containers.iter().any(|c| c.name == container)
                || s.init_containers
                    .iter()
                    .flatten()
                    .any(|c| c.name == container)
        });
        if !declared {
            return Err((
                404,
                format!("container {container} is not valid for pod {name}"),
            ));
        }
        let instance = self
            .records()
            .get(&key)
            .and_then(|r| r.containers.get(container))
            .and_then(|c| c.instance.clone())
            .filter(|i| crate::endpoint::LogSource::is_running(self, i))
            .ok_or_else(|| (400, format!("container {container} is not running")))?;
        Ok((pod, instance))
    }
}

impl crate::endpoint::LogSource for Agent {
    fn locate(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<crate::endpoint::Located, (u16, String)> {
        let key = format!("{ns}/{name}");
        let pod = self.pods.get(&key).ok_or_else(|| {
            (
                404,
                format!("pod {name:?} in namespace {ns:?} is not on this node"),
            )
        })?;
        let records = self.records();
        let record = records
            .get(&key)
            .and_then(|r| r.containers.get(container))
            .ok_or_else(|| (400, format!("container {container:?} in pod {name:?} is waiting to start: ContainerCreating")))?;
        if previous {
            let last = record.last_terminated.as_ref().ok_or_else(|| {
                (
                    400,
                    format!(
                        "previous terminated container {container:?} in pod {name:?} not found"
                    ),
                )
            })?;
            return Ok(crate::endpoint::Located {
                path: self.log_path(&pod, container, attempt_of(&last.container_id)),
                instance: None,
            });
        }
        let instance = record.instance.clone().ok_or_else(|| {
            let reason = record
                .waiting
                .as_ref()
                .map_or("ContainerCreating", |(r, _)| r.as_str());
            (
                400,
                format!("container {container:?} in pod {name:?} is waiting to start: {reason}"),
            )
        })?;
        Ok(crate::endpoint::Located {
            path: self.log_path(&pod, container, attempt_of(&instance)),
            instance: Some(instance),
        })
    }

    fn is_running(&self, instance: &str) -> bool {
        matches!(
            self.runtime.state(instance),
            crate::runtime::State::Running { .. }
        )
    }

    /// `kubectl exec`: the container's running instance, with the environment and working
    /// directory its start had (service variables as they are now).
    fn exec(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        mut request: crate::runtime::ExecRequest,
    ) -> crate::BoxFuture<'_, Result<crate::runtime::ExecProcess, (u16, String)>> {
        let (ns, name, container) = (ns.to_owned(), name.to_owned(), container.to_owned());
        Box::pin(async move {
            let key = format!("{ns}/{name}");
            let (pod, instance) = self.running(&ns, &name, &container)?;
            let spec = pod.spec.as_ref();
            let apps = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
            let inits = spec
                .and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default();
            let index = apps.iter().position(|c| c.name == container);
            let Some(found) = index
                .map(|i| &apps[i])
                .or_else(|| inits.iter().find(|c| c.name == container))
            else {
                return Err((500, format!("container {container} went from pod {name}")));
            };
            let binds = index
                .and_then(|i| self.ports_of(&key, &pod).get(i).cloned())
                .unwrap_or_default();
            let placement = self.placement(&pod, binds, self.services.env_for(&pod).await);
            request.env = spec::environment(&pod, found, &placement, &spec::Sources::default())
                .map(|e| e.vars)
                .map_err(|e| (500, e))?;
            if request.tty {
                with_terminal_type(&mut request.env);
            }
            request.working_dir = found.working_dir.as_ref().map(PathBuf::from);
            let runtime = self.runtime.clone();
            tokio::task::spawn_blocking(move || runtime.exec(&instance, &request))
                .await
                .map_err(|e| (500, format!("the exec did not start: {e}")))?
                .map_err(|e| (500, e))
        })
    }

    fn attach(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        stdin: bool,
    ) -> crate::BoxFuture<'_, Result<crate::runtime::ExecProcess, (u16, String)>> {
        let found = self.running(ns, name, container);
        Box::pin(async move {
            let (_, instance) = found?;
            self.runtime.attach(&instance, stdin).map_err(|e| (500, e))
        })
    }
}

/// `TERM=xterm` for a process on a terminal, unless the container sets `TERM` (what containerd
/// gives a container or an exec with a tty).
fn with_terminal_type(env: &mut Vec<(String, String)>) {
    if !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
}

/// Port-forward targets: a pod with a network namespace of its own (the oci runtime) is reached
/// on its loopback inside it, at the container's own port; a host process at its host port.
struct PodForward {
    services: crate::proxy::Services,
    agent: Arc<Agent>,
}

impl crate::endpoint::ForwardTarget for PodForward {
    fn resolve(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
    ) -> Result<(std::net::SocketAddr, Option<PathBuf>), (u16, String)> {
        let netns = self
            .agent
            .records()
            .get(&format!("{ns}/{pod}"))
            .into_iter()
            .flat_map(|r| r.containers.values())
            .filter_map(|c| c.instance.as_deref())
            .find_map(|instance| self.agent.runtime.network_namespace(instance));
        match netns {
            Some(netns) => {
                // Kubernetes' checks first (the pod is here and runs).
                self.services.resolve(ns, pod, port)?;
                let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                Ok((loopback, Some(netns)))
            }
            None => self.services.resolve(ns, pod, port),
        }
    }
}
