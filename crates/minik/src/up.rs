//! `minik up`: a whole cluster on this machine in one command — the control plane and N node
//! agents in one process. It waits until the nodes are Ready, writes the client config, and on
//! Ctrl-C/SIGTERM stops every pod process, then the agents, then the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use minik_api::k8s_openapi::api::core::v1::Node;
use minik_client::{Api, ApiExt, HttpApi, ListParams};
use minik_node::logs::LogLimits;
use minik_node::pod::Backoff;
use minik_node::AgentConfig;
use tokio::sync::watch;

use crate::server::{self, Settings};

/// The service CIDR of a `minik up` cluster whose pods have addresses of their own:
/// Kubernetes' default.
const POD_NETWORK_SERVICE_CIDR: &str = "10.96.0.0/12";

/// Flags of `minik up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many node agents to run.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Where the cluster keeps its state: the store, and each node's logs.
    #[arg(long, default_value = "./minik-data")]
    data_dir: PathBuf,
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// How the nodes run containers: `process`, `oci` (isolated containers from images; needs
    /// root) or `fake`.
    #[arg(long, default_value = "process", value_parser = ["process", "oci", "fake"])]
    runtime: String,
    /// Do not write the client configuration (~/.minik/config).
    #[arg(long)]
    no_config: bool,
    /// Manifests to apply once the cluster is up (files or directories, as `minik apply -f`).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// How the nodes proxy Services: `userspace` or `nftables` (as `minik node --proxy-mode`);
    /// `auto`: nftables when the nodes have a pod network, else userspace.
    #[arg(long, default_value = "auto", value_parser = ["auto", "userspace", "nftables"])]
    proxy_mode: String,
    /// The nodes' pod network, as `minik node --pod-network`: with `--runtime oci` (and
    /// `auto`, the default) every pod that is not hostNetwork gets an address of its own,
    /// Services get ClusterIPs from 10.96.0.0/12 and names resolve through the cluster DNS.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pod_network: String,
    /// Pods may not reach anything beyond the cluster (as `minik node --no-pod-egress`).
    #[arg(long)]
    no_pod_egress: bool,
    /// The nodes' images; without --image-store, the nodes share DATA_DIR/image-store, and
    /// registries.yaml is read from DATA_DIR.
    #[command(flatten)]
    images: crate::node::ImageFlags,
}

/// Resolves when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn agent_config(
    name: &str,
    data_dir: &std::path::Path,
    runtime: &str,
    proxy_mode: minik_node::proxy::ProxyMode,
) -> AgentConfig {
    AgentConfig {
        name: name.to_owned(),
        address: "127.0.0.1".into(),
        labels: Default::default(),
        taints: Vec::new(),
        cpu: crate::node::host_cpu(),
        memory_bytes: crate::node::host_memory_bytes(),
        max_pods: 110,
        data_dir: data_dir.join("nodes").join(name),
        heartbeat: Duration::from_secs(10),
        sync_period: Duration::from_secs(10),
        backoff: Backoff::default(),
        runtime_name: runtime.to_owned(),
        runtime_handlers: Vec::new(),
        workers: 8,
        port: 0,
        leave_running: false,
        endpoint_key: None,
        endpoint_tls: None,
        proxy_mode,
        pod_network: None,
    }
}

/// Writes `text` to `path`, readable by the owner only: the client files hold the admin token.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    minik_client::write_private_file(path, text)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The first line of a token file.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token in {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Writes `~/.minik/config` (mode 0600: it holds the admin token), so client commands find
/// this cluster without flags; over HTTPS it names the cluster CA file.
fn write_client_config(
    server: &str,
    token: &str,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("$HOME is not set")?;
    let dir = PathBuf::from(home).join(".minik");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("config");
    let ca = match ca_file {
        Some(file) => {
            let absolute = std::path::absolute(file)
                .with_context(|| format!("cannot resolve {}", file.display()))?;
            // A JSON string is a YAML string, whatever the path holds.
            format!(
                "certificate-authority: {}\n",
                serde_json::Value::String(absolute.display().to_string())
            )
        }
        None => String::new(),
    };
    write_private(
        &path,
        &format!("server: {server}\nnamespace: default\ntoken: {token}\n{ca}"),
    )?;
    Ok(path)
}

/// Writes `~/.minik/kubeconfig`, a kubeconfig with one context (`minik`) for this cluster, so
/// kubectl and the Kubernetes client libraries reach it with `KUBECONFIG` set to it.
fn write_kubeconfig(server: &str, token: &str, ca_pem: Option<&str>) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("$HOME is not set")?;
    let path = PathBuf::from(home).join(".minik").join("kubeconfig");
    crate::kubeconfig::write(&path, server, ca_pem, token)?;
    Ok(path)
}

/// Applies manifests with this binary's own `apply`, so they are read, checked and reported
/// exactly as `minik apply -f` does. A failure is reported and the cluster stays up.
async fn apply(server: &str, token: &str, ca_file: Option<&std::path::Path>, files: &[PathBuf]) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the minik binary to apply manifests: {e}");
            return;
        }
    };
    let mut command = tokio::process::Command::new(exe);
    command.args(["apply", "--server", server]);
    if let Some(ca) = ca_file {
        command.arg("--certificate-authority").arg(ca);
    }
    // In the environment, not the command line, where other users could read it.
    command.env("MINIK_TOKEN", token);
    for f in files {
        command.arg("-f").arg(f);
    }
    match command.status().await {
        Ok(status) if status.success() => {}
        Ok(_) => eprintln!("some manifests were not applied (see above); the cluster stays up"),
        Err(e) => eprintln!("error: cannot run minik apply: {e}"),
    }
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 64 {
        bail!("--nodes must be between 1 and 64");
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(up(args))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let began = Instant::now();
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let (stop_server, server_stop) = watch::channel(false);
    let (stop_nodes, nodes_stop) = watch::channel(false);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut settings = Settings::new(args.listen, &args.data_dir);
    // Clients on this machine need no token; the nodes still join and act as nodes.
    settings.auth.anonymous_loopback = true;
    if args.runtime == "oci" && args.pod_network != "off" {
        // Pods in network namespaces of their own reach ClusterIPs of a routable range, as
        // Kubernetes' (loopback addresses are each pod's own).
        let service_cidr: minik_api::cidr::Cidr = POD_NETWORK_SERVICE_CIDR
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        settings.api.service_cidr = service_cidr;
        settings.controllers.service_cidr = Some(service_cidr);
    }
    let auth = settings.auth.clone();
    let server = tokio::spawn(server::serve(
        settings,
        stopped(server_stop),
        move |ready| {
            let _ = addr_tx.send(ready);
        },
    ));
    let ready = match addr_rx.await {
        Ok(ready) => ready,
        Err(_) => {
            // The server ended before it listened: its error says why.
            return match server.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!(
                    "the API server stopped before it was serving"
                )),
            };
        }
    };
    let url = ready.url.clone();
    let ca_file = ready.ca_file.clone();
    let ca_pem = match &ca_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the cluster CA {}", file.display()))?,
        ),
        None => None,
    };
    let trust = minik_client::Trust {
        ca_pem: ca_pem.clone(),
        client_certificate: None,
    };
    let admin_token = read_token(&auth.admin_file())?;
    let join_token = read_token(&auth.join_file())?;
    let api: Arc<dyn Api> = Arc::new(
        HttpApi::trusting(&url, &trust)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_token(Some(admin_token.clone())),
    );

    let network_choice = crate::node::NetworkChoice {
        mode: args.pod_network.clone(),
        egress: !args.no_pod_egress,
        mtu: minik_net::DEFAULT_MTU,
        proxy_auto: args.proxy_mode == "auto",
    };
    let mut agents = Vec::new();
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
    for name in &names {
        let mode = match args.proxy_mode.as_str() {
            "auto" => minik_node::proxy::ProxyMode::default(),
            mode => mode.parse().map_err(anyhow::Error::msg)?,
        };
        let mut config = agent_config(name, &args.data_dir, &args.runtime, mode);
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        // Each node joins with the join token and acts with its own credential, as on a
        // cluster of many hosts.
        // Over HTTPS each checks the server's CA against the join token's hash, as a node on
        // another host does.
        let joined = minik_node::join::connect(
            &url,
            Some(&join_token),
            None,
            &config.data_dir,
            name,
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        )
        .await?;
        config.endpoint_key = Some(joined.endpoint_key);
        config.endpoint_tls = joined.endpoint_tls;
        crate::node::choose_pod_network(
            &network_choice,
            args.runtime == "oci",
            &joined.api,
            &mut config,
        )
        .await?;
        let node_api: Arc<dyn Api> = Arc::new(joined.api);
        // State under the node's data dir, as `minik node` keeps it: a `minik up` that was
        // killed finds and adopts (or stops) its pods' containers when restarted.
        let (runtimes, checker) = crate::node::open_runtimes(
            &args.runtime,
            &[],
            &config.data_dir,
            &crate::node::RuntimeSettings {
                logs: LogLimits::default(),
                memory_limits: true,
                pids_limit: None,
                network: network_choice.clone(),
            },
            args.images.pull_images,
        )?;
        let mut image_flags = args.images.clone();
        image_flags.store.image_store = Some(image_flags.store.store_dir(&args.data_dir));
        if image_flags.store.private_registry.is_none() {
            let file = args.data_dir.join("registries.yaml");
            image_flags.store.private_registry = file.exists().then_some(file);
        }
        let images = image_flags.manager(runtimes.any_runs_images(), &config.data_dir)?;
        agents.push(tokio::spawn(minik_node::run(
            node_api,
            Arc::new(runtimes),
            checker,
            images,
            config,
            stopped(nodes_stop.clone()),
        )));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: Vec<Node> = api
            .list_as(None, &ListParams::default())
            .await
            .map(|(n, _)| n)
            .unwrap_or_default();
        let ready = nodes
            .iter()
            .filter(|n| {
                names
                    .iter()
                    .any(|name| n.metadata.name.as_deref() == Some(name))
            })
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready == names.len() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "only {ready} of {} nodes became Ready within 30s",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = began.elapsed();

    let config_note = if args.no_config {
        String::new()
    } else {
        let client = match write_client_config(&url, &admin_token, ca_file.as_deref()) {
            Ok(path) => format!("client config: {}\n", path.display()),
            Err(e) => format!("client config not written: {e:#}\n"),
        };
        let kubeconfig = match write_kubeconfig(&url, &admin_token, ca_pem.as_deref()) {
            Ok(path) => format!("kubectl: export KUBECONFIG={}\n", path.display()),
            Err(e) => format!("kubeconfig not written: {e:#}\n"),
        };
        client + &kubeconfig
    };
    println!(
        "minik is up at {url}: {} node(s) Ready in {:.2}s",
        names.len(),
        took.as_secs_f64()
    );
    let curl_ca = ca_file
        .as_ref()
        .map(|f| format!("--cacert {} ", f.display()))
        .unwrap_or_default();
    print!(
        "{config_note}admin token: {}\nnode join token: {}\ndata: {}\nnodes: {}\n\ntry:  curl {curl_ca}{url}/api/v1/namespaces/default/pods\nstop: Ctrl-C (stops every pod process)\n",
        auth.admin_file().display(),
        auth.join_file().display(),
        args.data_dir.display(),
        names.join(", ")
    );

    if !args.files.is_empty() {
        apply(&url, &admin_token, ca_file.as_deref(), &args.files).await;
    }

    server::shutdown_signal().await;
    println!("stopping: pods, then nodes, then the API server");
    stop_nodes.send_replace(true);
    for agent in agents {
        match agent.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "a node agent failed"),
            Err(e) => tracing::warn!(error = %e, "a node agent task failed"),
            Ok(Ok(())) => {}
        }
    }
    stop_server.send_replace(true);
    server.await.context("the API server task failed")??;
    println!("stopped");
    Ok(())
}
