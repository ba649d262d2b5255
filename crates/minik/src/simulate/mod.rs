//! `minik simulate`: a pool of simulated nodes in one process, as kwok does. It registers N
//! Node objects, keeps each one alive with a Lease renewed at the kubelet's cadence (one ticker
//! over all nodes, spread over the period), and plays the kubelet for every pod bound to them:
//! the pod is reported Running and Ready with an address of its own, and deleted once it is
//! marked for deletion. Nothing runs: there are no containers, logs, exec or probes. For
//! testing controllers and schedulers at scale, and for minik's own scale benchmarks
//! (docs/simulate.md).

mod follow;
mod nodes;
mod pods;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use minik_api::cidr::Cidr;
use minik_api::k8s_openapi::api::core::v1::{Node, Pod};
use minik_api::quantity::Quantity;
use minik_client::{resource_of, Api, HttpApi, WorkQueue};
use serde_json::Value;

use nodes::Fleet;
use pods::Pods;

/// Flags of `minik simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    client: crate::cli::ClientFlags,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 10)]
    nodes: u32,
    /// The nodes are named PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    /// The CPU capacity of each node (a quantity: 32, 500m).
    #[arg(long, default_value = "32")]
    cpu: String,
    /// The memory capacity of each node (a quantity: 256Gi).
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// The most pods each node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Labels of every node, besides kubernetes.io/hostname and minik.io/simulated=true:
    /// k=v,k2=v2.
    #[arg(long, default_value = "")]
    labels: String,
    /// Taints of every node: key=value:Effect,key:Effect.
    #[arg(long, default_value = "")]
    taints: String,
    /// How often each node renews its Lease (the kubelet's 10s), a Go duration. The renewals of
    /// all nodes are spread over this period.
    #[arg(long, default_value = "10s", value_parser = crate::cli::time::parse_duration)]
    heartbeat: Duration,
    /// Where pod addresses come from; each running pod gets one of its own.
    #[arg(long, default_value = "10.200.0.0/16")]
    pod_ip_cidr: Cidr,
    /// Where the nodes' InternalIP addresses come from (node i gets the i-th).
    #[arg(long, default_value = "10.199.0.0/16")]
    node_ip_cidr: Cidr,
    /// How many API requests are in flight at once for pods, and as many again for the nodes'
    /// registrations and heartbeats.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// On SIGINT/SIGTERM, delete the nodes and their Leases. By default they stay, and the node
    /// lifecycle controller marks them Unknown once their Leases expire.
    #[arg(long)]
    delete_nodes_on_exit: bool,
}

/// What the simulated nodes are like: the validated flags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub count: u32,
    pub prefix: String,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub heartbeat: Duration,
    pub pod_ips: Cidr,
    pub node_ips: Cidr,
    pub concurrency: usize,
    pub delete_on_exit: bool,
}

/// The label every simulated node carries, so that workloads can choose (or avoid) them.
pub(crate) const LABEL_SIMULATED: &str = "minik.io/simulated";

impl SimulateArgs {
    fn config(&self) -> anyhow::Result<Config> {
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let last = format!("{}{}", self.name_prefix, self.nodes - 1);
        for name in [format!("{}0", self.name_prefix), last] {
            let problems = minik_api::names::dns1123_subdomain(&name);
            if !problems.is_empty() {
                bail!(
                    "--name-prefix {:?}: node name {name:?} is not valid: {}",
                    self.name_prefix,
                    problems.join("; ")
                );
            }
        }
        for (flag, value) in [("--cpu", &self.cpu), ("--memory", &self.memory)] {
            let quantity = Quantity::parse(value)
                .map_err(|e| anyhow::anyhow!("{flag} {value:?} is not a quantity: {e}"))?;
            if quantity.is_zero() || quantity.millis() < 0 {
                bail!("{flag} {value:?} must be above zero");
            }
        }
        if self.max_pods == 0 {
            bail!("--max-pods must be at least 1");
        }
        if self.heartbeat < Duration::from_millis(100) || self.heartbeat > Duration::from_secs(3600)
        {
            bail!("--heartbeat must be between 100ms and 1h");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let node_addresses = self.node_ip_cidr.pod_range().count() as u64;
        if u64::from(self.nodes) > node_addresses {
            bail!(
                "--node-ip-cidr {} has {node_addresses} addresses for nodes, fewer than --nodes {}",
                self.node_ip_cidr,
                self.nodes
            );
        }
        if self.pod_ip_cidr.pod_range().is_empty() {
            bail!(
                "--pod-ip-cidr {} has no addresses for pods",
                self.pod_ip_cidr
            );
        }
        if self.pod_ip_cidr.overlaps(&self.node_ip_cidr) {
            bail!(
                "--pod-ip-cidr {} overlaps --node-ip-cidr {}",
                self.pod_ip_cidr,
                self.node_ip_cidr
            );
        }
        let mut labels = crate::node::parse_labels(&self.labels)?;
        labels.insert(LABEL_SIMULATED.into(), "true".into());
        Ok(Config {
            count: self.nodes,
            prefix: self.name_prefix.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            max_pods: self.max_pods,
            labels,
            taints: crate::node::parse_taints(&self.taints)?,
            heartbeat: self.heartbeat,
            pod_ips: self.pod_ip_cidr,
            node_ips: self.node_ip_cidr,
            concurrency: self.concurrency,
            delete_on_exit: self.delete_nodes_on_exit,
        })
    }
}

/// Runs `minik simulate` until SIGINT or SIGTERM.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let settings = args.client.settings()?;
    let api = HttpApi::trusting(&settings.server, &settings.trust)
        .map_err(|e| anyhow::anyhow!("--server: {e}"))?
        .with_token(settings.token.as_ref().map(|t| t.expose().to_owned()));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = tokio.block_on(simulate(Arc::new(api), config));
    // Retries still waiting for their back-off are dropped, not waited for.
    tokio.shutdown_background();
    result
}

async fn simulate(http: Arc<HttpApi>, config: Config) -> anyhow::Result<()> {
    let api: Arc<dyn Api> = http.clone();
    let concurrency = config.concurrency;
    let delete_on_exit = config.delete_on_exit;
    let fleet = Arc::new(Fleet::new(api.clone(), config));
    let pods = Arc::new(Pods::new(api.clone(), fleet.clone()));
    tracing::info!(server = %http.base(), nodes = fleet.count(), "minik simulate starting");

    let mut tasks = tokio::task::JoinSet::new();
    // Pods first: a node is schedulable as soon as it is registered.
    let observer = pods.clone();
    tasks.spawn(follow::follow(
        http.clone(),
        resource_of::<Pod>(),
        move |seen| observer.observe(seen),
    ));
    for _ in 0..concurrency {
        tasks.spawn(pods.clone().work());
    }
    // Heartbeats from the start: the nodes registered first renew their Leases while the
    // others register.
    let beats: WorkQueue<u32> = WorkQueue::new(Duration::from_millis(200), fleet.heartbeat());
    tasks.spawn(fleet.clone().tick(beats.clone()));
    for _ in 0..concurrency {
        tasks.spawn(fleet.clone().beat(beats.clone()));
    }

    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let registered = tokio::select! {
        registered = fleet.register_all() => Some(registered),
        _ = &mut stop => None,
    };
    match registered {
        Some(Ok(())) => {
            println!(
                "minik simulate: {} nodes registered ({} to {})",
                fleet.count(),
                fleet.name(0),
                fleet.name(fleet.count() - 1)
            );
            let observer = fleet.clone();
            tasks.spawn(follow::follow(
                http.clone(),
                resource_of::<Node>(),
                move |seen| observer.observe(seen),
            ));
            stop.await;
        }
        Some(Err(e)) => {
            tasks.abort_all();
            return Err(e);
        }
        None => {}
    }
    tasks.abort_all();
    finish(&fleet, &pods, &http, delete_on_exit).await;
    Ok(())
}

/// What happens on SIGINT/SIGTERM: with `--delete-nodes-on-exit` the nodes, their Leases and
/// their pods go (a second signal stops that); otherwise everything stays, and the node
/// lifecycle controller marks the nodes Unknown once their Leases expire, as for any node
/// whose kubelet stopped.
async fn finish(fleet: &Fleet, pods: &Pods, http: &HttpApi, delete_on_exit: bool) {
    if delete_on_exit {
        tracing::info!(
            nodes = fleet.count(),
            "deleting the simulated nodes, their Leases and their pods"
        );
        let cleanup = async {
            fleet.delete_all().await;
            match pods.delete_all(http).await {
                Ok(n) => tracing::info!(pods = n, "deleted the pods of the simulated nodes"),
                Err(e) => tracing::warn!(error = %e, "cannot list the pods of the simulated nodes"),
            }
        };
        tokio::select! {
            _ = cleanup => {}
            _ = crate::server::shutdown_signal() => {
                tracing::warn!("stopped again: some simulated nodes or pods may be left");
            }
        }
    }
    tracing::info!("minik simulate stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        simulate: SimulateArgs,
    }

    fn parse(flags: &[&str]) -> anyhow::Result<Config> {
        use clap::Parser;
        let args = Flags::try_parse_from(["minik-simulate"].iter().chain(flags))?;
        args.simulate.config()
    }

    #[test]
    fn defaults_are_a_kubelet_s_and_every_flag_is_checked() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.count, 10);
        assert_eq!(config.heartbeat, Duration::from_secs(10));
        assert_eq!(
            config.labels.get(LABEL_SIMULATED).map(String::as_str),
            Some("true")
        );
        assert_eq!(config.pod_ips.to_string(), "10.200.0.0/16");

        let config = parse(&[
            "--nodes",
            "5000",
            "--labels",
            "zone=a,disk=ssd",
            "--taints",
            "dedicated=sim:NoSchedule,gpu:NoExecute",
            "--heartbeat",
            "1s",
        ])
        .unwrap();
        assert_eq!(config.labels.len(), 3);
        assert_eq!(
            config.taints,
            vec![
                json!({"key": "dedicated", "value": "sim", "effect": "NoSchedule"}),
                json!({"key": "gpu", "value": "", "effect": "NoExecute"}),
            ]
        );

        let cases: &[(&[&str], &str)] = &[
            (&["--nodes", "0"], "--nodes must be at least 1"),
            (&["--name-prefix", "Sim_"], "--name-prefix \"Sim_\""),
            (&["--cpu", "lots"], "--cpu \"lots\" is not a quantity"),
            (&["--memory", "0"], "--memory \"0\" must be above zero"),
            (&["--max-pods", "0"], "--max-pods must be at least 1"),
            (
                &["--heartbeat", "1ms"],
                "--heartbeat must be between 100ms and 1h",
            ),
            (&["--concurrency", "0"], "--concurrency must be at least 1"),
            (
                &["--labels", "novalue"],
                "--labels: \"novalue\" is not key=value",
            ),
            (&["--labels", "a=b c"], "--labels: \"a=b c\""),
            (&["--taints", "a=b:Sometimes"], "the effect must be"),
            (&["--taints", "noeffect"], "is not key=value:Effect"),
            (
                &["--nodes", "300", "--node-ip-cidr", "10.1.0.0/24"],
                "fewer than --nodes 300",
            ),
            (
                &[
                    "--pod-ip-cidr",
                    "10.0.0.0/8",
                    "--node-ip-cidr",
                    "10.1.0.0/16",
                ],
                "overlaps",
            ),
            (&["--pod-ip-cidr", "10.0.0.0/31"], "has no addresses"),
        ];
        for (flags, expected) in cases {
            let err = parse(flags).expect_err(&format!("{flags:?} must be refused"));
            assert!(
                format!("{err:#}").contains(expected),
                "{flags:?}: {err:#} should say {expected:?}"
            );
        }
        assert!(
            parse(&["--pod-ip-cidr", "10.200.0.1/16"]).is_err(),
            "host bits"
        );
    }
}
