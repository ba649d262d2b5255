//! `minik node`: the node agent. Parses and validates its flags, detects the host's capacity,
//! and runs the agent until SIGINT/SIGTERM, then stops the pods' processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use minik_api::quantity::Quantity;
use minik_client::HttpApi;
use minik_node::logs::LogLimits;
use minik_node::pod::Backoff;
use minik_node::probe::{Checker, FakeChecker, HostChecker};
use minik_node::runtime::{FakeRuntime, ProcessOptions, ProcessRuntime, Runtime};
use minik_node::AgentConfig;
use serde_json::{json, Value};

/// Flags of `minik node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The API server.
    #[arg(long, env = "MINIK_SERVER", default_value = "https://127.0.0.1:6443")]
    server: String,
    /// The token the node joins with: the cluster's join token (DATA_DIR/auth/join-token on the
    /// server) or an admin token; not needed from loopback when the server allows anonymous
    /// clients there. Once joined, the node uses its own credential, kept in its --data-dir.
    #[arg(long, env = "MINIK_TOKEN", hide_env_values = true)]
    token: Option<minik_client::Secret>,
    /// The cluster CA to verify an HTTPS server with (the server's DATA_DIR/tls/ca.crt).
    /// Without it, the CA hash of a K10 join token decides, and the CA is kept in --data-dir.
    #[arg(long, value_name = "FILE")]
    certificate_authority: Option<PathBuf>,
    /// The node's name (default: this host's name, lower-cased).
    #[arg(long)]
    name: Option<String>,
    /// How containers run: `process` (host processes), `oci` (isolated containers from their
    /// images; needs root) or `fake` (simulated, for tests and scale).
    #[arg(long, default_value = "process", value_parser = ["process", "oci", "fake"])]
    runtime: String,
    /// More runtimes the node offers besides --runtime, for pods whose RuntimeClass names them
    /// (`handler: oci`, `handler: process`): a comma-separated list of process, oci, fake.
    #[arg(long, default_value = "")]
    runtime_handlers: String,
    /// Where logs and pod state go (default: ./minik-node-data/NAME).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Labels of the node: k=v,k2=v2.
    #[arg(long, default_value = "")]
    labels: String,
    /// Taints of the node: key=value:Effect,key:Effect.
    #[arg(long, default_value = "")]
    taints: String,
    /// CPU capacity, overriding what the host has (e.g. 4, 500m).
    #[arg(long)]
    cpu: Option<String>,
    /// Memory capacity, overriding what the host has (e.g. 8Gi).
    #[arg(long)]
    memory: Option<String>,
    /// The address the node advertises; pods are reached on it.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// The port of the agent's log endpoint (the API server calls it); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// The most pods the node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Seconds between full passes over every pod.
    #[arg(long, default_value_t = 10)]
    sync_seconds: u64,
    /// Delay before the second restart of a crashing container, doubling after (Kubernetes: 10s).
    #[arg(long, default_value_t = 10_000)]
    restart_backoff_ms: u64,
    /// The longest restart delay (Kubernetes: 5m).
    #[arg(long, default_value_t = 300_000)]
    restart_backoff_max_ms: u64,
    /// The size at which a container's log file is rotated (kubelet: containerLogMaxSize).
    #[arg(long, default_value = "10Mi")]
    container_log_max_size: String,
    /// How many log files of a container are kept, the current one included, at least 2
    /// (kubelet: containerLogMaxFiles).
    #[arg(long, default_value_t = 5)]
    container_log_max_files: u32,
    /// On SIGTERM/Ctrl-C, leave the pods' processes running (for an upgrade: the next
    /// `minik node` with the same --data-dir adopts them). By default they are stopped.
    #[arg(long)]
    leave_running: bool,
    /// Do not enforce `resources.limits.memory` with cgroups, even where the host allows it.
    #[arg(long)]
    no_memory_limits: bool,
    /// How Services are proxied: `userspace` (the agent listens on every Service address) or
    /// `nftables` (the agent programs its own nftables table, `ip minik-NAME`, to translate
    /// connections in the kernel; needs root and the nft command). `auto`: nftables when the
    /// node has a pod network (pods in their own namespaces reach Services only that way),
    /// else userspace. See docs/services.md.
    #[arg(long, default_value = "auto", value_parser = ["auto", "userspace", "nftables"])]
    proxy_mode: String,
    /// The pod network, for pods in network namespaces of their own (the oci runtime's pods
    /// that are not hostNetwork): each gets an address of the node's pod CIDR on a bridge, and
    /// the node routes to every other node's pods. `auto`: on when the node offers the oci
    /// runtime and the server has a cluster CIDR; `on`: the same, and the node refuses to start
    /// without them; `off`: such pods have loopback only. See docs/networking.md.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pod_network: String,
    /// Pods may not reach anything beyond the cluster (the pod and service networks and the
    /// nodes): their packets to other destinations are dropped instead of masqueraded. The
    /// test suite runs every agent so.
    #[arg(long)]
    no_pod_egress: bool,
    /// The MTU of the pod network's bridge and the pods' interfaces (576 to 65535).
    #[arg(long, default_value_t = minik_net::DEFAULT_MTU)]
    pod_mtu: u32,
    #[command(flatten)]
    images: ImageFlags,
    /// The most processes a container of the oci runtime may have (the kubelet's flag; minik
    /// applies it to each container); -1: no limit.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pod_max_pids: i64,
}

/// The image flags of `minik node` and `minik up`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageFlags {
    #[command(flatten)]
    pub store: crate::image::ImageStoreArgs,
    /// Pull every container's image (as its imagePullPolicy says) before the container starts,
    /// with the kubelet's events and waiting reasons. For `--runtime fake`, whose containers
    /// run nothing: the `process` runtime runs host programs and takes no image.
    #[arg(long)]
    pub pull_images: bool,
    /// Percent of the image disk in use at which unused images are removed (kubelet's flag).
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub image_gc_high_threshold: u8,
    /// Percent of the image disk that garbage collection frees down to (kubelet's flag).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// Unused images younger than this are never collected (a Go duration, kubelet's flag).
    #[arg(long, default_value = "2m")]
    pub image_minimum_gc_age: String,
}

impl ImageFlags {
    /// The image manager of a node whose data dir is `data_dir`, when one of its runtimes runs
    /// images (oci, or fake with --pull-images).
    pub fn manager(
        &self,
        runs_images: bool,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Option<Arc<minik_node::images::ImageManager>>> {
        if !runs_images {
            return Ok(None);
        }
        anyhow::ensure!(
            self.image_gc_low_threshold < self.image_gc_high_threshold,
            "--image-gc-low-threshold ({}) must be below --image-gc-high-threshold ({})",
            self.image_gc_low_threshold,
            self.image_gc_high_threshold
        );
        let min_age = crate::cli::time::parse_duration(&self.image_minimum_gc_age)
            .map_err(|e| anyhow::anyhow!("--image-minimum-gc-age: {e}"))?;
        let service = self.store.open(data_dir)?;
        Ok(Some(Arc::new(minik_node::images::ImageManager::new(
            Arc::new(service),
            minik_image::GcPolicy {
                high_percent: self.image_gc_high_threshold,
                low_percent: self.image_gc_low_threshold,
                min_age_seconds: min_age.as_secs(),
            },
        ))))
    }
}

/// The handlers of --runtime-handlers: known names, without repeats.
fn parse_handlers(list: &str) -> anyhow::Result<Vec<String>> {
    let mut handlers: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        anyhow::ensure!(
            matches!(name, "process" | "oci" | "fake"),
            "--runtime-handlers: unknown runtime {name:?} (expected process, oci or fake)"
        );
        if !handlers.iter().any(|h| h == name) {
            handlers.push(name.to_owned());
        }
    }
    Ok(handlers)
}

/// Opens the node's runtimes: `default` first, then `extra` (each once), adopting what earlier
/// agents left in `data_dir`. `pull_images` makes the fake runtime's containers pull their
/// images. The probes run on the host for real runtimes, scripted for the fake one.
pub fn open_runtimes(
    default: &str,
    extra: &[String],
    data_dir: &std::path::Path,
    settings: &RuntimeSettings,
    pull_images: bool,
) -> anyhow::Result<(minik_node::runtime::Runtimes, Arc<dyn Checker>)> {
    use minik_node::runtime::{Handler, OciOptions, OciRuntime};
    let mut names = vec![default.to_owned()];
    names.extend(extra.iter().filter(|h| h.as_str() != default).cloned());
    let mut handlers = Vec::new();
    for name in &names {
        let (runtime, runs_images): (Arc<dyn Runtime>, bool) = match name.as_str() {
            "fake" => (Arc::new(FakeRuntime::new()), pull_images),
            "oci" => {
                minik_node::runtime::check_oci_host().map_err(anyhow::Error::msg)?;
                let state_dir = data_dir.join("oci");
                let runtime = OciRuntime::open(OciOptions {
                    state_dir: state_dir.clone(),
                    logs: settings.logs,
                    helper: std::env::current_exe().context("cannot find the minik binary")?,
                    pids_limit: settings.pids_limit,
                })
                .with_context(|| {
                    format!("cannot open the runtime state in {}", state_dir.display())
                })?;
                (Arc::new(runtime), true)
            }
            _ => {
                anyhow::ensure!(
                    !(pull_images && names.len() == 1),
                    "--pull-images: the process runtime runs host programs, not images; use --runtime oci (or fake)"
                );
                // Opening the runtime adopts the processes an earlier agent left running.
                let state_dir = data_dir.join("containers");
                let runtime = ProcessRuntime::open(ProcessOptions {
                    state_dir: state_dir.clone(),
                    logs: settings.logs,
                    memory_limits: settings.memory_limits,
                })
                .with_context(|| {
                    format!("cannot open the runtime state in {}", state_dir.display())
                })?;
                if let Err(why) = runtime.memory_cgroups() {
                    tracing::warn!(reason = %why, "memory limits will not be enforced on this node");
                }
                (Arc::new(runtime), false)
            }
        };
        handlers.push(Handler {
            name: name.clone(),
            runtime,
            runs_images,
        });
    }
    let checker: Arc<dyn Checker> = if default == "fake" {
        Arc::new(FakeChecker)
    } else {
        Arc::new(HostChecker)
    };
    Ok((minik_node::runtime::Runtimes::new(handlers), checker))
}

/// Settings of the process runtime, validated.
#[derive(Debug)]
pub struct RuntimeSettings {
    pub logs: LogLimits,
    pub memory_limits: bool,
    /// `--pod-max-pids` (oci), `None` for no limit.
    pub pids_limit: Option<i64>,
    pub network: NetworkChoice,
}

/// The node's choices about the pod network (`--pod-network`, `--no-pod-egress`,
/// `--pod-mtu`, and whether `--proxy-mode` was left to follow it).
#[derive(Clone, Debug)]
pub struct NetworkChoice {
    /// `auto`, `on` or `off`.
    pub mode: String,
    pub egress: bool,
    pub mtu: u32,
    pub proxy_auto: bool,
}

impl Default for NetworkChoice {
    fn default() -> Self {
        NetworkChoice {
            mode: "auto".into(),
            egress: true,
            mtu: minik_net::DEFAULT_MTU,
            proxy_auto: true,
        }
    }
}

/// Decides the node's pod network from `choice`, whether a runtime of the node gives pods
/// network namespaces of their own (`oci`), and the server's networks (`GET
/// /minik/v1/network`), and sets it (and, with `--proxy-mode auto`, the proxy mode) in
/// `config`. `--pod-network on` without what it needs is an error naming what is missing.
pub async fn choose_pod_network(
    choice: &NetworkChoice,
    offers_oci: bool,
    api: &HttpApi,
    config: &mut AgentConfig,
) -> anyhow::Result<()> {
    let required = choice.mode == "on";
    if choice.mode == "off" {
        return Ok(());
    }
    if !offers_oci {
        anyhow::ensure!(
            !required,
            "--pod-network on: only the oci runtime gives pods network namespaces of their own; this node offers {}",
            config.runtime_name
        );
        return Ok(());
    }
    let answer = match api.get_path("/minik/v1/network").await {
        Ok(answer) => answer,
        Err(e) if e.is_not_found() && !required => {
            tracing::warn!("the server does not publish its networks (GET /minik/v1/network): no pod network; pods have loopback only");
            return Ok(());
        }
        Err(e) => {
            bail!("cannot read the cluster's networks from the server (GET /minik/v1/network): {e}")
        }
    };
    let network: minik_api::network::ClusterNetwork =
        serde_json::from_value(answer).context("the server's answer to GET /minik/v1/network")?;
    let Some(cluster_cidr) = network.cluster_cidr else {
        anyhow::ensure!(
            !required,
            "--pod-network on: the server has no cluster CIDR (it was started with --cluster-cidr none)"
        );
        tracing::info!("the server has no cluster CIDR: no pod network; pods of the oci runtime have loopback only");
        return Ok(());
    };
    if network.service_cidr.network().is_loopback() {
        tracing::warn!(service_cidr = %network.service_cidr, "the server's service CIDR is on loopback: pods in their own network namespaces cannot reach ClusterIPs; start the server with --service-cidr 10.96.0.0/12");
    }
    match config.proxy_mode {
        minik_node::proxy::ProxyMode::Nftables => {}
        _ if choice.proxy_auto => config.proxy_mode = minik_node::proxy::ProxyMode::Nftables,
        _ => bail!("--proxy-mode userspace: pods on the pod network reach Services only through the nftables mode (use --proxy-mode nftables, or --pod-network off)"),
    }
    config.pod_network = Some(minik_node::network::PodNetworkSettings {
        cluster_cidr,
        service_cidr: network.service_cidr,
        cluster_dns: network.cluster_dns,
        cluster_domain: network.cluster_domain,
        egress: choice.egress,
        mtu: choice.mtu,
    });
    Ok(())
}

/// `--labels k=v,k2=v2` (of `minik node` and `minik simulate`), each checked as Kubernetes
/// checks labels.
pub(crate) fn parse_labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("--labels: {item:?} is not key=value"))?;
        let problems: Vec<String> = minik_api::names::qualified_name(k)
            .into_iter()
            .chain(minik_api::names::label_value(v))
            .collect();
        if !problems.is_empty() {
            bail!("--labels: {item:?}: {}", problems.join("; "));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// `--taints key=value:Effect,key:Effect` (of `minik node` and `minik simulate`).
pub(crate) fn parse_taints(s: &str) -> anyhow::Result<Vec<Value>> {
    let mut taints = Vec::new();
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (kv, effect) = item
            .rsplit_once(':')
            .with_context(|| format!("--taints: {item:?} is not key=value:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            bail!(
                "--taints: {item:?}: the effect must be NoSchedule, PreferNoSchedule or NoExecute"
            );
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if let Some(problem) = minik_api::names::qualified_name(key).into_iter().next() {
            bail!("--taints: {item:?}: {problem}");
        }
        taints.push(json!({"key": key, "value": value, "effect": effect}));
    }
    Ok(taints)
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The host's cores, as a quantity.
pub fn host_cpu() -> String {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string()
}

/// The host's memory in bytes (0 when it cannot be read).
pub fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl NodeArgs {
    #[allow(clippy::type_complexity)]
    fn config(
        self,
    ) -> anyhow::Result<(
        AgentConfig,
        String,
        RuntimeSettings,
        Option<minik_client::Secret>,
    )> {
        let name = self.name.unwrap_or_else(host_name);
        if let Some(problem) = minik_api::names::dns1123_subdomain(&name)
            .into_iter()
            .next()
        {
            bail!("--name {name:?}: {problem}");
        }
        let cpu = match self.cpu {
            Some(c) => Quantity::parse(&c)
                .map_err(|e| anyhow::anyhow!("--cpu {c:?}: {e}"))?
                .to_string(),
            None => host_cpu(),
        };
        let memory_bytes = match self.memory {
            Some(m) => {
                let q = Quantity::parse(&m).map_err(|e| anyhow::anyhow!("--memory {m:?}: {e}"))?;
                u64::try_from(q.value())
                    .map_err(|_| anyhow::anyhow!("--memory {m:?} must not be negative"))?
            }
            None => host_memory_bytes(),
        };
        anyhow::ensure!(
            self.heartbeat_seconds > 0,
            "--heartbeat-seconds must be at least 1"
        );
        anyhow::ensure!(self.sync_seconds > 0, "--sync-seconds must be at least 1");
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from("minik-node-data").join(&name));
        let max_size = Quantity::parse(&self.container_log_max_size)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--container-log-max-size {:?}: {e}",
                    self.container_log_max_size
                )
            })?
            .value();
        anyhow::ensure!(
            max_size >= 1024,
            "--container-log-max-size {:?} must be at least 1Ki",
            self.container_log_max_size
        );
        anyhow::ensure!(
            self.container_log_max_files >= 2,
            "--container-log-max-files must be at least 2 (the current file and one rotated)"
        );
        anyhow::ensure!(
            (576..=65535).contains(&self.pod_mtu),
            "--pod-mtu {} is not from 576 to 65535",
            self.pod_mtu
        );
        let settings = RuntimeSettings {
            logs: LogLimits {
                max_bytes: max_size as u64,
                max_files: self.container_log_max_files,
            },
            memory_limits: !self.no_memory_limits,
            pids_limit: (self.pod_max_pids > 0).then_some(self.pod_max_pids),
            network: NetworkChoice {
                mode: self.pod_network.clone(),
                egress: !self.no_pod_egress,
                mtu: self.pod_mtu,
                proxy_auto: self.proxy_mode == "auto",
            },
        };
        Ok((
            AgentConfig {
                labels: parse_labels(&self.labels)?,
                taints: parse_taints(&self.taints)?,
                cpu,
                memory_bytes,
                max_pods: self.max_pods,
                address: self.address.to_string(),
                data_dir,
                heartbeat: Duration::from_secs(self.heartbeat_seconds),
                sync_period: Duration::from_secs(self.sync_seconds),
                backoff: Backoff {
                    initial: Duration::from_millis(self.restart_backoff_ms),
                    max: Duration::from_millis(
                        self.restart_backoff_max_ms.max(self.restart_backoff_ms),
                    ),
                    ..Backoff::default()
                },
                runtime_name: self.runtime,
                runtime_handlers: Vec::new(),
                workers: 8,
                port: self.port,
                leave_running: self.leave_running,
                endpoint_key: None,
                endpoint_tls: None,
                proxy_mode: match self.proxy_mode.as_str() {
                    "auto" => minik_node::proxy::ProxyMode::default(),
                    mode => mode.parse().map_err(anyhow::Error::msg)?,
                },
                pod_network: None,
                name,
            },
            self.server,
            settings,
            self.token,
        ))
    }
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let image_flags = args.images.clone();
    let extra_handlers = parse_handlers(&args.runtime_handlers)?;
    let ca_file = args.certificate_authority.clone();
    let (mut config, server, settings, token) = args.config()?;
    minik_node::without_huge_pages();
    HttpApi::new(&server).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async move {
        tracing::info!(node = %config.name, server = %server, runtime = %config.runtime_name, "minik node starting");
        let address: std::net::IpAddr = config
            .address
            .parse()
            .with_context(|| format!("--address {:?} is not an IP address", config.address))?;
        let joined = minik_node::join::connect(
            &server,
            token.as_ref().map(minik_client::Secret::expose),
            ca_file.as_deref(),
            &config.data_dir,
            &config.name,
            address,
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}\n(give the cluster's join token with --token or MINIK_TOKEN; it is in the server's data dir, auth/join-token)")
        })?;
        config.endpoint_key = Some(joined.endpoint_key);
        config.endpoint_tls = joined.endpoint_tls;
        let api = joined.api;
        let (runtimes, checker) = open_runtimes(
            &config.runtime_name,
            &extra_handlers,
            &config.data_dir,
            &settings,
            image_flags.pull_images,
        )?;
        let images = image_flags.manager(runtimes.any_runs_images(), &config.data_dir)?;
        let offers_oci = runtimes.names().contains(&"oci");
        choose_pod_network(&settings.network, offers_oci, &api, &mut config).await?;
        minik_node::run(Arc::new(api), Arc::new(runtimes), checker, images, config, crate::server::shutdown_signal())
            .await
            .context("the node agent failed")?;
        tracing::info!("minik node stopped");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn parse(flags: &[&str]) -> anyhow::Result<(AgentConfig, RuntimeSettings)> {
        use clap::Parser;
        let args = Flags::try_parse_from(
            [
                "minik-node",
                "--name",
                "n1",
                "--cpu",
                "1",
                "--memory",
                "1Gi",
            ]
            .iter()
            .chain(flags),
        )?;
        let (config, _, settings, _) = args.node.config()?;
        Ok((config, settings))
    }

    #[test]
    fn runtime_flags_are_validated() {
        let (config, settings) = parse(&[]).unwrap();
        assert_eq!(settings.logs, LogLimits::default());
        assert!(settings.memory_limits && !config.leave_running);
        let (config, settings) = parse(&[
            "--container-log-max-size",
            "1Mi",
            "--container-log-max-files",
            "3",
            "--leave-running",
            "--no-memory-limits",
        ])
        .unwrap();
        assert_eq!(
            settings.logs,
            LogLimits {
                max_bytes: 1 << 20,
                max_files: 3
            }
        );
        assert!(!settings.memory_limits && config.leave_running);
        let err = parse(&["--container-log-max-files", "1"]).unwrap_err();
        assert!(
            err.to_string().contains("--container-log-max-files"),
            "{err}"
        );
        let err = parse(&["--container-log-max-size", "ten"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--container-log-max-size \"ten\""),
            "{err}"
        );
        let err = parse(&["--container-log-max-size", "10"]).unwrap_err();
        assert!(err.to_string().contains("at least 1Ki"), "{err}");
    }

    #[test]
    fn labels_and_taints_parse_or_name_the_problem() {
        assert!(parse_labels("a=b, c=d")
            .unwrap_err()
            .to_string()
            .contains("c=d"));
        assert_eq!(parse_labels("a=b,disk=ssd").unwrap().len(), 2);
        assert!(parse_labels("novalue").is_err());
        let taints = parse_taints("dedicated=db:NoSchedule,gpu:NoExecute").unwrap();
        assert_eq!(
            taints[0],
            json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})
        );
        assert_eq!(
            taints[1],
            json!({"key": "gpu", "value": "", "effect": "NoExecute"})
        );
        assert!(parse_taints("a=b:Sometimes")
            .unwrap_err()
            .to_string()
            .contains("effect"));
    }
}
